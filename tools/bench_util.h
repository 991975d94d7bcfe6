// Helpers shared by the benchmarks: parallel loops, syncfs, dropping the
// page cache of a tree.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
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

}  // namespace kvfs::bench
