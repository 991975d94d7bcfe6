#include "kvfs/index.h"

#include "absl/strings/str_cat.h"
#include "kvfs/codec.h"
#include "kvfs/errors.h"
#include "kvfs/format.h"
#include "rocksdb/cache.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/options.h"
#include "rocksdb/slice_transform.h"
#include "rocksdb/table.h"
#include "rocksdb/utilities/table_properties_collectors.h"

namespace kvfs {
namespace {

constexpr uint32_t kInodeVersion = 1;
constexpr uint32_t kMetaVersion = 1;
constexpr absl::string_view kMetaKey = "meta";
constexpr absl::string_view kPeerPositionPrefix = "peer-pos/";
constexpr absl::string_view kPeerGonePrefix = "peer-gone/";
constexpr absl::string_view kPeerRenamedPrefix = "peer-renamed/";

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  if (s.IsNoSpace()) return ErrnoError(ENOSPC, absl::StrCat(what, ": ", s.ToString()));
  if (s.IsCorruption()) {
    return absl::DataLossError(absl::StrCat(what, ": ", s.ToString()));
  }
  return ErrnoError(EIO, absl::StrCat(what, ": ", s.ToString()));
}

absl::string_view Sv(const rocksdb::Slice& s) { return {s.data(), s.size()}; }
rocksdb::Slice Sl(absl::string_view s) { return {s.data(), s.size()}; }

std::string U64Key(uint64_t v) {
  std::string k;
  AppendBigEndian64(&k, v);
  return k;
}

std::string DentryKey(uint64_t parent, absl::string_view name) {
  std::string k = U64Key(parent);
  k.append(name.data(), name.size());
  return k;
}

std::string AtimeKey(int64_t atime_ns, uint64_t ino) {
  std::string k = U64Key(static_cast<uint64_t>(Index::AtimeBucket(atime_ns)));
  AppendBigEndian64(&k, ino);
  return k;
}

// A mark on a version of another node's: `prefix` + node + "/" + BE64
// extent id + BE64 offset.
std::string PeerMarkKey(absl::string_view prefix, absl::string_view node, uint64_t extent_id,
                        uint64_t offset) {
  std::string k = absl::StrCat(prefix, node, "/");
  AppendBigEndian64(&k, extent_id);
  AppendBigEndian64(&k, offset);
  return k;
}

std::string EncodeExtent(const ExtentState& e) {
  Encoder enc;
  enc.U64(e.committed_end);
  enc.U64(e.live_bytes);
  enc.U64(e.dead_bytes);
  enc.U8(e.sealed ? 1 : 0);
  enc.U64(e.reclaimed_bytes);
  return enc.Release();
}

bool DecodeExtent(absl::string_view bytes, ExtentState* e) {
  Decoder d(bytes);
  uint8_t sealed;
  if (!d.U64(&e->committed_end) || !d.U64(&e->live_bytes) ||
      !d.U64(&e->dead_bytes) || !d.U8(&sealed)) {
    return false;
  }
  e->sealed = sealed != 0;
  return d.U64(&e->reclaimed_bytes);
}

std::string ReclaimKey(const ReclaimEntry& r) {
  std::string k = U64Key(static_cast<uint64_t>(std::max<int64_t>(r.due_ns, 0)));
  AppendBigEndian64(&k, r.extent_id);
  AppendBigEndian64(&k, r.offset);
  return k;
}

std::string EncodeMeta(const IndexMeta& m) {
  Encoder e;
  e.U32(kMetaVersion);
  e.Bytes(m.backing_uuid);
  e.Bytes(m.node_id);
  e.U64(m.next_seq);
  e.U64(m.next_ino);
  e.U64(m.journal_number);
  e.U64(m.journal_offset);
  e.U64(m.live_files);  // appended: older decoders ignore it
  e.U64(m.max_extent_id);
  return e.Release();
}

absl::StatusOr<IndexMeta> DecodeMeta(absl::string_view bytes) {
  IndexMeta m;
  Decoder d(bytes);
  uint32_t version;
  absl::string_view uuid, node;
  if (!d.U32(&version) || version != kMetaVersion || !d.Bytes(&uuid, 64) ||
      !d.Bytes(&node, 64) || !d.U64(&m.next_seq) || !d.U64(&m.next_ino) ||
      !d.U64(&m.journal_number) || !d.U64(&m.journal_offset)) {
    return absl::DataLossError("index metadata is malformed");
  }
  m.has_live_files = d.remaining() >= 8 && d.U64(&m.live_files);
  if (d.remaining() >= 8) d.U64(&m.max_extent_id);
  m.backing_uuid = std::string(uuid);
  m.node_id = std::string(node);
  return m;
}

rocksdb::ColumnFamilyOptions PointLookupOptions(
    const std::shared_ptr<rocksdb::Cache>& cache, bool prefix8) {
  rocksdb::ColumnFamilyOptions cf;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  // ~10 bits/key Ribbon filter; misses are common, so no
  // optimize_filters_for_hits. Index and filter blocks live in the bounded
  // cache (memory stays bounded with millions of files); L0's stay pinned.
  table.filter_policy.reset(rocksdb::NewRibbonFilterPolicy(10));
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  // Partitioned index and filters: a whole-file index block of a large SST
  // is megabytes, bigger than a cache shard, so it would be evicted at once
  // and re-read on every Get. Partitions are block-sized; the small top level
  // stays pinned.
  table.index_type = rocksdb::BlockBasedTableOptions::kTwoLevelIndexSearch;
  table.partition_filters = true;
  table.metadata_block_size = 4096;
  table.pin_top_level_index_and_filter = true;
  table.cache_index_and_filter_blocks_with_high_priority = true;
  table.whole_key_filtering = true;
  table.format_version = 5;
  // Point lookups: a hash index inside each data block, and no compression
  // (a block-cache miss would otherwise decompress a block per Get; the
  // index is small and on local disk).
  table.data_block_index_type = rocksdb::BlockBasedTableOptions::kDataBlockBinaryAndHash;
  cf.compression = rocksdb::kNoCompression;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  if (prefix8) {  // dentries: readdir scans one parent's keys
    cf.prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(8));
  }
  cf.write_buffer_size = 32 << 20;
  return cf;
}

}  // namespace

