// Both clients' exact call sequences at full scale on a real mount: 64
// threads store 2,000 distinct files of 2-32 MiB (some names stored twice,
// concurrently), then 64 threads load every one of them and compare every
// byte; after a remount, again.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "kvfs/posix_file.h"
#include "tests/mount_util.h"
#include "tests/test_util.h"

namespace kvfs {
namespace {

using testing::TempDir;

constexpr int kFiles = 2000;
constexpr int kThreads = 64;
constexpr size_t kBlock = 512 << 10;  // the suffix loads read whole blocks

// 2-4 MiB mostly (one GPU block per file), every 40th file 4-32 MiB.
size_t SizeOf(int i) {
  if (i % 40 == 0) return 4 * kBlock + static_cast<size_t>((i * 7919) % 57) * kBlock;
  return 4 * kBlock + static_cast<size_t>(i % 5) * kBlock;
}

// The bytes of file i, cheap to make (splitmix64 of the word index).
void Fill(int i, char* out, size_t size) {
  uint64_t x = 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(i + 1);
  for (size_t at = 0; at < size; at += 8) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    std::memcpy(out + at, &z, std::min<size_t>(8, size - at));
  }
}

std::string PathOf(const std::string& root, int i) {
  const std::string hash = absl::StrFormat("%064x", 0x2545f4914f6cdd1dULL * (i + 1));
  const char* model = i % 2 == 0 ? "llama_8b_5d2c_r0" : "qwen_32b_77ab_r1";
  return absl::StrFormat("%s/%s/%s/%s_g0/%s.bin", root, model, hash.substr(0, 3),
                         hash.substr(3, 2), hash);
}

struct AlignedBuffer {
  explicit AlignedBuffer(size_t n) {
    if (::posix_memalign(&p, 4096, n) != 0) p = nullptr;
  }
  ~AlignedBuffer() { std::free(p); }
  char* data() { return static_cast<char*>(p); }
  void* p = nullptr;
};

// Which call of a store failed (for the failure message).
thread_local const char* failed_call = "";

// llm-d (even files): probe, mkdir -p, temp file, one writev, rename while
// open, close. vLLM (odd files): exists, makedirs, O_DIRECT temp file, one
// write, close, rename. 0 or the errno of the failing call.
int Store(const std::string& final, int i, uint32_t thread, char* buf) {
  const size_t size = SizeOf(i);
  Fill(i, buf, size);
  (void)EnsureDirectories(final.substr(0, final.rfind('/')), 0777);
  const std::string tmp = final + "_" + std::to_string(thread) + ".tmp";
  if (i % 2 == 0) {
    int fd = ::open(final.c_str(), O_RDONLY);
    if (fd >= 0) {
      ::close(fd);
      struct timespec times[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
      failed_call = "utimensat";
      return ::utimensat(AT_FDCWD, final.c_str(), times, 0) == 0 ? 0 : errno;
    }
    failed_call = "open of the temp file";
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) return errno;
    failed_call = "writev";
    iovec iov = {buf, size};
    if (::writev(fd, &iov, 1) != static_cast<ssize_t>(size)) {
      const int err = errno ? errno : EIO;
      ::close(fd);
      ::unlink(tmp.c_str());
      return err;
    }
    failed_call = "rename while open";
    const int rc = ::rename(tmp.c_str(), final.c_str()) == 0 ? 0 : errno;
    ::close(fd);
    return rc;
  }
  if (::access(final.c_str(), F_OK) == 0) return 0;
  failed_call = "O_DIRECT open of the temp file";
  const int fd = ::open(tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_TRUNC | O_DIRECT, 0644);
  if (fd < 0) return errno;
  failed_call = "O_DIRECT write";
  if (::write(fd, buf, size) != static_cast<ssize_t>(size)) {
    const int err = errno ? errno : EIO;
    ::close(fd);
    ::unlink(tmp.c_str());
    return err;
  }
  failed_call = "close";
  if (::close(fd) != 0) return errno;
  failed_call = "rename after close";
  return ::rename(tmp.c_str(), final.c_str()) == 0 ? 0 : errno;
}

// llm-d: open, lseek(END), lseek to the last k blocks, one read. vLLM:
// O_DIRECT open, one readv of everything. Compared with the expected bytes.
bool Load(const std::string& path, int i, char* buf, char* want) {
  const size_t size = SizeOf(i);
  Fill(i, want, size);
  if (i % 2 == 0) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) return false;
    const off_t end = ::lseek(fd, 0, SEEK_END);
    const size_t n = std::min(size, kBlock * (1 + i % 7));
    const bool ok = end == static_cast<off_t>(size) &&
                    ::lseek(fd, end - static_cast<off_t>(n), SEEK_SET) >= 0 &&
                    ::read(fd, buf, n) == static_cast<ssize_t>(n) &&
                    std::memcmp(buf, want + size - n, n) == 0;
    ::close(fd);
    return ok;
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT);
  if (fd < 0) return false;
  iovec iov = {buf, size};
  const bool ok = ::readv(fd, &iov, 1) == static_cast<ssize_t>(size) &&
                  std::memcmp(buf, want, size) == 0;
  ::close(fd);
  return ok;
}

TEST(MountScale, BothClientsSixtyFourThreadsTwoThousandFilesAcrossARemount) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  // The default temp-file grace (Mount's 1 s is for tests that wait for
  // reaping): 64 threads on a small machine can stall a vLLM store for over
  // a second between its close and its rename.
  Mount m(dir, {"--temp-grace", "30"});
  ASSERT_TRUE(m.Start());
  constexpr size_t kMax = 64 * kBlock;
  std::atomic<int> next{0}, failures{0};
  std::atomic<uint64_t> bytes{0};
  // Every 10th file comes twice in a row: two threads store it at once.
  std::vector<int> order;
  for (int i = 0; i < kFiles; ++i) {
    order.push_back(i);
    if (i % 10 == 0) order.push_back(i);
  }
  auto run = [&](auto body) {
    next = 0;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        AlignedBuffer a(kMax), b(kMax);
        for (int k; (k = next++) < static_cast<int>(order.size());) {
          body(order[k], static_cast<uint32_t>(t), a.data(), b.data());
        }
      });
    }
    for (auto& th : threads) th.join();
  };
  run([&](int i, uint32_t t, char* a, char*) {
    if (int rc = Store(PathOf(m.Path(""), i), i, t, a); rc != 0) {
      std::fprintf(stderr, "store of file %d (%s): %s failed: %s\n", i, PathOf("", i).c_str(),
                   failed_call, std::strerror(rc));
      ++failures;
    }
    bytes += SizeOf(i);
  });
  ASSERT_EQ(failures.load(), 0);
  std::fprintf(stderr, "stored %d files (%.1f GiB written)\n", kFiles,
               static_cast<double>(bytes.load()) / (1 << 30));
  auto verify = [&](const char* when) {
    failures = 0;
    run([&](int i, uint32_t, char* a, char* b) {
      if (!Load(PathOf(m.Path(""), i), i, a, b)) {
        std::fprintf(stderr, "%s: file %d (%s) does not read back right\n", when, i,
                     PathOf("", i).c_str());
        ++failures;
      }
    });
    EXPECT_EQ(failures.load(), 0) << when;
  };
  verify("before the remount");
  EXPECT_EQ(m.Stop(), 0);
  ASSERT_TRUE(m.Start());
  verify("after the remount");
}

}  // namespace
}  // namespace kvfs
