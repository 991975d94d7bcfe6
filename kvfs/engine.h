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
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "kvfs/backing_dir.h"
#include "kvfs/checksum.h"
#include "kvfs/cold_reads.h"
#include "kvfs/extent_pool.h"
#include "kvfs/extent_store.h"
#include "kvfs/index.h"
#include "kvfs/journal.h"
#include "kvfs/periodic_thread.h"
#include "kvfs/recent_bytes.h"
#include "kvfs/usage.h"
#include "kvfs/writeback_kicker.h"

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
  // Start writing each stored byte to the disk as soon as it is written
  // (sync_file_range, not waiting for it), as RocksDB's bytes_per_sync does:
  // committed blocks reach the disk within moments instead of at the 30 s
  // writeback, dirty memory stays small, and a later syncfs has little left.
  bool write_behind = true;
  // Cold reads of a streaming reader go straight from the disk in windows of
  // this many bytes (a multiple of 1 MiB; 0: through the backing page cache
  // like every other read). See cold_reads.h.
  uint64_t cold_window_bytes = 8 << 20;
  // The most memory those windows hold at once, over all readers.
  uint64_t cold_buffer_bytes = 256 << 20;

  // ---- capacity (eviction.cc) ----
  // Bytes this node may store; 0: 80% of the backing filesystem's size.
  uint64_t capacity_bytes = 0;
  // Eviction starts above high x limit and stops at low x limit.
  double high_watermark = 0.95;
  double low_watermark = 0.90;
  // Free space kvfs leaves on the backing filesystem for its neighbours;
  // UINT64_MAX: 5% of the filesystem's size.
  uint64_t min_free_bytes = UINT64_MAX;
  // How long a retired record's bytes stay readable (peers that looked it up
  // before it went) before its space is returned.
  int64_t reclaim_grace_ns = 10'000'000'000;
  // How long a write waits for eviction to make room before ENOSPC.
  int64_t space_wait_ns = 15'000'000'000;
  // A background thread evicts and reclaims; without it, tests call
  // RunEvictionPass and ReclaimDue themselves (writers still evict inline).
  bool background_eviction = true;
  // ---- other nodes sharing the backing directory (peer_sync.cc) ----
  // How often their journals are read for new changes; 0: only at open and
  // when SyncPeers is called.
  int64_t peer_poll_ns = 1'000'000'000;
  // How long a commit entry of another node's waits for its record to become
  // readable here (a network filesystem may show the journal's bytes before
  // the extent's); then the file is skipped, and logged.
  int64_t peer_record_wait_ns = 60'000'000'000;
  // Reads of another node's files reach that node's eviction order: at most
  // once per file and interval of this length, this node journals an access
  // hint (kAccess) that the owner applies when it follows this journal. The
  // owner's access time of a file read only here lags by up to this much.
  // 0: no hints (access times stay local).
  int64_t access_hint_interval_ns = 60'000'000'000;
  // The node lock's heartbeat period (node_lock.h): where the backing
  // filesystem does not share flock locks between clients, a second process
  // of this node refuses while the heartbeat moves, and takes a node whose
  // heartbeat stood still for four periods; on other than local filesystems
  // a process reads its line back a tenth of a period after writing it
  // (at most 1 s). 0: flock alone.
  int64_t node_heartbeat_ns = 5'000'000'000;
  // ---- journal compaction (journal_compaction.cc) ----
  // Once the journal holds this many bytes beyond the last checkpoint (and
  // at least twice that checkpoint's size), a background thread writes a new
  // checkpoint and removes the journal files it covers. 0: only when
  // CompactJournal is called.
  uint64_t journal_compact_bytes = 256 << 20;
  // Tests only: the clock (nanoseconds since the epoch); empty: real time.
  std::function<int64_t()> clock;
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
  std::atomic<uint64_t> cold_windows{0};      // direct reads of cold windows
  std::atomic<uint64_t> cold_window_bytes{0};  // bytes they read from the disk
  std::atomic<uint64_t> rolled_forward{0};  // commits completed by recovery
  std::atomic<uint64_t> torn_tails{0};      // extents sealed at recovery
  std::atomic<uint64_t> evicted_files{0};
  std::atomic<uint64_t> evicted_bytes{0};
  std::atomic<uint64_t> eviction_passes{0};
  std::atomic<uint64_t> eviction_ns{0};       // time spent evicting
  std::atomic<uint64_t> reclaimed_bytes{0};   // space returned (holes punched)
  std::atomic<uint64_t> dropped_extents{0};   // dead extent files removed
  std::atomic<uint64_t> space_waits{0};       // writes that waited for room
  std::atomic<uint64_t> space_refusals{0};    // writes refused with ENOSPC
  std::atomic<uint64_t> peer_entries{0};      // other nodes' journal entries applied
  std::atomic<uint64_t> peer_files{0};        // of which: their files added here
  std::atomic<uint64_t> peer_superseded{0};   // own versions another node's replaced
  std::atomic<uint64_t> peer_unreadable{0};   // their commits skipped: record never readable
  std::atomic<uint64_t> peer_checkpoints{0};  // other nodes' checkpoints read
  std::atomic<uint64_t> access_hints_sent{0};     // reads of their files journalled
  std::atomic<uint64_t> access_hints_applied{0};  // their reads of own files applied
  std::atomic<uint64_t> checkpoints{0};       // journal compactions done
  std::atomic<uint64_t> checkpoint_entries{0};  // entries the last checkpoint holds
};

