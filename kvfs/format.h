// On-disk formats of the backing directory, version 1. Everything written to
// the backing directory is encoded and validated here; docs/format.md
// describes the same layouts for people.
//
// Extent file:  [extent header, 4 KiB][record][record]...   (4 KiB aligned)
// Record:       [record header, 4 KiB][payload][trailer: chunk XXH3-64
//               table, payload XXH128][footer]
// Journal file: [journal header, 4 KiB][entry][entry]...
//
// A record's header is written last, at commit, so a record whose header and
// footer both validate is complete. Each record names its own extent and
// offset, so a record image copied elsewhere (say a stored extent file inside
// a payload) never validates at the wrong place.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kvfs/checksum.h"

namespace kvfs {

inline constexpr uint32_t kFormatVersion = 1;
inline constexpr uint64_t kBlockAlign = 4096;
inline constexpr uint64_t kFileHeaderBytes = 4096;    // extent and journal
inline constexpr uint64_t kRecordHeaderBytes = 4096;
inline constexpr size_t kMaxNodeIdBytes = 64;
// What fits in a record header beside the fixed fields and the node id.
inline constexpr size_t kMaxPathBytes = 3840;

inline uint64_t AlignUp(uint64_t v, uint64_t align = kBlockAlign) {
  return (v + align - 1) / align * align;
}

// ---- backing directory format file ("kvfs-format", text) ----
struct BackingFormat {
  uint32_t version = kFormatVersion;
  std::string uuid;  // 32 hex chars, identifies this backing directory
  int64_t created_unix = 0;
};
std::string EncodeBackingFormat(const BackingFormat& f);
// `file` names the file in error messages.
absl::StatusOr<BackingFormat> DecodeBackingFormat(absl::string_view text,
                                                  absl::string_view file);

// ---- extent and journal file headers ----
enum class FileKind : uint8_t { kExtent = 1, kJournal = 2 };
struct FileHeader {
  FileKind kind = FileKind::kExtent;
  uint32_t version = kFormatVersion;
  std::string backing_uuid;
  std::string node_id;
  uint64_t number = 0;  // extent id or journal number
  int64_t created_ns = 0;
};
std::string EncodeFileHeader(const FileHeader& h);  // kFileHeaderBytes long
// The header of a file created now.
std::string EncodeNewFileHeader(FileKind kind, absl::string_view backing_uuid,
                                absl::string_view node_id, uint64_t number);
absl::StatusOr<FileHeader> DecodeFileHeader(absl::string_view block,
                                            absl::string_view file);
// DecodeFileHeader, and a DataLoss error unless the header is the one a file
// at that place must carry: `kind`, of this backing directory and node,
// numbered `number` (a file copied or renamed there carries another).
absl::StatusOr<FileHeader> DecodeExpectedFileHeader(absl::string_view block,
                                                    absl::string_view file, FileKind kind,
                                                    absl::string_view backing_uuid,
                                                    absl::string_view node_id, uint64_t number);

// ---- records ----
struct RecordHeader {
  uint64_t seq = 0;  // commit sequence number, per node
  uint64_t ino = 0;
  uint64_t payload_bytes = 0;
  int64_t created_ns = 0;
  int64_t committed_ns = 0;
  uint32_t mode = 0;
  uint64_t extent_id = 0;
  uint64_t record_offset = 0;
  std::string node_id;
  std::string path;  // relative to the mount root, '/'-separated

