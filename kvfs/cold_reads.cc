#include "kvfs/cold_reads.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "kvfs/checksum.h"
#include "kvfs/errors.h"
#include "kvfs/format.h"

namespace kvfs {
namespace {

#ifndef __NR_cachestat
#define __NR_cachestat 451  // the same number on every architecture
#endif

// The kernel's (include/uapi/linux/mman.h, Linux 6.5); Debian 12's headers
// predate it.
struct CachestatRange {
  uint64_t off;
  uint64_t len;
};
struct Cachestat {
  uint64_t nr_cache;
  uint64_t nr_dirty;
  uint64_t nr_writeback;
  uint64_t nr_evicted;
  uint64_t nr_recently_evicted;
};

// A window per open file's stream is enough (the kernel has at most two
// readahead windows of a file in flight); a few more cover READs that run
// out of order.
constexpr size_t kWindowsPerReader = 4;
// Released buffers kept for the next window rather than freed.
constexpr size_t kKeptFreeBuffers = 8;
// READs at least this large come from the kernel's readahead of a stream.
constexpr uint64_t kStreamingReadBytes = 128 << 10;

}  // namespace

bool RangeIsCached(const PosixFile& file, uint64_t offset, uint64_t len) {
  CachestatRange range{offset, len};
  Cachestat stat{};
  if (::syscall(__NR_cachestat, file.fd(), &range, &stat, 0) != 0) return true;
  return stat.nr_cache >= (len + kBlockAlign - 1) / kBlockAlign;
}

ColdReadPool::ColdReadPool(uint64_t window_bytes, uint64_t limit_bytes, int threads)
    : window_bytes_(window_bytes), limit_(limit_bytes), thread_count_(threads) {}

void ColdReadPool::Work() {
  std::unique_lock lock(mu_);
  for (;;) {
    queued_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    std::function<void(bool)> read = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    read(true);
    read = nullptr;  // its window's owner may go here: not under the lock
    lock.lock();
  }
}

ColdReadPool::~ColdReadPool() {
  Stop();
  for (char* b : free_) std::free(b);
}

void ColdReadPool::Stop() {
  std::deque<std::function<void(bool)>> dropped;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    dropped.swap(queue_);
  }
  queued_.notify_all();
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  for (std::function<void(bool)>& read : dropped) read(false);  // their windows fail
}

bool ColdReadPool::Submit(std::function<void(bool)> read) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    // Started at the first read ahead: most engines (fsck's, a node that
    // only stores) never read a cold stream.
    while (static_cast<int>(threads_.size()) < thread_count_) {
      threads_.emplace_back([this] { Work(); });
    }
    queue_.push_back(std::move(read));
  }
  queued_.notify_one();
  return true;
}

char* ColdReadPool::Acquire() {
  std::lock_guard lock(mu_);
  if (!free_.empty()) {
    char* b = free_.back();
    free_.pop_back();
    return b;
  }
  if (allocated_ + window_bytes_ > limit_) return nullptr;
  // 2 MiB aligned, so that transparent huge pages can back it: the disk's
  // requests are then not split at every 4 KiB page.
  constexpr size_t kHugePage = 2 << 20;
  void* b = std::aligned_alloc(kHugePage, AlignUp(window_bytes_, kHugePage));
  if (b == nullptr) return nullptr;
  ::madvise(b, window_bytes_, MADV_HUGEPAGE);
  allocated_ += window_bytes_;
  return static_cast<char*>(b);
}

void ColdReadPool::Release(char* buffer) {
  std::lock_guard lock(mu_);
  if (free_.size() < kKeptFreeBuffers) {
    free_.push_back(buffer);
    return;
  }
  std::free(buffer);
  allocated_ -= window_bytes_;
}

ColdWindows::ColdWindows(ColdSource source, std::shared_ptr<ColdReadPool> pool)
    : source_(std::move(source)),
      pool_(std::move(pool)),
      window_chunks_(std::max<uint64_t>(1, pool_->window_bytes() / kChunkBytes)),
      chunks_(ChunkCount(source_.size)) {}

ColdWindows::~ColdWindows() {
  for (Window& w : windows_) pool_->Release(w.bytes);
}

ColdWindows::Window* ColdWindows::FindLocked(uint64_t chunk) {
  for (Window& w : windows_) {
    if (chunk >= w.first && chunk < w.end) return &w;
  }
  return nullptr;
}

void ColdWindows::DropLocked(Window* w) {
  pool_->Release(w->bytes);
  windows_.remove_if([w](const Window& o) { return &o == w; });
}

