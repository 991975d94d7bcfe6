// The local RocksDB index: a materialised view of the node's journal, and the
// only structure the read path consults. Column families:
//   default    engine metadata (backing uuid, node, next seq/ino, journal position)
//   namespace  BE64(parent) + name  -> Inode   (a lookup is one Get)
//   locators   BE64(ino)            -> BE64(parent) + name   (access by inode)
//   atimes     BE64(atime s) + BE64(ino) -> ""   (eviction order, oldest first)
//   extents    BE64(extent id)      -> ExtentState
//   reclaim    BE64(due ns) + BE64(extent id) + BE64(offset) -> BE64(end)
//              (retired records whose space is returned once readers are done)
// The default column family also holds, per other node, how far its journal
// has been applied ("peer-pos/" + node) and the versions of its files that
// were removed before they were seen ("peer-gone/" + node + BE64 extent id +
// BE64 offset), so that a late commit entry does not bring them back, and
// those renamed by a node other than their owner, or before they were seen
// here ("peer-renamed/", the same key -> BE64 rename time + new path), so
// that a late commit, or an older checkpoint of the owner's, puts them at
// the new name.
// The root is stored under parent 0 with an empty name. Every namespace
// change is one IndexBatch (one RocksDB WriteBatch).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "kvfs/checksum.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace kvfs {

inline constexpr uint64_t kRootIno = 1;

struct Inode {
  uint64_t ino = 0;
  uint64_t parent = 0;
  std::string name;
  bool is_dir = false;
  uint32_t mode = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  int64_t atime_ns = 0;
  uint64_t seq = 0;  // journal seq of the last change to this inode
  // Files only: the record holding the current version.
  uint64_t size = 0;
  uint64_t extent_id = 0;
  uint64_t record_offset = 0;
  std::vector<uint64_t> chunk_checksums;
  Hash128 payload_checksum;
  // The node whose extent holds the record; empty: this node. Only this
  // node's files count against its capacity and are evicted by it.
  std::string owner;

  uint64_t record_bytes() const;  // bytes the record occupies in its extent
};

struct ExtentState {
  uint64_t committed_end = 0;  // end of the last committed record (aligned)
  uint64_t live_bytes = 0;     // records that are some file's current version
  uint64_t dead_bytes = 0;     // replaced, unlinked, torn or garbage bytes
  bool sealed = false;         // never appended to again
  uint64_t reclaimed_bytes = 0;  // dead bytes already returned (holes punched)

  // Bytes the extent occupies on the backing filesystem (its header included).
  uint64_t stored_bytes() const;
};

// A retired record waiting for its space to be returned.
struct ReclaimEntry {
  int64_t due_ns = 0;  // not before: readers of other nodes get a grace period
  uint64_t extent_id = 0;
  uint64_t offset = 0;
  uint64_t end = 0;

  auto key() const { return std::make_tuple(due_ns, extent_id, offset); }
  // What reclaim returns: all but the skip marker left at `offset`.
  uint64_t punchable() const { return end > offset + 4096 ? end - offset - 4096 : 0; }
  bool operator<(const ReclaimEntry& o) const { return key() < o.key(); }
};

// Engine metadata kept in the default column family.
struct IndexMeta {
  std::string backing_uuid;
  std::string node_id;
  uint64_t next_seq = 1;
  uint64_t next_ino = kRootIno + 1;
  uint64_t journal_number = 0;  // journal file the next entry goes to
  uint64_t journal_offset = 0;  // end of the last applied entry
  // Files in the namespace as of this metadata; absent (false) in indexes
  // written before it was kept, which are counted once at open.
  uint64_t live_files = 0;
  bool has_live_files = true;
  // The highest extent id any commit used: ids are never reused, even after
  // the extent was removed, because other nodes may remember that id as a
  // removed version's. 0 in older indexes (then the journal replay sets it).
  uint64_t max_extent_id = 0;
};

struct IndexOptions {
  uint64_t block_cache_bytes = 64 << 20;
  bool sync_writes = false;  // WAL fsync per batch
  // Tools reading an index that a live mount may hold (no lock, no writes;
  // the view is the state at open).
  bool read_only = false;
};

class Index;

// A remembered rename of another node's version (see the top of this file).
struct PeerRename {
  std::string path;  // where the version goes
  int64_t time_ns = 0;
};

