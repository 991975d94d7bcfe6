// Real FUSE mounts of the `kvfs` binary, driven with the exact system-call
// sequences of the llm-d FS backend and vLLM's fs tier. Needs root and
// /dev/fuse (CI has both); skipped with the reason otherwise.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <dirent.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "kvfs/backing_dir.h"
#include "kvfs/posix_file.h"
#include "tests/mount_util.h"
#include "tests/test_util.h"

extern char** environ;

namespace kvfs {
namespace {

using testing::Pattern;
using testing::TempDir;

std::string ClientPath(const std::string& root, int i) {
  std::string hash = absl::StrFormat("%064x", 0x9e3779b97f4aULL * (i + 1));
  return absl::StrFormat("%s/Qwen_Qwen3-0.6B_3f9a12c07b1e_r0/%s/%s_g0/%s.bin", root,
                         hash.substr(0, 3), hash.substr(3, 2), hash);
}

// llm-d: dedup probe, mkdir -p, temp file, one writev, rename while open, close.
// Returns 0 on success, else the errno of the failing call.
int LlmdStore(const std::string& final, const std::string& data, uint32_t thread) {
  int fd = ::open(final.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::close(fd);
    struct timespec times[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
    return ::utimensat(AT_FDCWD, final.c_str(), times, 0) == 0 ? 0 : errno;
  }
  (void)EnsureDirectories(final.substr(0, final.rfind('/')), 0777);  // mkdir -p
  const std::string tmp = final + "_" + std::to_string(thread) + ".tmp";
  fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
  if (fd < 0) return errno;
  iovec iov = {const_cast<char*>(data.data()), data.size()};
  if (::writev(fd, &iov, 1) != static_cast<ssize_t>(data.size())) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return err ? err : EIO;
  }
  int rc = ::rename(tmp.c_str(), final.c_str()) == 0 ? 0 : errno;
  ::close(fd);
  return rc;
}

// llm-d load: size from lseek(END), then one read of the last k blocks.
bool LlmdLoadSuffix(const std::string& path, const std::string& want, size_t block, int k) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return false;
  off_t size = ::lseek(fd, 0, SEEK_END);
  bool ok = size == static_cast<off_t>(want.size());
  const size_t n = std::min<size_t>(k * block, want.size());
  std::string buf(n, '\0');
  ok = ok && ::lseek(fd, size - n, SEEK_SET) == static_cast<off_t>(size - n) &&
       ::read(fd, buf.data(), n) == static_cast<ssize_t>(n) && buf == want.substr(want.size() - n);
  ::close(fd);
  return ok;
}

TEST(Mount, LlmdClientStoresAndLoadsAcrossRestart) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  Mount m(dir);
  ASSERT_TRUE(m.Start());
  constexpr int kFiles = 120, kThreads = 16;
  constexpr size_t kBlock = 512 << 10;
  auto size_of = [](int i) { return kBlock * (4 + i % 13); };  // 2 - 8 MiB
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Every file is stored by two threads: duplicate stores are normal.
      for (int i = t % 8; i < kFiles; i += 8) {
        int rc = LlmdStore(ClientPath(m.Path(""), i), Pattern(i, size_of(i)), t);
        if (rc != 0) {
          std::fprintf(stderr, "store %d: %s\n", i, std::strerror(rc));
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);
  auto verify = [&] {
    for (int i = 0; i < kFiles; ++i) {
      const std::string path = ClientPath(m.Path(""), i), want = Pattern(i, size_of(i));
      struct stat st;
      ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
      EXPECT_EQ(st.st_size, static_cast<off_t>(want.size()));
      EXPECT_GE(st.st_blocks * 512, st.st_size);
      EXPECT_TRUE(LlmdLoadSuffix(path, want, kBlock, 1 + i % 5)) << path;
      EXPECT_TRUE(LlmdLoadSuffix(path, want, kBlock, 100)) << path;
    }
  };
  verify();
  // No temp file is left behind, and the backing directory holds no per-file entries.
  const std::string leaf = ClientPath(m.Path(""), 0);
  DIR* d = ::opendir(leaf.substr(0, leaf.rfind('/')).c_str());
  ASSERT_NE(d, nullptr);
  while (dirent* e = ::readdir(d)) {
    EXPECT_EQ(std::string(e->d_name).find(".tmp"), std::string::npos) << e->d_name;
  }
  ::closedir(d);
  EXPECT_EQ(m.Stop(), 0);
  ASSERT_TRUE(m.Start());
  verify();
}

TEST(Mount, VllmClientWithODirect) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  Mount m(dir);
  ASSERT_TRUE(m.Start());
  // The start-up probe of O_DIRECT support.
  const std::string probe = m.Path(".o_direct_probe_1234.tmp");
  int pfd = ::open(probe.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_DIRECT, 0644);
  ASSERT_GE(pfd, 0) << std::strerror(errno);
  void* aligned = nullptr;
  ASSERT_EQ(::posix_memalign(&aligned, 4096, 4 << 20), 0);
  ASSERT_EQ(::write(pfd, aligned, 4096), 4096) << std::strerror(errno);
  ::close(pfd);
  ASSERT_EQ(::unlink(probe.c_str()), 0);

