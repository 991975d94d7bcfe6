// Rank groups: the clients write one file per tensor-parallel rank for the
// same KV block, at the same relative path below sibling directories
// "<model>_<d12>_r<N>" (older clients: "rank_<N>"). Eviction takes a group
// as a whole, rank 0 first, because a client's hit check looks at rank 0's
// file only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace kvfs {

struct RankComponent {
  size_t index = 0;    // which '/'-separated component names the rank
  std::string prefix;  // that component without its number: "m_abc_r", "rank_"
  uint64_t rank = 0;
};

// The first component of `path` that names a rank, if any.
std::optional<RankComponent> FindRankComponent(absl::string_view path);

// The rank `name` gives under `prefix` ("m_abc_r7" under "m_abc_r": 7).
std::optional<uint64_t> RankOf(absl::string_view name, absl::string_view prefix);

// `path` with the rank component replaced by `prefix` + `rank`.
std::string WithRank(absl::string_view path, const RankComponent& component,
                     uint64_t rank);

}  // namespace kvfs