bool ColdWindows::Copy(uint64_t chunk, uint64_t offset_in_chunk, uint64_t len, char* out,
                       uint64_t read_bytes) {
  std::unique_lock lock(mu_);
  Window* w = FindLocked(chunk);
  if (w == nullptr) {
    w = StartLocked(chunk, read_bytes);
    if (w == nullptr) return false;
    // Pinned from its start (users 1), so that nothing drops it meanwhile.
    ReadAheadLocked(w);
    lock.unlock();
    const bool read = Load(*w);
    lock.lock();
    FinishLocked(w, read);
  } else {
    ++w->users;
    if (!w->read_ahead) ReadAheadLocked(w);
    loaded_.wait(lock, [w] { return !w->loading; });
  }
  const uint64_t k = chunk - w->first;
  const bool check = w->state[k] == kUnchecked;
  bool good = w->state[k] != kBad;
  if (good) {
    lock.unlock();
    // Each chunk is verified by the first READ that wants it, outside the
    // lock: a window's chunks are checked in parallel.
    const char* bytes = w->bytes + k * kChunkBytes;
    if (check && source_.verify) {
      const uint64_t n = std::min(kChunkBytes, source_.size - chunk * kChunkBytes);
      good = ChunkChecksum(absl::string_view(bytes, n)) == source_.chunk_checksums[chunk];
    }
    if (good) std::memcpy(out, bytes + offset_in_chunk, len);
    lock.lock();
    if (check) w->state[k] = good ? kGood : kBad;
    if (good) {
      // Pages, not bytes: the kernel may ask for a page twice.
      const uint64_t at = k * kChunkBytes + offset_in_chunk;  // in the window
      for (uint64_t p = at / kBlockAlign; p < AlignUp(at + len) / kBlockAlign; ++p) {
        if (!w->copied[p]) {
          w->copied[p] = true;
          ++w->pages_copied;
        }
      }
    }
  }
  --w->users;
  if (w->users == 0 && (w->pages_copied == w->copied.size() ||
                        std::all_of(w->state.begin(), w->state.end(),
                                    [](uint8_t s) { return s == kBad; }))) {
    // Every byte handed out once (the kernel caches them now), or nothing
    // to hand out.
    DropLocked(w);
  }
  return good;
}

ColdWindows::Window* ColdWindows::StartLocked(uint64_t chunk, uint64_t read_bytes) {
  if (!direct_ok_ || source_.extent->DirectFile() == nullptr) return nullptr;
  // Streaming: the kernel asks for large pieces, in the file's first window
  // or near this reader's last one (its READs arrive in any order: chunk 1
  // may come before chunk 0). Anything else is a read at a random offset,
  // for which a window would read bytes nobody asked for.
  const bool near = chunk < window_chunks_ ||
                    (chunk + window_chunks_ >= last_end_ && chunk <= last_end_ + window_chunks_);
  if (read_bytes < kStreamingReadBytes || !near) return nullptr;
  return AddLocked(chunk, 1);
}

ColdWindows::Window* ColdWindows::AddLocked(uint64_t chunk, int users) {
  const uint64_t at = source_.payload_offset + chunk * kChunkBytes;
  if (RangeIsCached(source_.extent->file(), at,
                    std::min(kChunkBytes, source_.size - chunk * kChunkBytes))) {
    return nullptr;
  }
  uint64_t end = std::min(chunks_, chunk + window_chunks_);
  for (const Window& other : windows_) {  // no chunk in two windows
    if (other.first > chunk) end = std::min(end, other.first);
  }
  if (windows_.size() >= kWindowsPerReader) {
    // The idle window furthest back in the stream makes room.
    Window* idle = nullptr;
    for (Window& o : windows_) {
      if (!o.loading && o.users == 0 && (idle == nullptr || o.first < idle->first)) idle = &o;
    }
    if (idle == nullptr || idle->first > chunk) return nullptr;
    DropLocked(idle);
  }
  char* bytes = pool_->Acquire();
  if (bytes == nullptr) return nullptr;
  Window& w = windows_.emplace_back();
  w.first = chunk;
  w.end = end;
  w.bytes = bytes;
  w.users = users;
  w.payload = std::min(source_.size, end * kChunkBytes) - chunk * kChunkBytes;
  w.state.assign(end - chunk, kUnchecked);
  w.copied.assign((w.payload + kBlockAlign - 1) / kBlockAlign, false);
  last_end_ = std::max(last_end_, end);
  return &w;
}

void ColdWindows::ReadAheadLocked(Window* current) {
  current->read_ahead = true;
  const uint64_t next = current->end;
  if (next >= chunks_ || FindLocked(next) != nullptr || !direct_ok_) return;
  Window* w = AddLocked(next, 0);
  if (w == nullptr) return;
  std::weak_ptr<ColdWindows> self = weak_from_this();
  const bool queued = pool_->Submit([self, w](bool run) {
    std::shared_ptr<ColdWindows> windows = self.lock();
    if (!windows) return;  // its reader closed meanwhile (and freed w)
    const bool read = run && windows->Load(*w);
    std::lock_guard lock(windows->mu_);
    windows->FinishLocked(w, read);
  });
  if (!queued) FinishLocked(w, false);
}

void ColdWindows::FinishLocked(Window* w, bool read) {
  w->loading = false;
  if (!read) std::fill(w->state.begin(), w->state.end(), kBad);
  loaded_.notify_all();
  if (!read && w->users == 0) DropLocked(w);
}

bool ColdWindows::Load(const Window& w) {
  const uint64_t at = source_.payload_offset + w.first * kChunkBytes;
  absl::StatusOr<size_t> n =
      source_.extent->DirectFile()->PreadUpTo(w.bytes, AlignUp(w.payload), at);
  if (!n.ok()) {
    // EINVAL: the backing filesystem takes no direct reads of this size or
    // alignment; other errors are the buffered path's to report.
    std::lock_guard lock(mu_);
    if (ErrnoOf(n.status()) == EINVAL) direct_ok_ = false;
    return false;
  }
  if (source_.windows_read) ++*source_.windows_read;
  if (source_.bytes_read) *source_.bytes_read += *n;
  return *n >= w.payload;
}

}  // namespace kvfs