  for (int i = 0; i < 6; ++i) {
    const std::string final = ClientPath(m.Path("v"), i);
    const std::string data = Pattern(100 + i, (1 + i % 4) << 20);
    ASSERT_NE(::access(final.c_str(), F_OK), 0);
    (void)EnsureDirectories(final.substr(0, final.rfind('/')), 0777);  // mkdir -p
    const std::string tmp = final + "_77.tmp";
    int fd = ::open(tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_TRUNC | O_DIRECT, 0644);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    std::memcpy(aligned, data.data(), data.size());
    ASSERT_EQ(::write(fd, aligned, data.size()), static_cast<ssize_t>(data.size()));
    ASSERT_EQ(::close(fd), 0);
    ASSERT_EQ(::rename(tmp.c_str(), final.c_str()), 0) << std::strerror(errno);

    fd = ::open(final.c_str(), O_RDONLY | O_DIRECT);
    ASSERT_GE(fd, 0);
    std::memset(aligned, 0, data.size());
    iovec iov = {aligned, data.size()};
    ASSERT_EQ(::readv(fd, &iov, 1), static_cast<ssize_t>(data.size()));
    ::close(fd);
    EXPECT_EQ(std::memcmp(aligned, data.data(), data.size()), 0) << final;
  }
  ::free(aligned);
}

TEST(Mount, KilledDaemonLosesNoRenamedFile) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  Mount m(dir);
  ASSERT_TRUE(m.Start());
  std::mutex mu;
  std::set<int> renamed;
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; !stop; i += 8) {
        if (LlmdStore(ClientPath(m.Path(""), i), Pattern(i, (1 + i % 3) << 20), t) != 0) break;
        std::lock_guard lock(mu);
        renamed.insert(i);
      }
    });
  }
  // Kill once the storm is under way (a few stores done), however slow
  // the machine: a loaded CI machine may need more than a fixed delay.
  for (int waited_ms = 0; waited_ms < 30000; waited_ms += 10) {
    {
      std::lock_guard lock(mu);
      if (renamed.size() > 5) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  m.Kill9();
  stop = true;
  for (auto& th : threads) th.join();
  m.Detach();
  ASSERT_GT(renamed.size(), 5u);
  ASSERT_TRUE(m.Start());
  // Temp files of stores the kill interrupted never show up again.
  std::vector<std::string> dirs = {m.Path("")};
  while (!dirs.empty()) {
    std::string at = dirs.back();
    dirs.pop_back();
    DIR* d = ::opendir(at.c_str());
    ASSERT_NE(d, nullptr) << at;
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      EXPECT_EQ(name.find(".tmp"), std::string::npos) << at << "/" << name;
      if (e->d_type == DT_DIR) dirs.push_back(at + "/" + name);
    }
    ::closedir(d);
  }
  for (int i : renamed) {
    const std::string path = ClientPath(m.Path(""), i);
    struct stat st = {};
    int rc = ::stat(path.c_str(), &st);
    EXPECT_TRUE(LlmdLoadSuffix(path, Pattern(i, (1 + i % 3) << 20), 1 << 20, 100))
        << "file " << i << ": stat " << (rc == 0 ? "ok" : std::strerror(errno)) << ", size "
        << st.st_size << " of " << ((1 + i % 3) << 20);
  }
}

TEST(Mount, SemanticsAndBadInput) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  Mount m(dir);
  ASSERT_TRUE(m.Start());
  // Names longer than NAME_MAX.
  const std::string long_name = m.Path(std::string(NAME_MAX + 1, 'n'));
  EXPECT_EQ(::open(long_name.c_str(), O_CREAT | O_WRONLY, 0644), -1);
  EXPECT_EQ(errno, ENAMETOOLONG);
  // config.json: plain open("w") and rewrite; committed at close.
  const std::string cfg = m.Path("model/config.json");
  ASSERT_TRUE(EnsureDirectories(m.Path("model")).ok());
  for (const char* text : {"{\"a\": 1, \"long\": true}", "{\"a\": 2}"}) {
    FILE* f = std::fopen(cfg.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(text, f);
    ASSERT_EQ(std::fclose(f), 0);
    FILE* r = std::fopen(cfg.c_str(), "r");
    char buf[64] = {};
    ASSERT_EQ(std::fread(buf, 1, sizeof(buf), r), std::strlen(text));
    std::fclose(r);
    EXPECT_STREQ(buf, text);
  }
  // Writing into a committed file without O_TRUNC: EPERM (files are immutable).
  EXPECT_EQ(::open(cfg.c_str(), O_WRONLY | O_APPEND), -1);
  EXPECT_EQ(errno, EPERM);
  // Directories: readdir with types, rmdir of a non-empty one, unlink.
  EXPECT_EQ(::rmdir(m.Path("model").c_str()), -1);
  EXPECT_EQ(errno, ENOTEMPTY);
  DIR* d = ::opendir(m.Path("model").c_str());
  std::map<std::string, int> seen;
  while (dirent* e = ::readdir(d)) seen[e->d_name] = e->d_type;
  ::closedir(d);
  EXPECT_EQ(seen["config.json"], DT_REG);
  EXPECT_EQ(seen.size(), 3u);  // ".", "..", config.json
  EXPECT_EQ(::unlink(cfg.c_str()), 0);
  EXPECT_NE(::access(cfg.c_str(), F_OK), 0);
  EXPECT_EQ(::rmdir(m.Path("model").c_str()), 0);
  // A temp file closed and never renamed goes away after the grace period.
  const std::string orphan = m.Path("x.bin_5.tmp");
  int fd = ::open(orphan.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "abc", 3), 3);
  ::close(fd);
  EXPECT_EQ(::access(orphan.c_str(), F_OK), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  fd = ::open(m.Path("trigger").c_str(), O_WRONLY | O_CREAT, 0644);  // creates reap
  ::close(fd);
  EXPECT_NE(::access(orphan.c_str(), F_OK), 0);
  // statvfs works on the mount.
  struct statvfs vfs;
  EXPECT_EQ(::statvfs(m.Path("").c_str(), &vfs), 0);
  EXPECT_GT(vfs.f_blocks, 0u);
  // A reader of a replaced file keeps reading the old contents.
  ASSERT_EQ(LlmdStore(m.Path("r.bin"), Pattern(1, 3 << 20), 1), 0);
  int rfd = ::open(m.Path("r.bin").c_str(), O_RDONLY);
  ASSERT_GE(rfd, 0);
  ASSERT_EQ(::unlink(m.Path("r.bin").c_str()), 0);
  ASSERT_EQ(LlmdStore(m.Path("r.bin"), Pattern(2, 1 << 20), 1), 0);
  struct stat rst;
  ASSERT_EQ(::fstat(rfd, &rst), 0) << std::strerror(errno);  // of the old version
  EXPECT_EQ(rst.st_size, 3 << 20);
  std::string old(3 << 20, '\0');
  EXPECT_EQ(::pread(rfd, old.data(), old.size(), 0), static_cast<ssize_t>(old.size()));
  EXPECT_TRUE(old == Pattern(1, 3 << 20));
  ::close(rfd);
  // A bad backing directory is refused with a message and a non-zero exit.
  TempDir other;
  ::mkdir(other.Sub("b").c_str(), 0755);
  ::mkdir(other.Sub("m").c_str(), 0755);
  FILE* f = std::fopen(other.Sub("b/user-data").c_str(), "w");
  std::fclose(f);
  std::string cmd = std::string(KVFS_BINARY) + " mount " + other.Sub("b") + " " +
                    other.Sub("m") + " --index-dir " + other.Sub("i") + " 2>/dev/null";
  EXPECT_NE(std::system(cmd.c_str()), 0);
}

