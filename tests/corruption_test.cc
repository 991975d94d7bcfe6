// Flipped bytes in extents: reads fail, they never return wrong bytes.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "kvfs/errors.h"
#include "tests/test_util.h"

namespace kvfs {
namespace {

using testing::MustOpen;
using testing::Pattern;
using testing::TempDir;
using testing::TestOptions;

struct Where {
  std::string extent_path;
  uint64_t record_offset;
};

Where Locate(Engine& e, const std::string& path) {
  absl::StatusOr<Attr> attr = e.Stat(path);
  EXPECT_TRUE(attr.ok());
  absl::StatusOr<std::unique_ptr<FileReader>> r = e.OpenReader(attr->ino);
  EXPECT_TRUE(r.ok());
  return {e.layout().ExtentPath((*r)->inode().extent_id), (*r)->inode().record_offset};
}

void FlipByte(const std::string& file, uint64_t offset) {
  int fd = ::open(file.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char c;
  ASSERT_EQ(::pread(fd, &c, 1, offset), 1);
  c ^= 0x5a;
  ASSERT_EQ(::pwrite(fd, &c, 1, offset), 1);
  ::close(fd);
}

TEST(Corruption, FlippedPayloadByteFailsOnlyItsChunk) {
  TempDir dir;
  EngineOptions o = TestOptions(dir);
  std::vector<std::string> logs;
  o.log = [&](absl::string_view l) { logs.emplace_back(l); };
  auto e = MustOpen(o);
  const std::string data = Pattern(1, 3 * kChunkBytes);
  ASSERT_TRUE(e->PutFile("m_r0/abc/de_g0/victim.bin", data).ok());
  ASSERT_TRUE(e->PutFile("m_r0/abc/de_g0/neighbour.bin", Pattern(2, 100000)).ok());
  Where w = Locate(*e, "m_r0/abc/de_g0/victim.bin");
  FlipByte(w.extent_path, w.record_offset + kRecordHeaderBytes + kChunkBytes + 12345);

  absl::StatusOr<std::string> whole = e->GetFile("m_r0/abc/de_g0/victim.bin");
  ASSERT_FALSE(whole.ok());
  EXPECT_EQ(ErrnoOf(whole.status()), EIO);
  EXPECT_EQ(e->stats().checksum_errors.load(), 1u);
  ASSERT_FALSE(logs.empty());
  EXPECT_NE(logs.back().find("m_r0/abc/de_g0/victim.bin"), std::string::npos) << logs.back();

  // The other chunks of the file and its neighbour read fine.
  absl::StatusOr<std::unique_ptr<FileReader>> r =
      e->OpenReader(e->Stat("m_r0/abc/de_g0/victim.bin")->ino);
  std::string buf(kChunkBytes, '\0');
  ASSERT_TRUE((*r)->Read(0, kChunkBytes, buf.data()).ok());
  EXPECT_EQ(buf, data.substr(0, kChunkBytes));
  ASSERT_TRUE((*r)->Read(2 * kChunkBytes, kChunkBytes, buf.data()).ok());
  EXPECT_EQ(buf, data.substr(2 * kChunkBytes));
  EXPECT_FALSE((*r)->Read(kChunkBytes + 5, 10, buf.data()).ok());  // unaligned, same chunk
  EXPECT_EQ(*e->GetFile("m_r0/abc/de_g0/neighbour.bin"), Pattern(2, 100000));

  // Still an error (never the wrong bytes) after a reopen and a rebuild.
  e.reset();
  e = MustOpen(o);
  EXPECT_EQ(ErrnoOf(e->GetFile("m_r0/abc/de_g0/victim.bin").status()), EIO);
  e.reset();
  std::filesystem::remove_all(o.index_dir);
  e = MustOpen(o);
  EXPECT_EQ(ErrnoOf(e->GetFile("m_r0/abc/de_g0/victim.bin").status()), EIO);
}

TEST(Corruption, EveryFlippedPayloadByteIsCaught) {
  TempDir dir;
  auto e = MustOpen(TestOptions(dir));
  const std::string data = Pattern(3, 20000);
  ASSERT_TRUE(e->PutFile("f", data).ok());
  Where w = Locate(*e, "f");
  for (uint64_t off = 0; off < data.size(); off += 997) {
    FlipByte(w.extent_path, w.record_offset + kRecordHeaderBytes + off);
    EXPECT_EQ(ErrnoOf(e->GetFile("f").status()), EIO) << off;
    FlipByte(w.extent_path, w.record_offset + kRecordHeaderBytes + off);  // undo
    EXPECT_EQ(*e->GetFile("f"), data) << off;
  }
}

TEST(Corruption, DamagedHeaderOrTrailerDropsTheFileOnRebuild) {
  TempDir dir;
  EngineOptions o = TestOptions(dir);
  std::string header_victim = "a/header-victim", trailer_victim = "a/trailer-victim";
  {
    auto e = MustOpen(o);
    ASSERT_TRUE(e->PutFile(header_victim, Pattern(4, 5000)).ok());
    ASSERT_TRUE(e->PutFile(trailer_victim, Pattern(5, 5000)).ok());
    ASSERT_TRUE(e->PutFile("a/fine", Pattern(6, 5000)).ok());
    Where h = Locate(*e, header_victim);
    FlipByte(h.extent_path, h.record_offset + 40);
    Where t = Locate(*e, trailer_victim);
    FlipByte(t.extent_path, t.record_offset + kRecordHeaderBytes + 5000 + 10);
    // The index holds the checksums: reads still verify and succeed.
    EXPECT_EQ(*e->GetFile(header_victim), Pattern(4, 5000));
  }
  std::filesystem::remove_all(o.index_dir);
  auto e = MustOpen(o);
  ASSERT_EQ(e->problems().size(), 2u);
  EXPECT_NE(e->problems()[0].find(header_victim), std::string::npos) << e->problems()[0];
  EXPECT_NE(e->problems()[1].find(trailer_victim), std::string::npos) << e->problems()[1];
  EXPECT_EQ(ErrnoOf(e->Stat(header_victim).status()), ENOENT);
  EXPECT_EQ(ErrnoOf(e->Stat(trailer_victim).status()), ENOENT);
  EXPECT_EQ(*e->GetFile("a/fine"), Pattern(6, 5000));
}

TEST(Corruption, DamagedJournalEntryIsReportedAndNothingWrongIsServed) {
  TempDir dir;
  EngineOptions o = TestOptions(dir);
  {
    auto e = MustOpen(o);
    for (int i = 0; i < 10; ++i) {
      ASSERT_TRUE(e->PutFile("d/f" + std::to_string(i), Pattern(i, 3000)).ok());
    }
  }
  const std::string journal = o.backing_dir + "/nodes/test-node/journal/0000000001.kvj";
  FlipByte(journal, kFileHeaderBytes + 700);  // inside an early entry
  std::filesystem::remove_all(o.index_dir);
  auto e = MustOpen(o);
  ASSERT_FALSE(e->problems().empty());
  EXPECT_NE(e->problems()[0].find("0000000001.kvj"), std::string::npos) << e->problems()[0];
  absl::StatusOr<std::vector<TreeEntry>> tree = e->ListTree();
  ASSERT_TRUE(tree.ok());
  for (const TreeEntry& t : *tree) {
    if (t.inode.is_dir) continue;
    int i = std::stoi(t.path.substr(t.path.rfind('f') + 1));
    EXPECT_EQ(*e->GetFile(t.path), Pattern(i, 3000)) << t.path;
  }
}

}  // namespace
}  // namespace kvfs

namespace kvfs {
namespace {

// An extent cut short under a current file: opening reports it (with how
// many files are cut off), reads of that file fail, the others still read.
TEST(Corruption, TruncatedExtentIsReportedAndItsCutOffFileFails) {
  testing::TempDir dir;
  EngineOptions o = testing::TestOptions(dir);
  std::string extent;
  uint64_t offset = 0;
  {
    auto e = testing::MustOpen(o);
    ASSERT_TRUE(e->PutFile("a", testing::Pattern(1, 3 << 20)).ok());
    ASSERT_TRUE(e->PutFile("b", testing::Pattern(2, 3 << 20)).ok());
    absl::StatusOr<Attr> b = e->Stat("b");
    ASSERT_TRUE(b.ok());
    absl::StatusOr<Inode> n = e->GetInode(b->ino);
    ASSERT_TRUE(n.ok());
    extent = e->layout().ExtentPath(n->extent_id);
    offset = n->record_offset;
  }
  ASSERT_EQ(::truncate(extent.c_str(), static_cast<off_t>(offset + (1 << 20))), 0);
  auto e = testing::MustOpen(o);
  ASSERT_NE(e, nullptr);
  bool reported = false;
  for (const std::string& p : e->problems()) {
    reported |= p.find("shorter than its committed records") != std::string::npos &&
                p.find("the 1 files cut off") != std::string::npos;
  }
  EXPECT_TRUE(reported);
  EXPECT_FALSE(e->GetFile("b").ok());
  absl::StatusOr<std::string> a = e->GetFile("a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(*a == testing::Pattern(1, 3 << 20));
}

}  // namespace
}  // namespace kvfs