// What the node stores against what it may store.
struct CapacityStatus {
  uint64_t capacity = 0;     // configured (or derived) capacity
  uint64_t limit = 0;        // capacity, lowered to keep the free-space floor
  uint64_t used = 0;         // extents on the backing fs plus writes in flight
  uint64_t live = 0;         // bytes of files that exist
  uint64_t reclaimable = 0;  // dead bytes eviction or replacement freed, not yet returned
  uint64_t inflight = 0;     // bytes of files being written
  // Kept free below the limit for what writers store in one reclaim grace
  // period (twice what they stored in the last one, at most half the limit):
  // space evicted now comes back only then. The watermarks stay below
  // limit - write_room.
  uint64_t write_room = 0;
  uint64_t high = 0, low = 0;  // watermarks, in bytes
};

// Manual eviction (kvfs evict): the least recently accessed files first.
struct EvictRequest {
  int64_t older_than_ns = -1;  // only files not accessed for this long
  std::string prefix;          // only files below this path
  uint64_t max_bytes = UINT64_MAX;  // stop once this many bytes went
  bool dry_run = false;
};

struct EvictedFile {
  std::string path;
  uint64_t parent = 0;
  std::string name;
  uint64_t ino = 0;
  uint64_t bytes = 0;
  int64_t atime_ns = 0;
};

// A name that changed in the namespace without a request of this node's
// (another node's change): the FUSE layer drops what the kernel cached.
struct NameChange {
  uint64_t parent = 0;
  std::string name;
  uint64_t old_ino = 0;  // the inode the name stopped naming; 0: a new name
};

class Engine;

// Records some reader holds open: their space is not reclaimed until closed.
// Shared with the readers, which may outlive their engine.
class OpenRecords {
 public:
  void Opened(uint64_t extent_id, uint64_t offset);
  void Closed(uint64_t extent_id, uint64_t offset);
  bool IsOpen(uint64_t extent_id, uint64_t offset);
  bool AnyIn(uint64_t extent_id);