uint64_t ExtentState::stored_bytes() const {
  const uint64_t dead = dead_bytes > reclaimed_bytes ? dead_bytes - reclaimed_bytes : 0;
  return kFileHeaderBytes + live_bytes + dead;
}

uint64_t Inode::record_bytes() const {
  return is_dir ? 0 : AlignUp(kRecordHeaderBytes + size + TrailerBytes(size));
}

std::string EncodeInode(const Inode& n) {
  Encoder e;
  e.U32(kInodeVersion);
  e.U64(n.ino);
  e.U64(n.parent);
  e.Bytes(n.name);
  e.U8(n.is_dir ? 1 : 0);
  e.U32(n.mode);
  e.I64(n.mtime_ns);
  e.I64(n.ctime_ns);
  e.I64(n.atime_ns);
  e.U64(n.seq);
  e.U64(n.size);
  e.U64(n.extent_id);
  e.U64(n.record_offset);
  e.U32(static_cast<uint32_t>(n.chunk_checksums.size()));
  for (uint64_t c : n.chunk_checksums) e.U64(c);
  e.U64(n.payload_checksum.low);
  e.U64(n.payload_checksum.high);
  e.Bytes(n.owner);  // appended: absent in older indexes (this node's)
  return e.Release();
}

absl::StatusOr<Inode> DecodeInode(absl::string_view bytes) {
  Inode n;
  Decoder d(bytes);
  uint32_t version, chunks;
  uint8_t is_dir;
  absl::string_view name;
  if (!d.U32(&version) || version != kInodeVersion || !d.U64(&n.ino) ||
      !d.U64(&n.parent) || !d.Bytes(&name, 4096) || !d.U8(&is_dir) ||
      !d.U32(&n.mode) || !d.I64(&n.mtime_ns) || !d.I64(&n.ctime_ns) ||
      !d.I64(&n.atime_ns) || !d.U64(&n.seq) || !d.U64(&n.size) ||
      !d.U64(&n.extent_id) || !d.U64(&n.record_offset) || !d.U32(&chunks) ||
      chunks != ChunkCount(n.size) || chunks > d.remaining() / 8) {
    return absl::DataLossError("index inode value is malformed");
  }
  n.name = std::string(name);
  n.is_dir = is_dir != 0;
  n.chunk_checksums.resize(chunks);
  for (uint64_t& c : n.chunk_checksums) d.U64(&c);
  if (!d.U64(&n.payload_checksum.low) || !d.U64(&n.payload_checksum.high)) {
    return absl::DataLossError("index inode value is malformed");
  }
  absl::string_view owner;
  if (d.remaining() > 0 && !d.Bytes(&owner, kMaxNodeIdBytes)) {
    return absl::DataLossError("index inode value is malformed");
  }
  n.owner = std::string(owner);
  return n;
}

