// The kvfs storage engine: files packed as records in extents, a namespace
// committed through the node's journal and materialised in a RocksDB index.
//
// Write path: CreateWriter leases an extent; Write streams bytes into the
// record's payload; Commit writes the trailer, then the header, then appends
// the journal entry (the commit point), then updates the index in one batch.
// Read path: the index gives a file's record and chunk checksums; every read
// verifies the chunks it returns.
//
// Thread-safe. Namespace changes are serialised by one mutex (each is a few
// microseconds of page-cache writes); reads and data writes run in parallel.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "kvfs/backing_dir.h"
#include "kvfs/checksum.h"
#include "kvfs/extent_pool.h"
#include "kvfs/extent_store.h"
#include "kvfs/index.h"
#include "kvfs/journal.h"

namespace kvfs {

struct EngineOptions {
  std::string backing_dir;
  std::string index_dir;  // empty: DefaultIndexDir(backing_dir, node_id)
  std::string node_id;    // empty: DefaultNodeId()
  uint64_t extent_bytes = uint64_t{1} << 30;
  uint64_t journal_file_bytes = 64 << 20;
  uint64_t block_cache_bytes = 64 << 20;
  // fdatasync data, journal and index at every commit (survives power loss;
  // the clients never fsync, so the default survives process crashes only).
  bool sync_commits = false;
  bool verify_reads = true;  // only benchmarks measuring its cost turn it off
  // Called with every log line; empty: stderr.
  std::function<void(absl::string_view)> log;
  // Tests only: called at named points of a commit to inject crashes.
  std::function<void(absl::string_view point)> crash_hook;
};

std::string DefaultNodeId();  // the host name, made a valid node id
// A local directory for the index, derived from the backing directory's path.
std::string DefaultIndexDir(const std::string& backing_dir,
                            const std::string& node_id);

struct Attr {
  uint64_t ino = 0;
  bool is_dir = false;
  uint32_t mode = 0;  // permission bits
  uint64_t size = 0;
  uint64_t stored_bytes = 0;  // bytes the record occupies in its extent
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  int64_t atime_ns = 0;
};

struct EngineStats {
  std::atomic<uint64_t> commits{0};
  std::atomic<uint64_t> bytes_committed{0};
  std::atomic<uint64_t> aborted_writes{0};
  std::atomic<uint64_t> bytes_read{0};
  std::atomic<uint64_t> checksum_errors{0};
  std::atomic<uint64_t> rolled_forward{0};  // commits completed by recovery
  std::atomic<uint64_t> torn_tails{0};      // extents sealed at recovery
};

class Engine;

// A file being written. Writes may come from several threads and at any
// offset; bytes never written read as zeros. Destroy every writer before its
// engine: an uncommitted writer's destructor marks its bytes dead.
class FileWriter {
 public:
  ~FileWriter();  // abandons the file unless committed
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;

  absl::Status Write(uint64_t offset, absl::string_view data);
  absl::Status Truncate(uint64_t size);
  // Reads back uncommitted bytes (a file being written is readable).
  absl::StatusOr<size_t> Read(uint64_t offset, size_t len, char* out) const;
  uint64_t size() const;
  uint64_t ino() const { return ino_; }
  bool committed() const { return committed_; }

 private:
  friend class Engine;
  FileWriter(Engine* engine, ExtentLease lease, uint64_t ino, uint32_t mode,
             int64_t created_ns);
  uint64_t payload_offset() const { return lease_.tail + kRecordHeaderBytes; }

  Engine* const engine_;
  ExtentLease lease_;  // the record starts at lease_.tail
  const uint64_t ino_;
  const uint32_t mode_;
  const int64_t created_ns_;

  mutable std::mutex mu_;
  uint64_t size_ = 0;
  uint64_t high_water_ = 0;  // furthest byte ever written (for abandonment)
  bool in_order_ = true;     // every write so far appended at the end
  PayloadHasher hasher_;     // valid while in_order_
  bool committed_ = false;
  bool released_ = false;
  bool header_attempted_ = false;  // a commit got as far as writing the header
};

// A committed file version opened for reading. It stays readable after the
// name is replaced or removed (records are never overwritten).
class FileReader {
 public:
  // Reads up to `len` bytes at `offset` (fewer at the end of the file),
  // verifying the checksum of every chunk the bytes come from.
  absl::StatusOr<size_t> Read(uint64_t offset, size_t len, char* out) const;
  uint64_t size() const { return inode_.size; }
  uint64_t ino() const { return inode_.ino; }
  const Inode& inode() const { return inode_; }

 private:
  friend class Engine;
  FileReader(Engine* engine, std::shared_ptr<Extent> extent, Inode inode)
      : engine_(engine), extent_(std::move(extent)), inode_(std::move(inode)) {}
  absl::Status ReadChunk(uint64_t index, char* out, uint64_t len) const;

  Engine* const engine_;
  std::shared_ptr<Extent> extent_;
  Inode inode_;
  // The last chunk verified for a partial read: the kernel reads in pieces
  // smaller than a chunk, and verifying the whole chunk for each piece would
  // multiply the work. Records never change, so a verified copy stays right.
  mutable std::mutex cache_mu_;
  mutable std::string cached_chunk_bytes_;
  mutable uint64_t cached_chunk_ = UINT64_MAX;
};

// One entry of Engine::ListTree, for tools and tests.
struct TreeEntry {
  std::string path;
  Inode inode;
};

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Open(EngineOptions options);
  ~Engine();

