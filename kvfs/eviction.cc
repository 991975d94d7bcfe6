// Capacity management: the limit (capacity, lowered to keep a free-space
// floor on the backing filesystem), writers waiting for room, eviction of
// the least recently accessed files by whole rank groups, and reclaim of
// retired records' space once their grace period is over.
//
// Space comes back without copying: a retired record's header is replaced
// by a skip marker (scans hop over it) and the rest of it is punched out of
// the extent file; an extent that holds nothing live any more is removed.
// Write amplification is 1. On a filesystem without hole punching only the
// removal of dead extents returns space.
#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "kvfs/engine.h"
#include "kvfs/errors.h"
#include "kvfs/rank_groups.h"

namespace kvfs {
namespace {

constexpr int64_t kEvictorTickNs = 1'000'000'000;
constexpr size_t kCandidateBatch = 256;

struct FsSpace {
  uint64_t total = 0;
  uint64_t available = 0;
};

absl::StatusOr<FsSpace> BackingSpace(const std::string& dir) {
  struct statvfs st;
  if (::statvfs(dir.c_str(), &st) != 0) {
    return ErrnoError(errno, absl::StrCat("statvfs ", dir, ": ", std::strerror(errno)));
  }
  return FsSpace{static_cast<uint64_t>(st.f_blocks) * st.f_frsize,
                 static_cast<uint64_t>(st.f_bavail) * st.f_frsize};
}

// --capacity, or 80% of the backing filesystem.
uint64_t ConfiguredCapacity(const EngineOptions& options, const FsSpace& fs) {
  return options.capacity_bytes != 0 ? options.capacity_bytes : fs.total / 10 * 8;
}

bool UnderPrefix(absl::string_view path, absl::string_view prefix) {
  while (absl::ConsumePrefix(&prefix, "/")) {
  }
  while (absl::ConsumeSuffix(&prefix, "/")) {
  }
  if (prefix.empty()) return true;
  return path == prefix || (absl::StartsWith(path, prefix) && path.size() > prefix.size() &&
                            path[prefix.size()] == '/');
}

}  // namespace

// ---------------------------------------------------------------- limits

absl::Status Engine::InitCapacity() {
  if (options_.low_watermark <= 0 || options_.high_watermark > 1 ||
      options_.low_watermark > options_.high_watermark) {
    return ErrnoError(EINVAL, absl::StrCat("watermarks must satisfy 0 < low <= high <= 1 "
                                           "(low ", options_.low_watermark, ", high ",
                                           options_.high_watermark, ")"));
  }
  absl::StatusOr<FsSpace> fs = BackingSpace(options_.backing_dir);
  if (!fs.ok()) return fs.status();
  capacity_bytes_ = ConfiguredCapacity(options_, *fs);
  min_free_bytes_ = options_.min_free_bytes != UINT64_MAX ? options_.min_free_bytes
                                                          : fs->total / 20;
  RefreshLimit();
  return absl::OkStatus();
}

absl::Status Engine::InitExtentTarget() {
  extent_target_bytes_ = options_.extent_bytes;
  if (backing_->CanPunchHoles()) return absl::OkStatus();
  // Without hole punching the space of evicted files comes back only when
  // whole extents die. Extents of a 32nd of the capacity (16 MiB at least,
  // but a quarter of it at most) let eviction free space in steps that
  // small, rather than all of it at once, or nothing at all (with 1 GiB
  // extents and a smaller capacity, the one extent being written to never
  // dies).
  punch_unsupported_ = true;
  absl::StatusOr<FsSpace> fs = BackingSpace(options_.backing_dir);
  if (!fs.ok()) return fs.status();
  const uint64_t capacity = ConfiguredCapacity(options_, *fs);
  const uint64_t step =
      std::max<uint64_t>(capacity / 32, std::min<uint64_t>(16 << 20, capacity / 4));
  extent_target_bytes_ = AlignUp(std::min(options_.extent_bytes, step));
  Log(absl::StrCat("the backing filesystem cannot punch holes: space of evicted files comes "
                   "back only when whole extents are dead; extents are sealed at ",
                   extent_target_bytes_ >> 20, " MiB"));
  return absl::OkStatus();
}

void Engine::RefreshLimit() {
  uint64_t limit = capacity_bytes_;
  if (absl::StatusOr<FsSpace> fs = BackingSpace(options_.backing_dir); fs.ok()) {
    // kvfs may grow by what is free beyond the floor; what it already
    // stores counts as its own.
    const uint64_t grow = fs->available > min_free_bytes_ ? fs->available - min_free_bytes_ : 0;
    limit = std::min(limit, stored_total_ + inflight_bytes_ + grow);
  }
  limit_bytes_ = limit;
}

CapacityStatus Engine::Capacity() {
  CapacityStatus c;
  c.capacity = capacity_bytes_;
  c.limit = limit_bytes_;
  c.inflight = inflight_bytes_;
  c.used = stored_total_ + c.inflight;
  c.reclaimable = ReclaimableBytes();
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, e] : extent_states_) c.live += e.live_bytes;
  }
  const auto share = [&](double f) {
    return static_cast<uint64_t>(static_cast<double>(c.limit) * f);
  };
  // Writers fill the room above the high watermark while the space evicted
  // for them waits out its grace period; where they store more than that
  // room in one period, both watermarks move down, or they would wait. At
  // most to half the limit: writers faster than that wait rather than
  // empty the cache.
  const uint64_t written = recent_writes_.Sum(Now());
  c.write_room = std::min(c.limit / 2, 2 * written);
  c.high = std::min(share(options_.high_watermark), c.limit - c.write_room);
  const uint64_t band = share(options_.high_watermark) - share(options_.low_watermark);
  c.low = c.high - std::min(c.high, band);
  return c;
}

