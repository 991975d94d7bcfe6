// Space use per directory, computed from the index alone (kvfs du): no file
// is opened or stat'ed, so it runs at the speed of an index scan.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kvfs/index.h"

namespace kvfs {

struct DirUsage {
  std::string path;       // relative to the root ("" is the root itself)
  int depth = 0;          // levels below the directory the scan started at
  bool is_dir = true;
  uint64_t logical_bytes = 0;  // file sizes (what du --apparent-size adds up)
  uint64_t stored_bytes = 0;   // bytes the records occupy in extents
  uint64_t files = 0;
  uint64_t dirs = 0;           // directories below (not counting itself)
};

// Totals of `start` (a directory or a file, found at `start_path`) and of
// every directory down to `max_depth` levels below it (-1: all), in du's
// order: a directory after everything below it. The last entry is `start`.
absl::StatusOr<std::vector<DirUsage>> ComputeUsage(Index& index, const Inode& start,
                                                   const std::string& start_path,
                                                   int max_depth);

// The .kvfs/du control file's request ("path=P", "depth=N") and answer
// ("usage", then one line per entry: LOGICAL STORED FILES DIRS PATH,
// tab-separated; or "error: MESSAGE").
struct UsageRequest {
  std::string path;
  int max_depth = -1;
};
absl::StatusOr<UsageRequest> ParseUsageRequest(absl::string_view text);
std::string EncodeUsageRequest(const UsageRequest& request);
std::string FormatUsageAnswer(const std::vector<DirUsage>& entries);
absl::StatusOr<std::vector<DirUsage>> ParseUsageAnswer(absl::string_view text);

}  // namespace kvfs