  // ---- namespace, by inode (what the FUSE layer calls) ----
  absl::StatusOr<Attr> GetAttr(uint64_t ino);
  // The whole index entry of `ino` (its parent and name included).
  absl::StatusOr<Inode> GetInode(uint64_t ino);
  absl::StatusOr<Attr> Lookup(uint64_t parent, absl::string_view name);
  absl::StatusOr<Attr> Mkdir(uint64_t parent, absl::string_view name, uint32_t mode);
  absl::Status Unlink(uint64_t parent, absl::string_view name);
  absl::Status Rmdir(uint64_t parent, absl::string_view name);
  // Replaces an existing target unless `no_replace`.
  absl::Status Rename(uint64_t parent, absl::string_view name, uint64_t new_parent,
                      absl::string_view new_name, bool no_replace = false);
  // Children of `ino` after `after` in name order until `fn` returns false.
  absl::Status ReadDir(uint64_t ino, absl::string_view after,
                       const std::function<bool(absl::string_view name, const Attr&)>& fn);
  // Records an access (lookup hit, open, read) at ~1 s granularity.
  // `seen_atime_ns`: the access time the caller just read, if it has it;
  // an access already recorded this second then costs no index read.
  absl::Status RecordAccess(uint64_t ino, int64_t seen_atime_ns = -1);

  // ---- data ----
  // `ino` non-zero: the new version keeps that inode number (a file rewritten
  // in place); zero: a new inode.
  absl::StatusOr<std::unique_ptr<FileWriter>> CreateWriter(uint32_t mode = 0644,
                                                           uint64_t ino = 0);
  // Makes the writer's bytes visible as `parent`/`name`, atomically,
  // replacing a file of that name. The writer is finished afterwards.
  absl::StatusOr<Attr> Commit(FileWriter& writer, uint64_t parent,
                              absl::string_view name);
  absl::StatusOr<std::unique_ptr<FileReader>> OpenReader(uint64_t ino);

  // ---- paths ('/'-separated, relative to the root; tools and tests) ----
  absl::StatusOr<Attr> Stat(absl::string_view path);
  absl::StatusOr<Attr> MkdirAll(absl::string_view path, uint32_t mode = 0755);
  absl::StatusOr<Attr> PutFile(absl::string_view path, absl::string_view data);
  absl::StatusOr<std::string> GetFile(absl::string_view path);
  // Every file and directory below the root, with its path.
  absl::StatusOr<std::vector<TreeEntry>> ListTree();

  const EngineStats& stats() const { return stats_; }
  // What opening found wrong in the backing directory (foreign files,
  // damaged extents or journal entries), one line each, each naming a file.
  const std::vector<std::string>& problems() const { return problems_; }
  bool index_was_rebuilt() const { return index_rebuilt_; }
  const BackingLayout& layout() const { return backing_->layout(); }
  std::string index_dir() const { return index_dir_; }
  std::map<uint64_t, ExtentState> ExtentStates();

 private:
  friend class FileWriter;
  friend class FileReader;
  explicit Engine(EngineOptions options) : options_(std::move(options)) {}

  void Log(absl::string_view line) const;
  void Problem(std::string line);
  void CrashPoint(absl::string_view point) const {
    if (options_.crash_hook) options_.crash_hook(point);
  }

  // Opening and recovery (engine_recovery.cc).
  absl::Status OpenIndex();
  absl::Status ReplayJournal();
  absl::Status RecoverExtents();

  // Namespace changes (engine.cc). *Locked functions need mu_.
  absl::Status CheckWritable() const;
  absl::StatusOr<Inode> GetDirLocked(uint64_t ino);
  absl::StatusOr<std::string> PathOfLocked(uint64_t ino);
  // Journals `entry` (the commit point) and applies it to the index.
  // `replaying`: recovery completing a commit (recreates missing parents).
  absl::Status CommitEntryLocked(const JournalEntry& entry, const ValidRecord* record,
                                 bool replaying = false);
  // Applies a journalled change to the index and extent accounting.
  absl::Status ApplyLocked(const JournalEntry& entry, const ValidRecord* record,
                           bool replaying, IndexBatch* batch);
  absl::StatusOr<std::pair<uint64_t, std::string>> ResolveParentLocked(
      absl::string_view path, bool create_missing);
  void RetireVersionLocked(const Inode& old, IndexBatch* batch);
  void RaiseNextIno(uint64_t at_least);  // never lowers it (writers allocate)
  void AbandonWriter(FileWriter& writer);
  absl::Status FinishPayload(FileWriter& writer, RecordTrailer* trailer);

  EngineOptions options_;
  std::unique_ptr<BackingDir> backing_;
  std::unique_ptr<ExtentStore> extents_;
  std::unique_ptr<Index> index_;
  std::unique_ptr<JournalWriter> journal_;
  std::unique_ptr<ExtentPool> pool_;
  std::string index_dir_;
  PosixFile index_lock_;  // flock on the index directory's marker file
  bool index_rebuilt_ = false;
  std::vector<std::string> problems_;
  EngineStats stats_;
  std::atomic<uint64_t> next_ino_{kRootIno + 1};

  std::mutex mu_;  // serialises namespace changes; guards the members below
  IndexMeta meta_;
  std::map<uint64_t, ExtentState> extent_states_;
  std::string failure_;  // set when journal and index diverged: read-only
};

}  // namespace kvfs
