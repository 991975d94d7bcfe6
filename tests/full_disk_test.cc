// A backing filesystem that fills up: the write that hits the end fails with
// ENOSPC and every file committed before it stays intact, then and after a
// reopen; through a mount, the client's store fails with ENOSPC and leaves no
// file. Uses a small tmpfs, so it needs root (CI runs as root).
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "kvfs/errors.h"
#include "tests/mount_util.h"
#include "tests/test_util.h"
#include "tests/tool_util.h"

namespace kvfs {
namespace {

using testing::Kvfs;
using testing::MustOpen;
using testing::Pattern;
using testing::TempDir;
using testing::ToolResult;

class SmallTmpfs {
 public:
  SmallTmpfs(const std::string& where, const char* size) : where_(where) {
    ::mkdir(where.c_str(), 0755);
    std::string opts = std::string("size=") + size;
    if (::mount("tmpfs", where.c_str(), "tmpfs", 0, opts.c_str()) == 0) {
      mounted_ = true;
    } else {
      error_ = std::strerror(errno);
    }
  }
  ~SmallTmpfs() {
    if (mounted_) ::umount2(where_.c_str(), MNT_DETACH);
  }
  // Why a test on it cannot run, or "" if it can.
  std::string SkipReason() const {
    return mounted_ ? "" : "cannot mount a small tmpfs here (" + error_ +
                               "); this test needs root and mount permission";
  }

