// Cold reads: a file streamed from the disk is read in windows of several
// chunks with one O_DIRECT read each, instead of chunk by chunk through the
// backing filesystem's page cache.
//
// Why: the kernel sends a FUSE reader's readahead as 1 MiB READs that daemon
// threads answer in whatever order they run, so buffered reads of the extent
// reach the backing filesystem out of order and its readahead shrinks its
// requests (1-2 MiB at the disk against plain ext4's 3.5 MiB). One direct
// read per window asks the disk for the whole window at once, whatever the
// order of the READs. It also leaves the backing page cache alone: the bytes
// are cached once, by the mount, instead of twice.
//
// Only where the backing page cache does not hold the chunk (cachestat) and
// the kernel asks for large pieces near the reader's last window (it is
// streaming): bytes already cached, and small reads at random offsets, take
// the buffered path.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "kvfs/extent_store.h"
#include "kvfs/posix_file.h"

namespace kvfs {

// Whether the page cache holds every page of [offset, offset + len) of `file`;
// true where the kernel cannot say (no cachestat: the buffered path is safe).
bool RangeIsCached(const PosixFile& file, uint64_t offset, uint64_t len);

// What windows are read with, shared by every reader of an engine: aligned
// buffers up to a byte limit (readers beyond it take the buffered path), and
// threads that read each stream's next window ahead of its READs.
class ColdReadPool {
 public:
  ColdReadPool(uint64_t window_bytes, uint64_t limit_bytes, int threads);
  ~ColdReadPool();  // Stop()s
  ColdReadPool(const ColdReadPool&) = delete;
  ColdReadPool& operator=(const ColdReadPool&) = delete;

  uint64_t window_bytes() const { return window_bytes_; }
  // A window_bytes() buffer, or null when the limit is reached.
  char* Acquire();
  void Release(char* buffer);

  // Runs `read(true)` on a pool thread; false once stopped.
  bool Submit(std::function<void(bool)> read);
  // Waits for the reads in progress, and calls those still queued with
  // false (their windows fail, and waiting READs take the buffered path).
  void Stop();

 private:
  void Work();  // a pool thread

  const uint64_t window_bytes_;
  const uint64_t limit_;
  const int thread_count_;
  std::mutex mu_;
  uint64_t allocated_ = 0;
  std::vector<char*> free_;
  std::condition_variable queued_;
  std::deque<std::function<void(bool)>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;  // started by the first Submit
};

// What a reader's windows read: one record's payload in an extent.
struct ColdSource {
  std::shared_ptr<Extent> extent;
  uint64_t payload_offset = 0;          // 4 KiB aligned
  uint64_t size = 0;
  std::vector<uint64_t> chunk_checksums;
  bool verify = true;
  // Counted at every window read: how many, and their bytes.
  std::atomic<uint64_t>* windows_read = nullptr;
  std::atomic<uint64_t>* bytes_read = nullptr;
};

// The windows of one open file version. Shared with the pool's threads
// while they read one of its windows ahead.
class ColdWindows : public std::enable_shared_from_this<ColdWindows> {
 public:
  ColdWindows(ColdSource source, std::shared_ptr<ColdReadPool> pool);
  ~ColdWindows();
  ColdWindows(const ColdWindows&) = delete;
  ColdWindows& operator=(const ColdWindows&) = delete;

  // Copies `len` bytes at `offset_in_chunk` of chunk `chunk` to `out` from a
  // window, first reading the window if the chunk is in none, is not in the
  // backing page cache and the reader streams (`read_bytes`, the size of the
  // READ, is large). False: the caller reads the chunk itself (cached, a
  // small or random read, no buffer free, or the window's read or checksum
  // failed: the buffered path then reports what is wrong).
  bool Copy(uint64_t chunk, uint64_t offset_in_chunk, uint64_t len, char* out,
            uint64_t read_bytes);

 private:
  enum ChunkState : uint8_t { kUnchecked, kGood, kBad };
  struct Window {
    uint64_t first = 0;  // chunks [first, end)
    uint64_t end = 0;
    char* bytes = nullptr;
    uint64_t payload = 0;  // bytes of the file in it
    bool loading = true;
    int users = 0;  // threads between finding it and copying from it
    bool read_ahead = false;  // the window after it was considered
    std::vector<uint8_t> state;  // ChunkState per chunk
    // Pages handed out; once all of them are, the window goes (the kernel
    // caches them now).
    std::vector<bool> copied;
    uint64_t pages_copied = 0;
  };
  Window* FindLocked(uint64_t chunk);
  // A new window from `chunk` on, pinned; null where the buffered path fits.
  Window* StartLocked(uint64_t chunk, uint64_t read_bytes);
  // Reads the window after `w` on a pool thread, if it is cold, not read
  // yet, and there is room.
  void ReadAheadLocked(Window* current);
  // A window of chunks [chunk, ...) with `users` pins, or null (no room).
  Window* AddLocked(uint64_t chunk, int users);
  void FinishLocked(Window* w, bool read);
  void DropLocked(Window* w);
  bool Load(const Window& w);  // without the lock

  const ColdSource source_;
  const std::shared_ptr<ColdReadPool> pool_;  // may outlive the engine
  const uint64_t window_chunks_;
  const uint64_t chunks_;
  std::mutex mu_;
  std::condition_variable loaded_;
  std::list<Window> windows_;
  uint64_t last_end_ = 0;   // the furthest window end so far
  bool direct_ok_ = true;   // false once the filesystem refused a direct read
};

}  // namespace kvfs
