// Helpers shared by the benchmarks: parallel loops, syncfs, dropping the
// page cache of a tree, touching memory once.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"

namespace kvfs::bench {

// Runs fn(i, thread) for i in [0, n) on `threads` threads; returns seconds.
template <typename Fn>
double Parallel(int n, int threads, Fn fn) {
  std::atomic<int> next{0};
  absl::Time start = absl::Now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i; (i = next++) < n;) fn(i, t);
    });
  }
  for (auto& th : pool) th.join();
  return absl::ToDoubleSeconds(absl::Now() - start);
}

// Writes one byte to every page of `bytes` of fresh memory, then frees it;
// returns seconds, or -1 when the memory cannot be had. A fresh virtual
// machine's host backs guest memory at its first touch: without this, the
// benchmark's first side to fill the page cache pays for it (plain stores
// on a fresh H100 machine: 0.52 s of writes, 0.18 s once memory was touched).
inline double TouchMemory(uint64_t bytes) {
  absl::Time start = absl::Now();
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return -1;
  for (uint64_t i = 0; i < bytes; i += 4096) static_cast<volatile char*>(p)[i] = 1;
  ::munmap(p, bytes);
  return absl::ToDoubleSeconds(absl::Now() - start);
}

// syncfs() of the filesystem holding `dir`; false on failure.
inline bool SyncFs(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return false;
  bool ok = ::syncfs(fd) == 0;
  ::close(fd);
  return ok;
}

// Drops the page cache of every regular file below `dir` (clean pages only,
// which everything is after SyncFs).
inline void DropCache(const std::string& dir) {
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    int fd = ::open(entry.path().c_str(), O_RDONLY);
    if (fd < 0) continue;
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

// Reads every regular file below `dir` once, so that the page cache holds it.
inline void FillCache(const std::string& dir) {
  std::string buf(1 << 20, '\0');
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    int fd = ::open(entry.path().c_str(), O_RDONLY);
    if (fd < 0) continue;
    while (::read(fd, buf.data(), buf.size()) > 0) {
    }
    ::close(fd);
  }
}

}  // namespace kvfs::bench
