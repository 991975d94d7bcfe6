// A backing filesystem that fills up: the write that hits the end fails with
// ENOSPC and every file committed before it stays intact, then and after a
// reopen. Uses a small tmpfs, so it needs root (CI runs as root).
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
#include "tests/test_util.h"

namespace kvfs {
namespace {

using testing::MustOpen;
using testing::Pattern;
using testing::TempDir;

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
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }

 private:
  std::string where_;
  bool mounted_ = false;
  std::string error_;
};

TEST(FullDisk, EnospcFailsTheWriteAndKeepsCommittedFiles) {
  TempDir dir;
  SmallTmpfs fs(dir.Sub("small"), "24m");
  if (!fs.mounted()) {
    GTEST_SKIP() << "cannot mount a 24 MiB tmpfs here (" << fs.error()
                 << "); this test needs root and mount permission";
  }
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

}  // namespace
}  // namespace kvfs
