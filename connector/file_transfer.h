// Moving one file: the store and load pipelines of an I/O thread. A file is
// moved in chunks of whole blocks through the thread's two staging slots, so
// that the copy of chunk i+1 overlaps the file I/O of chunk i.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "connector/copy_backend.h"
#include "connector/kv_layout.h"

namespace kvfs::connector {

// One file of a job. The file's blocks are block_ids[head_offset:]: a store
// writes exactly those, a load fills them from the END of the file (the file
// may hold more blocks before them, e.g. a prefix the GPU still has).
struct FileRequest {
  std::string path;
  uint32_t group = 0;
  std::vector<int64_t> block_ids;
  uint32_t head_offset = 0;

  std::span<const int64_t> file_blocks() const {
    return std::span<const int64_t>(block_ids).subspan(head_offset);
  }
};

struct StoreOutcome {
  uint64_t bytes = 0;    // bytes written (0 when skipped)
  bool skipped = false;  // the file already existed
};

// Writes "<path>_<temp_id>.tmp" (creating parent directories), renames it onto
// path while the descriptor is still open (the order kvfs and plain
// directories both make atomic), then closes. Skips a path that exists.
absl::StatusOr<StoreOutcome> StoreFile(const KvLayout& layout, const FileRequest& request,
                                       CopyStream& stream, StoreMarker* marker,
                                       uint32_t temp_id);

// Reads the request's blocks from the end of the file with positioned reads.
// A missing file, a size that is not a whole number of blocks, or fewer blocks
// than needed fail.
absl::StatusOr<uint64_t> LoadFile(const KvLayout& layout, const FileRequest& request,
                                  CopyStream& stream);

// mkdir -p, tolerating EEXIST races with other threads and nodes.
absl::Status MakeParentDirectories(const std::string& path);

}  // namespace kvfs::connector
