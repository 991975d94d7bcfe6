// Extent files: creation, the shared open descriptors readers and writers
// use, record reads, and the tail scan recovery runs. One node writes an
// extent, one record at a time (see extent_pool.h), so records in an extent
// are contiguous and a scan can hop from header to header.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kvfs/backing_dir.h"
#include "kvfs/format.h"
#include "kvfs/posix_file.h"

namespace kvfs {

class Extent {
 public:
  Extent(uint64_t id, PosixFile file) : id_(id), file_(std::move(file)) {}
  uint64_t id() const { return id_; }
  const PosixFile& file() const { return file_; }
  // The same file opened again with O_DIRECT, on first use (cold_reads.h);
  // null where the filesystem refuses direct I/O.
  const PosixFile* DirectFile() const;

 private:
  uint64_t id_;
  PosixFile file_;
  mutable std::once_flag direct_once_;
  mutable PosixFile direct_file_;
};

struct ValidRecord {
  RecordHeader header;
  RecordTrailer trailer;
};

struct TailScan {
  std::vector<ValidRecord> records;  // valid records from the start offset on
  uint64_t valid_end = 0;  // where the next record would start (may pass file_size)
  uint64_t file_size = 0;
  uint64_t skipped_bytes = 0;        // abandoned regions hopped over
  std::string problem;               // why the scan stopped before file_size
};

class ExtentStore {
 public:
  // `peer`: another node's extents, opened read-only and never kept open
  // here (their owner removes dead extents; a descriptor kept here would
  // pin their space).
  ExtentStore(BackingLayout layout, std::string backing_uuid, bool peer = false)
      : layout_(std::move(layout)), uuid_(std::move(backing_uuid)), peer_(peer) {}

  // The open extent `id`, opened (and its header checked) on first use;
  // a peer's is opened afresh at every call.
  absl::StatusOr<std::shared_ptr<Extent>> Get(uint64_t id);
  // Creates extent `id` (exclusive), writes its header, syncs the directory.
  absl::StatusOr<std::shared_ptr<Extent>> Create(uint64_t id);

  // Writes the header of an extent whose creation a crash interrupted
  // (a file of this node's, shorter than a header, holding no data).
  absl::Status FinishCreation(uint64_t id);

  // Closes the store's descriptor of `id` (the extent is being removed;
  // readers holding it keep theirs).
  void Forget(uint64_t id);

  // Reads and validates the record at `offset` (header and trailer).
  absl::StatusOr<ValidRecord> ReadRecord(const Extent& extent, uint64_t offset);
  // Checks every chunk of a record's payload against its table.
  absl::Status VerifyPayload(const Extent& extent, const ValidRecord& record);
  // Hops over valid records from `from` until the first invalid position.
  absl::StatusOr<TailScan> ScanTail(uint64_t id, uint64_t from);

  const BackingLayout& layout() const { return layout_; }

 private:
  absl::StatusOr<std::shared_ptr<Extent>> OpenExisting(uint64_t id);

  BackingLayout layout_;
  std::string uuid_;
  const bool peer_;
  std::shared_mutex mu_;
  std::map<uint64_t, std::shared_ptr<Extent>> open_;
};

}  // namespace kvfs
