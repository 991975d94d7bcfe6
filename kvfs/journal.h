// The node's append-only journal of namespace changes: the commit point of
// every change (a change exists once its entry is in the journal), the source
// the index is rebuilt from, and what other nodes will tail. Files rotate at
// `max_file_bytes`; a file with a torn tail (crash mid-append) is left as it
// is and appending continues in a new file.
//
// Checkpoints bound the journal: checkpoint N (NNNNNNNNNN.kvc, journal
// entries between a kCheckpoint and a kCheckpointEnd entry) holds the
// namespace as of the end of journal file N, so journal files up to N and
// older checkpoints can go. It is written under a temporary name and renamed
// into place once complete and durable: a checkpoint that exists is whole.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

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

// What a node's journal directory holds.
struct JournalFiles {
  std::vector<uint64_t> journals;     // NNNNNNNNNN.kvj, ascending
  std::vector<uint64_t> checkpoints;  // NNNNNNNNNN.kvc, ascending
  // NNNNNNNNNN.kvc.tmp: a checkpoint being written, or one a crash cut short.
  std::vector<uint64_t> unfinished;
  std::vector<std::string> foreign;   // paths of anything else
};
absl::StatusOr<JournalFiles> ListJournalFiles(const std::string& dir);

// Validates checkpoint `number` as a whole (its header, first and last
// entries, and the count of entries between), then calls `fn` with each entry
// between them, in order. Returns its first (kCheckpoint) entry. kDataLoss:
// the file is damaged, and `fn` was never called.
absl::StatusOr<JournalEntry> ScanCheckpointFile(
    const BackingLayout& layout, const std::string& backing_uuid, uint64_t number,
    const std::function<absl::Status(const JournalEntry&)>& fn);

// Writes checkpoint `number` at its temporary name; Finish renames it into
// place. Abandoned (destroyed unfinished), it removes the temporary file.
class CheckpointWriter {
 public:
  // `head`: the kCheckpoint entry.
  static absl::StatusOr<std::unique_ptr<CheckpointWriter>> Create(
      const BackingLayout& layout, const std::string& backing_uuid, uint64_t number,
      const JournalEntry& head);
  ~CheckpointWriter();
  absl::Status Append(const JournalEntry& entry);
  // Appends the kCheckpointEnd entry, makes the file durable and renames it
  // into place. Returns the checkpoint's size in bytes.
  absl::StatusOr<uint64_t> Finish();

 private:
  CheckpointWriter(const BackingLayout& layout, uint64_t number)
      : layout_(layout), number_(number) {}
  absl::Status FlushBuffer();

  BackingLayout layout_;
  uint64_t number_;
  PosixFile file_;
  std::string buffer_;  // entries not yet written
  uint64_t offset_ = 0;  // where the buffer goes
  uint64_t entries_ = 0;  // between the first and the last
  bool finished_ = false;
};

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
  // Continues in a new file (the next number), so that the current one is
  // finished and may be covered by a checkpoint.
  absl::Status Rotate() { return StartFile(number_ + 1); }
  JournalPosition end() const { return {number_, offset_}; }
  // Bytes of entries appended through this writer.
  uint64_t appended_bytes() const { return appended_bytes_; }

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
  uint64_t appended_bytes_ = 0;
};

}  // namespace kvfs