uint64_t Engine::ReclaimableBytes() {
  if (!punch_unsupported_) return queued_bytes_;
  // Without hole punching only whole dead extents come back (DropDeadExtents
  // seals one still open for appending once nothing in it is live).
  std::lock_guard lock(mu_);
  uint64_t bytes = 0;
  for (const auto& [id, e] : extent_states_) {
    if (WholeExtentDead(e)) bytes += e.stored_bytes();
  }
  return bytes;
}

bool Engine::WholeExtentDead(const ExtentState& e) const {
  return e.live_bytes == 0 && (e.sealed || (punch_unsupported_ && e.dead_bytes > 0));
}

// The index's disk is the node's own (local), not the backing directory's.
// Were it to fill, RocksDB's log writes would fail and the index fall behind
// the journal until a remount (and Debian's RocksDB 7.8, built with
// assertions, aborts the daemon on the write after a failed log append). So
// new files are refused while that disk has less free than 1% of its size,
// at most 256 MiB: room for the index's flushes and compactions, and for the
// small changes that go on (unlinks, renames, access times, other nodes'
// files). Stores work again by themselves once there is room. Where the
// index shares the backing directory's filesystem, kvfs's own floor there
// (--min-free, 5% by default) is reached first: eviction makes room before
// this refuses anything.
absl::Status Engine::CheckIndexRoom() {
  struct statvfs st;
  if (::statvfs(index_dir_.c_str(), &st) != 0) return absl::OkStatus();  // cannot tell
  const uint64_t size = static_cast<uint64_t>(st.f_blocks) * st.f_frsize;
  const uint64_t avail = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  const uint64_t floor = std::min<uint64_t>(uint64_t{256} << 20, size / 100);
  const bool full = avail < floor;
  if (index_full_.exchange(full) != full) {
    Log(full ? absl::StrCat("the index's filesystem (", index_dir_, ") has ", avail,
                            " bytes free, less than the ", floor,
                            " kvfs keeps free there: new files fail with ENOSPC until it "
                            "has room again")
             : absl::StrCat("the index's filesystem (", index_dir_,
                            ") has room again: new files are stored again"));
  }
  if (!full) return absl::OkStatus();
  return ErrnoError(ENOSPC, absl::StrCat("no space for the index: its filesystem (",
                                         index_dir_, ") has ", avail,
                                         " bytes free, less than the ", floor,
                                         " kvfs keeps free there"));
}