// What a shell command printed (stdout and stderr), and a line saying so if
// it failed.
std::string RunShell(const std::string& command) {
  std::string out;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return "popen failed";
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), p)) > 0;) out.append(buf, n);
  const int status = ::pclose(p);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) out += "\n(exit status not zero)";
  return out;
}

std::string RunKvfs(const std::string& args) {
  return RunShell(std::string(KVFS_BINARY) + " " + args);
}

// A store storm of 64 threads into a mount with a small capacity: the
// backing directory never holds more than the capacity plus one extent,
// statvfs shows the capacity, every file still there reads right, and
// `kvfs evict` removes names the kernel had cached.
TEST(Mount, CapacityHoldsUnderAStoreStormAndEvictWorks) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  constexpr uint64_t kCapacity = 256 << 20, kExtent = 16 << 20;
  Mount m(dir, {"--capacity", std::to_string(kCapacity), "--extent-size",
                std::to_string(kExtent), "--reclaim-grace", "0"});
  ASSERT_TRUE(m.Start());
  struct statvfs vfs;
  ASSERT_EQ(::statvfs(m.Path("").c_str(), &vfs), 0);
  EXPECT_EQ(static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize, kCapacity);

  std::atomic<bool> done{false};
  std::atomic<uint64_t> worst{0};
  std::thread watcher([&] {
    while (!done) {
      const uint64_t used = testing::AllocatedBytes(m.backing() + "/nodes/mount-test/extents");
      if (used > worst) worst = used;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  constexpr int kThreads = 64, kPerThread = 6;
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const int n = t * kPerThread + i;
        const int rc = LlmdStore(ClientPath(m.Path("s"), n), Pattern(n, (2 + n % 3) << 20), t);
        if (rc != 0) {
          ++failed;
          ADD_FAILURE() << "store " << n << ": " << std::strerror(rc);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  done = true;
  watcher.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_LE(worst.load(), kCapacity + kExtent) << "~1.1 GiB stored into 256 MiB";
  int present = 0;
  for (int n = 0; n < kThreads * kPerThread; ++n) {
    const std::string path = ClientPath(m.Path("s"), n);
    if (::access(path.c_str(), F_OK) != 0) continue;
    ++present;
    EXPECT_TRUE(LlmdLoadSuffix(path, Pattern(n, (2 + n % 3) << 20), 1 << 20, 1)) << n;
  }
  EXPECT_GT(present, 20);
  EXPECT_LT(present, kThreads * kPerThread) << "some files must have been evicted";
  ASSERT_EQ(::statvfs(m.Path("").c_str(), &vfs), 0);
  EXPECT_LE(vfs.f_blocks - vfs.f_bfree, vfs.f_blocks);

  // Manual eviction: a dry run lists and keeps; the real one removes names
  // the kernel has cached (stat just before) at once.
  std::string listed = RunKvfs("evict " + m.Path("") + " --dry-run --prefix s");
  EXPECT_NE(listed.find("would evict " + std::to_string(present) + " files"), std::string::npos)
      << listed;
  std::vector<std::string> cached;
  for (int n = 0; n < kThreads * kPerThread; ++n) {
    const std::string path = ClientPath(m.Path("s"), n);
    if (::access(path.c_str(), F_OK) == 0) cached.push_back(path);
  }
  std::string evicted = RunKvfs("evict " + m.Path("") + " --prefix s --older-than 0s");
  EXPECT_NE(evicted.find("evicted " + std::to_string(present) + " files"), std::string::npos)
      << evicted;
  for (const std::string& path : cached) {
    EXPECT_NE(::access(path.c_str(), F_OK), 0) << path << " still visible after eviction";
  }
  EXPECT_NE(RunKvfs("evict " + m.Path("") + " --bytes lots").find("bad --bytes"),
            std::string::npos);
  // The control directory is reserved and hidden.
  EXPECT_NE(::mkdir(m.Path(".kvfs").c_str(), 0755), 0);
  EXPECT_EQ(errno, EEXIST);
  DIR* root = ::opendir(m.Path("").c_str());
  ASSERT_NE(root, nullptr);
  for (dirent* d; (d = ::readdir(root)) != nullptr;) EXPECT_STRNE(d->d_name, ".kvfs");
  ::closedir(root);
  EXPECT_EQ(m.Stop(), 0);
}

}  // namespace
}  // namespace kvfs

namespace kvfs {
namespace {

// Temp files closed but not yet reaped when the mount goes away (inside
// their grace period) do not come back at the next mount, and `kvfs fsck`
// finds nothing orphaned: they never reached the index.
TEST(Mount, TempFilesDoNotSurviveARemount) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  Mount m(dir, {"--temp-grace", "3600"});
  ASSERT_TRUE(m.Start());
  ASSERT_TRUE(EnsureDirectories(m.Path("m_r0/abc")).ok());
  for (const char* name : {"m_r0/abc/blk.bin_7.tmp", "m_r0/.o_direct_probe_42.tmp"}) {
    const int fd = ::open(m.Path(name).c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    ASSERT_GE(fd, 0) << name;
    const std::string data = Pattern(5, 1 << 20);
    ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    ASSERT_EQ(::close(fd), 0);
    EXPECT_EQ(::access(m.Path(name).c_str(), F_OK), 0) << "visible within its grace period";
  }
  ASSERT_EQ(LlmdStore(m.Path("m_r0/abc/kept.bin"), Pattern(6, 1 << 20), 1), 0);
  EXPECT_EQ(m.Stop(), 0);
  ASSERT_TRUE(m.Start());
  EXPECT_NE(::access(m.Path("m_r0/abc/blk.bin_7.tmp").c_str(), F_OK), 0);
  EXPECT_NE(::access(m.Path("m_r0/.o_direct_probe_42.tmp").c_str(), F_OK), 0);
  EXPECT_TRUE(LlmdLoadSuffix(m.Path("m_r0/abc/kept.bin"), Pattern(6, 1 << 20), 1 << 20, 1));
  EXPECT_EQ(m.Stop(), 0);
  const std::string fsck = RunKvfs("fsck " + m.backing() + " --node-id mount-test --index-dir " +
                                   dir.Sub("index"));
  EXPECT_EQ(fsck.find("orphan"), std::string::npos) << fsck;
  EXPECT_EQ(fsck.find("exit status not zero"), std::string::npos) << fsck;
  EXPECT_NE(fsck.find("1 files"), std::string::npos) << fsck;
}

// One counter of the mount's metrics.
double Metric(const Mount& m, const std::string& name) {
  std::ifstream in(m.Path(".kvfs/metrics"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  ADD_FAILURE() << name << " not in the metrics";
  return -1;
}

// A store does not fill the kernel's cache of the mount (the bytes go
// straight to the daemon, and are not cached twice); the first load reads
// them through the daemon, verified, and the kernel keeps them (committed
// files never change), so a second load does not cross FUSE; once dropped,
// they come back from the extent.
TEST(Mount, StoresBypassTheMountsCacheAndLoadsStayCached) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  Mount m(dir);
  ASSERT_TRUE(m.Start());
  ASSERT_TRUE(EnsureDirectories(m.Path("m_r0/abc")).ok());
  const std::string path = m.Path("m_r0/abc/blk.bin");
  const std::string data = Pattern(8, 3 << 20);
  const double size = static_cast<double>(data.size());
  ASSERT_EQ(LlmdStore(path, data, 1), 0);
  const double read_before = Metric(m, "kvfs_read_bytes_total");
  EXPECT_TRUE(LlmdLoadSuffix(path, data, data.size(), 1));
  EXPECT_EQ(Metric(m, "kvfs_read_bytes_total"), read_before + size) << "first load";
  EXPECT_TRUE(LlmdLoadSuffix(path, data, data.size(), 1));
  EXPECT_EQ(Metric(m, "kvfs_read_bytes_total"), read_before + size) << "second load";

  const int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
  ASSERT_EQ(::close(fd), 0);
  EXPECT_TRUE(LlmdLoadSuffix(path, data, data.size(), 1));
  EXPECT_EQ(Metric(m, "kvfs_read_bytes_total"), read_before + 2 * size) << "after the drop";
  EXPECT_EQ(m.Stop(), 0);
}

// A cold file streamed through the mount comes from direct reads of whole
// windows of its extent (kvfs/cold_reads.h), which leave the backing page
// cache alone; `--cold-window 0` reads it through that cache.
TEST(Mount, ColdStreamedLoadsComeInDirectWindows) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  const std::string data = Pattern(9, 24 << 20);
  for (const bool windows : {true, false}) {
    TempDir dir;
    Mount m(dir, windows ? std::vector<std::string>{}
                         : std::vector<std::string>{"--cold-window", "0"});
    ASSERT_TRUE(m.Start());
    ASSERT_TRUE(EnsureDirectories(m.Path("m_r0/abc")).ok());
    const std::string path = m.Path("m_r0/abc/blk.bin");
    ASSERT_EQ(LlmdStore(path, data, 1), 0);
    // Nothing of it cached: not the mount's pages, not the extents'.
    ASSERT_NO_FATAL_FAILURE(testing::DropFromPageCache(path));
    std::vector<std::string> extents;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir.Sub("backing"))) {
      if (e.is_regular_file() && e.path().extension() == ".kvx") extents.push_back(e.path());
    }
    ASSERT_FALSE(extents.empty());
    uint64_t resident = 0;
    for (const std::string& x : extents) {
      ASSERT_NO_FATAL_FAILURE(testing::DropFromPageCache(x));
      resident += testing::ResidentPages(x, 0, std::filesystem::file_size(x));
    }
    if (resident > 16) {
      GTEST_SKIP() << "the backing filesystem under " << dir.path()
                   << " keeps files in memory (tmpfs?): no cold reads to test here";
    }
    const double before = Metric(m, "kvfs_cold_window_reads_total");
    int fd = ::open(path.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    std::string got(data.size(), '\0');
    for (size_t off = 0; off < got.size();) {
      const ssize_t n = ::read(fd, got.data() + off, std::min<size_t>(1 << 20, got.size() - off));
      ASSERT_GT(n, 0) << std::strerror(errno);
      off += static_cast<size_t>(n);
    }
    ::close(fd);
    EXPECT_TRUE(got == data);
    const double read = Metric(m, "kvfs_cold_window_reads_total") - before;
    resident = 0;
    for (const std::string& x : extents) {
      resident += testing::ResidentPages(x, 0, std::filesystem::file_size(x));
    }
    if (windows) {
      EXPECT_GE(read, 3) << "24 MiB in windows of 8 MiB";
      // The kernel may still send a few small READs (of single pages) that
      // are read through the backing page cache, with its readahead.
      EXPECT_LT(resident, (24u << 20) / 4096 / 4) << "pages of the extents cached";
    } else {
      EXPECT_EQ(read, 0);
      // All of them, unless the kernel reclaimed some meanwhile (memory
      // pressure from other tests): at least half tells the paths apart.
      EXPECT_GE(resident, (24u << 20) / 4096 / 2) << "pages of the extents cached";
    }
    EXPECT_EQ(m.Stop(), 0);
  }
}

// Every extent stays open (twice, once read directly), so a daemon started
// under the usual soft limit of 1024 descriptors takes its hard limit.
TEST(Mount, TheDaemonTakesTheHardOpenFileLimit) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  rlimit mine{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &mine), 0);
  if (mine.rlim_max < 2048) GTEST_SKIP() << "hard open-file limit " << mine.rlim_max;
  rlimit low = mine;
  low.rlim_cur = 256;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  TempDir dir;
  Mount m(dir);
  const bool started = m.Start();  // inherits the low limit
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &mine), 0);
  ASSERT_TRUE(started);
  std::ifstream limits(absl::StrCat("/proc/", m.pid(), "/limits"));
  std::string line, soft;
  while (std::getline(limits, line)) {
    if (line.rfind("Max open files", 0) == 0) {
      std::istringstream(line.substr(14)) >> soft;
    }
  }
  const rlim_t want = std::min<rlim_t>(mine.rlim_max, 1 << 20);
  EXPECT_EQ(soft, std::to_string(want));
  EXPECT_EQ(m.Stop(), 0);
}