// Mutations of one namespace change, applied atomically by Index::Write.
class IndexBatch {
 public:
  explicit IndexBatch(Index* index) : index_(index) {}
  // Stores `inode` under (inode.parent, inode.name).
  void PutInode(const Inode& inode);
  // Removes `inode` from where it is stored (its parent and name).
  void DeleteInode(const Inode& inode);
  void PutAtime(int64_t atime_ns, uint64_t ino);
  void DeleteAtime(int64_t atime_ns, uint64_t ino);
  void PutExtent(uint64_t id, const ExtentState& state);
  void DeleteExtent(uint64_t id);
  void PutReclaim(const ReclaimEntry& entry);
  void DeleteReclaim(const ReclaimEntry& entry);
  void PutMeta(const IndexMeta& meta);
  // How far node `node`'s journal has been applied.
  void PutPeerPosition(absl::string_view node, uint64_t number, uint64_t offset);
  // Marks a version of `node`'s as removed (see the column families above).
  void PutPeerGone(absl::string_view node, uint64_t extent_id, uint64_t offset);
  void DeletePeerGone(absl::string_view node, uint64_t extent_id, uint64_t offset);
  // Marks a version of `node`'s as renamed to `rename.path`.
  void PutPeerRenamed(absl::string_view node, uint64_t extent_id, uint64_t offset,
                      const PeerRename& rename);
  void DeletePeerRenamed(absl::string_view node, uint64_t extent_id, uint64_t offset);
  // Forgets node `node`: its position and its removed and renamed versions.
  void DeletePeer(absl::string_view node);
  bool empty() const { return batch_.Count() == 0; }

 private:
  friend class Index;
  Index* index_;
  rocksdb::WriteBatch batch_;
};

class Index {
 public:
  ~Index();

  // Opens the database at `dir`, creating it if missing.
  static absl::StatusOr<std::unique_ptr<Index>> Open(const std::string& dir,
                                                     const IndexOptions& options);
  // Removes the database at `dir` (only RocksDB's own files).
  static absl::Status Destroy(const std::string& dir);

  absl::Status Write(IndexBatch* batch, bool disable_wal = false);
  absl::Status Flush();

  absl::StatusOr<std::optional<Inode>> GetChild(uint64_t parent, absl::string_view name);
  absl::StatusOr<std::optional<Inode>> GetInode(uint64_t ino);
  // Where inode `ino` is stored: its parent and name.
  absl::StatusOr<std::optional<std::pair<uint64_t, std::string>>> GetLocator(uint64_t ino);
  absl::StatusOr<std::optional<IndexMeta>> GetMeta();
  absl::StatusOr<std::vector<std::pair<uint64_t, ExtentState>>> ListExtents();
  // Other nodes' journal positions: node -> (journal number, offset).
  absl::StatusOr<std::vector<std::pair<std::string, std::pair<uint64_t, uint64_t>>>>
  ListPeerPositions();
  absl::StatusOr<bool> IsPeerGone(absl::string_view node, uint64_t extent_id,
                                  uint64_t offset);
  // How many versions of other nodes are marked removed.
  absl::StatusOr<uint64_t> CountPeerGone();
  absl::StatusOr<std::optional<PeerRename>> GetPeerRenamed(absl::string_view node,
                                                           uint64_t extent_id, uint64_t offset);
  // How many versions of other nodes are marked renamed.
  absl::StatusOr<uint64_t> CountPeerRenamed();

  // Calls `fn(inode)` for children of `parent` after `after` (exclusive) in
  // name order, until `fn` returns false.
  absl::Status ListDir(uint64_t parent, absl::string_view after,
                       const std::function<bool(const Inode&)>& fn);
  absl::StatusOr<bool> HasChildren(uint64_t parent);
  // Every inode, in (parent, name) order; as of `at` if given.
  absl::Status ForEachInode(const std::function<bool(const Inode&)>& fn,
                            const rocksdb::Snapshot* at = nullptr);
  // A consistent view of the index as of now, for long reads outside the
  // engine's lock (journal compaction); released with the last copy.
  std::shared_ptr<const rocksdb::Snapshot> GetSnapshot();
  // Inodes by access time, oldest first (the eviction order), from
  // (`from_s`, `from_ino`) on.
  absl::Status ForEachByAtime(
      const std::function<bool(int64_t atime_s, uint64_t ino)>& fn) {
    return ForEachByAtime(0, 0, fn);
  }
  absl::Status ForEachByAtime(
      int64_t from_s, uint64_t from_ino,
      const std::function<bool(int64_t atime_s, uint64_t ino)>& fn);

  // Reclaim entries due at or before `until_ns`, earliest first.
  absl::Status ForEachReclaim(int64_t until_ns,
                              const std::function<bool(const ReclaimEntry&)>& fn);

  static int64_t AtimeBucket(int64_t atime_ns) { return atime_ns / 1000000000; }

 private:
  friend class IndexBatch;
  Index() = default;
  // Keys of the default column family that start with `prefix`.
  absl::StatusOr<uint64_t> CountKeys(absl::string_view prefix);

  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  rocksdb::ColumnFamilyHandle* namespace_ = nullptr;
  rocksdb::ColumnFamilyHandle* locators_ = nullptr;
  rocksdb::ColumnFamilyHandle* atimes_ = nullptr;
  rocksdb::ColumnFamilyHandle* extents_ = nullptr;
  rocksdb::ColumnFamilyHandle* reclaim_ = nullptr;
  IndexOptions options_;
};

std::string EncodeInode(const Inode& inode);
absl::StatusOr<Inode> DecodeInode(absl::string_view bytes);

}  // namespace kvfs
