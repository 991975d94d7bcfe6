// The index is derived: deleting or damaging it loses nothing.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <map>
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
namespace fs = std::filesystem;

struct Seen {
  uint64_t ino;
  bool is_dir;
  uint64_t size;
  uint32_t mode;
  Hash128 checksum;
  bool operator==(const Seen&) const = default;
};

std::map<std::string, Seen> Snapshot(Engine& e) {
  std::map<std::string, Seen> out;
  absl::StatusOr<std::vector<TreeEntry>> tree = e.ListTree();
  EXPECT_TRUE(tree.ok()) << tree.status();
  for (const TreeEntry& t : *tree) {
    out[t.path] = {t.inode.ino, t.inode.is_dir, t.inode.size, t.inode.mode,
                   t.inode.payload_checksum};
  }
  return out;
}

// A history with every kind of change: replaced files, renames of files and
// directories, unlinks, rmdirs, an abandoned write, a rewrite in place.
void BuildHistory(Engine& e) {
  ASSERT_TRUE(e.MkdirAll("model_abc_r0/012/34_g0").ok());
  ASSERT_TRUE(e.MkdirAll("model_abc_r1/012/34_g0").ok());
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(e.PutFile("model_abc_r" + std::to_string(i % 2) + "/012/34_g0/h" +
                              std::to_string(i) + ".bin",
                          Pattern(i, 1000 + 50000 * (i % 4)))
                    .ok());
  }
  uint64_t leaf = e.Stat("model_abc_r0/012/34_g0")->ino;
  ASSERT_TRUE(e.PutFile("model_abc_r0/012/34_g0/h0.bin", Pattern(100, 777)).ok());  // replace
  ASSERT_TRUE(e.PutFile("model_abc_r0/012/34_g0/h2.bin_5.tmp", Pattern(101, 4444)).ok());
  ASSERT_TRUE(e.Rename(leaf, "h2.bin_5.tmp", leaf, "h2.bin").ok());
  ASSERT_TRUE(e.Unlink(leaf, "h4.bin").ok());
  ASSERT_TRUE(e.MkdirAll("gone/deeper").ok());
  ASSERT_TRUE(e.Rmdir(e.Stat("gone")->ino, "deeper").ok());
  ASSERT_TRUE(e.MkdirAll("moving/inner").ok());
  ASSERT_TRUE(e.PutFile("moving/inner/f", Pattern(102, 10)).ok());
  ASSERT_TRUE(e.Rename(kRootIno, "moving", kRootIno, "moved").ok());
  {
    absl::StatusOr<std::unique_ptr<FileWriter>> w = e.CreateWriter();
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Write(0, Pattern(103, 300000)).ok());
  }  // abandoned
  ASSERT_TRUE(e.PutFile("cfg/config.json", "{1}").ok());
  uint64_t cfg_ino = e.Stat("cfg/config.json")->ino;
  absl::StatusOr<std::unique_ptr<FileWriter>> w = e.CreateWriter(0600, cfg_ino);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Write(0, "{2}").ok());
  ASSERT_TRUE(e.Commit(**w, e.Stat("cfg")->ino, "config.json").ok());
}

void ExpectContents(Engine& e) {
  EXPECT_EQ(*e.GetFile("model_abc_r0/012/34_g0/h0.bin"), Pattern(100, 777));
  EXPECT_EQ(*e.GetFile("model_abc_r0/012/34_g0/h2.bin"), Pattern(101, 4444));
  EXPECT_EQ(*e.GetFile("model_abc_r1/012/34_g0/h7.bin"), Pattern(7, 1000 + 50000 * 3));
  EXPECT_EQ(*e.GetFile("moved/inner/f"), Pattern(102, 10));
  EXPECT_EQ(*e.GetFile("cfg/config.json"), "{2}");
  EXPECT_EQ(ErrnoOf(e.Stat("model_abc_r0/012/34_g0/h4.bin").status()), ENOENT);
  EXPECT_EQ(ErrnoOf(e.Stat("moving").status()), ENOENT);
}