TEST(Mount, BadColdWindowsAreRefusedClearly) {
  TempDir dir;
  for (const std::string value : {"1500K", "512M", "lots", "-1"}) {
    const std::string said = RunKvfs("mount " + dir.Sub("b") + " " + dir.Sub("m") +
                                     " --cold-window " + value);
    EXPECT_NE(said.find("--cold-window must be 0 or a multiple of 1M up to 256M, not '" +
                        value + "'"),
              std::string::npos)
        << said;
    EXPECT_NE(said.find("(exit status not zero)"), std::string::npos) << said;
  }
}

TEST(Mount, BadSecondsAndEmptyPathsAreRefusedClearly) {
  TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--space-wait 7200", "bad --space-wait '7200': seconds between 0 and 3600"},
      {"--space-wait soon", "bad --space-wait 'soon'"},
      {"--reclaim-grace inf", "bad --reclaim-grace 'inf'"},
      {"--attr-timeout nan", "bad --attr-timeout 'nan'"},
      {"--negative-timeout -1", "bad --negative-timeout '-1'"},
      {"--node-id ''", "--node-id must not be empty"},
      {"--index-dir ''", "--index-dir must not be empty"},
  };
  for (const auto& [option, message] : cases) {
    const std::string said = RunKvfs("mount " + dir.Sub("b") + " " + dir.Sub("m") + " " + option);
    EXPECT_NE(said.find(message), std::string::npos) << option << ": " << said;
    EXPECT_NE(said.find("(exit status not zero)"), std::string::npos) << said;
  }
}

