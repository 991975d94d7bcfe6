// The node's append-only journal of namespace changes: the commit point of
// every change (a change exists once its entry is in the journal), the source
// the index is rebuilt from, and what other nodes will tail. Files rotate at
// `max_file_bytes`; a file with a torn tail (crash mid-append) is left as it
// is and appending continues in a new file.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kvfs/backing_dir.h"
#include "kvfs/format.h"
#include "kvfs/posix_file.h"

namespace kvfs {

struct JournalPosition {
  uint64_t number = 0;
  uint64_t offset = 0;
};

struct JournalFileScan {
  uint64_t valid_end = 0;  // end of the last valid entry
  uint64_t file_size = 0;
  std::string problem;     // why scanning stopped before file_size, if it did
  // The file ends inside the last entry: what a crash mid-append leaves.
  // Otherwise a stop before file_size means damaged bytes.
  bool torn_tail = false;
};

// Reads entries of journal file `number` from `from` (kFileHeaderBytes for the
// start); `fn` gets each entry and the offset just past it.
absl::StatusOr<JournalFileScan> ScanJournalFile(
    const BackingLayout& layout, const std::string& backing_uuid,
    uint64_t number, uint64_t from,
    const std::function<absl::Status(const JournalEntry&, uint64_t end)>& fn);

class JournalWriter {
 public:
  // Appends to journal `number` at `offset` when `offset` is its clean end,
  // or creates journal `number` (offset 0).
  static absl::StatusOr<std::unique_ptr<JournalWriter>> Open(
      const BackingLayout& layout, std::string backing_uuid, uint64_t number,
      uint64_t offset, uint64_t max_file_bytes);

  // Appends one entry; returns the position just past it. Not thread-safe:
  // the engine serialises namespace changes. On a failed write the file is
  // cut back to its last good entry so the journal never holds a torn entry
  // in the middle.
  absl::StatusOr<JournalPosition> Append(const JournalEntry& entry);
  absl::Status Sync() const { return file_.DataSync(); }
  JournalPosition end() const { return {number_, offset_}; }

 private:
  JournalWriter(const BackingLayout& layout, std::string uuid, uint64_t max)
      : layout_(layout), uuid_(std::move(uuid)), max_file_bytes_(max) {}
  absl::Status StartFile(uint64_t number);

  BackingLayout layout_;
  std::string uuid_;
  uint64_t max_file_bytes_;
  PosixFile file_;
  uint64_t number_ = 0;
  uint64_t offset_ = 0;
};

}  // namespace kvfs