absl::Status Engine::ReserveSpace(uint64_t bytes) {
  const int64_t deadline = Now() + options_.space_wait_ns;
  bool waited = false;
  bool evicted_inline = false;
  // While it waits, its bytes count for eviction: below the high watermark
  // a store larger than the room left would otherwise evict nothing.
  absl::Cleanup not_waiting = [&] {
    if (waited) waiting_bytes_ -= bytes;
  };
  for (;;) {
    uint64_t inflight = inflight_bytes_.load();
    if (stored_total_ + inflight + bytes <= limit_bytes_) {
      if (inflight_bytes_.compare_exchange_weak(inflight, inflight + bytes)) {
        recent_writes_.Add(Now(), bytes);
        return absl::OkStatus();
      }
      continue;
    }
    if (!waited) {
      waited = true;
      ++stats_.space_waits;
      waiting_bytes_ += bytes;
    }
    if (Now() >= deadline) break;
    if (options_.background_eviction) {
      KickEvictor();
      std::unique_lock lock(evictor_mu_);
      space_cv_.wait_for(lock, std::chrono::milliseconds(50));
    } else if (!evicted_inline) {
      // No evictor thread: evict and reclaim here, once.
      evicted_inline = true;
      RefreshLimit();
      if (absl::StatusOr<uint64_t> evicted = RunEvictionPass(); !evicted.ok()) {
        return evicted.status();
      }
      if (absl::Status s = ReclaimDue(); !s.ok()) return s;
    } else {
      break;
    }
  }
  ++stats_.space_refusals;
  const CapacityStatus c = Capacity();
  return ErrnoError(ENOSPC, absl::StrCat(
      "no space: kvfs uses ", c.used, " of its ", c.limit, "-byte limit (capacity ",
      c.capacity, ", ", c.inflight, " bytes being written, ", c.reclaimable,
      " waiting for readers' grace period) and found nothing more to evict"));
}

void Engine::ReleaseReservation(uint64_t bytes) {
  inflight_bytes_ -= std::min<uint64_t>(bytes, inflight_bytes_);
}

// ---------------------------------------------------------------- evictor

// The listener runs under listener_mu_, so once SetEvictionListener returns
// no call of the old one is still running (the FUSE server's session may go).
void Engine::SetEvictionListener(std::function<void(const std::vector<EvictedFile>&)> fn) {
  std::lock_guard lock(listener_mu_);
  eviction_listener_ = std::move(fn);
}

void Engine::NotifyEvicted(const std::vector<EvictedFile>& files) {
  if (files.empty()) return;
  std::lock_guard lock(listener_mu_);
  if (eviction_listener_) eviction_listener_(files);
}

void Engine::StartEvictor() {
  if (!options_.background_eviction) return;
  evictor_ = std::thread([this] { EvictorLoop(); });
}

void Engine::StopEvictor() {
  {
    std::lock_guard lock(evictor_mu_);
    evictor_stop_ = true;
  }
  evictor_cv_.notify_all();
  space_cv_.notify_all();
  if (evictor_.joinable()) evictor_.join();
}

void Engine::KickEvictor() {
  {
    std::lock_guard lock(evictor_mu_);
    evictor_kicked_ = true;
  }
  evictor_cv_.notify_one();
}