TEST(Rebuild, DeletedIndexIsRebuiltEqual) {
  TempDir dir;
  EngineOptions o = TestOptions(dir);
  std::map<std::string, Seen> before;
  std::map<uint64_t, ExtentState> extents_before;
  {
    auto e = MustOpen(o);
    BuildHistory(*e);
    before = Snapshot(*e);
    extents_before = e->ExtentStates();
  }
  fs::remove_all(o.index_dir);
  auto e = MustOpen(o);
  EXPECT_TRUE(e->index_was_rebuilt());
  EXPECT_TRUE(e->problems().empty()) << e->problems()[0];
  EXPECT_EQ(Snapshot(*e), before);
  ExpectContents(*e);
  std::map<uint64_t, ExtentState> extents_after = e->ExtentStates();
  ASSERT_EQ(extents_after.size(), extents_before.size());
  for (const auto& [id, s] : extents_before) {
    EXPECT_EQ(extents_after[id].live_bytes, s.live_bytes) << id;
    EXPECT_EQ(extents_after[id].dead_bytes, s.dead_bytes) << id;
  }
  // And it keeps working: new files get fresh inodes.
  ASSERT_TRUE(e->PutFile("after", "x").ok());
  for (const auto& [path, s] : before) EXPECT_LT(s.ino, e->Stat("after")->ino);
}

TEST(Rebuild, DamagedIndexIsRebuiltEqual) {
  TempDir dir;
  EngineOptions o = TestOptions(dir);
  std::map<std::string, Seen> before;
  {
    auto e = MustOpen(o);
    BuildHistory(*e);
    before = Snapshot(*e);
  }
  {  // garbage over RocksDB's CURRENT file
    int fd = ::open((o.index_dir + "/db/CURRENT").c_str(), O_WRONLY | O_TRUNC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "garbage", 7), 7);
    ::close(fd);
  }
  auto e = MustOpen(o);
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->index_was_rebuilt());
  ASSERT_EQ(e->problems().size(), 1u);
  EXPECT_NE(e->problems()[0].find("damaged"), std::string::npos) << e->problems()[0];
  EXPECT_EQ(Snapshot(*e), before);
  ExpectContents(*e);
}

TEST(Rebuild, IndexOfAnotherBackingDirectoryIsReplaced) {
  TempDir dir;
  EngineOptions a = TestOptions(dir);
  {
    auto e = MustOpen(a);
    ASSERT_TRUE(e->PutFile("only-in-a", "a").ok());
  }
  EngineOptions b = a;
  b.backing_dir = dir.Sub("backing-b");
  ::mkdir(b.backing_dir.c_str(), 0755);
  {
    auto e = MustOpen(b);  // same index directory, other backing directory
    EXPECT_EQ(ErrnoOf(e->Stat("only-in-a").status()), ENOENT);
    ASSERT_TRUE(e->PutFile("only-in-b", "b").ok());
  }
  auto e = MustOpen(a);
  EXPECT_TRUE(e->index_was_rebuilt());
  EXPECT_EQ(*e->GetFile("only-in-a"), "a");
  EXPECT_EQ(ErrnoOf(e->Stat("only-in-b").status()), ENOENT);
}

TEST(Rebuild, FromExtentsAloneWhenTheJournalIsLost) {
  TempDir dir;
  EngineOptions o = TestOptions(dir);
  o.extent_bytes = 1 << 20;  // several extents
  std::map<std::string, Seen> before;
  {
    auto e = MustOpen(o);
    for (int i = 0; i < 12; ++i) {
      ASSERT_TRUE(e->PutFile("m_r0/a" + std::to_string(i % 3) + "/h" + std::to_string(i),
                             Pattern(i, 200000 + i))
                      .ok());
    }
    ASSERT_TRUE(e->PutFile("m_r0/a0/h0", Pattern(99, 5)).ok());  // replaced version
    before = Snapshot(*e);
  }
  fs::remove_all(o.index_dir);
  for (const auto& f : fs::directory_iterator(o.backing_dir + "/nodes/test-node/journal")) {
    fs::remove(f.path());
  }
  auto e = MustOpen(o);
  EXPECT_TRUE(e->index_was_rebuilt());
  std::map<std::string, Seen> after = Snapshot(*e);
  for (const auto& [path, s] : before) {
    if (s.is_dir) {
      EXPECT_TRUE(after.count(path)) << path;  // recreated (inode may differ)
      continue;
    }
    ASSERT_TRUE(after.count(path)) << path;
    EXPECT_EQ(after[path], s) << path;  // files keep inode, size, checksum
  }
  EXPECT_EQ(*e->GetFile("m_r0/a0/h0"), Pattern(99, 5));
  EXPECT_EQ(e->stats().rolled_forward.load(), 13u);
  // The journal was rewritten: a second rebuild sees the same files.
  e.reset();
  fs::remove_all(o.index_dir);
  e = MustOpen(o);
  EXPECT_EQ(*e->GetFile("m_r0/a1/h4"), Pattern(4, 200004));
}

}  // namespace
}  // namespace kvfs