 private:
  std::mutex mu_;
  std::map<std::pair<uint64_t, uint64_t>, int> open_;  // (extent, offset) -> readers
};

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
  uint64_t reserved_ = 0;    // capacity reserved for this file's bytes
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
  // `open_records` null: another node's record (its owner reclaims it).
  FileReader(Engine* engine, std::shared_ptr<Extent> extent, Inode inode,
             std::shared_ptr<OpenRecords> open_records);
 public:
  ~FileReader();  // lets the space of a retired record be reclaimed
 private:
  absl::Status ReadChunk(uint64_t index, char* out, uint64_t len) const;

  Engine* const engine_;
  std::shared_ptr<Extent> extent_;
  Inode inode_;
  std::shared_ptr<OpenRecords> open_records_;  // may outlive the engine
  std::shared_ptr<ColdWindows> cold_;  // null: cold reads buffered too
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
  // The same for the FUSE hot paths (lookup, open), without an index write
  // on the caller's time: the access is noted in memory and written in
  // batches (FlushAccessTimes) before every eviction pass (the evictor runs
  // one every second), before a manual eviction, and when the engine closes;
  // GetAttr and Lookup show it at once. A crash loses at most a second of
  // access times, which are local hints for eviction.
  void NoteAccess(uint64_t ino, int64_t seen_atime_ns);
  absl::Status FlushAccessTimes();

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
  // Space use of `path` and the directories below it (kvfs du; usage.h).
  absl::StatusOr<std::vector<DirUsage>> Usage(absl::string_view path, int max_depth);
  // Every file and directory below the root, with its path.
  absl::StatusOr<std::vector<TreeEntry>> ListTree();

  // ---- capacity and eviction (eviction.cc) ----
  CapacityStatus Capacity();
  // The size at which this node seals its extents (--extent-size, or less
  // where the backing filesystem cannot punch holes).
  uint64_t extent_size() const { return extent_target_bytes_; }
  // Evicts least recently accessed files (whole rank groups, rank 0 first)
  // if the node is above its high watermark, down to the low one.
  absl::StatusOr<uint64_t> RunEvictionPass();
  absl::StatusOr<std::vector<EvictedFile>> Evict(const EvictRequest& request);
  // Returns the space of retired records whose grace period is over and
  // which no reader holds; removes extents that hold nothing live.
  absl::Status ReclaimDue();
  // Called (outside every engine lock) with the names eviction removed.
  void SetEvictionListener(std::function<void(const std::vector<EvictedFile>&)> fn);

  // ---- other nodes (peer_sync.cc) ----
  // Applies what other nodes' journals hold beyond what this node has seen:
  // their files appear here (read from their extents), and of two versions
  // of one name every node keeps the same one, the later committed (then
  // the greater node id). Runs at open and every peer_poll_ns.
  absl::Status SyncPeers();
  // Called (outside every engine lock) with the names SyncPeers changed.
  void SetPeerListener(std::function<void(const std::vector<NameChange>&)> fn);
  // Other nodes' versions this node keeps marked as removed, so that their
  // commits, read late, do not bring them back; each goes when its owner
  // retires the version.
  absl::StatusOr<uint64_t> PeerGoneMarks() { return index_->CountPeerGone(); }
  // Other nodes' versions renamed by a node other than their owner (or before
  // their commits were read here): late commits, and owners' checkpoints
  // older than the rename, put them at the new names; each goes with its
  // owner's unlink or retire of the version.
  absl::StatusOr<uint64_t> PeerRenameMarks() { return index_->CountPeerRenamed(); }

  // ---- journal compaction (journal_compaction.cc) ----
  // Writes a checkpoint of the namespace as of the end of the current journal
  // file (which is finished: appending continues in a new one), then removes
  // the journal files and older checkpoints it covers. Namespace changes go
  // on meanwhile: only the switch to a new journal file takes the lock.
  absl::Status CompactJournal();
  // Journal bytes not covered by a checkpoint.
  uint64_t UncoveredJournalBytes();

  const EngineStats& stats() const { return stats_; }
  // Whether a failure (in the log) stopped every change until a reopen.
  bool read_only() const { return read_only_.load(std::memory_order_relaxed); }
  // Files in the namespace (kept in step with commits and retirements).
  uint64_t LiveFiles() const { return live_files_.load(std::memory_order_relaxed); }
  // What opening found wrong in the backing directory (foreign files,
  // damaged extents or journal entries), one line each, each naming a file.
  const std::vector<std::string>& problems() const { return problems_; }
  bool index_was_rebuilt() const { return index_rebuilt_; }
  const BackingLayout& layout() const { return backing_->layout(); }
  // Records, in the node's lock file, the mount point this engine serves.
  absl::Status NoteServing(const std::string& mountpoint) {
    return backing_->NoteServing(mountpoint);
  }
  std::string index_dir() const { return index_dir_; }
  std::map<uint64_t, ExtentState> ExtentStates();
  // One line to the daemon's log: EngineOptions::log, or stderr.
  void Log(absl::string_view line) const;

 private:
  friend class FileWriter;
  friend class FileReader;
  explicit Engine(EngineOptions options) : options_(std::move(options)) {}

  void Problem(std::string line);
  Attr WithNotedAccess(Attr a);  // the noted access time, if later
  // Adds to `batch` the index changes that record `atime_ns` as n's access
  // time, unless n's is as recent (same one-second bucket or later). Another
  // node's file whose access enters a new hint interval is added to `hints`.
  void PutAccessTime(Inode n, int64_t atime_ns, IndexBatch* batch,
                     std::vector<Inode>* hints = nullptr);
  // Access hints (access_hints.cc). Journals a kAccess entry for each of
  // `hints` (other nodes' files, atime_ns the access) and puts the journal's
  // new position into `batch`. Hints are best effort: a failure is logged.
  void JournalAccessHintsLocked(const std::vector<Inode>& hints, IndexBatch* batch);
  // Another node's kAccess entry: if it names this node's file as it is, the
  // file moves up the eviction order.
  absl::Status ApplyAccessHintLocked(const JournalEntry& e, IndexBatch* batch);
  void CrashPoint(absl::string_view point) const {
    if (options_.crash_hook) options_.crash_hook(point);
  }

  // Opening and recovery (engine_recovery.cc).
  absl::Status OpenIndex();
  absl::Status ReplayJournal();
  // Files replay met whose record is gone: fine if a later entry retires
  // them, damage (`why`) if none does. At most one per path.
  class ReplayGhosts {
   public:
    struct Ghost {
      std::string path;
      std::string why;
    };
    void Add(uint64_t ino, const std::string& path, std::string why) {
      ForgetAt(path);
      by_ino_[ino] = {path, std::move(why)};
      by_path_[path] = ino;
    }
    // What a later entry replaced at `path` is retired.
    void ForgetAt(const std::string& path) {
      if (auto it = by_path_.find(path); it != by_path_.end()) {
        by_ino_.erase(it->second);
        by_path_.erase(it);
      }
    }
    const Ghost* Find(uint64_t ino) const {
      auto it = by_ino_.find(ino);
      return it == by_ino_.end() ? nullptr : &it->second;
    }
    void Move(uint64_t ino, const std::string& path) {
      ForgetAt(path);
      by_path_.erase(by_ino_[ino].path);
      by_ino_[ino].path = path;
      by_path_[path] = ino;
    }
    void Erase(uint64_t ino) {
      if (auto it = by_ino_.find(ino); it != by_ino_.end()) {
        by_path_.erase(it->second.path);
        by_ino_.erase(it);
      }
    }
    const std::map<uint64_t, Ghost>& all() const { return by_ino_; }

   private:
    std::map<uint64_t, Ghost> by_ino_;
    std::map<std::string, uint64_t> by_path_;
  };
  // A rebuild's start: applies checkpoint `number` to the empty index.
  absl::Status ReplayCheckpointLocked(uint64_t number, ReplayGhosts* ghosts);
  // The extent of a record replay found unreadable (commit or live entry
  // `e`) still counts its bytes as used: they are dead, not free.
  void CountUnreadableRecordLocked(const JournalEntry& e, IndexBatch* batch);
  absl::Status RecoverExtents();
  // Removes journal files and checkpoints that checkpoint `number` covers,
  // and unfinished checkpoints.
  void RemoveCoveredJournalFiles(uint64_t number);

  // Namespace changes (engine.cc). *Locked functions need mu_.
  absl::Status CheckWritable() const;
  // Stops every change until a reopen, for `why` (the first reason stays).
  void FailLocked(std::string why);
  // ENOSPC while the index's filesystem has less free than kvfs keeps there
  // (eviction.cc); new files wait for room rather than fail the index.
  absl::Status CheckIndexRoom();
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
  // Creates directory `name` in `parent` outside the journal (replay
  // recreating a missing one, or one another node's change needs); returns
  // its inode. `store_next_ino`: store the inode counter with it, since
  // nothing else will (following other nodes). Replay leaves it to its own
  // batches: during a rebuild they skip RocksDB's log, and metadata written
  // here with it would get ahead of them.
  absl::StatusOr<uint64_t> CreateDirLocked(uint64_t parent, absl::string_view name,
                                           uint32_t mode, bool store_next_ino,
                                           std::optional<int64_t> time_ns = std::nullopt);
  // Replay only: frees inode `ino` for the entry that creates `path` with it.
  // A directory replay recreated (another node made it) is numbered above
  // every inode the journal names, but a record whose commit recovery rolls
  // forward may name that number: the directory, journalled nowhere, moves
  // to a fresh number with its children.
  absl::Status MoveRecreatedDirLocked(uint64_t ino, absl::string_view path);
  // The highest inode number any entry of this node's journal names
  // (engine_recovery.cc; read once per replay, when it recreates a directory).
  absl::StatusOr<uint64_t> HighestJournalIno();
  // A journal entry of this node's next seq, stamped now.
  JournalEntry NewEntryLocked(JournalOp op, uint64_t ino, std::string path) const;
  void RetireVersionLocked(const Inode& old, IndexBatch* batch);
  void RaiseNextIno(uint64_t at_least);
  int64_t Now() const;
  // Stores an extent's new state and keeps the usage totals in step.
  void PutExtentLocked(uint64_t id, const ExtentState& state, IndexBatch* batch);
  void RecomputeUsageLocked();
  void QueueReclaimLocked(const ReclaimEntry& entry, IndexBatch* batch);

  // Capacity and eviction (eviction.cc).
  absl::Status InitCapacity();
  // Asks whether the backing filesystem punches holes, and sets the size at
  // which extents are sealed: smaller where it cannot (see eviction.cc).
  absl::Status InitExtentTarget();
  void StartEvictor();
  void StopEvictor();
  void EvictorLoop();
  void RefreshLimit();
  void KickEvictor();
  void NotifyEvicted(const std::vector<EvictedFile>& files);
  uint64_t ReclaimableBytes();
  // Whether extent `e` can go as a whole: nothing in it is live, and it is
  // sealed, or is open for appending on a filesystem that cannot punch holes.
  bool WholeExtentDead(const ExtentState& e) const;
  // Waits (evicting) until `bytes` more fit under the limit, then reserves them.
  absl::Status ReserveSpace(uint64_t bytes);
  void ReleaseReservation(uint64_t bytes);
  // Evicts `ino`'s rank group; appends what went (or would go) to `out`.
  absl::StatusOr<uint64_t> EvictGroupLocked(uint64_t ino, bool dry_run,
                                            std::vector<EvictedFile>* out);
  absl::Status UnlinkForEvictionLocked(const Inode& inode, const std::string& path);
  absl::Status DropDeadExtents();

  // Other nodes (peer_sync.cc).
  ExtentStore* PeerExtents(const std::string& node);
  const std::string& OwnerOf(const Inode& n) const {
    return n.owner.empty() ? backing_->layout().node_id : n.owner;
  }
  absl::Status LoadPeerPositionsLocked();
  absl::Status FollowPeer(const std::string& node, std::vector<NameChange>* changes);
  // Drops every file of `node` from this node's namespace, and what this
  // node remembered of it (its directory was removed, or its journal
  // started afresh).
  absl::Status ForgetPeer(const std::string& node, absl::string_view why,
                          std::vector<NameChange>* changes);
  // Whether the record at `offset` of another node's extent is retired (the
  // extent removed, or a skip marker where its header was), rather than not
  // yet readable here.
  bool RecordIsRetired(const absl::StatusOr<std::shared_ptr<Extent>>& extent,
                       uint64_t offset);
  // Extent `id` of `node`, kept open for the rest of one SyncPeers.
  absl::StatusOr<std::shared_ptr<Extent>> SyncExtent(const std::string& node, uint64_t id);
  absl::Status ApplyPeerEntryLocked(const std::string& node, const JournalEntry& e,
                                    IndexBatch* batch, std::vector<NameChange>* changes);
  // A commit entry of `node`'s, or a kLive entry of its checkpoint. Sets
  // `*here` (if given) to the inode that holds the version here, if one does.
  absl::Status ImportCommitLocked(const std::string& node, const JournalEntry& e,
                                  IndexBatch* batch, std::vector<NameChange>* changes,
                                  uint64_t* here = nullptr);
  // Makes this node's view of `node`'s files that of its checkpoint `number`:
  // what the checkpoint lists is applied, and `node`'s files it does not list
  // leave the namespace.
  absl::Status FollowPeerCheckpoint(const std::string& node, uint64_t number,
                                    std::vector<NameChange>* changes);
  // Takes `n` (at `path`) out of the namespace because of another node's
  // change: this node's own record is retired through its journal.
  absl::Status RemoveVersionLocked(const Inode& n, const std::string& path,
                                   IndexBatch* batch, std::vector<NameChange>* changes);
  // A version `owner` put at `path` at `time_ns` (a commit, checkpoint entry
  // or rename) replaced what the name held, on every node that saw it in
  // time. When this node skips that version (removed or reclaimed before it
  // read the entry), an older one it has at `path` must still go.
  absl::Status RemoveOlderVersionLocked(absl::string_view path, int64_t time_ns,
                                        absl::string_view owner, IndexBatch* batch,
                                        std::vector<NameChange>* changes);
  // The directory that will hold `path` (its last component included when
  // `including_last`), creating what is missing, stamped `time_ns` (the
  // entry's, not this node's clock: a peer's rmdir removes only directories
  // not newer than itself).
  absl::StatusOr<uint64_t> MakeDirsLocked(absl::string_view path, bool including_last,
                                          uint32_t mode, int64_t time_ns,
                                          std::vector<NameChange>* changes);
  void StartPeerFollower();
  void StopPeerFollower();
  // Journal compaction (journal_compaction.cc).
  // Entries of this node's journal up to file `covered` (from checkpoint
  // `since` on) that a new checkpoint must carry: unlinks and renames of
  // other nodes' versions that their owners have not yet retired, and the
  // latest access hint of each such version from the last hour.
  absl::StatusOr<std::vector<JournalEntry>> CarriedEntries(uint64_t since, uint64_t covered);
  void StartCompactor();
  void StopCompactor();
  void LogPeerProblemOnce(const std::string& key, absl::string_view line);
  // After a rebuild: queues every byte of an extent no file holds.
  absl::Status QueueUnreferencedSpaceLocked();
  // never lowers it (writers allocate)
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
  // The last seq of the checkpoint a rebuild started from: older records
  // not in the index are ones retired before it, not lost commits.
  uint64_t rebuilt_from_seq_ = 0;
  std::vector<std::string> problems_;
  // Replay (engine_recovery.cc): other nodes share the backing directory, so
  // directories missing from this node's journal are expected; how many.
  bool replay_shared_ = false;
  uint64_t replay_dirs_recreated_ = 0;
  bool replay_ino_ceiling_known_ = false;  // next_ino_ is above HighestJournalIno()
  EngineStats stats_;
  std::atomic<uint64_t> next_ino_{kRootIno + 1};
  // Files in the namespace: +1/-1 in ApplyLocked, stored in the index's
  // metadata with every change.
  std::atomic<uint64_t> live_files_{0};

  // NoteAccess's accesses not yet in the index: inode -> access time.
  std::mutex noted_access_mu_;
  std::unordered_map<uint64_t, int64_t> noted_access_;
  std::mutex mu_;  // serialises namespace changes; guards the members below
  IndexMeta meta_;
  std::map<uint64_t, ExtentState> extent_states_;
  std::string failure_;  // set when journal and index diverged: read-only
  std::atomic<bool> read_only_{false};  // !failure_.empty(), read without mu_
  std::atomic<bool> index_full_{false};  // CheckIndexRoom's last answer, to log changes
  // The reclaim queue (its copy in the index survives restarts; scanning
  // that copy would wade through the tombstones of every entry done).
  std::set<ReclaimEntry> reclaim_queue_;
  std::map<uint64_t, uint64_t> queued_reclaims_;  // extent -> entries in the queue

  // Usage totals over extent_states_ (changed under mu_, read anywhere).
  std::atomic<uint64_t> stored_total_{0};   // sum of stored_bytes()
  std::atomic<uint64_t> queued_bytes_{0};   // what the reclaim queue will punch
  std::atomic<uint64_t> inflight_bytes_{0};  // reserved by writers
  std::atomic<uint64_t> waiting_bytes_{0};   // wanted by writers waiting for room
  std::atomic<uint64_t> limit_bytes_{UINT64_MAX};
  RecentBytes recent_writes_{options_.reclaim_grace_ns};  // reserved by writers
  uint64_t capacity_bytes_ = 0;
  uint64_t min_free_bytes_ = 0;
  std::atomic<bool> punch_unsupported_{false};
  uint64_t extent_target_bytes_ = 0;  // extents are sealed at this size

  std::mutex evict_mu_;  // serialises eviction passes and reclaim
  // Where the last pass stopped in the access-time order: everything older
  // is gone, and seeking past it skips the tombstones it left.
  int64_t evict_cursor_s_ = 0;
  std::mutex evictor_mu_;
  std::condition_variable evictor_cv_;  // wakes the evictor
  std::condition_variable space_cv_;    // wakes writers waiting for room
  bool evictor_kicked_ = false;
  bool evictor_stop_ = false;
  std::thread evictor_;
  std::mutex listener_mu_;  // held while the listener runs
  std::function<void(const std::vector<EvictedFile>&)> eviction_listener_;

  std::shared_ptr<OpenRecords> open_records_ = std::make_shared<OpenRecords>();
  // Other nodes: their extents (opened per use), how far their journals are
  // applied (guarded by peer_sync_mu_, which serialises SyncPeers).
  std::mutex peer_stores_mu_;
  std::map<std::string, std::unique_ptr<ExtentStore>> peer_stores_;
  std::mutex peer_sync_mu_;
  std::map<std::string, JournalPosition> peer_positions_;
  std::set<std::string> peer_problems_logged_;
  std::map<std::pair<std::string, uint64_t>, std::shared_ptr<Extent>> sync_extents_;
  // Since when (this node's clock) each node's next commit entry has waited
  // for its record.
  std::map<std::string, int64_t> peer_waiting_since_;
  // Since when each node's journal has looked shorter than where this node
  // stopped in it (started afresh, or a listing that lags).
  std::map<std::string, int64_t> peer_behind_since_;
  std::mutex peer_listener_mu_;  // held while the listener runs
  std::function<void(const std::vector<NameChange>&)> peer_listener_;
  PeriodicThread follower_;
  // The last access hint could not be journalled (logged once per streak; mu_).
  bool access_hint_failing_ = false;

  // Journal compaction: one at a time; the newest checkpoint, its size, and
  // the journal bytes beyond it (uncovered_at_open_ + what the writer has
  // appended since appended_at_checkpoint_; under mu_).
  std::mutex compact_mu_;
  uint64_t checkpoint_number_ = 0;
  uint64_t checkpoint_bytes_ = 0;
  uint64_t uncovered_at_open_ = 0;
  uint64_t appended_at_checkpoint_ = 0;
  PeriodicThread compactor_;

  // Write-behind of what commits write (null without write-behind).
  std::unique_ptr<WritebackKicker> writeback_kicker_;
  std::shared_ptr<ColdReadPool> cold_pool_;  // null: no direct cold reads
};

}  // namespace kvfs