void Engine::EvictorLoop() {
  std::unique_lock lock(evictor_mu_);
  while (!evictor_stop_) {
    evictor_cv_.wait_for(lock, std::chrono::nanoseconds(kEvictorTickNs),
                         [&] { return evictor_stop_ || evictor_kicked_; });
    if (evictor_stop_) break;
    evictor_kicked_ = false;
    lock.unlock();
    RefreshLimit();
    absl::Status s = ReclaimDue();
    absl::StatusOr<uint64_t> evicted = s.ok() ? RunEvictionPass() : s;
    if (!evicted.ok() && !read_only()) {
      Log(absl::StrCat("eviction: ", evicted.status().message()));
    }
    if (evicted.ok() && *evicted > 0) (void)ReclaimDue();  // with no grace, at once
    RefreshLimit();
    space_cv_.notify_all();
    lock.lock();
  }
}

// ---------------------------------------------------------------- eviction

absl::StatusOr<uint64_t> Engine::RunEvictionPass() {
  // Least recently accessed first: with every access known.
  if (absl::Status s = FlushAccessTimes(); !s.ok()) return s;
  std::lock_guard pass(evict_mu_);
  const CapacityStatus c = Capacity();
  // Bytes already retired come back by themselves; count them as gone.
  auto projected = [&] {
    const uint64_t used = stored_total_ + inflight_bytes_ + waiting_bytes_;
    const uint64_t coming_back = ReclaimableBytes();
    return used > coming_back ? used - coming_back : 0;
  };
  if (projected() <= c.high) return 0;
  const int64_t started = Now();
  ++stats_.eviction_passes;
  uint64_t evicted = 0;
  std::vector<EvictedFile> gone;
  while (projected() > c.low) {
    std::vector<std::pair<int64_t, uint64_t>> candidates;
    if (absl::Status s = index_->ForEachByAtime(evict_cursor_s_, 0,
                                                [&](int64_t atime_s, uint64_t ino) {
          candidates.emplace_back(atime_s, ino);
          return candidates.size() < kCandidateBatch;
        });
        !s.ok()) {
      return s;
    }
    if (candidates.empty()) break;  // nothing left
    const uint64_t before = evicted;
    for (const auto& [atime_s, ino] : candidates) {
      if (projected() <= c.low) break;
      evict_cursor_s_ = atime_s;  // everything before this is gone
      std::lock_guard lock(mu_);
      if (absl::Status s = CheckWritable(); !s.ok()) return s;
      absl::StatusOr<uint64_t> bytes = EvictGroupLocked(ino, /*dry_run=*/false, &gone);
      if (!bytes.ok()) return bytes.status();
      evicted += *bytes;
    }
    if (evicted == before) break;  // the oldest entries are stale: give up this pass
  }
  stats_.eviction_ns += Now() - started;
  NotifyEvicted(gone);
  return evicted;
}

absl::StatusOr<std::vector<EvictedFile>> Engine::Evict(const EvictRequest& request) {
  if (absl::Status s = FlushAccessTimes(); !s.ok()) return s;  // --older-than reads them
  std::lock_guard pass(evict_mu_);
  const int64_t started = Now();
  const int64_t cutoff_s =
      request.older_than_ns >= 0 ? Index::AtimeBucket(Now() - request.older_than_ns)
                                 : INT64_MAX;
  std::vector<EvictedFile> out;
  std::set<uint64_t> seen;  // a dry run lists a group once
  uint64_t bytes_done = 0;
  bool more = true;
  int64_t resume_s = evict_cursor_s_;  // everything before it is gone already
  uint64_t resume_ino = 0;
  while (more && bytes_done < request.max_bytes) {
    std::vector<std::pair<int64_t, uint64_t>> candidates;
    // Resume after the last candidate: skipped files stay in the order.
    if (absl::Status s = index_->ForEachByAtime(resume_s, resume_ino + 1,
                                                [&](int64_t atime_s, uint64_t ino) {
          if (atime_s > cutoff_s) return false;  // accessed since the cutoff
          candidates.emplace_back(atime_s, ino);
          return candidates.size() < kCandidateBatch;
        });
        !s.ok()) {
      return s;
    }
    more = candidates.size() == kCandidateBatch;
    for (const auto& [atime_s, ino] : candidates) {
      resume_s = atime_s;
      resume_ino = ino;
      if (bytes_done >= request.max_bytes) break;
      if (seen.count(ino)) continue;
      std::lock_guard lock(mu_);
      if (!request.dry_run) {
        if (absl::Status s = CheckWritable(); !s.ok()) return s;
      }
      if (!request.prefix.empty()) {
        absl::StatusOr<std::string> path = PathOfLocked(ino);
        if (!path.ok() || !UnderPrefix(*path, request.prefix)) continue;
      }
      const size_t first = out.size();
      absl::StatusOr<uint64_t> bytes = EvictGroupLocked(ino, request.dry_run, &out);
      if (!bytes.ok()) return bytes.status();
      bytes_done += *bytes;
      for (size_t i = first; i < out.size(); ++i) seen.insert(out[i].ino);
    }
  }
  if (!request.dry_run) {
    stats_.eviction_ns += Now() - started;
    NotifyEvicted(out);
    KickEvictor();
  }
  return out;
}