// The daemon would wait on itself (or write into its own mount) if any of
// its paths led back into the mount point; `kvfs mount same same` hung.
TEST(Mount, PathsThatLeadBackIntoTheMountAreRefused) {
  TempDir dir;
  for (const char* d : {"m", "b", "b/m"}) ASSERT_EQ(::mkdir(dir.Sub(d).c_str(), 0755), 0);
  ASSERT_EQ(::symlink(dir.Sub("m").c_str(), dir.Sub("link").c_str()), 0);
  const std::string m = dir.Sub("m"), i = " --index-dir " + dir.Sub("i");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {m + " " + m + i, "the backing directory " + m + " is the mount point or inside it"},
      {m + "/b " + m + i, "the backing directory " + m + "/b is the mount point or inside it"},
      {dir.Sub("link") + "/b " + m + i, "is the mount point or inside it"},
      {dir.Sub("b") + " " + dir.Sub("b/m") + i,
       "the mount point " + dir.Sub("b/m") + " is inside the backing directory"},
      {dir.Sub("b") + " " + m + " --index-dir " + m + "/idx",
       "--index-dir " + m + "/idx is inside the mount point"},
      {dir.Sub("b") + " " + m + i + " --log-file " + m + "/log",
       "--log-file " + m + "/log is inside the mount point"},
      {dir.Sub("b") + " " + m + i + " --metrics-file " + m + "/k.prom",
       "--metrics-file " + m + "/k.prom is inside the mount point"},
  };
  for (const auto& [args, message] : cases) {
    const std::string said = RunKvfs("mount " + args);
    EXPECT_NE(said.find(message), std::string::npos) << args << ": " << said;
    EXPECT_NE(said.find("(exit status not zero)"), std::string::npos) << said;
  }
  EXPECT_TRUE(std::filesystem::is_empty(m)) << "nothing was mounted or written there";
}