  uint64_t chunk_count() const { return ChunkCount(payload_bytes); }
  uint64_t trailer_bytes() const;
  uint64_t record_bytes() const {
    return kRecordHeaderBytes + payload_bytes + trailer_bytes();
  }
  uint64_t payload_offset() const { return record_offset + kRecordHeaderBytes; }
  uint64_t trailer_offset() const { return payload_offset() + payload_bytes; }
  // Where the next record in the extent may start.
  uint64_t next_record_offset() const {
    return AlignUp(record_offset + record_bytes());
  }
};

struct RecordTrailer {
  std::vector<uint64_t> chunk_checksums;
  Hash128 payload_checksum;
};

uint64_t TrailerBytes(uint64_t payload_bytes);
std::string EncodeRecordHeader(const RecordHeader& h);  // kRecordHeaderBytes
std::string EncodeRecordTrailer(const RecordHeader& h, const RecordTrailer& t);

// Validates a header read at (`extent_id`, `offset`).
absl::StatusOr<RecordHeader> DecodeRecordHeader(absl::string_view block,
                                                uint64_t extent_id,
                                                uint64_t offset);
absl::StatusOr<RecordTrailer> DecodeRecordTrailer(absl::string_view bytes,
                                                  const RecordHeader& h);

// ---- skip markers ----
// Written where an abandoned file's record would have had its header, so a
// scan can hop over the region it wrote ([offset, next_offset): dead bytes).
std::string EncodeSkipMarker(uint64_t extent_id, uint64_t offset,
                             uint64_t next_offset);  // kBlockAlign long
// Returns next_offset of a valid marker at (`extent_id`, `offset`).
absl::StatusOr<uint64_t> DecodeSkipMarker(absl::string_view block,
                                          uint64_t extent_id, uint64_t offset);

// ---- journal entries ----
enum class JournalOp : uint8_t {
  kMkdir = 1,
  kCommit = 2,  // a file version becomes visible under `path`
  kRename = 3,  // `path` -> `path2`, replacing what `path2` named
  kUnlink = 4,
  kRmdir = 5,
  // This node's record at (extent_id, record_offset), once `path`, is no
  // longer a version of any file: another node's newer version replaced it,
  // or another node unlinked it. Its space is reclaimed like any retired one.
  kRetire = 6,
  // Only in checkpoints (journal.h): the file at `path` is this node's record
  // at (extent_id, record_offset), of inode `ino` and `payload_bytes`, stamped
  // `time_ns` (its commit or last rename). Unlike kCommit, `path` need not be
  // the record's own (the file may have been renamed since).
  kLive = 7,
  // The first entry of a checkpoint: `seq` is the last seq it covers, `ino`
  // the next inode number, `extent_id` the highest extent id ever used.
  kCheckpoint = 8,
  // The last entry of a checkpoint: `payload_bytes` entries came between.
  kCheckpointEnd = 9,
  // A hint, no namespace change: the file at `path`, `owner`'s record at
  // (extent_id, record_offset), was read on this node at `time_ns`. The owner
  // moves the file up its eviction order; every other node ignores it.
  kAccess = 10,
  // The last entry of a journal file: the node goes on in the file with the
  // next number, which exists by now. A node following this journal opens
  // that file by name, instead of waiting for a directory listing that a
  // network filesystem's cache may hold back (sshfs 20 s, NFS up to 60 s).
  kNextFile = 11,
};

struct JournalEntry {
  uint64_t seq = 0;
  JournalOp op = JournalOp::kMkdir;
  int64_t time_ns = 0;
  uint64_t ino = 0;
  uint32_t mode = 0;
  std::string path;
  std::string path2;
  // kCommit: where the record lives. kUnlink, kRename of a file, kRetire:
  // the version the change applied to (0: not recorded, older journals).
  uint64_t extent_id = 0;
  uint64_t record_offset = 0;
  uint64_t payload_bytes = 0;
  // The node whose extent holds that version; empty: the journal's own node.
  std::string owner;
};

// The journal entry that commits record `h` under its path.
JournalEntry CommitEntryFor(const RecordHeader& h);

std::string EncodeJournalEntry(const JournalEntry& e);

// Decodes the entry at the start of `bytes`. Sets `*consumed` to its length.
// kOutOfRange: `bytes` ends inside the entry (torn tail or clean end);
// kDataLoss: the bytes are not a valid entry.
absl::StatusOr<JournalEntry> DecodeJournalEntry(absl::string_view bytes,
                                                size_t* consumed);

// Checks a relative path: non-empty components, no "." or "..", no NUL,
// each component at most NAME_MAX, total at most kMaxPathBytes.
absl::Status ValidatePath(absl::string_view path);
absl::Status ValidateNodeId(absl::string_view node_id);

}  // namespace kvfs