absl::StatusOr<uint64_t> Engine::EvictGroupLocked(uint64_t ino, bool dry_run,
                                                  std::vector<EvictedFile>* out) {
  absl::StatusOr<std::optional<Inode>> victim = index_->GetInode(ino);
  if (!victim.ok()) return victim.status();
  if (!*victim || (*victim)->is_dir) return 0;  // gone since the scan
  absl::StatusOr<std::string> path = PathOfLocked(ino);
  if (!path.ok()) return path.status();

  // The group: the same relative path below every sibling rank directory.
  std::vector<std::pair<uint64_t, std::string>> members;  // rank, path
  if (std::optional<RankComponent> rank = FindRankComponent(*path)) {
    std::vector<absl::string_view> parts = absl::StrSplit(*path, '/', absl::SkipEmpty());
    std::string parent_path;
    for (size_t i = 0; i < rank->index; ++i) {
      parent_path = parent_path.empty() ? std::string(parts[i])
                                        : absl::StrCat(parent_path, "/", parts[i]);
    }
    uint64_t dir = kRootIno;
    for (absl::string_view part : absl::StrSplit(parent_path, '/', absl::SkipEmpty())) {
      absl::StatusOr<std::optional<Inode>> d = index_->GetChild(dir, part);
      if (!d.ok()) return d.status();
      if (!*d) break;
      dir = (*d)->ino;
    }
    if (absl::Status s = index_->ListDir(dir, rank->prefix, [&](const Inode& sibling) {
          if (!absl::StartsWith(sibling.name, rank->prefix)) return false;
          if (std::optional<uint64_t> r = RankOf(sibling.name, rank->prefix);
              r && sibling.is_dir) {
            members.emplace_back(*r, WithRank(*path, *rank, *r));
          }
          return true;
        });
        !s.ok()) {
      return s;
    }
    std::sort(members.begin(), members.end());
  }
  if (members.empty()) members.emplace_back(0, *path);

  uint64_t bytes = 0;
  for (const auto& [rank, member_path] : members) {
    absl::StatusOr<std::pair<uint64_t, std::string>> at =
        ResolveParentLocked(member_path, /*create_missing=*/false);
    if (!at.ok()) continue;  // this rank never stored the block
    absl::StatusOr<std::optional<Inode>> file = index_->GetChild(at->first, at->second);
    if (!file.ok()) return file.status();
    // Another node's copy of the block is that node's to evict.
    if (!*file || (*file)->is_dir || !(*file)->owner.empty()) continue;
    const Inode& f = **file;
    if (!dry_run) {
      if (absl::Status s = UnlinkForEvictionLocked(f, member_path); !s.ok()) return s;
      ++stats_.evicted_files;
      stats_.evicted_bytes += f.size;
    }
    bytes += f.record_bytes();
    out->push_back({member_path, f.parent, f.name, f.ino, f.size, f.atime_ns});
  }
  return bytes;
}

