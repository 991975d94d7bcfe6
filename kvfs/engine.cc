// Namespace changes, the write path and the read path of the engine.
// Opening and recovery live in engine_recovery.cc.
#include "kvfs/engine.h"

#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <iostream>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "kvfs/errors.h"

namespace kvfs {
namespace {

Attr ToAttr(const Inode& n) {
  Attr a;
  a.ino = n.ino;
  a.is_dir = n.is_dir;
  a.mode = n.mode;
  a.size = n.is_dir ? 0 : n.size;
  a.stored_bytes = n.record_bytes();
  a.mtime_ns = n.mtime_ns;
  a.ctime_ns = n.ctime_ns;
  a.atime_ns = n.atime_ns;
  return a;
}

absl::Status ValidateName(absl::string_view name) {
  if (name.empty() || name == "." || name == ".." ||
      name.find('/') != absl::string_view::npos ||
      name.find('\0') != absl::string_view::npos) {
    return ErrnoError(EINVAL, absl::StrCat("invalid file name '", name, "'"));
  }
  if (name.size() > NAME_MAX) {
    return ErrnoError(ENAMETOOLONG,
                      absl::StrCat("file name longer than ", NAME_MAX, " bytes"));
  }
  return absl::OkStatus();
}

std::string JoinPath(absl::string_view dir, absl::string_view name) {
  return dir.empty() ? std::string(name) : absl::StrCat(dir, "/", name);
}

// Path components, ignoring empty ones (clients produce "//").
std::vector<absl::string_view> Components(absl::string_view path) {
  return absl::StrSplit(path, '/', absl::SkipEmpty());
}

absl::Status NotFound(absl::string_view what) {
  return ErrnoError(ENOENT, absl::StrCat(what, ": no such file or directory"));
}

}  // namespace

// ---------------------------------------------------------------- writer

FileWriter::FileWriter(Engine* engine, ExtentLease lease, uint64_t ino,
                       uint32_t mode, int64_t created_ns)
    : engine_(engine), lease_(std::move(lease)), ino_(ino), mode_(mode),
      created_ns_(created_ns) {}

FileWriter::~FileWriter() {
  if (!released_) engine_->AbandonWriter(*this);
}

absl::Status FileWriter::Write(uint64_t offset, absl::string_view data) {
  std::lock_guard lock(mu_);
  if (committed_ || released_) {
    return ErrnoError(EBADF, "write to a file that is already committed");
  }
  if (data.empty()) return absl::OkStatus();
  if (const uint64_t end = AlignUp(offset + data.size()); end > reserved_) {
    if (absl::Status s = engine_->ReserveSpace(end - reserved_); !s.ok()) return s;
    reserved_ = end;
  }
  if (absl::Status s =
          lease_.extent->file().PwriteFull(data, payload_offset() + offset);
      !s.ok()) {
    in_order_ = false;  // part of it may have landed
    high_water_ = std::max(high_water_, offset + data.size());
    return s;
  }
  if (engine_->options_.write_behind) {
    lease_.extent->file().StartWriteback(payload_offset() + offset, data.size());
  }
  if (in_order_ && offset == size_ && hasher_.bytes() == size_) {
    hasher_.Update(data);
  } else if (!data.empty()) {
    in_order_ = false;
  }
  size_ = std::max(size_, offset + data.size());
  high_water_ = std::max(high_water_, size_);
  return absl::OkStatus();
}

absl::Status FileWriter::Truncate(uint64_t size) {
  std::lock_guard lock(mu_);
  if (committed_ || released_) {
    return ErrnoError(EBADF, "truncate of a file that is already committed");
  }
  if (size < high_water_) {
    // Bytes past the new end must read as zeros if the file grows again.
    static const std::string kZeros(kChunkBytes, '\0');
    for (uint64_t off = size; off < high_water_; off += kZeros.size()) {
      uint64_t n = std::min<uint64_t>(kZeros.size(), high_water_ - off);
      if (absl::Status s = lease_.extent->file().PwriteFull(
              absl::string_view(kZeros).substr(0, n), payload_offset() + off);
          !s.ok()) {
        return s;
      }
    }
  }
  if (size == 0) {
    hasher_.Reset();
    in_order_ = true;
  } else if (size != size_) {
    in_order_ = false;
  }
  size_ = size;
  return absl::OkStatus();
}

absl::StatusOr<size_t> FileWriter::Read(uint64_t offset, size_t len,
                                        char* out) const {
  std::lock_guard lock(mu_);
  if (offset >= size_) return 0;
  len = std::min<uint64_t>(len, size_ - offset);
  if (absl::Status s = lease_.extent->file().PreadFull(out, len, payload_offset() + offset);
      !s.ok()) {
    return s;
  }
  return len;
}

uint64_t FileWriter::size() const {
  std::lock_guard lock(mu_);
  return size_;
}

// ---------------------------------------------------------------- reader

FileReader::FileReader(Engine* engine, std::shared_ptr<Extent> extent, Inode inode,
                       std::shared_ptr<OpenRecords> open_records)
    : engine_(engine), extent_(std::move(extent)), inode_(std::move(inode)),
      open_records_(std::move(open_records)) {
  if (engine_->cold_pool_ && inode_.size > 0) {
    cold_ = std::make_shared<ColdWindows>(
        ColdSource{.extent = extent_,
                   .payload_offset = inode_.record_offset + kRecordHeaderBytes,
                   .size = inode_.size,
                   .chunk_checksums = inode_.chunk_checksums,
                   .verify = engine_->options_.verify_reads,
                   .windows_read = &engine_->stats_.cold_windows,
                   .bytes_read = &engine_->stats_.cold_window_bytes},
        engine_->cold_pool_);
  }
}

FileReader::~FileReader() {
  if (open_records_) open_records_->Closed(inode_.extent_id, inode_.record_offset);
}

absl::StatusOr<size_t> FileReader::Read(uint64_t offset, size_t len,
                                        char* out) const {
  const uint64_t size = inode_.size;
  if (offset >= size || len == 0) return 0;
  const uint64_t end = offset + std::min<uint64_t>(len, size - offset);
  for (uint64_t i = offset / kChunkBytes; i * kChunkBytes < end; ++i) {
    const uint64_t chunk_start = i * kChunkBytes;
    const uint64_t chunk_end = std::min(size, chunk_start + kChunkBytes);
    const uint64_t lo = std::max(offset, chunk_start);
    const uint64_t hi = std::min(end, chunk_end);
    if (cold_ && cold_->Copy(i, lo - chunk_start, hi - lo, out + (lo - offset), len)) continue;
    if (lo == chunk_start && hi == chunk_end) {
      // The caller wants the whole chunk: read and verify it in place.
      if (absl::Status s = ReadChunk(i, out + (lo - offset), hi - lo); !s.ok()) return s;
    } else {
      std::lock_guard lock(cache_mu_);
      if (cached_chunk_ != i) {
        cached_chunk_ = UINT64_MAX;
        cached_chunk_bytes_.resize(chunk_end - chunk_start);
        if (absl::Status s = ReadChunk(i, cached_chunk_bytes_.data(), cached_chunk_bytes_.size());
            !s.ok()) {
          return s;
        }
        cached_chunk_ = i;
      }
      std::memcpy(out + (lo - offset), cached_chunk_bytes_.data() + (lo - chunk_start), hi - lo);
    }
  }
  engine_->stats_.bytes_read += end - offset;
  return end - offset;
}

absl::Status FileReader::ReadChunk(uint64_t index, char* out, uint64_t len) const {
  const uint64_t at = inode_.record_offset + kRecordHeaderBytes + index * kChunkBytes;
  // Read in pieces and hash each while it is still in cache: hashing the
  // whole chunk after the copy would stream it from memory a second time.
  constexpr uint64_t kPiece = 256 << 10;
  thread_local ChunkHasher hasher;
  hasher.Reset();
  absl::Status s;
  // Plain blocking reads, in order: the backing filesystem's own readahead
  // sees one sequential stream per chunk and reads ahead in large requests.
  // (Asking for the rest of the chunk with WILLNEED at the first uncached
  // piece split the disk's work into 1 MiB requests, one per chunk in
  // flight, and loaded cold files 10-20% slower.)
  for (uint64_t off = 0; off < len && s.ok(); off += kPiece) {
    const uint64_t n = std::min(kPiece, len - off);
    s = extent_->file().PreadFull(out + off, n, at + off);
    if (s.ok() && engine_->options_.verify_reads) hasher.Update(absl::string_view(out + off, n));
  }
  if (s.ok() && engine_->options_.verify_reads &&
      hasher.Digest() != inode_.chunk_checksums[index]) {
    s = absl::DataLossError("chunk checksum mismatch");
  }
  if (!s.ok()) {
    std::string path;
    {
      std::lock_guard lock(engine_->mu_);
      absl::StatusOr<std::string> p = engine_->PathOfLocked(inode_.ino);
      path = p.ok() ? *p : absl::StrCat("inode ", inode_.ino);
    }
    if (s.code() == absl::StatusCode::kDataLoss) ++engine_->stats_.checksum_errors;
    std::string msg = absl::StrCat("read of '", path, "' failed at chunk ", index,
                                   " (extent ", inode_.extent_id, " offset ", at,
                                   "): ", s.message());
    engine_->Log(msg);
    return ErrnoError(EIO, msg);
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- engine

Engine::~Engine() {
  if (backing_) backing_->node_lock().OnLost(nullptr);  // its heartbeat outlives this
  if (cold_pool_) cold_pool_->Stop();
  StopCompactor();
  StopPeerFollower();
  StopEvictor();
  if (index_) (void)FlushAccessTimes();
}

int64_t Engine::Now() const {
  return options_.clock ? options_.clock() : absl::GetCurrentTimeNanos();
}

void Engine::PutExtentLocked(uint64_t id, const ExtentState& state, IndexBatch* batch) {
  auto [it, added] = extent_states_.try_emplace(id);
  // Differences of unsigned totals wrap to the right result.
  stored_total_ += state.stored_bytes() - (added ? 0 : it->second.stored_bytes());
  it->second = state;
  batch->PutExtent(id, state);
}

void Engine::QueueReclaimLocked(const ReclaimEntry& entry, IndexBatch* batch) {
  batch->PutReclaim(entry);
  if (reclaim_queue_.insert(entry).second) {
    ++queued_reclaims_[entry.extent_id];
    queued_bytes_ += entry.punchable();
  }
}

void Engine::RecomputeUsageLocked() {
  uint64_t stored = 0;
  for (const auto& [id, e] : extent_states_) stored += e.stored_bytes();
  stored_total_ = stored;
}

void Engine::Log(absl::string_view line) const {
  if (options_.log) {
    options_.log(line);
  } else {
    std::cerr << "kvfs: " << line << std::endl;
  }
}

void Engine::Problem(std::string line) {
  Log(line);
  problems_.push_back(std::move(line));
}

void Engine::FailLocked(std::string why) {
  if (failure_.empty()) failure_ = std::move(why);
  read_only_ = true;
}

absl::Status Engine::CheckWritable() const {
  if (!failure_.empty()) {
    return ErrnoError(EIO, absl::StrCat("engine is read-only after an earlier failure (",
                                        failure_, "); reopen it to recover"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Attr> Engine::GetAttr(uint64_t ino) {
  absl::StatusOr<std::optional<Inode>> inode = index_->GetInode(ino);
  if (!inode.ok()) return inode.status();
  if (!*inode) return NotFound(absl::StrCat("inode ", ino));
  return WithNotedAccess(ToAttr(**inode));
}

Attr Engine::WithNotedAccess(Attr a) {
  std::lock_guard lock(noted_access_mu_);
  if (auto it = noted_access_.find(a.ino); it != noted_access_.end()) {
    a.atime_ns = std::max(a.atime_ns, it->second);
  }
  return a;
}

absl::StatusOr<Inode> Engine::GetInode(uint64_t ino) {
  absl::StatusOr<std::optional<Inode>> inode = index_->GetInode(ino);
  if (!inode.ok()) return inode.status();
  if (!*inode) return NotFound(absl::StrCat("inode ", ino));
  return **inode;
}

absl::StatusOr<Attr> Engine::Lookup(uint64_t parent, absl::string_view name) {
  if (absl::Status s = ValidateName(name); !s.ok()) return s;
  absl::StatusOr<std::optional<Inode>> inode = index_->GetChild(parent, name);
  if (!inode.ok()) return inode.status();
  if (!*inode) return NotFound(name);
  return WithNotedAccess(ToAttr(**inode));
}

absl::StatusOr<Inode> Engine::GetDirLocked(uint64_t ino) {
  absl::StatusOr<std::optional<Inode>> inode = index_->GetInode(ino);
  if (!inode.ok()) return inode.status();
  if (!*inode) return NotFound(absl::StrCat("directory inode ", ino));
  if (!(*inode)->is_dir) {
    return ErrnoError(ENOTDIR, absl::StrCat("inode ", ino, " is not a directory"));
  }
  return **inode;
}

absl::StatusOr<std::string> Engine::PathOfLocked(uint64_t ino) {
  std::vector<std::string> names;
  for (int depth = 0; ino != kRootIno; ++depth) {
    absl::StatusOr<std::optional<std::pair<uint64_t, std::string>>> at =
        index_->GetLocator(ino);
    if (!at.ok()) return at.status();
    if (!*at || depth > 4096) return NotFound(absl::StrCat("inode ", ino));
    names.push_back((*at)->second);
    ino = (*at)->first;
  }
  std::string path;
  for (auto it = names.rbegin(); it != names.rend(); ++it) path = JoinPath(path, *it);
  return path;
}

absl::StatusOr<std::pair<uint64_t, std::string>> Engine::ResolveParentLocked(
    absl::string_view path, bool create_missing) {
  std::vector<absl::string_view> parts = Components(path);
  if (parts.empty()) return ErrnoError(EINVAL, "empty path");
  uint64_t dir = kRootIno;
  std::string walked;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    walked = JoinPath(walked, parts[i]);
    absl::StatusOr<std::optional<Inode>> child = index_->GetChild(dir, parts[i]);
    if (!child.ok()) return child.status();
    if (*child) {
      if (!(*child)->is_dir) {
        return ErrnoError(ENOTDIR, absl::StrCat("'", walked, "' is not a directory"));
      }
      dir = (*child)->ino;
      continue;
    }
    if (!create_missing) return NotFound(walked);
    // Replay found a change below a directory the journal never created:
    // another node created it (its journal has the mkdir), or this journal
    // was lost or damaged. Recreate the directory, numbered above every
    // inode the journal names (its numbers are not in order: a file's is
    // taken at create, journalled at rename).
    if (!replay_ino_ceiling_known_) {
      absl::StatusOr<uint64_t> highest = HighestJournalIno();
      if (!highest.ok()) return highest.status();
      RaiseNextIno(*highest + 1);
      replay_ino_ceiling_known_ = true;
    }
    absl::StatusOr<uint64_t> created =
        CreateDirLocked(dir, parts[i], 0755, /*store_next_ino=*/false);
    if (!created.ok()) return created.status();
    if (replay_shared_) {
      ++replay_dirs_recreated_;
    } else {
      Problem(absl::StrCat("recreated directory '", walked,
                           "' that the journal does not record"));
    }
    dir = *created;
  }
  return std::make_pair(dir, std::string(parts.back()));
}

absl::StatusOr<uint64_t> Engine::CreateDirLocked(uint64_t parent, absl::string_view name,
                                                 uint32_t mode, bool store_next_ino,
                                                 std::optional<int64_t> time_ns) {
  Inode created;
  created.ino = next_ino_++;
  created.parent = parent;
  created.name = std::string(name);
  created.is_dir = true;
  created.mode = mode & 07777;
  created.mtime_ns = created.ctime_ns = created.atime_ns = time_ns.value_or(Now());
  IndexBatch batch(index_.get());
  batch.PutInode(created);
  if (store_next_ino) {
    meta_.next_ino = std::max<uint64_t>(meta_.next_ino, next_ino_);  // never reused
    batch.PutMeta(meta_);
  }
  if (absl::Status s = index_->Write(&batch); !s.ok()) return s;
  return created.ino;
}

absl::Status Engine::MoveRecreatedDirLocked(uint64_t ino, absl::string_view path) {
  absl::StatusOr<std::optional<Inode>> taken = index_->GetInode(ino);
  if (!taken.ok()) return taken.status();
  if (!*taken || !(*taken)->is_dir) return absl::OkStatus();
  absl::StatusOr<std::string> at = PathOfLocked(ino);
  if (!at.ok()) return at.status();
  if (*at == path) return absl::OkStatus();  // the entry's own directory
  RaiseNextIno(ino + 1);
  Inode moved = **taken;
  moved.ino = next_ino_++;
  IndexBatch batch(index_.get());
  batch.DeleteInode(**taken);
  batch.PutInode(moved);
  if (absl::Status s = index_->ListDir(ino, "", [&](const Inode& child) {
        Inode c = child;
        c.parent = moved.ino;
        batch.DeleteInode(child);
        batch.PutInode(c);
        return true;
      });
      !s.ok()) {
    return s;
  }
  return index_->Write(&batch);
}

JournalEntry Engine::NewEntryLocked(JournalOp op, uint64_t ino, std::string path) const {
  JournalEntry e;
  e.seq = meta_.next_seq;
  e.op = op;
  e.time_ns = Now();
  e.ino = ino;
  e.path = std::move(path);
  return e;
}

void Engine::RaiseNextIno(uint64_t at_least) {
  uint64_t seen = next_ino_.load();
  while (seen < at_least && !next_ino_.compare_exchange_weak(seen, at_least)) {
  }
}

void Engine::RetireVersionLocked(const Inode& old, IndexBatch* batch) {
  if (!old.owner.empty()) {  // another node's record: its owner reclaims it
    batch->DeleteInode(old);
    live_files_.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  ExtentState es = extent_states_[old.extent_id];
  const uint64_t bytes = old.record_bytes();
  es.live_bytes -= std::min(es.live_bytes, bytes);
  es.dead_bytes += bytes;
  PutExtentLocked(old.extent_id, es, batch);
  // Its space is returned once readers are done with it (eviction.cc).
  QueueReclaimLocked({Now() + options_.reclaim_grace_ns, old.extent_id, old.record_offset,
                      old.record_offset + bytes},
                     batch);
  batch->DeleteAtime(old.atime_ns, old.ino);
  batch->DeleteInode(old);
  live_files_.fetch_sub(1, std::memory_order_relaxed);
}

absl::Status Engine::ApplyLocked(const JournalEntry& e, const ValidRecord* record,
                                 bool replaying, IndexBatch* batch) {
  // During replay a change that no longer fits (damaged journal) is skipped
  // and reported; live changes were checked before they were journalled.
  auto skip = [&](absl::string_view why) {
    if (!replaying) {
      return absl::InternalError(absl::StrCat("journal seq ", e.seq, ": ", why));
    }
    Problem(absl::StrCat("journal seq ", e.seq, " skipped: ", why));
    return absl::OkStatus();
  };
  if (e.op == JournalOp::kRetire) {
    // By inode: another node may have renamed the file since.
    absl::StatusOr<std::optional<Inode>> n = index_->GetInode(e.ino);
    if (!n.ok()) return n.status();
    if (*n && !(*n)->is_dir && (*n)->owner.empty() && (*n)->extent_id == e.extent_id &&
        (*n)->record_offset == e.record_offset) {
      RetireVersionLocked(**n, batch);
    }
    return absl::OkStatus();
  }
  if (e.op == JournalOp::kCheckpoint || e.op == JournalOp::kCheckpointEnd ||
      e.op == JournalOp::kAccess || e.op == JournalOp::kNextFile) {
    // A checkpoint's bounds, a hint for another node, or the end of a file.
    return absl::OkStatus();
  }
  const bool creates_parents = replaying && (e.op == JournalOp::kMkdir ||
                                             e.op == JournalOp::kCommit ||
                                             e.op == JournalOp::kLive ||
                                             e.op == JournalOp::kRename);
  if (replaying && (e.op == JournalOp::kMkdir || e.op == JournalOp::kCommit ||
                    e.op == JournalOp::kLive)) {
    if (absl::Status s = MoveRecreatedDirLocked(e.ino, e.path); !s.ok()) return s;
  }
  // Another node's file this node unlinked or renamed: replay meets it
  // before that node's journal is followed again, so it may not be here.
  const bool peers_version =
      !e.owner.empty() && e.owner != backing_->layout().node_id;
  if (replaying && e.op == JournalOp::kUnlink && !peers_version && e.extent_id != 0) {
    // This node's own file, found by inode: another node may have renamed it,
    // and replay has not followed that node yet, so it may be under another name.
    absl::StatusOr<std::optional<Inode>> n = index_->GetInode(e.ino);
    if (!n.ok()) return n.status();
    if (*n && !(*n)->is_dir && (*n)->owner.empty() && (*n)->extent_id == e.extent_id &&
        (*n)->record_offset == e.record_offset) {
      RetireVersionLocked(**n, batch);
      RaiseNextIno(e.ino + 1);
      return absl::OkStatus();
    }
  }
  absl::StatusOr<std::pair<uint64_t, std::string>> target =
      ResolveParentLocked(e.path, creates_parents && e.op != JournalOp::kRename);
  if (!target.ok() && peers_version) {
    // Keep an unlinked version from appearing when that node's commit is
    // read, and a renamed one from appearing under its old name.
    if (e.op == JournalOp::kUnlink) batch->PutPeerGone(e.owner, e.extent_id, e.record_offset);
    if (e.op == JournalOp::kRename && e.extent_id != 0) {
      batch->PutPeerRenamed(e.owner, e.extent_id, e.record_offset, {e.path2, e.time_ns});
    }
    return absl::OkStatus();
  }
  if (!target.ok()) return skip(target.status().message());
  auto [parent, name] = *target;
  absl::StatusOr<std::optional<Inode>> found = index_->GetChild(parent, name);
  if (!found.ok()) return found.status();
  const std::optional<Inode>& existing = *found;

  switch (e.op) {
    case JournalOp::kMkdir: {
      if (existing) return skip(absl::StrCat("'", e.path, "' already exists"));
      Inode dir;
      dir.ino = e.ino;
      dir.parent = parent;
      dir.name = name;
      dir.is_dir = true;
      dir.mode = e.mode;
      dir.mtime_ns = dir.ctime_ns = dir.atime_ns = e.time_ns;
      dir.seq = e.seq;
      batch->PutInode(dir);
      break;
    }
    case JournalOp::kCommit:
    case JournalOp::kLive: {
      if (existing && existing->is_dir) {
        return skip(absl::StrCat("'", e.path, "' is a directory"));
      }
      if (existing) RetireVersionLocked(*existing, batch);
      // A new version (O_TRUNC) committed under another name, by a rename
      // while it was open: its old name goes with its old version.
      absl::StatusOr<std::optional<Inode>> same_ino = index_->GetInode(e.ino);
      if (!same_ino.ok()) return same_ino.status();
      if (*same_ino && !(*same_ino)->is_dir &&
          ((*same_ino)->parent != parent || (*same_ino)->name != name)) {
        RetireVersionLocked(**same_ino, batch);
      }
      Inode file;
      file.ino = e.ino;
      file.parent = parent;
      file.name = name;
      file.mode = e.mode;
      // A checkpoint's live entry is stamped with the last rename; the
      // contents changed at the commit.
      file.mtime_ns = record->header.committed_ns;
      file.ctime_ns = file.atime_ns = e.time_ns;
      file.seq = e.seq;
      file.size = record->header.payload_bytes;
      file.extent_id = record->header.extent_id;
      file.record_offset = record->header.record_offset;
      file.chunk_checksums = record->trailer.chunk_checksums;
      file.payload_checksum = record->trailer.payload_checksum;
      batch->PutInode(file);
      batch->PutAtime(file.atime_ns, file.ino);
      live_files_.fetch_add(1, std::memory_order_relaxed);
      meta_.max_extent_id = std::max(meta_.max_extent_id, file.extent_id);
      ExtentState es = extent_states_[file.extent_id];
      es.live_bytes += file.record_bytes();
      es.committed_end = std::max(es.committed_end, record->header.next_record_offset());
      es.sealed = es.sealed || es.committed_end >= extent_target_bytes_;
      PutExtentLocked(file.extent_id, es, batch);
      break;
    }
    case JournalOp::kRename: {
      if (!existing && peers_version) {
        // Not seen yet (a rebuild replays this journal before following the
        // owner's): its commit, once read, puts the file at the new name.
        if (e.extent_id != 0) {
          batch->PutPeerRenamed(e.owner, e.extent_id, e.record_offset, {e.path2, e.time_ns});
        }
        break;
      }
      if (!existing) return skip(absl::StrCat("'", e.path, "' does not exist"));
      absl::StatusOr<std::pair<uint64_t, std::string>> to =
          ResolveParentLocked(e.path2, replaying);
      if (!to.ok()) return skip(to.status().message());
      auto [new_parent, new_name] = *to;
      absl::StatusOr<std::optional<Inode>> victim = index_->GetChild(new_parent, new_name);
      if (!victim.ok()) return victim.status();
      if (*victim && (*victim)->ino == existing->ino) break;  // same file
      if (*victim && (*victim)->is_dir) {
        batch->DeleteInode(**victim);  // an empty directory
      } else if (*victim) {
        RetireVersionLocked(**victim, batch);
      }
      Inode moved = *existing;
      moved.parent = new_parent;
      moved.name = new_name;
      moved.ctime_ns = e.time_ns;
      moved.seq = e.seq;
      batch->DeleteInode(*existing);
      batch->PutInode(moved);
      if (peers_version && e.extent_id != 0) {
        // Another node's file: its owner's checkpoints may list it under the
        // old name until the owner reads this rename.
        batch->PutPeerRenamed(e.owner, e.extent_id, e.record_offset, {e.path2, e.time_ns});
      }
      break;
    }
    case JournalOp::kUnlink:
      if (peers_version && (!existing || existing->is_dir || existing->owner != e.owner ||
                            existing->extent_id != e.extent_id ||
                            existing->record_offset != e.record_offset)) {
        // Not seen yet: keep it from appearing when it is.
        batch->PutPeerGone(e.owner, e.extent_id, e.record_offset);
        break;
      }
      if (!existing || existing->is_dir) {
        return skip(absl::StrCat("'", e.path, "' is not a file"));
      }
      RetireVersionLocked(*existing, batch);
      break;
    case JournalOp::kRmdir:
      if (!existing || !existing->is_dir) {
        return skip(absl::StrCat("'", e.path, "' is not a directory"));
      }
      batch->DeleteInode(*existing);
      break;
    case JournalOp::kRetire:
    case JournalOp::kCheckpoint:
    case JournalOp::kCheckpointEnd:
    case JournalOp::kAccess:
    case JournalOp::kNextFile:
      break;  // handled above
  }
  RaiseNextIno(e.ino + 1);
  return absl::OkStatus();
}

absl::Status Engine::CommitEntryLocked(const JournalEntry& entry, const ValidRecord* record,
                                       bool replaying) {
  absl::StatusOr<JournalPosition> pos = journal_->Append(entry);
  if (!pos.ok()) return pos.status();
  if (options_.sync_commits) {
    if (absl::Status s = journal_->Sync(); !s.ok()) {
      FailLocked(std::string(s.message()));
      return s;
    }
  }
  CrashPoint("commit.after_journal");
  IndexBatch batch(index_.get());
  absl::Status s = ApplyLocked(entry, record, replaying, &batch);
  meta_.next_seq = entry.seq + 1;
  meta_.next_ino = std::max<uint64_t>(meta_.next_ino, next_ino_);
  meta_.journal_number = pos->number;
  meta_.journal_offset = pos->offset;
  meta_.live_files = live_files_;
  batch.PutMeta(meta_);
  if (s.ok()) s = index_->Write(&batch);
  if (!s.ok()) {
    // The change is in the journal but not in the index: stop changing
    // anything until a reopen replays the journal into the index. (The
    // change itself then appears: the journal entry is its commit.)
    const std::string why = absl::StrCat("index update after journal seq ", entry.seq,
                                         " failed: ", s.message());
    Log(absl::StrCat(why, "; no more changes until kvfs is mounted again, which replays "
                          "the journal into the index"));
    FailLocked(why);
    // A full index disk says so; anything else is an I/O error.
    return ErrnoError(ErrnoOf(s) == ENOSPC ? ENOSPC : EIO, why);
  }
  return absl::OkStatus();
}

absl::StatusOr<Attr> Engine::Mkdir(uint64_t parent, absl::string_view name,
                                   uint32_t mode) {
  if (absl::Status s = ValidateName(name); !s.ok()) return s;
  std::lock_guard lock(mu_);
  if (absl::Status s = CheckWritable(); !s.ok()) return s;
  if (absl::StatusOr<Inode> dir = GetDirLocked(parent); !dir.ok()) return dir.status();
  absl::StatusOr<std::optional<Inode>> existing = index_->GetChild(parent, name);
  if (!existing.ok()) return existing.status();
  if (*existing) return ErrnoError(EEXIST, absl::StrCat("'", name, "' exists"));
  absl::StatusOr<std::string> dir_path = PathOfLocked(parent);
  if (!dir_path.ok()) return dir_path.status();
  JournalEntry e = NewEntryLocked(JournalOp::kMkdir, next_ino_++, JoinPath(*dir_path, name));
  e.mode = mode & 07777;
  if (absl::Status s = ValidatePath(e.path); !s.ok()) return s;
  if (absl::Status s = CommitEntryLocked(e, nullptr); !s.ok()) return s;
  absl::StatusOr<std::optional<Inode>> made = index_->GetChild(parent, name);
  if (!made.ok()) return made.status();
  if (!*made) return absl::InternalError("directory vanished after mkdir");
  return ToAttr(**made);
}

absl::Status Engine::Unlink(uint64_t parent, absl::string_view name) {
  if (absl::Status s = ValidateName(name); !s.ok()) return s;
  std::lock_guard lock(mu_);
  if (absl::Status s = CheckWritable(); !s.ok()) return s;
  if (absl::StatusOr<Inode> dir = GetDirLocked(parent); !dir.ok()) return dir.status();
  absl::StatusOr<std::optional<Inode>> file = index_->GetChild(parent, name);
  if (!file.ok()) return file.status();
  if (!*file) return NotFound(name);
  if ((*file)->is_dir) return ErrnoError(EISDIR, absl::StrCat("'", name, "' is a directory"));
  absl::StatusOr<std::string> dir_path = PathOfLocked(parent);
  if (!dir_path.ok()) return dir_path.status();
  JournalEntry e =
      NewEntryLocked(JournalOp::kUnlink, (*file)->ino, JoinPath(*dir_path, name));
  // The version removed, so that other nodes remove that one only.
  e.extent_id = (*file)->extent_id;
  e.record_offset = (*file)->record_offset;
  e.owner = (*file)->owner;
  return CommitEntryLocked(e, nullptr);
}

absl::Status Engine::Rmdir(uint64_t parent, absl::string_view name) {
  if (absl::Status s = ValidateName(name); !s.ok()) return s;
  std::lock_guard lock(mu_);
  if (absl::Status s = CheckWritable(); !s.ok()) return s;
  absl::StatusOr<Attr> attr = Lookup(parent, name);
  if (!attr.ok()) return attr.status();
  if (!attr->is_dir) {
    return ErrnoError(ENOTDIR, absl::StrCat("'", name, "' is not a directory"));
  }
  absl::StatusOr<bool> children = index_->HasChildren(attr->ino);
  if (!children.ok()) return children.status();
  if (*children) {
    return ErrnoError(ENOTEMPTY, absl::StrCat("directory '", name, "' is not empty"));
  }
  absl::StatusOr<std::string> dir_path = PathOfLocked(parent);
  if (!dir_path.ok()) return dir_path.status();
  return CommitEntryLocked(
      NewEntryLocked(JournalOp::kRmdir, attr->ino, JoinPath(*dir_path, name)), nullptr);
}

absl::Status Engine::Rename(uint64_t parent, absl::string_view name,
                            uint64_t new_parent, absl::string_view new_name,
                            bool no_replace) {
  if (absl::Status s = ValidateName(name); !s.ok()) return s;
  if (absl::Status s = ValidateName(new_name); !s.ok()) return s;
  std::lock_guard lock(mu_);
  if (absl::Status s = CheckWritable(); !s.ok()) return s;
  absl::StatusOr<Attr> src = Lookup(parent, name);
  if (!src.ok()) return src.status();
  if (absl::StatusOr<Inode> d = GetDirLocked(new_parent); !d.ok()) return d.status();
  absl::StatusOr<Attr> dst = Lookup(new_parent, new_name);
  if (!dst.ok() && ErrnoOf(dst.status()) != ENOENT) return dst.status();
  if (dst.ok()) {
    if (dst->ino == src->ino) return absl::OkStatus();
    if (no_replace) return ErrnoError(EEXIST, absl::StrCat("'", new_name, "' exists"));
    if (src->is_dir && !dst->is_dir) {
      return ErrnoError(ENOTDIR, absl::StrCat("'", new_name, "' is not a directory"));
    }
    if (!src->is_dir && dst->is_dir) {
      return ErrnoError(EISDIR, absl::StrCat("'", new_name, "' is a directory"));
    }
    if (dst->is_dir) {
      absl::StatusOr<bool> children = index_->HasChildren(dst->ino);
      if (!children.ok()) return children.status();
      if (*children) {
        return ErrnoError(ENOTEMPTY, absl::StrCat("directory '", new_name, "' is not empty"));
      }
    }
  }
  if (src->is_dir) {  // a directory cannot move below itself
    for (uint64_t at = new_parent; at != kRootIno;) {
      if (at == src->ino) {
        return ErrnoError(EINVAL, "cannot move a directory into itself");
      }
      absl::StatusOr<std::optional<std::pair<uint64_t, std::string>>> up =
          index_->GetLocator(at);
      if (!up.ok()) return up.status();
      if (!*up) break;
      at = (*up)->first;
    }
  }
  absl::StatusOr<std::string> from_dir = PathOfLocked(parent);
  if (!from_dir.ok()) return from_dir.status();
  absl::StatusOr<std::string> to_dir = PathOfLocked(new_parent);
  if (!to_dir.ok()) return to_dir.status();
  JournalEntry e = NewEntryLocked(JournalOp::kRename, src->ino, JoinPath(*from_dir, name));
  // Later than what it replaces, so every node keeps the moved file.
  e.time_ns = std::max(e.time_ns, dst.ok() ? dst->ctime_ns + 1 : 0);
  e.path2 = JoinPath(*to_dir, new_name);
  if (!src->is_dir) {  // the version moved, so that other nodes move that one only
    absl::StatusOr<std::optional<Inode>> moved = index_->GetChild(parent, name);
    if (!moved.ok()) return moved.status();
    if (*moved) {
      e.extent_id = (*moved)->extent_id;
      e.record_offset = (*moved)->record_offset;
      e.owner = (*moved)->owner;
    }
  }
  if (absl::Status s = ValidatePath(e.path2); !s.ok()) return s;
  return CommitEntryLocked(e, nullptr);
}

absl::Status Engine::ReadDir(
    uint64_t ino, absl::string_view after,
    const std::function<bool(absl::string_view name, const Attr&)>& fn) {
  absl::StatusOr<Attr> dir = GetAttr(ino);
  if (!dir.ok()) return dir.status();
  if (!dir->is_dir) return ErrnoError(ENOTDIR, absl::StrCat("inode ", ino, " is not a directory"));
  return index_->ListDir(ino, after,
                         [&](const Inode& child) { return fn(child.name, ToAttr(child)); });
}

absl::Status Engine::RecordAccess(uint64_t ino, int64_t seen_atime_ns) {
  const int64_t now = Now();
  if (seen_atime_ns >= 0 && Index::AtimeBucket(seen_atime_ns) >= Index::AtimeBucket(now)) {
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<Inode>> seen = index_->GetInode(ino);
  if (!seen.ok()) return seen.status();
  if (!*seen) return NotFound(absl::StrCat("inode ", ino));
  if (Index::AtimeBucket((*seen)->atime_ns) >= Index::AtimeBucket(now)) {
    return absl::OkStatus();  // already recorded this second
  }
  std::lock_guard lock(mu_);
  if (absl::Status s = CheckWritable(); !s.ok()) return s;
  absl::StatusOr<std::optional<Inode>> inode = index_->GetInode(ino);
  if (!inode.ok()) return inode.status();
  if (!*inode) return NotFound(absl::StrCat("inode ", ino));
  if (Index::AtimeBucket((*inode)->atime_ns) >= Index::AtimeBucket(now)) {
    return absl::OkStatus();
  }
  // Access times live in the index only (not journalled); reads of other
  // nodes' files also go to their owners as journalled hints.
  IndexBatch batch(index_.get());
  std::vector<Inode> hints;
  PutAccessTime(**inode, now, &batch, &hints);
  JournalAccessHintsLocked(hints, &batch);
  return index_->Write(&batch);
}

void Engine::PutAccessTime(Inode n, int64_t atime_ns, IndexBatch* batch,
                           std::vector<Inode>* hints) {
  if (Index::AtimeBucket(n.atime_ns) >= Index::AtimeBucket(atime_ns)) return;  // as recent
  if (!n.is_dir && n.owner.empty()) {  // the eviction order holds this node's files only
    batch->DeleteAtime(n.atime_ns, n.ino);
    batch->PutAtime(atime_ns, n.ino);
  }
  // Once per interval: the first access recorded in it is hinted.
  const int64_t interval = options_.access_hint_interval_ns;
  const bool hint = hints != nullptr && !n.is_dir && !n.owner.empty() && interval > 0 &&
                    atime_ns / interval > n.atime_ns / interval;
  n.atime_ns = atime_ns;
  batch->PutInode(n);
  if (hint) hints->push_back(std::move(n));
}

void Engine::NoteAccess(uint64_t ino, int64_t seen_atime_ns) {
  constexpr size_t kMaxNoted = 1 << 16;  // then written at once: bounded memory
  const int64_t now = Now();
  if (seen_atime_ns >= 0 && Index::AtimeBucket(seen_atime_ns) >= Index::AtimeBucket(now)) {
    return;
  }
  bool full;
  {
    std::lock_guard lock(noted_access_mu_);
    auto [it, added] = noted_access_.try_emplace(ino, now);
    if (!added) {
      if (Index::AtimeBucket(it->second) >= Index::AtimeBucket(now)) return;
      it->second = now;
    }
    full = noted_access_.size() >= kMaxNoted;
  }
  if (full) {
    if (absl::Status s = FlushAccessTimes(); !s.ok()) {
      Log(absl::StrCat("recording access times: ", s.message()));
    }
  }
}

absl::Status Engine::FlushAccessTimes() {
  std::unordered_map<uint64_t, int64_t> noted;
  {
    std::lock_guard lock(noted_access_mu_);
    noted.swap(noted_access_);
  }
  if (noted.empty()) return absl::OkStatus();
  std::lock_guard lock(mu_);
  if (absl::Status s = CheckWritable(); !s.ok()) return s;
  IndexBatch batch(index_.get());
  std::vector<Inode> hints;
  for (const auto& [ino, atime_ns] : noted) {
    absl::StatusOr<std::optional<Inode>> inode = index_->GetInode(ino);
    if (!inode.ok()) return inode.status();
    if (*inode) PutAccessTime(**inode, atime_ns, &batch, &hints);  // unless gone since
  }
  JournalAccessHintsLocked(hints, &batch);
  return index_->Write(&batch);
}

absl::StatusOr<std::unique_ptr<FileWriter>> Engine::CreateWriter(uint32_t mode,
                                                                 uint64_t ino) {
  {
    std::lock_guard lock(mu_);
    if (absl::Status s = CheckWritable(); !s.ok()) return s;
  }
  if (absl::Status s = CheckIndexRoom(); !s.ok()) return s;
  absl::StatusOr<ExtentLease> lease = pool_->Acquire();
  if (!lease.ok()) return lease.status();
  return std::unique_ptr<FileWriter>(
      new FileWriter(this, *std::move(lease), ino != 0 ? ino : next_ino_++,
                     mode & 07777, Now()));
}

absl::Status Engine::FinishPayload(FileWriter& w, RecordTrailer* trailer) {
  if (w.in_order_ && w.hasher_.bytes() == w.size_) {
    w.hasher_.Finish(&trailer->chunk_checksums, &trailer->payload_checksum);
    return absl::OkStatus();
  }
  // Written out of order: hash what landed in the extent.
  PayloadHasher hasher;
  std::string buf;
  for (uint64_t off = 0; off < w.size_; off += kChunkBytes) {
    buf.resize(std::min<uint64_t>(kChunkBytes, w.size_ - off));
    if (absl::Status s = w.lease_.extent->file().PreadFull(buf.data(), buf.size(),
                                                          w.payload_offset() + off);
        !s.ok()) {
      return s;
    }
    hasher.Update(buf);
  }
  hasher.Finish(&trailer->chunk_checksums, &trailer->payload_checksum);
  return absl::OkStatus();
}

absl::StatusOr<Attr> Engine::Commit(FileWriter& w, uint64_t parent,
                                    absl::string_view name) {
  if (absl::Status s = ValidateName(name); !s.ok()) return s;
  std::lock_guard writer_lock(w.mu_);
  if (w.committed_ || w.released_) {
    return ErrnoError(EBADF, "file is already committed");
  }
  const Extent& extent = *w.lease_.extent;
  ValidRecord record;
  RecordHeader& h = record.header;
  h.ino = w.ino_;
  h.payload_bytes = w.size_;
  h.created_ns = w.created_ns_;
  h.mode = w.mode_;
  h.extent_id = extent.id();
  h.record_offset = w.lease_.tail;
  h.node_id = backing_->layout().node_id;
  if (absl::Status s = FinishPayload(w, &record.trailer); !s.ok()) return s;
  if (absl::Status s = CheckIndexRoom(); !s.ok()) return s;
  // The trailer's footer repeats the seq, so it is written once seq is known;
  // the header goes last, making the record valid in one step.
  std::lock_guard lock(mu_);
  if (absl::Status s = CheckWritable(); !s.ok()) return s;
  if (absl::StatusOr<Inode> d = GetDirLocked(parent); !d.ok()) return d.status();
  absl::StatusOr<Attr> existing = Lookup(parent, name);
  if (existing.ok() && existing->is_dir) {
    return ErrnoError(EISDIR, absl::StrCat("'", name, "' is a directory"));
  }
  absl::StatusOr<std::string> dir_path = PathOfLocked(parent);
  if (!dir_path.ok()) return dir_path.status();
  h.path = JoinPath(*dir_path, name);
  if (absl::Status s = ValidatePath(h.path); !s.ok()) return s;
  h.seq = meta_.next_seq;
  // Later than the version it replaces (another node's, whose clock may be
  // ahead), so that every node keeps this one.
  h.committed_ns = std::max(Now(), existing.ok() ? existing->ctime_ns + 1 : 0);
  const std::string trailer = EncodeRecordTrailer(h, record.trailer);
  if (absl::Status s = extent.file().PwriteFull(trailer, h.trailer_offset()); !s.ok()) {
    return s;
  }
  if (options_.sync_commits) {
    if (absl::Status s = extent.file().DataSync(); !s.ok()) return s;
  }
  CrashPoint("commit.before_header");
  w.header_attempted_ = true;
  if (absl::Status s = extent.file().PwriteFull(EncodeRecordHeader(h), h.record_offset);
      !s.ok()) {
    return s;  // the writer's abandonment overwrites whatever landed
  }
  if (options_.sync_commits) {
    if (absl::Status s = extent.file().DataSync(); !s.ok()) return s;
  } else if (writeback_kicker_) {
    writeback_kicker_->Kick(w.lease_.extent, h.trailer_offset(), trailer.size());
    writeback_kicker_->Kick(w.lease_.extent, h.record_offset, kRecordHeaderBytes);
  }
  CrashPoint("commit.after_header");
  const uint64_t seq_before = meta_.next_seq;
  absl::Status s = CommitEntryLocked(CommitEntryFor(h), &record);
  if (!s.ok() && meta_.next_seq == seq_before) {
    return s;  // not journalled: abandonment invalidates the header
  }
  // Journalled (even if the index update failed): the record is committed.
  w.committed_ = true;
  w.released_ = true;
  ReleaseReservation(w.reserved_);
  pool_->Release(std::move(w.lease_), h.next_record_offset());
  if (!s.ok()) return s;
  ++stats_.commits;
  if (options_.background_eviction &&
      stored_total_ + inflight_bytes_ >
          static_cast<uint64_t>(static_cast<double>(limit_bytes_) * options_.high_watermark)) {
    KickEvictor();
  }
  stats_.bytes_committed += h.payload_bytes;
  absl::StatusOr<std::optional<Inode>> inode = index_->GetChild(parent, name);
  if (!inode.ok()) return inode.status();
  if (!*inode) return absl::InternalError("file vanished after commit");
  return ToAttr(**inode);
}

void Engine::AbandonWriter(FileWriter& w) {
  std::lock_guard writer_lock(w.mu_);
  if (w.released_) return;
  w.released_ = true;
  ++stats_.aborted_writes;
  ReleaseReservation(w.reserved_);
  const uint64_t start = w.lease_.tail;
  if (w.high_water_ == 0 && !w.header_attempted_) {
    // Nothing reached the extent: the next record reuses the space.
    pool_->Release(std::move(w.lease_), start);
    return;
  }
  // Leave a skip marker so recovery scans can hop over the abandoned bytes;
  // they stay dead (never reused, so no stale bytes ever show through).
  const uint64_t next = AlignUp(w.payload_offset() + w.high_water_);
  const Extent& extent = *w.lease_.extent;
  absl::Status s = extent.file().PwriteFull(EncodeSkipMarker(extent.id(), start, next), start);
  std::lock_guard lock(mu_);
  ExtentState es = extent_states_[extent.id()];
  es.dead_bytes += next - start;
  es.committed_end = std::max(es.committed_end, next);
  if (!s.ok()) {
    // Without a marker the scan would stop here: keep the extent out of use.
    Log(absl::StrCat("could not mark abandoned bytes in extent ", extent.id(),
                     ": ", s.message(), "; sealing it"));
    es.sealed = true;
    // A full disk may also have cut the payload short of `next`, where the
    // extent's state now ends: recovery would take the missing tail for
    // damage. Extending the file is sparse, so it needs no free space.
    absl::StatusOr<uint64_t> size = extent.file().Size();
    if (size.ok() && *size < next) (void)::ftruncate(extent.file().fd(), static_cast<off_t>(next));
  }
  es.sealed = es.sealed || next >= extent_target_bytes_;
  IndexBatch batch(index_.get());
  PutExtentLocked(extent.id(), es, &batch);
  if (failure_.empty()) {
    // The marker's payload bytes come back after the grace period too.
    if (s.ok() && next > start + kBlockAlign) {
      QueueReclaimLocked({Now() + options_.reclaim_grace_ns, extent.id(), start, next},
                         &batch);
    }
    (void)index_->Write(&batch);
  }
  if (!es.sealed) pool_->Release(std::move(w.lease_), next);
}

absl::StatusOr<std::unique_ptr<FileReader>> Engine::OpenReader(uint64_t ino) {
  absl::StatusOr<std::optional<Inode>> inode = index_->GetInode(ino);
  if (!inode.ok()) return inode.status();
  if (!*inode) return NotFound(absl::StrCat("inode ", ino));
  if ((*inode)->is_dir) return ErrnoError(EISDIR, absl::StrCat("inode ", ino, " is a directory"));
  if (!(*inode)->owner.empty()) {
    // Another node's record: read from its extent, which it reclaims only a
    // grace period after the file left every namespace (docs/format.md).
    absl::StatusOr<std::shared_ptr<Extent>> extent =
        PeerExtents((*inode)->owner)->Get((*inode)->extent_id);
    if (!extent.ok()) {
      return ErrnoError(EIO, absl::StrCat("inode ", ino, " (node ", (*inode)->owner,
                                          "): ", extent.status().message()));
    }
    return std::unique_ptr<FileReader>(
        new FileReader(this, *std::move(extent), **inode, nullptr));
  }
  absl::StatusOr<std::shared_ptr<Extent>> extent = extents_->Get((*inode)->extent_id);
  if (!extent.ok()) {
    // Evicted since the lookup, and its extent removed with its last record:
    // a clean miss, not an I/O error.
    absl::StatusOr<std::optional<Inode>> now = index_->GetInode(ino);
    if (now.ok() && (!*now || (*now)->extent_id != (*inode)->extent_id ||
                     (*now)->record_offset != (*inode)->record_offset)) {
      return NotFound(absl::StrCat("inode ", ino, " (evicted while opening)"));
    }
    return ErrnoError(EIO, absl::StrCat("inode ", ino, ": ", extent.status().message()));
  }
  // Register before checking that the version is still current: reclaim
  // checks registrations only after the index retired the record, so
  // either this sees the retirement or reclaim sees the reader.
  open_records_->Opened((*inode)->extent_id, (*inode)->record_offset);
  std::unique_ptr<FileReader> reader(
      new FileReader(this, *std::move(extent), **inode, open_records_));
  absl::StatusOr<std::optional<Inode>> now = index_->GetInode(ino);
  if (!now.ok()) return now.status();
  if (!*now || (*now)->extent_id != reader->inode_.extent_id ||
      (*now)->record_offset != reader->inode_.record_offset) {
    return NotFound(absl::StrCat("inode ", ino, " (replaced or evicted while opening)"));
  }
  return reader;
}

std::map<uint64_t, ExtentState> Engine::ExtentStates() {
  std::lock_guard lock(mu_);
  return extent_states_;
}

// ---------------------------------------------------------------- paths

absl::StatusOr<Attr> Engine::Stat(absl::string_view path) {
  absl::StatusOr<Attr> at = GetAttr(kRootIno);
  for (absl::string_view part : Components(path)) {
    if (!at.ok()) return at;
    at = Lookup(at->ino, part);
  }
  return at;
}

absl::StatusOr<std::vector<DirUsage>> Engine::Usage(absl::string_view path,
                                                    int max_depth) {
  absl::StatusOr<Attr> at = Stat(path);
  if (!at.ok()) return at.status();
  absl::StatusOr<Inode> inode = GetInode(at->ino);
  if (!inode.ok()) return inode.status();
  std::string clean;
  for (absl::string_view part : Components(path)) {
    clean = clean.empty() ? std::string(part) : absl::StrCat(clean, "/", part);
  }
  return ComputeUsage(*index_, *inode, clean, max_depth);
}

absl::StatusOr<Attr> Engine::MkdirAll(absl::string_view path, uint32_t mode) {
  absl::StatusOr<Attr> at = GetAttr(kRootIno);
  for (absl::string_view part : Components(path)) {
    if (!at.ok()) return at;
    uint64_t parent = at->ino;
    at = Lookup(parent, part);
    if (!at.ok() && ErrnoOf(at.status()) == ENOENT) {
      at = Mkdir(parent, part, mode);
      if (!at.ok() && ErrnoOf(at.status()) == EEXIST) at = Lookup(parent, part);
    }
    if (at.ok() && !at->is_dir) {
      return ErrnoError(ENOTDIR, absl::StrCat("'", part, "' is not a directory"));
    }
  }
  return at;
}

absl::StatusOr<Attr> Engine::PutFile(absl::string_view path, absl::string_view data) {
  std::vector<absl::string_view> parts = Components(path);
  if (parts.empty()) return ErrnoError(EINVAL, "empty path");
  std::string dir;
  for (size_t i = 0; i + 1 < parts.size(); ++i) dir = JoinPath(dir, parts[i]);
  absl::StatusOr<Attr> parent = MkdirAll(dir);
  if (!parent.ok()) return parent;
  absl::StatusOr<std::unique_ptr<FileWriter>> w = CreateWriter();
  if (!w.ok()) return w.status();
  if (absl::Status s = (*w)->Write(0, data); !s.ok()) return s;
  return Commit(**w, parent->ino, parts.back());
}

absl::StatusOr<std::string> Engine::GetFile(absl::string_view path) {
  absl::StatusOr<Attr> attr = Stat(path);
  if (!attr.ok()) return attr.status();
  absl::StatusOr<std::unique_ptr<FileReader>> r = OpenReader(attr->ino);
  if (!r.ok()) return r.status();
  std::string out((*r)->size(), '\0');
  absl::StatusOr<size_t> n = (*r)->Read(0, out.size(), out.data());
  if (!n.ok()) return n.status();
  out.resize(*n);
  return out;
}

absl::StatusOr<std::vector<TreeEntry>> Engine::ListTree() {
  std::unordered_map<uint64_t, Inode> inodes;
  absl::Status s = index_->ForEachInode([&](const Inode& n) {
    inodes.emplace(n.ino, n);
    return true;
  });
  if (!s.ok()) return s;
  std::vector<TreeEntry> out;
  for (const auto& [ino, n] : inodes) {
    if (ino == kRootIno) continue;
    std::vector<absl::string_view> names;
    for (const Inode* at = &n; at->ino != kRootIno;) {
      names.push_back(at->name);
      auto it = inodes.find(at->parent);
      if (it == inodes.end() || names.size() > 4096) break;
      at = &it->second;
    }
    std::string path;
    for (auto it = names.rbegin(); it != names.rend(); ++it) path = JoinPath(path, *it);
    out.push_back({std::move(path), n});
  }
  std::sort(out.begin(), out.end(),
            [](const TreeEntry& a, const TreeEntry& b) { return a.path < b.path; });
  return out;
}

}  // namespace kvfs