// ---------------- IndexBatch ----------------

void IndexBatch::PutInode(const Inode& inode) {
  const std::string key = DentryKey(inode.parent, inode.name);
  batch_.Put(index_->namespace_, key, EncodeInode(inode));
  batch_.Put(index_->locators_, U64Key(inode.ino), key);
}
void IndexBatch::DeleteInode(const Inode& inode) {
  batch_.Delete(index_->namespace_, DentryKey(inode.parent, inode.name));
  batch_.Delete(index_->locators_, U64Key(inode.ino));
}
void IndexBatch::PutAtime(int64_t atime_ns, uint64_t ino) {
  batch_.Put(index_->atimes_, AtimeKey(atime_ns, ino), "");
}
void IndexBatch::DeleteAtime(int64_t atime_ns, uint64_t ino) {
  batch_.Delete(index_->atimes_, AtimeKey(atime_ns, ino));
}
void IndexBatch::PutExtent(uint64_t id, const ExtentState& state) {
  batch_.Put(index_->extents_, U64Key(id), EncodeExtent(state));
}
void IndexBatch::DeleteExtent(uint64_t id) { batch_.Delete(index_->extents_, U64Key(id)); }
void IndexBatch::PutReclaim(const ReclaimEntry& entry) {
  std::string end;
  AppendBigEndian64(&end, entry.end);
  batch_.Put(index_->reclaim_, ReclaimKey(entry), end);
}
void IndexBatch::DeleteReclaim(const ReclaimEntry& entry) {
  batch_.Delete(index_->reclaim_, ReclaimKey(entry));
}
void IndexBatch::PutMeta(const IndexMeta& meta) {
  batch_.Put(index_->meta_, Sl(kMetaKey), EncodeMeta(meta));
}
void IndexBatch::PutPeerPosition(absl::string_view node, uint64_t number, uint64_t offset) {
  std::string value;
  AppendBigEndian64(&value, number);
  AppendBigEndian64(&value, offset);
  batch_.Put(index_->meta_, absl::StrCat(kPeerPositionPrefix, node), value);
}
void IndexBatch::DeletePeer(absl::string_view node) {
  batch_.Delete(index_->meta_, absl::StrCat(kPeerPositionPrefix, node));
  // '0' follows '/': the end of the node's range of keys.
  for (absl::string_view prefix : {kPeerGonePrefix, kPeerRenamedPrefix}) {
    batch_.DeleteRange(index_->meta_, absl::StrCat(prefix, node, "/"),
                       absl::StrCat(prefix, node, "0"));
  }
}
void IndexBatch::PutPeerGone(absl::string_view node, uint64_t extent_id, uint64_t offset) {
  batch_.Put(index_->meta_, PeerMarkKey(kPeerGonePrefix, node, extent_id, offset), "");
}
void IndexBatch::DeletePeerGone(absl::string_view node, uint64_t extent_id, uint64_t offset) {
  batch_.Delete(index_->meta_, PeerMarkKey(kPeerGonePrefix, node, extent_id, offset));
}
void IndexBatch::PutPeerRenamed(absl::string_view node, uint64_t extent_id, uint64_t offset,
                                const PeerRename& rename) {
  std::string value;
  AppendBigEndian64(&value, static_cast<uint64_t>(rename.time_ns));
  value += rename.path;
  batch_.Put(index_->meta_, PeerMarkKey(kPeerRenamedPrefix, node, extent_id, offset), value);
}
void IndexBatch::DeletePeerRenamed(absl::string_view node, uint64_t extent_id,
                                   uint64_t offset) {
  batch_.Delete(index_->meta_, PeerMarkKey(kPeerRenamedPrefix, node, extent_id, offset));
}