// `kvfs umount` unmounts kvfs mounts only: umount2 would take away any
// other filesystem mounted where it is pointed.
TEST(Mount, UmountLeavesOtherFilesystemsAlone) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  ASSERT_EQ(::mkdir(dir.Sub("t").c_str(), 0755), 0);
  const dev_t before = DeviceOf(dir.Sub("t"));
  if (::mount("tmpfs", dir.Sub("t").c_str(), "tmpfs", 0, "size=1m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(errno);
  }
  const std::string said = RunKvfs("umount " + dir.Sub("t"));
  EXPECT_NE(said.find("is a tmpfs mount, not a kvfs one: not unmounting it"), std::string::npos)
      << said;
  EXPECT_NE(said.find("(exit status not zero)"), std::string::npos) << said;
  EXPECT_NE(DeviceOf(dir.Sub("t")), before) << "the tmpfs must still be mounted";
  ::umount2(dir.Sub("t").c_str(), MNT_DETACH);
  EXPECT_NE(RunKvfs("umount " + dir.Sub("t")).find("is not a mount point"), std::string::npos);
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A daemon that stops taking changes (here: another process took its node)
// says so where operators look: `kvfs stat` and the metrics.
TEST(Mount, AReadOnlyDaemonSaysSoInStatAndMetrics) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  Mount m(dir);
  ASSERT_TRUE(m.Start());
  ASSERT_EQ(LlmdStore(m.Path("before.bin"), Pattern(1, 1 << 20), 1), 0);
  EXPECT_NE(RunKvfs("stat " + m.Path("")).find("state             ok"), std::string::npos);
  {
    std::ofstream lock(m.backing() + "/nodes/" + m.node() + "/lock", std::ios::trunc);
    lock << "pid 4242 on host other-machine\nheartbeat 0 feedc0de pid:[1]\n";
  }
  // The heartbeat (every 5 s) finds the other line.
  std::string said;
  for (int i = 0; i < 150 && said.find("READ-ONLY") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    said = RunKvfs("stat " + m.Path(""));
  }
  EXPECT_NE(said.find("READ-ONLY"), std::string::npos) << said;
  EXPECT_NE(ReadFileOrEmpty(m.Path(".kvfs/metrics")).find("\nkvfs_read_only 1\n"),
            std::string::npos);
  EXPECT_EQ(LlmdStore(m.Path("after.bin"), Pattern(2, 1 << 20), 1), EIO);
  EXPECT_TRUE(LlmdLoadSuffix(m.Path("before.bin"), Pattern(1, 1 << 20), 1 << 20, 1));
  m.Stop();
}

// The mount's kernel readahead is what --readahead asks for, so that one
// sequential reader keeps that much in flight to the daemon. (The INIT
// reply's max_readahead once cut it to 1 MiB without a word: one cold
// reader then kept the disk half as busy as on the plain directory.)
TEST(Mount, KernelReadaheadIsWhatWasAskedFor) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{}, "8192"}, {{"--readahead", "4M"}, "4096"}, {{"--readahead", "32M"}, "32768"}};
  for (const auto& [options, kib] : cases) {
    TempDir dir;
    Mount m(dir, options);
    ASSERT_TRUE(m.Start());
    const dev_t dev = DeviceOf(m.Path(""));  // answered once INIT is through
    const std::string knob =
        absl::StrFormat("/sys/class/bdi/%u:%u/read_ahead_kb", major(dev), minor(dev));
    std::string value = ReadFileOrEmpty(knob);
    if (value.empty()) GTEST_SKIP() << "no " << knob << " to read the mount's readahead from";
    EXPECT_EQ(value, kib + "\n") << (options.empty() ? "default" : options[1]);
    EXPECT_EQ(m.Stop(), 0);
  }
}

