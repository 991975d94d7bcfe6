#include "kvfs/temp_names.h"

#include "absl/strings/match.h"
#include "absl/strings/ascii.h"
#include "absl/strings/strip.h"

namespace kvfs {

bool IsTempName(absl::string_view name) {
  if (absl::StartsWith(name, ".o_direct_probe_")) return true;
  if (!absl::ConsumeSuffix(&name, ".tmp")) return false;
  size_t digits = 0;
  while (digits < name.size() && absl::ascii_isdigit(name[name.size() - 1 - digits])) ++digits;
  return digits > 0 && digits < name.size() && name[name.size() - 1 - digits] == '_';
}

}  // namespace kvfs