 private:
  std::string where_;
  bool mounted_ = false;
  std::string error_;
};

TEST(FullDisk, EnospcFailsTheWriteAndKeepsCommittedFiles) {
  TempDir dir;
  SmallTmpfs fs(dir.Sub("small"), "24m");
  if (std::string why = fs.SkipReason(); !why.empty()) GTEST_SKIP() << why;
  EngineOptions o;
  o.backing_dir = dir.Sub("small/backing");
  o.index_dir = dir.Sub("index");  // the index lives on a local disk
  o.node_id = "full-node";
  o.extent_bytes = 4 << 20;
  o.log = [](absl::string_view) {};
  // No capacity limit, no floor: the filesystem itself runs out, because a
  // neighbour fills it after kvfs last looked at its free space (no
  // evictor thread looks again; a write that has to wait for room would).
  o.capacity_bytes = uint64_t{1} << 40;
  o.min_free_bytes = 0;
  o.background_eviction = false;
  o.space_wait_ns = 100'000'000;
  ::mkdir(o.backing_dir.c_str(), 0755);

  int committed = 0;
  absl::Status failure;
  {
    auto e = MustOpen(o);
    ASSERT_TRUE(e);
    struct statvfs st;
    ASSERT_EQ(::statvfs(o.backing_dir.c_str(), &st), 0);
    const off_t filler = static_cast<off_t>(st.f_bavail * st.f_frsize) - (12 << 20);
    const int fd = ::open(dir.Sub("small/neighbour").c_str(), O_WRONLY | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::posix_fallocate(fd, 0, filler), 0);
    ::close(fd);
    for (int i = 0; i < 100; ++i) {
      absl::StatusOr<Attr> put = e->PutFile("f" + std::to_string(i), Pattern(i, 1 << 20));
      if (!put.ok()) {
        failure = put.status();
        break;
      }
      ++committed;
    }
    ASSERT_FALSE(failure.ok()) << "24 MiB never filled up";
    EXPECT_EQ(ErrnoOf(failure), ENOSPC) << failure;
    EXPECT_GE(committed, 8);
    // The next store fails cleanly too, and everything committed reads back.
    absl::Status more = e->PutFile("one-more", Pattern(999, 1 << 20)).status();
    EXPECT_FALSE(more.ok());
    std::printf("first failure: %s\nthen: %s\n", failure.ToString().c_str(), more.ToString().c_str());
    for (int i = 0; i < committed; ++i) {
      absl::StatusOr<std::string> got = e->GetFile("f" + std::to_string(i));
      ASSERT_TRUE(got.ok()) << i << ": " << got.status();
      EXPECT_EQ(*got, Pattern(i, 1 << 20)) << i;
    }
  }
  auto e = MustOpen(o);
  ASSERT_TRUE(e);
  for (int i = 0; i < committed; ++i) {
    absl::StatusOr<std::string> got = e->GetFile("f" + std::to_string(i));
    ASSERT_TRUE(got.ok()) << i << ": " << got.status();
    EXPECT_EQ(*got, Pattern(i, 1 << 20)) << i;
  }
  EXPECT_EQ(ErrnoOf(e->Stat("one-more").status()), ENOENT);
  EXPECT_EQ(ErrnoOf(e->Stat("f" + std::to_string(committed)).status()), ENOENT);
}

// Fills `fs_dir`'s filesystem with a neighbour's file up to `leave` free bytes.
bool FillUpTo(const std::string& fs_dir, const std::string& neighbour, uint64_t leave) {
  struct statvfs st;
  if (::statvfs(fs_dir.c_str(), &st) != 0) return false;
  const uint64_t avail = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  if (avail <= leave) return true;
  const int fd = ::open(neighbour.c_str(), O_WRONLY | O_CREAT, 0644);
  if (fd < 0) return false;
  const bool ok = ::posix_fallocate(fd, 0, static_cast<off_t>(avail - leave)) == 0;
  ::close(fd);
  return ok;
}

// The llm-d client's store (temp file, writes, rename while open, close).
// Returns 0, or the errno of the call that failed; a failed store removes
// its temp file, as the client does.
int ClientStore(const std::string& final, const std::string& data, std::string* failed_call) {
  const std::string tmp = final + "_7.tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
  if (fd < 0) {
    *failed_call = "open";
    return errno;
  }
  int err = 0;
  for (size_t done = 0; done < data.size() && err == 0;) {
    // A write cut short by a full disk returns what it wrote; the next one fails.
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      err = errno;
      *failed_call = "write";
    } else {
      done += static_cast<size_t>(n);
    }
  }
  if (err == 0 && ::rename(tmp.c_str(), final.c_str()) != 0) {
    err = errno;
    *failed_call = "rename";
  }
  if (::close(fd) != 0 && err == 0) {
    err = errno;
    *failed_call = "close";
  }
  if (err != 0) ::unlink(tmp.c_str());
  return err;
}

// fsck of the mount's node, with every chunk checked: clean.
void ExpectFsckClean(const std::string& backing, const Mount& m) {
  const ToolResult r = Kvfs("fsck " + backing + " --node-id " + m.node() + " --index-dir " +
                            m.index() + " --verify-data");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::printf("%s", r.output.c_str());
}

std::string ReadWhole(const std::string& path) {
  std::string out;
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return out;
  char buf[1 << 16];
  for (ssize_t n; (n = ::read(fd, buf, sizeof(buf))) > 0;) out.append(buf, n);
  ::close(fd);
  return out;
}

// The client sees ENOSPC from a full backing disk, and the store leaves
// nothing behind. What was stored before either reads back whole or was
// evicted whole: kvfs is a cache, and makes room by evicting (here to no
// avail, the file being larger than what the disk has left). Once the disk
// has room again stores work, and everything reads back after a remount.
TEST(FullDisk, AStoreThroughAMountFailsWithEnospcAndLeavesNoFile) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  SmallTmpfs fs(dir.Sub("small"), "32m");
  if (std::string why = fs.SkipReason(); !why.empty()) GTEST_SKIP() << why;
  const std::string backing = dir.Sub("small/backing");
  ::mkdir(backing.c_str(), 0755);
  // No floor (the disk itself runs out), a short wait for room, and evicted
  // space back at once.
  const std::string log = dir.Sub("kvfs.log");
  Mount m(dir, {"--extent-size", "4M", "--min-free", "0", "--space-wait", "1",
                "--reclaim-grace", "0", "--log-file", log}, "", backing);
  ASSERT_TRUE(m.Start());
  ASSERT_EQ(::mkdir(m.Path("kv").c_str(), 0755), 0);
  std::string call;
  constexpr int kKept = 4;
  for (int i = 0; i < kKept; ++i) {
    ASSERT_EQ(ClientStore(m.Path("kv/kept" + std::to_string(i)), Pattern(i, 1 << 20), &call), 0)
        << call;
  }
  // A neighbour takes all but 2 MiB; the next store needs 12.
  ASSERT_TRUE(FillUpTo(dir.Sub("small"), dir.Sub("small/neighbour"), 2 << 20));
  const int rc = ClientStore(m.Path("kv/big"), Pattern(99, 12 << 20), &call);
  EXPECT_EQ(rc, ENOSPC) << call << ": " << std::strerror(rc);
  EXPECT_NE(::access(m.Path("kv/big").c_str(), F_OK), 0);
  EXPECT_NE(::access(m.Path("kv/big_7.tmp").c_str(), F_OK), 0);
  auto check_kept = [&](const char* when) {
    int present = 0;
    for (int i = 0; i < kKept; ++i) {
      const std::string path = m.Path("kv/kept" + std::to_string(i));
      if (::access(path.c_str(), F_OK) != 0) continue;  // evicted for the big store
      ++present;
      EXPECT_TRUE(ReadWhole(path) == Pattern(i, 1 << 20)) << when << ": kept" << i;
    }
    std::printf("%s: %d of %d earlier files still there\n", when, present, kKept);
  };
  check_kept("after the failed store");

