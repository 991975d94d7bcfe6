#include "kvfs/offline_index.h"

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "kvfs/engine.h"
#include "kvfs/errors.h"

namespace kvfs {

absl::StatusOr<OfflineIndex> OpenOfflineIndex(const std::string& backing_dir,
                                              std::string node_id, std::string index_dir) {
  if (node_id.empty()) node_id = DefaultNodeId();
  absl::StatusOr<InspectedBacking> backing = InspectBackingDir(backing_dir, node_id);
  if (!backing.ok()) return backing.status();
  if (index_dir.empty()) index_dir = DefaultIndexDir(backing_dir, node_id);
  OfflineIndex out;
  out.backing = *std::move(backing);
  out.index_dir = index_dir;
  IndexOptions options;
  options.read_only = true;
  absl::StatusOr<std::unique_ptr<Index>> index = Index::Open(index_dir + "/db", options);
  if (!index.ok()) {
    return absl::Status(index.status().code(),
                        absl::StrCat("index of node '", node_id, "': ", index.status().message(),
                                     " (give the node's --node-id and --index-dir as for "
                                     "kvfs mount)"));
  }
  absl::StatusOr<std::optional<IndexMeta>> meta = (*index)->GetMeta();
  if (!meta.ok()) return meta.status();
  if (!*meta || (*meta)->backing_uuid != out.backing.format.uuid ||
      (*meta)->node_id != node_id) {
    return absl::FailedPreconditionError(
        absl::StrCat("index ", index_dir, " does not belong to node '", node_id, "' of ",
                     out.backing.layout.root));
  }
  out.index = *std::move(index);
  out.meta = **meta;
  return out;
}

}  // namespace kvfs
