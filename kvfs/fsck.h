// Checking and repairing a node's part of a backing directory (kvfs fsck):
// the format file, every journal entry, every record of every extent (and,
// with verify_data, every chunk checksum), and the index against them.
//
// What counts as what:
//   error    something a read would trip over or the index gets wrong: an
//            index entry without a valid record, a size or checksum table that
//            differs from the record's, wrong extent accounting, a missing or
//            unreadable index, damaged journal entries, a corrupt chunk
//            (verify_data), a temp file nobody will rename (orphan)
//   warning  foreign or stray files, left alone
//   info     dead space, records no file uses any more (retired, waiting for
//            reclaim), torn tails a crash left, records the next mount will
//            roll forward
// Repair rebuilds the index from the journal and extents (what a mount does
// with a missing index), then removes orphan temp files and files whose
// payload fails its checksums (a miss instead of EIO). It never deletes a
// record that validates, never touches foreign files, and refuses to run
// while a mount of the node is live.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvfs {

enum class FsckSeverity { kError, kWarning, kInfo };

struct FsckFinding {
  FsckSeverity severity = FsckSeverity::kError;
  std::string kind;     // short, stable: "index-missing", "bad-record", ...
  std::string message;  // one line, naming the file and what is wrong
};

struct FsckProgress {
  const char* phase = "";  // "journal", "extents", "index"
  uint64_t done_bytes = 0, total_bytes = 0;
  uint64_t done_files = 0, total_files = 0;
};

struct FsckOptions {
  std::string backing_dir;
  std::string node_id;    // empty: the host name (as kvfs mount)
  std::string index_dir;  // empty: the default (as kvfs mount)
  bool repair = false;
  bool verify_data = false;
  std::function<void(const FsckProgress&)> progress;  // called often; may be empty
  std::function<void(const std::string&)> log;        // repair's own log lines
};

struct FsckTotals {
  uint64_t files = 0, dirs = 0, logical_bytes = 0;
  uint64_t extents = 0, extent_bytes = 0;      // files on the backing fs and their size
  uint64_t records = 0, live_records = 0;
  uint64_t unreferenced_records = 0, unreferenced_bytes = 0;
  uint64_t dead_bytes = 0;                     // extent bytes no file uses
  uint64_t journal_files = 0, journal_entries = 0;
  uint64_t orphan_temp_files = 0;
  uint64_t verified_bytes = 0;                 // payload bytes checksummed
};

struct FsckReport {
  std::vector<FsckFinding> findings;  // of the final check
  std::vector<std::string> repairs;   // what repair did, one line each
  FsckTotals totals;
  bool live_mount = false;  // checked while the node was mounted
  int exit_code = 0;        // 0 clean, 1 corrected, 4 errors left (8: RunFsck fails)

  uint64_t Count(FsckSeverity severity) const;
};

// Checks (and repairs) the node. Fails (exit code 8) only when it cannot do
// its job: not a backing directory, unreadable files, repair of a live mount.
absl::StatusOr<FsckReport> RunFsck(const FsckOptions& options);

}  // namespace kvfs