  // Room again: the same store goes through.
  ASSERT_EQ(::unlink(dir.Sub("small/neighbour").c_str()), 0);
  ASSERT_EQ(ClientStore(m.Path("kv/big"), Pattern(99, 12 << 20), &call), 0) << call;
  EXPECT_TRUE(ReadWhole(m.Path("kv/big")) == Pattern(99, 12 << 20));
  EXPECT_EQ(m.Stop(), 0);
  ASSERT_TRUE(m.Start());
  EXPECT_TRUE(ReadWhole(m.Path("kv/big")) == Pattern(99, 12 << 20));
  check_kept("after a remount");
  EXPECT_EQ(m.Stop(), 0);
  // The failed store is no damage: the remount found nothing to report.
  const std::string said = ReadWhole(log);
  EXPECT_NE(said.find("No space left on device"), std::string::npos) << said;
  EXPECT_EQ(said.find("shorter than"), std::string::npos) << said;
  ExpectFsckClean(backing, m);
}

// The disk fills at every step of a store in turn (payload, record header
// and trailer, journal entry: 4 KiB apart around one 1 MiB file): each
// store either succeeds and reads back, or fails (ENOSPC) and leaves no
// name; a remount keeps exactly the stores that succeeded and reports no
// damage, and fsck finds the backing directory clean.
TEST(FullDisk, ADiskFillingAtAnyStepOfAStoreLeavesTheWholeFileOrNone) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  SmallTmpfs fs(dir.Sub("small"), "32m");
  if (std::string why = fs.SkipReason(); !why.empty()) GTEST_SKIP() << why;
  const std::string backing = dir.Sub("small/backing");
  ::mkdir(backing.c_str(), 0755);
  const std::string log = dir.Sub("kvfs.log");
  Mount m(dir, {"--extent-size", "4M", "--min-free", "0", "--space-wait", "0",
                "--reclaim-grace", "0", "--log-file", log}, "", backing);
  ASSERT_TRUE(m.Start());
  ASSERT_EQ(::mkdir(m.Path("kv").c_str(), 0755), 0);
  std::vector<bool> stored;
  int failures = 0;
  for (int step = -1; step <= 16; ++step) {
    const uint64_t leave = (1 << 20) + static_cast<int64_t>(step) * 4096;
    ASSERT_TRUE(FillUpTo(dir.Sub("small"), dir.Sub("small/neighbour"), leave));
    const std::string path = m.Path("kv/f" + std::to_string(stored.size()));
    std::string call;
    const int rc = ClientStore(path, Pattern(static_cast<int>(stored.size()), 1 << 20), &call);
    if (rc != 0) {
      ++failures;
      std::printf("leaving %llu: %s failed\n", static_cast<unsigned long long>(leave), call.c_str());
      EXPECT_EQ(rc, ENOSPC) << "leaving " << leave << ": " << call << ": " << std::strerror(rc);
      EXPECT_NE(::access(path.c_str(), F_OK), 0) << path;
      EXPECT_NE(::access((path + "_7.tmp").c_str(), F_OK), 0) << path;
    } else {
      EXPECT_TRUE(ReadWhole(path) == Pattern(static_cast<int>(stored.size()), 1 << 20)) << path;
    }
    stored.push_back(rc == 0);
    ASSERT_EQ(::unlink(dir.Sub("small/neighbour").c_str()), 0);
  }
  std::printf("%d of %zu stores failed\n", failures, stored.size());
  EXPECT_GT(failures, 0) << "the disk never filled";
  EXPECT_LT(failures, static_cast<int>(stored.size())) << "no store fitted";
  EXPECT_EQ(m.Stop(), 0);
  ASSERT_TRUE(m.Start());
  for (size_t i = 0; i < stored.size(); ++i) {
    const std::string path = m.Path("kv/f" + std::to_string(i));
    if (stored[i]) {
      EXPECT_TRUE(ReadWhole(path) == Pattern(static_cast<int>(i), 1 << 20)) << path;
    } else {
      EXPECT_NE(::access(path.c_str(), F_OK), 0) << path;
    }
  }
  EXPECT_EQ(m.Stop(), 0);
  const std::string said = ReadWhole(log);
  EXPECT_EQ(said.find("shorter than"), std::string::npos) << said;
  ExpectFsckClean(backing, m);
}