// ---------------- Index ----------------

Index::~Index() {
  if (db_) {
    // A clean close leaves nothing in the WAL, so the next open is quick.
    rocksdb::FlushOptions fo;
    (void)db_->Flush(fo, handles_);
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
    db_->Close();
  }
}

absl::StatusOr<std::unique_ptr<Index>> Index::Open(const std::string& dir,
                                                   const IndexOptions& options) {
  std::unique_ptr<Index> index(new Index());
  index->options_ = options;
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.max_open_files = 512;
  db_options.keep_log_file_num = 3;
  db_options.paranoid_checks = true;

  // Few shards: each shard must hold the largest block it is asked to cache.
  auto cache = rocksdb::NewLRUCache(options.block_cache_bytes, /*num_shard_bits=*/4);
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, PointLookupOptions(cache, false)},
      {"namespace", PointLookupOptions(cache, true)},
      {"locators", PointLookupOptions(cache, false)},
      {"atimes", PointLookupOptions(cache, false)},
      {"extents", PointLookupOptions(cache, false)},
      {"reclaim", PointLookupOptions(cache, false)},
  };
  // The atime order is deleted oldest-first (a queue): compact files that
  // fill with tombstones so scans from the oldest end stay cheap.
  cfs[3].options.table_properties_collector_factories.emplace_back(
      rocksdb::NewCompactOnDeletionCollectorFactory(4096, 1024, 0.5));

  rocksdb::DB* db = nullptr;
  rocksdb::Status s;
  if (options.read_only) {
    db_options.create_if_missing = false;
    s = rocksdb::DB::OpenForReadOnly(db_options, dir, cfs, &index->handles_, &db);
    if (s.IsInvalidArgument() || s.IsNotFound() || s.IsPathNotFound()) {
      return ErrnoError(ENOENT, absl::StrCat("no index at ", dir, " (", s.ToString(), ")"));
    }
  } else {
    s = rocksdb::DB::Open(db_options, dir, cfs, &index->handles_, &db);
  }
  if (s.IsInvalidArgument()) {  // column families of another index layout
    return absl::DataLossError(absl::StrCat("open index ", dir, ": ", s.ToString()));
  }
  if (!s.ok()) return FromRocks(s, absl::StrCat("open index ", dir));
  index->db_.reset(db);
  index->meta_ = index->handles_[0];
  index->namespace_ = index->handles_[1];
  index->locators_ = index->handles_[2];
  index->atimes_ = index->handles_[3];
  index->extents_ = index->handles_[4];
  index->reclaim_ = index->handles_[5];
  return index;
}

absl::Status Index::Destroy(const std::string& dir) {
  rocksdb::Options options;
  return FromRocks(rocksdb::DestroyDB(dir, options), absl::StrCat("destroy index ", dir));
}

absl::Status Index::Write(IndexBatch* batch, bool disable_wal) {
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync_writes && !disable_wal;
  wo.disableWAL = disable_wal;
  return FromRocks(db_->Write(wo, &batch->batch_), "index write");
}

absl::Status Index::Flush() {
  rocksdb::FlushOptions fo;
  return FromRocks(db_->Flush(fo, handles_), "index flush");
}

