// Write-behind: the engine starts writing stored bytes to the disk as they
// are written (sync_file_range), instead of leaving them dirty in memory
// until the kernel's periodic writeback, 30 s later by default.
#include <sys/vfs.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "kvfs/engine.h"
#include "tests/test_util.h"
#include "tools/page_cache_folios.h"

namespace kvfs {
namespace {

using testing::MustOpen;
using testing::Pattern;
using testing::TempDir;
using testing::TestOptions;

constexpr long kTmpfsMagic = 0x01021994;

// The one extent file below the backing directory.
std::string ExtentFile(const std::string& backing) {
  for (const auto& e : std::filesystem::recursive_directory_iterator(backing)) {
    if (e.is_regular_file() && e.path().extension() == ".kvx") return e.path().string();
  }
  return backing + "/no-extent-file";
}

// Pages of the extent not yet on the disk after storing 8 MiB, counted
// while the engine is open; with `wait`, once they are all on the disk or
// after 3 s. (Writeback is started, not awaited: 8 MiB reach the disk within
// moments, long before the kernel's periodic writeback would start, 5-30 s.)
size_t UnwrittenAfterStore(const TempDir& dir, bool write_behind, const std::string& name,
                           bool wait) {
  EngineOptions o = TestOptions(dir);
  o.index_dir = dir.Sub("index-" + name);
  o.backing_dir = dir.Sub("backing-" + name);
  ::mkdir(o.backing_dir.c_str(), 0755);
  o.write_behind = write_behind;
  std::unique_ptr<Engine> e = MustOpen(o);
  if (!e) return SIZE_MAX;
  EXPECT_TRUE(e->PutFile("m/blk.bin", Pattern(3, 8 << 20)).ok());
  size_t unwritten = SIZE_MAX;
  for (int i = 0; i < 300; ++i) {
    absl::StatusOr<FolioCensus> c = CountPageCacheFolios(ExtentFile(o.backing_dir));
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok()) return SIZE_MAX;
    unwritten = c->unwritten_pages;
    if (!wait || unwritten == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return unwritten;
}

TEST(WriteBehind, StoredBytesGoToTheDiskWithoutWaitingForPeriodicWriteback) {
  if (::geteuid() != 0) GTEST_SKIP() << "reading /proc/kpageflags needs root";
  TempDir dir;
  struct statfs fs;
  ASSERT_EQ(::statfs(dir.path().c_str(), &fs), 0);
  if (fs.f_type == kTmpfsMagic) GTEST_SKIP() << "tmpfs never writes pages back";

  // Without write-behind the pages stay dirty: the check below can tell.
  const size_t lazy = UnwrittenAfterStore(dir, false, "lazy", false);
  if (lazy == 0) {
    GTEST_SKIP() << "the kernel wrote the pages back on its own at once (memory under "
                    "writeback pressure); write-behind cannot be told apart here";
  }
  EXPECT_NE(lazy, SIZE_MAX);
  // The data, and the record's header and trailer that the commit wrote.
  EXPECT_EQ(UnwrittenAfterStore(dir, true, "eager", true), 0u)
      << "pages still dirty or under writeback after 3 s";
}

}  // namespace
}  // namespace kvfs
