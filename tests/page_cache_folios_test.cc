// The folio census `kvfs bench` prints next to its warm loads.
#include "tools/page_cache_folios.h"

#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace kvfs {
namespace {

using testing::TempDir;

constexpr size_t kBytes = 8 << 20;

void WriteSyncedFile(const std::string& path) {
  std::string data(kBytes, 'k');
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ASSERT_EQ(::fsync(fd), 0);
  ASSERT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
  ::close(fd);
}

void ReadWhole(const std::string& path) {
  std::string buf(kBytes, '\0');
  int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pread(fd, buf.data(), buf.size(), 0), static_cast<ssize_t>(kBytes));
  ::close(fd);
}

TEST(PageCacheFolios, CountsOnlyResidentPagesAndTheirFolios) {
  if (::geteuid() != 0) GTEST_SKIP() << "reading /proc/kpageflags needs root";
  TempDir dir;
  const std::string path = dir.Sub("block.bin");
  WriteSyncedFile(path);

  absl::StatusOr<FolioCensus> dropped = CountPageCacheFolios(path);
  ASSERT_TRUE(dropped.ok()) << dropped.status();
  EXPECT_EQ(dropped->resident_pages, 0u) << "the census itself must not read pages in";

  ReadWhole(path);
  absl::StatusOr<FolioCensus> cached = CountPageCacheFolios(path);
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(cached->resident_pages, kBytes / 4096);
  EXPECT_GE(cached->folios, 1u);
  EXPECT_LE(cached->folios, cached->resident_pages);
  EXPECT_GE(cached->AverageKiB(), 4.0);
  EXPECT_LE(cached->AverageKiB(), 8192.0);
}

TEST(PageCacheFolios, MissingFileIsAnError) {
  TempDir dir;
  absl::StatusOr<FolioCensus> census = CountPageCacheFolios(dir.Sub("missing"));
  ASSERT_FALSE(census.ok());
  EXPECT_NE(census.status().message().find("missing"), std::string::npos) << census.status();
}

}  // namespace
}  // namespace kvfs