absl::StatusOr<std::optional<Inode>> Index::GetChild(uint64_t parent,
                                                     absl::string_view name) {
  rocksdb::PinnableSlice value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), namespace_, DentryKey(parent, name), &value);
  if (s.IsNotFound()) return std::nullopt;
  if (!s.ok()) return FromRocks(s, "index lookup");
  absl::StatusOr<Inode> inode = DecodeInode(Sv(value));
  if (!inode.ok()) return inode.status();
  return *std::move(inode);
}

absl::StatusOr<std::optional<std::pair<uint64_t, std::string>>> Index::GetLocator(
    uint64_t ino) {
  rocksdb::PinnableSlice value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), locators_, U64Key(ino), &value);
  if (s.IsNotFound()) return std::nullopt;
  if (!s.ok()) return FromRocks(s, "index inode lookup");
  if (value.size() < 8) return absl::DataLossError("index locator is malformed");
  return std::make_pair(ReadBigEndian64(Sv(value)), std::string(Sv(value).substr(8)));
}

absl::StatusOr<std::optional<Inode>> Index::GetInode(uint64_t ino) {
  absl::StatusOr<std::optional<std::pair<uint64_t, std::string>>> at = GetLocator(ino);
  if (!at.ok()) return at.status();
  if (!*at) return std::nullopt;
  absl::StatusOr<std::optional<Inode>> inode = GetChild((*at)->first, (*at)->second);
  if (!inode.ok() || !*inode || (**inode).ino == ino) return inode;
  return std::nullopt;  // the name was reused between the two reads
}

absl::StatusOr<std::optional<IndexMeta>> Index::GetMeta() {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta_, Sl(kMetaKey), &value);
  if (s.IsNotFound()) return std::nullopt;
  if (!s.ok()) return FromRocks(s, "index metadata");
  absl::StatusOr<IndexMeta> meta = DecodeMeta(value);
  if (!meta.ok()) return meta.status();
  return *meta;
}

absl::StatusOr<std::vector<std::pair<uint64_t, ExtentState>>> Index::ListExtents() {
  std::vector<std::pair<uint64_t, ExtentState>> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), extents_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    ExtentState state;
    if (it->key().size() != 8 || !DecodeExtent(Sv(it->value()), &state)) {
      return absl::DataLossError("index extent entry is malformed");
    }
    out.emplace_back(ReadBigEndian64(Sv(it->key())), state);
  }
  if (!it->status().ok()) return FromRocks(it->status(), "index extent scan");
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, std::pair<uint64_t, uint64_t>>>>
Index::ListPeerPositions() {
  std::vector<std::pair<std::string, std::pair<uint64_t, uint64_t>>> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), meta_));
  for (it->Seek(Sl(kPeerPositionPrefix));
       it->Valid() && it->key().starts_with(Sl(kPeerPositionPrefix)); it->Next()) {
    absl::string_view value = Sv(it->value());
    if (value.size() != 16) return absl::DataLossError("index peer position is malformed");
    out.emplace_back(std::string(Sv(it->key()).substr(kPeerPositionPrefix.size())),
                     std::make_pair(ReadBigEndian64(value), ReadBigEndian64(value.substr(8))));
  }
  if (!it->status().ok()) return FromRocks(it->status(), "index peer scan");
  return out;
}

absl::StatusOr<bool> Index::IsPeerGone(absl::string_view node, uint64_t extent_id,
                                       uint64_t offset) {
  rocksdb::PinnableSlice value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta_,
                               PeerMarkKey(kPeerGonePrefix, node, extent_id, offset), &value);
  if (s.IsNotFound()) return false;
  if (!s.ok()) return FromRocks(s, "index lookup");
  return true;
}

absl::StatusOr<uint64_t> Index::CountKeys(absl::string_view prefix) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), meta_));
  uint64_t n = 0;
  for (it->Seek(Sl(prefix)); it->Valid() && it->key().starts_with(Sl(prefix)); it->Next()) {
    ++n;
  }
  if (!it->status().ok()) return FromRocks(it->status(), "index peer scan");
  return n;
}

absl::StatusOr<uint64_t> Index::CountPeerGone() { return CountKeys(kPeerGonePrefix); }
absl::StatusOr<uint64_t> Index::CountPeerRenamed() { return CountKeys(kPeerRenamedPrefix); }