absl::Status Engine::UnlinkForEvictionLocked(const Inode& inode, const std::string& path) {
  JournalEntry e = NewEntryLocked(JournalOp::kUnlink, inode.ino, path);
  e.extent_id = inode.extent_id;  // the version evicted (other nodes check)
  e.record_offset = inode.record_offset;
  CrashPoint("evict.before_journal");
  return CommitEntryLocked(e, nullptr);
}

// ---------------------------------------------------------------- reclaim

void OpenRecords::Opened(uint64_t extent_id, uint64_t offset) {
  std::lock_guard lock(mu_);
  ++open_[{extent_id, offset}];
}

void OpenRecords::Closed(uint64_t extent_id, uint64_t offset) {
  std::lock_guard lock(mu_);
  auto it = open_.find({extent_id, offset});
  if (it != open_.end() && --it->second == 0) open_.erase(it);
}

bool OpenRecords::IsOpen(uint64_t extent_id, uint64_t offset) {
  std::lock_guard lock(mu_);
  return open_.count({extent_id, offset}) > 0;
}

bool OpenRecords::AnyIn(uint64_t extent_id) {
  std::lock_guard lock(mu_);
  auto it = open_.lower_bound({extent_id, 0});
  return it != open_.end() && it->first.first == extent_id;
}

absl::Status Engine::ReclaimDue() {
  std::lock_guard pass(evict_mu_);
  std::vector<ReclaimEntry> due;
  {
    std::lock_guard lock(mu_);
    const int64_t now = Now();
    for (const ReclaimEntry& r : reclaim_queue_) {
      if (r.due_ns > now || due.size() >= 4096) break;
      due.push_back(r);
    }
  }
  for (const ReclaimEntry& r : due) {
    if (open_records_->IsOpen(r.extent_id, r.offset)) continue;  // a reader still uses it
    uint64_t punched = 0;
    absl::StatusOr<std::shared_ptr<Extent>> extent = extents_->Get(r.extent_id);
    if (extent.ok() && r.end > r.offset + kBlockAlign) {
      // The marker first: a scan must never meet a punched (zeroed) header.
      absl::Status s = (*extent)->file().PwriteFull(
          EncodeSkipMarker(r.extent_id, r.offset, r.end), r.offset);
      if (!s.ok()) {
        Log(absl::StrCat("reclaim: cannot mark extent ", r.extent_id, " offset ", r.offset,
                         ": ", s.message(), "; will retry"));
        continue;
      }
      CrashPoint("reclaim.after_marker");
      if (!punch_unsupported_) {
        if (::fallocate((*extent)->file().fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                        static_cast<off_t>(r.offset + kBlockAlign),
                        static_cast<off_t>(r.end - r.offset - kBlockAlign)) == 0) {
          punched = r.end - r.offset - kBlockAlign;
        } else if (errno == EOPNOTSUPP || errno == ENOSYS) {
          punch_unsupported_ = true;
          Log("the backing filesystem cannot punch holes: space of evicted files comes "
              "back only when whole extents are dead");
        } else {
          Log(absl::StrCat("reclaim: punching extent ", r.extent_id, " offset ", r.offset,
                           " failed: ", std::strerror(errno), "; its space stays used"));
        }
      }
    }
    CrashPoint("reclaim.before_index");
    std::lock_guard lock(mu_);
    if (!failure_.empty()) return CheckWritable();
    IndexBatch batch(index_.get());
    if (auto it = extent_states_.find(r.extent_id); it != extent_states_.end() && punched) {
      ExtentState es = it->second;
      es.reclaimed_bytes = std::min(es.dead_bytes, es.reclaimed_bytes + punched);
      PutExtentLocked(r.extent_id, es, &batch);
    }
    batch.DeleteReclaim(r);
    if (absl::Status s = index_->Write(&batch); !s.ok()) return s;
    if (reclaim_queue_.erase(r)) queued_bytes_ -= std::min<uint64_t>(queued_bytes_, r.punchable());
    if (auto q = queued_reclaims_.find(r.extent_id); q != queued_reclaims_.end()) {
      if (--q->second == 0) queued_reclaims_.erase(q);
    }
    stats_.reclaimed_bytes += punched;
  }
  return DropDeadExtents();
}

