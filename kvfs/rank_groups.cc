#include "kvfs/rank_groups.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace kvfs {
namespace {

std::vector<absl::string_view> Components(absl::string_view path) {
  return absl::StrSplit(path, '/', absl::SkipEmpty());
}

// Splits "<prefix><digits>" where prefix ends in "_r" (or is "rank_").
std::optional<RankComponent> ParseRank(absl::string_view name) {
  size_t digits = name.size();
  while (digits > 0 && name[digits - 1] >= '0' && name[digits - 1] <= '9') --digits;
  if (digits == name.size() || name.size() - digits > 9) return std::nullopt;
  absl::string_view prefix = name.substr(0, digits);
  const bool suffix_form = prefix.size() > 2 && absl::EndsWith(prefix, "_r");
  if (!suffix_form && prefix != "rank_") return std::nullopt;
  RankComponent c;
  c.prefix = std::string(prefix);
  if (!absl::SimpleAtoi(name.substr(digits), &c.rank)) return std::nullopt;
  return c;
}

}  // namespace

std::optional<RankComponent> FindRankComponent(absl::string_view path) {
  std::vector<absl::string_view> parts = Components(path);
  // The last component is the file itself, never a rank directory.
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    if (std::optional<RankComponent> c = ParseRank(parts[i])) {
      c->index = i;
      return c;
    }
  }
  return std::nullopt;
}

std::optional<uint64_t> RankOf(absl::string_view name, absl::string_view prefix) {
  std::optional<RankComponent> c = ParseRank(name);
  if (!c || c->prefix != prefix) return std::nullopt;
  return c->rank;
}

std::string WithRank(absl::string_view path, const RankComponent& component,
                     uint64_t rank) {
  std::vector<std::string> parts;
  for (absl::string_view p : Components(path)) parts.emplace_back(p);
  if (component.index < parts.size()) {
    parts[component.index] = absl::StrCat(component.prefix, rank);
  }
  return absl::StrJoin(parts, "/");
}

}  // namespace kvfs