absl::StatusOr<std::optional<PeerRename>> Index::GetPeerRenamed(absl::string_view node,
                                                                uint64_t extent_id,
                                                                uint64_t offset) {
  rocksdb::PinnableSlice value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta_,
                               PeerMarkKey(kPeerRenamedPrefix, node, extent_id, offset), &value);
  if (s.IsNotFound()) return std::nullopt;
  if (!s.ok()) return FromRocks(s, "index lookup");
  absl::string_view v = Sv(value);
  if (v.size() <= 8) return absl::DataLossError("index peer rename mark is malformed");
  return PeerRename{std::string(v.substr(8)), static_cast<int64_t>(ReadBigEndian64(v))};
}

absl::Status Index::ForEachReclaim(int64_t until_ns,
                                   const std::function<bool(const ReclaimEntry&)>& fn) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), reclaim_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    absl::string_view key = Sv(it->key());
    if (key.size() != 24 || it->value().size() != 8) {
      return absl::DataLossError("index reclaim entry is malformed");
    }
    ReclaimEntry r;
    r.due_ns = static_cast<int64_t>(ReadBigEndian64(key));
    if (r.due_ns > until_ns) break;
    r.extent_id = ReadBigEndian64(key.substr(8));
    r.offset = ReadBigEndian64(key.substr(16));
    r.end = ReadBigEndian64(Sv(it->value()));
    if (!fn(r)) break;
  }
  return FromRocks(it->status(), "index reclaim scan");
}

absl::Status Index::ListDir(uint64_t parent, absl::string_view after,
                            const std::function<bool(const Inode&)>& fn) {
  const std::string lower = DentryKey(parent, after);
  const std::string upper = U64Key(parent + 1);
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  ro.prefix_same_as_start = true;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, namespace_));
  it->Seek(lower);
  if (!after.empty() && it->Valid() && it->key() == rocksdb::Slice(lower)) it->Next();
  for (; it->Valid(); it->Next()) {
    absl::StatusOr<Inode> inode = DecodeInode(Sv(it->value()));
    if (!inode.ok()) return inode.status();
    if (!fn(*inode)) break;
  }
  return FromRocks(it->status(), "index directory scan");
}

absl::StatusOr<bool> Index::HasChildren(uint64_t parent) {
  bool any = false;
  absl::Status s = ListDir(parent, "", [&](const Inode&) {
    any = true;
    return false;
  });
  if (!s.ok()) return s;
  return any;
}

std::shared_ptr<const rocksdb::Snapshot> Index::GetSnapshot() {
  rocksdb::DB* db = db_.get();
  return std::shared_ptr<const rocksdb::Snapshot>(
      db->GetSnapshot(), [db](const rocksdb::Snapshot* s) { db->ReleaseSnapshot(s); });
}

absl::Status Index::ForEachInode(const std::function<bool(const Inode&)>& fn,
                                 const rocksdb::Snapshot* at) {
  rocksdb::ReadOptions read;
  read.snapshot = at;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read, namespace_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    absl::StatusOr<Inode> inode = DecodeInode(Sv(it->value()));
    if (!inode.ok()) return inode.status();
    if (!fn(*inode)) break;
  }
  return FromRocks(it->status(), "index inode scan");
}

absl::Status Index::ForEachByAtime(
    int64_t from_s, uint64_t from_ino,
    const std::function<bool(int64_t atime_s, uint64_t ino)>& fn) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), atimes_));
  std::string from = U64Key(static_cast<uint64_t>(std::max<int64_t>(from_s, 0)));
  AppendBigEndian64(&from, from_ino);
  for (it->Seek(from); it->Valid(); it->Next()) {
    absl::string_view key = Sv(it->key());
    if (key.size() != 16) return absl::DataLossError("index atime key is malformed");
    if (!fn(static_cast<int64_t>(ReadBigEndian64(key)),
            ReadBigEndian64(key.substr(8)))) {
      break;
    }
  }
  return FromRocks(it->status(), "index atime scan");
}

}  // namespace kvfs