absl::Status Engine::DropDeadExtents() {
  std::vector<uint64_t> dead;
  {
    std::lock_guard lock(mu_);
    std::vector<uint64_t> to_seal;
    for (const auto& [id, e] : extent_states_) {
      if (!WholeExtentDead(e) || queued_reclaims_.count(id)) continue;
      // Nothing live in it, and its dead bytes cannot be punched: it stops
      // taking records (unless a writer holds it now) and goes.
      if (!e.sealed && !pool_->TakeIdle(id)) continue;
      if (!e.sealed) to_seal.push_back(id);
      dead.push_back(id);
    }
    if (!to_seal.empty()) {
      if (absl::Status s = CheckWritable(); !s.ok()) return s;
      IndexBatch batch(index_.get());
      for (uint64_t id : to_seal) {
        ExtentState sealed = extent_states_[id];
        sealed.sealed = true;
        PutExtentLocked(id, sealed, &batch);
      }
      if (absl::Status s = index_->Write(&batch); !s.ok()) return s;
    }
  }
  for (uint64_t id : dead) {
    if (open_records_->AnyIn(id)) continue;
    const std::string path = backing_->layout().ExtentPath(id);
    extents_->Forget(id);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      Log(absl::StrCat("cannot remove dead extent ", path, ": ", std::strerror(errno)));
      continue;
    }
    CrashPoint("drop.after_unlink");
    std::lock_guard lock(mu_);
    if (!failure_.empty()) return CheckWritable();
    IndexBatch batch(index_.get());
    ExtentState gone = extent_states_[id];
    stored_total_ -= std::min<uint64_t>(stored_total_, gone.stored_bytes());
    extent_states_.erase(id);
    batch.DeleteExtent(id);
    if (absl::Status s = index_->Write(&batch); !s.ok()) return s;
    ++stats_.dropped_extents;
  }
  return absl::OkStatus();
}

absl::Status Engine::QueueUnreferencedSpaceLocked() {
  // A rebuilt index knows which records are live but not which dead ones
  // still hold space: queue every gap between live records (re-marking and
  // re-punching a gap already returned costs nothing).
  std::vector<ReclaimEntry> stale;
  if (absl::Status s = index_->ForEachReclaim(INT64_MAX, [&](const ReclaimEntry& r) {
        stale.push_back(r);
        return true;
      });
      !s.ok()) {
    return s;
  }
  std::map<uint64_t, std::vector<std::pair<uint64_t, uint64_t>>> live;
  if (absl::Status s = index_->ForEachInode([&](const Inode& n) {
        if (!n.is_dir && n.owner.empty()) {
          live[n.extent_id].emplace_back(n.record_offset, n.record_offset + n.record_bytes());
        }
        return true;
      });
      !s.ok()) {
    return s;
  }
  IndexBatch batch(index_.get());
  for (const ReclaimEntry& r : stale) batch.DeleteReclaim(r);
  reclaim_queue_.clear();
  queued_reclaims_.clear();
  queued_bytes_ = 0;
  for (const auto& [id, state] : extent_states_) {
    std::vector<std::pair<uint64_t, uint64_t>>& records = live[id];
    std::sort(records.begin(), records.end());
    records.emplace_back(state.committed_end, state.committed_end);
    uint64_t at = kFileHeaderBytes;
    for (const auto& [start, end] : records) {
      if (start > at) {
        QueueReclaimLocked({Now(), id, at, start}, &batch);
      }
      at = std::max(at, AlignUp(end));
    }
  }
  return index_->Write(&batch);
}

}  // namespace kvfs