// The kernel's limit on background requests (readahead READs) never
// exceeds the worker threads, so that an open or lookup does not queue
// behind READs. Read back from the FUSE control filesystem, mounted here if
// the system has not (it is harmless and most systems mount it at boot).
TEST(Mount, BackgroundRequestsStayBelowTheWorkerThreads) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  const std::string control = "/sys/fs/fuse/connections";
  bool mounted_here = false;
  if (!std::filesystem::exists(control)) GTEST_SKIP() << "no " << control;
  if (std::filesystem::is_empty(control)) {
    if (::mount("fusectl", control.c_str(), "fusectl", 0, nullptr) != 0) {
      GTEST_SKIP() << "cannot mount fusectl on " << control << ": " << std::strerror(errno);
    }
    mounted_here = true;
  }
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{}, "64 48"}, {{"--threads", "9"}, "6 4"}, {{"--threads", "200"}, "64 48"}};
  for (const auto& [options, want] : cases) {
    TempDir dir;
    Mount m(dir, options);
    ASSERT_TRUE(m.Start());
    const dev_t dev = DeviceOf(m.Path(""));
    // The connection's directory is named by the kernel's device number.
    const std::string conn =
        absl::StrFormat("%s/%u/", control, (major(dev) << 20) | minor(dev));
    std::string got = ReadFileOrEmpty(conn + "max_background");
    if (got.empty()) {
      EXPECT_EQ(m.Stop(), 0);
      if (mounted_here) ::umount(control.c_str());
      GTEST_SKIP() << "no " << conn << "max_background to read the mount's limit from";
    }
    got = got.substr(0, got.find('\n')) + " " + ReadFileOrEmpty(conn + "congestion_threshold");
    EXPECT_EQ(got, want + "\n") << (options.empty() ? "default" : options[1]);
    EXPECT_EQ(m.Stop(), 0);
  }
  if (mounted_here) ::umount(control.c_str());
}

