// Helpers shared by the tests: scratch directories, deterministic file
// contents, engine options pointing into a scratch directory.
#pragma once

#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kvfs/engine.h"

namespace kvfs::testing {

// A directory removed (recursively) when the object dies.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = std::string(::testing::TempDir()) + "kvfs-test-XXXXXX";
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : "";
    EXPECT_FALSE(path_.empty()) << "mkdtemp failed: " << std::strerror(errno);
  }
  ~TempDir() {
    ::nftw(path_.c_str(),
           [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); },
           64, FTW_DEPTH | FTW_PHYS);
  }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Deterministic pseudo-random bytes: the same (seed, size) gives the same data.
inline std::string Pattern(uint64_t seed, size_t size) {
  std::string data(size, '\0');
  std::mt19937_64 gen(seed * 0x9e3779b97f4a7c15ULL + size);
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t v = gen();
    std::memcpy(&data[i], &v, 8);
  }
  for (; i < size; ++i) data[i] = static_cast<char>(gen());
  return data;
}

// Engine options for a backing directory and index inside `dir`.
inline EngineOptions TestOptions(const TempDir& dir) {
  EngineOptions o;
  o.backing_dir = dir.Sub("backing");
  o.index_dir = dir.Sub("index");
  o.node_id = "test-node";
  o.extent_bytes = 16 << 20;
  o.block_cache_bytes = 8 << 20;
  o.log = [](absl::string_view) {};  // tests assert on problems(), not logs
  ::mkdir(o.backing_dir.c_str(), 0755);
  return o;
}

// Writes the file's dirty pages and drops its page cache.
inline void DropFromPageCache(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::fdatasync(fd), 0) << path;
  ASSERT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0) << path;
  ::close(fd);
}

// Pages of [offset, offset + len) of `path` in the page cache (mincore).
inline uint64_t ResidentPages(const std::string& path, uint64_t offset, uint64_t len) {
  int fd = ::open(path.c_str(), O_RDONLY);
  EXPECT_GE(fd, 0) << path;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t start = offset / page * page;
  const uint64_t bytes = offset + len - start;
  void* map = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(start));
  ::close(fd);
  EXPECT_NE(map, MAP_FAILED) << path;
  if (map == MAP_FAILED) return 0;
  std::vector<unsigned char> in((bytes + page - 1) / page);
  EXPECT_EQ(::mincore(map, bytes, in.data()), 0);
  ::munmap(map, bytes);
  return static_cast<uint64_t>(std::count_if(in.begin(), in.end(),
                                             [](unsigned char c) { return c & 1; }));
}

// Bytes the filesystem allocated to the regular files below `dir`.
inline uint64_t AllocatedBytes(const std::string& dir) {
  uint64_t bytes = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st;
    if (::stat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      bytes += static_cast<uint64_t>(st.st_blocks) * 512;
    }
  }
  return bytes;
}

inline std::unique_ptr<Engine> MustOpen(const EngineOptions& o) {
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? *std::move(e) : nullptr;
}

}  // namespace kvfs::testing
