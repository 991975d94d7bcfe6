// A node's index opened read-only by the offline tools (du, fsck), beside
// its backing directory; a live mount may hold it at the same time.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kvfs/backing_dir.h"
#include "kvfs/index.h"

namespace kvfs {

struct OfflineIndex {
  InspectedBacking backing;
  std::string index_dir;  // the directory given to kvfs mount --index-dir
  std::unique_ptr<Index> index;
  IndexMeta meta;
};

// `node_id` and `index_dir` as kvfs mount takes them (empty: the defaults).
// Fails when the index is missing, unreadable, or another directory's.
absl::StatusOr<OfflineIndex> OpenOfflineIndex(const std::string& backing_dir,
                                              std::string node_id, std::string index_dir);

}  // namespace kvfs