// Once mounted, the detached daemon lets go of the output it was started
// with (a `kvfs mount ... | tee` ends) and writes to its log file instead.
TEST(Mount, DetachedDaemonLetsGoOfTheCallersOutputAndLogs) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  ASSERT_EQ(::mkdir(dir.Sub("backing").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(dir.Sub("mnt").c_str(), 0755), 0);
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDERR_FILENO);
  std::vector<std::string> args = {KVFS_BINARY, "mount", dir.Sub("backing"), dir.Sub("mnt"),
                                    "--index-dir", dir.Sub("index"), "--node-id", "log-test"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  ASSERT_EQ(posix_spawn(&pid, KVFS_BINARY, &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  // End of file on the pipe: no process holds its writing end any more.
  std::string said;
  bool ended = false;
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
       std::chrono::steady_clock::now() < deadline;) {
    pollfd p = {out[0], POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[256];
    const ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) {
      ended = n == 0;
      break;
    }
    said.append(buf, n);
  }
  ::close(out[0]);
  EXPECT_TRUE(ended) << "the daemon still holds the output it was started with";
  EXPECT_EQ(said, "");

  const std::string log = dir.Sub("index/kvfs.log");
  EXPECT_NE(ReadFileOrEmpty(log).find("kvfs: mounted " + dir.Sub("backing") + " on " +
                                      dir.Sub("mnt")),
            std::string::npos)
      << ReadFileOrEmpty(log);
  EXPECT_EQ(RunKvfs("umount " + dir.Sub("mnt")), "");
  // The daemon says so in its log as it exits.
  for (int i = 0; i < 500 && ReadFileOrEmpty(log).find("unmounted") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_NE(ReadFileOrEmpty(log).find("kvfs: unmounted " + dir.Sub("mnt")), std::string::npos)
      << ReadFileOrEmpty(log);
}

// What opening the engine says (here: the index rebuilt) reaches the
// terminal of `kvfs mount` and, once the daemon has detached, its log file.
TEST(Mount, WhatOpeningSaidIsInTheDaemonsLogToo) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  ASSERT_EQ(::mkdir(dir.Sub("backing").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(dir.Sub("mnt").c_str(), 0755), 0);
  const std::string log = dir.Sub("daemon.log");
  const std::string mount = "mount " + dir.Sub("backing") + " " + dir.Sub("mnt") +
                            " --index-dir " + dir.Sub("index") + " --log-file " + log;
  EXPECT_EQ(RunKvfs(mount), "");
  std::ofstream(dir.Sub("mnt/block.bin")) << "a block";
  EXPECT_EQ(RunKvfs("umount " + dir.Sub("mnt")), "");
  ASSERT_GT(std::filesystem::remove_all(dir.Sub("index")), 0u);
  const std::string said = RunKvfs(mount);
  const std::string rebuilt = "journal entries into the index (rebuild)";
  EXPECT_NE(said.find(rebuilt), std::string::npos) << said;
  EXPECT_NE(ReadFileOrEmpty(log).find(rebuilt), std::string::npos) << ReadFileOrEmpty(log);
  EXPECT_EQ(ReadFileOrEmpty(dir.Sub("mnt/block.bin")), "a block");
  EXPECT_EQ(RunKvfs("umount " + dir.Sub("mnt")), "");
}

// A hard open-file limit below two descriptors per extent the capacity
// allows: the daemon mounts, and says that opens will fail as it fills.
TEST(Mount, AnOpenFileLimitTooLowForTheCapacityIsReported) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  ASSERT_EQ(::mkdir(dir.Sub("backing").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(dir.Sub("mnt").c_str(), 0755), 0);
  // `ulimit -n` sets the soft and the hard limit of the shell it runs in.
  const std::string said = RunShell(
      "ulimit -n 1500 && exec " + std::string(KVFS_BINARY) + " mount " + dir.Sub("backing") +
      " " + dir.Sub("mnt") + " --index-dir " + dir.Sub("index") + " --capacity 1T --log-file " +
      dir.Sub("kvfs.log"));
  EXPECT_EQ(said.find("(exit status not zero)"), std::string::npos) << said;
  EXPECT_NE(said.find("the open-file limit is 1500 (hard limit 1500), but this node may hold "
                      "1025 extents"),
            std::string::npos)
      << said;
  EXPECT_EQ(RunKvfs("umount " + dir.Sub("mnt")), "");
}

TEST(Mount, UnusableLogOrMetricsFileFailsTheMountClearly) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  ASSERT_EQ(::mkdir(dir.Sub("backing").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(dir.Sub("mnt").c_str(), 0755), 0);
  const dev_t before = DeviceOf(dir.Sub("mnt"));
  const std::string said = RunKvfs("mount " + dir.Sub("backing") + " " + dir.Sub("mnt") +
                                   " --index-dir " + dir.Sub("index") +
                                   " --log-file " + dir.Sub("no/such/dir/kvfs.log"));
  EXPECT_NE(said.find("cannot open the log file " + dir.Sub("no/such/dir/kvfs.log")),
            std::string::npos)
      << said;
  EXPECT_NE(said.find("(exit status not zero)"), std::string::npos) << said;
  EXPECT_EQ(DeviceOf(dir.Sub("mnt")), before) << "nothing may be mounted";
  EXPECT_NE(RunKvfs("mount " + dir.Sub("backing") + " " + dir.Sub("mnt") + " --log-file dir/")
                .find("not a file name"),
            std::string::npos);
  // A metrics file that cannot be written (a directory is in its place).
  ASSERT_EQ(::mkdir(dir.Sub("prom").c_str(), 0755), 0);
  const std::string metrics = RunKvfs("mount " + dir.Sub("backing") + " " + dir.Sub("mnt") +
                                      " --index-dir " + dir.Sub("index") + " --metrics-file " +
                                      dir.Sub("prom"));
  EXPECT_NE(metrics.find("cannot write the metrics file"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("(exit status not zero)"), std::string::npos) << metrics;
  EXPECT_EQ(DeviceOf(dir.Sub("mnt")), before) << "nothing may be mounted";
}

// Relative BACKING, MOUNTPOINT and --index-dir are taken from the directory
// the command runs in, though the daemon leaves it.
TEST(Mount, RelativePathsInTheBackground) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  ASSERT_EQ(::mkdir(dir.Sub("mnt").c_str(), 0755), 0);
  const std::string in_dir = "cd " + dir.path() + " && ";
  const std::string mount = in_dir + KVFS_BINARY +
                            " mount backing mnt --index-dir index --node-id rel 2>&1";
  ASSERT_EQ(std::system(("mkdir -p " + dir.Sub("backing") + " && " + mount).c_str()), 0);
  const std::string data = Pattern(3, 100000);
  ASSERT_EQ(LlmdStore(dir.Sub("mnt/f.bin"), data, 1), 0);
  EXPECT_TRUE(std::filesystem::exists(dir.Sub("index")));
  EXPECT_TRUE(std::filesystem::exists(dir.Sub("backing/nodes/rel")));
  EXPECT_EQ(RunKvfs("umount " + dir.Sub("mnt")), "");
}

// `kvfs umount` returns once the daemon has finished and let go of the
// backing directory, so `kvfs umount M && kvfs mount B M` works every time
// (it used to fail now and then: the old daemon still held the node lock).
// The mount point has a space, which the mount table escapes as \040.
TEST(Mount, UmountWaitsForTheDaemonSoItCanBeMountedAgainAtOnce) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  const std::string mnt = dir.Sub("mnt x");
  ASSERT_EQ(::mkdir(mnt.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(dir.Sub("backing").c_str(), 0755), 0);
  const std::string mount = "mount " + dir.Sub("backing") + " '" + mnt + "' --index-dir " +
                            dir.Sub("index") + " --node-id again";
  ASSERT_EQ(RunKvfs(mount), "");
  EXPECT_NE(ReadFileOrEmpty(dir.Sub("backing/nodes/again/lock")).find(", serving " + mnt),
            std::string::npos);
  const dev_t dev = DeviceOf(mnt);
  EXPECT_EQ(ReadFileOrEmpty(absl::StrFormat("/sys/class/bdi/%u:%u/read_ahead_kb", major(dev),
                                            minor(dev))),
            "8192\n")
      << "readahead raised for a mount point with a space";
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 20; ++i) {
      const std::string name = absl::StrFormat("%s/r%d_%d.bin", mnt, round, i);
      ASSERT_EQ(LlmdStore(name, Pattern(round * 100 + i, 200000), 1), 0);
    }
    ASSERT_EQ(RunKvfs("umount '" + mnt + "'"), "") << "round " << round;
    ASSERT_EQ(RunKvfs(mount), "") << "round " << round;
  }
  EXPECT_TRUE(LlmdLoadSuffix(mnt + "/r4_19.bin", Pattern(419, 200000), 200000, 1));
  EXPECT_EQ(RunKvfs("umount '" + mnt + "'"), "");
  EXPECT_FALSE(NodeIsLocked(BackingLayout{dir.Sub("backing"), "again"}, nullptr))
      << "the daemon still holds the node when umount returns";
}

}  // namespace
}  // namespace kvfs