// The index's disk fills up (it is local, apart from the backing
// directory): new files fail with ENOSPC, before the index itself runs out
// of room, and the daemon says why; reads and unlinks go on, nothing turns
// read-only, and once the disk has room again stores work again, without a
// remount. Everything stored reads back after a remount too.
TEST(FullDisk, AFullIndexDiskRefusesNewFilesUntilItHasRoomAgain) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  SmallTmpfs fs(dir.Sub("idx"), "16m");
  if (std::string why = fs.SkipReason(); !why.empty()) GTEST_SKIP() << why;
  const std::string log = dir.Sub("kvfs.log");
  // Given after Mount's own --index-dir, so this one counts.
  Mount m(dir, {"--index-dir", dir.Sub("idx/index"), "--log-file", log});
  ASSERT_TRUE(m.Start());
  ASSERT_EQ(::mkdir(m.Path("kv").c_str(), 0755), 0);
  std::string call;
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(ClientStore(m.Path("kv/f" + std::to_string(i)), Pattern(i, 64 << 10), &call), 0);
  }
  // 64 KiB left: below the 1% of 16 MiB that kvfs keeps free there.
  ASSERT_TRUE(FillUpTo(dir.Sub("idx"), dir.Sub("idx/neighbour"), 64 << 10));
  EXPECT_EQ(ClientStore(m.Path("kv/f3"), Pattern(3, 64 << 10), &call), ENOSPC) << call;
  EXPECT_NE(::access(m.Path("kv/f3").c_str(), F_OK), 0);
  EXPECT_NE(Kvfs("stat " + m.Path("")).output.find("state             ok"), std::string::npos);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(ReadWhole(m.Path("kv/f" + std::to_string(i))) == Pattern(i, 64 << 10)) << i;
  }
  EXPECT_EQ(::unlink(m.Path("kv/f2").c_str()), 0);
  // Room again: stores go on.
  ASSERT_EQ(::unlink(dir.Sub("idx/neighbour").c_str()), 0);
  EXPECT_EQ(ClientStore(m.Path("kv/f3"), Pattern(3, 64 << 10), &call), 0) << call;
  EXPECT_EQ(m.Stop(), 0);
  ASSERT_TRUE(m.Start());
  for (int i : {0, 1, 3}) {
    EXPECT_TRUE(ReadWhole(m.Path("kv/f" + std::to_string(i))) == Pattern(i, 64 << 10)) << i;
  }
  EXPECT_NE(::access(m.Path("kv/f2").c_str(), F_OK), 0);
  EXPECT_EQ(m.Stop(), 0);
  const std::string said = ReadWhole(log);
  EXPECT_NE(said.find("less than the 167772 kvfs keeps free there: new files fail with ENOSPC"),
            std::string::npos) << said;
  EXPECT_NE(said.find("has room again"), std::string::npos) << said;
}

}  // namespace
}  // namespace kvfs
