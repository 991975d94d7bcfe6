// Foreign, garbage, truncated and newer-format files in the backing directory,
// and a backing directory already in use: clear errors naming the file, and
// nothing is deleted.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "kvfs/backing_dir.h"
#include "kvfs/errors.h"
#include "tests/test_util.h"

namespace kvfs {
namespace {

using testing::MustOpen;
using testing::Pattern;
using testing::TempDir;
using testing::TestOptions;
namespace fs = std::filesystem;

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}
std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
bool Mentions(const std::vector<std::string>& problems, const std::string& what) {
  for (const std::string& p : problems) {
    if (p.find(what) != std::string::npos) return true;
  }
  return false;
}

TEST(BadInput, ForeignAndGarbageFilesAreReportedAndKept) {
  TempDir dir;
  EngineOptions o = TestOptions(dir);
  {
    auto e = MustOpen(o);
    ASSERT_TRUE(e->PutFile("keep", Pattern(1, 9000)).ok());
  }
  const std::string node = o.backing_dir + "/nodes/test-node";
  const std::string garbage(10000, 'g');
  std::vector<std::string> planted = {
      o.backing_dir + "/README.txt",        node + "/notes",
      node + "/extents/copy-of-extent.bak", node + "/journal/old.log",
      node + "/extents/0000000099.kvx",     node + "/journal/0000000077.kvj",
  };
  for (const std::string& p : planted) WriteFile(p, garbage);

  auto e = MustOpen(o);
  ASSERT_TRUE(e);
  for (const std::string& p : planted) {
    EXPECT_TRUE(Mentions(e->problems(), p)) << "no problem names " << p;
    EXPECT_EQ(ReadAll(p), garbage) << p << " was changed";
  }
  EXPECT_EQ(*e->GetFile("keep"), Pattern(1, 9000));
  // New data goes to new extents, never into the garbage one.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(e->PutFile("new" + std::to_string(i), Pattern(2, 20 << 20)).ok());
  }
  EXPECT_EQ(ReadAll(node + "/extents/0000000099.kvx"), garbage);
  e.reset();
  e = MustOpen(o);
  EXPECT_EQ(*e->GetFile("new2"), Pattern(2, 20 << 20));
}

TEST(BadInput, ExtentAndJournalOfAnotherNodeOrBackingAreRefused) {
  TempDir dir;
  EngineOptions a = TestOptions(dir);
  {
    auto e = MustOpen(a);
    ASSERT_TRUE(e->PutFile("f", "x").ok());
  }
  EngineOptions b = TestOptions(dir);
  b.backing_dir = dir.Sub("other-backing");
  b.index_dir = dir.Sub("other-index");
  ::mkdir(b.backing_dir.c_str(), 0755);
  { auto e = MustOpen(b); ASSERT_TRUE(e->PutFile("g", "y").ok()); }
  // Copy b's extent and journal into a's directories under unused numbers.
  const std::string an = a.backing_dir + "/nodes/test-node", bn = b.backing_dir + "/nodes/test-node";
  fs::copy_file(bn + "/extents/0000000001.kvx", an + "/extents/0000000050.kvx");
  fs::copy_file(bn + "/journal/0000000001.kvj", an + "/journal/0000000050.kvj");
  auto e = MustOpen(a);
  EXPECT_TRUE(Mentions(e->problems(), "0000000050.kvx"));
  EXPECT_TRUE(Mentions(e->problems(), "0000000050.kvj"));
  EXPECT_EQ(ErrnoOf(e->Stat("g").status()), ENOENT);
  EXPECT_EQ(*e->GetFile("f"), "x");
}

TEST(BadInput, TruncatedExtentFailsReadsOfCutFilesOnly) {
  TempDir dir;
  EngineOptions o = TestOptions(dir);
  {
    auto e = MustOpen(o);
    ASSERT_TRUE(e->PutFile("first", Pattern(1, 100000)).ok());
    ASSERT_TRUE(e->PutFile("second", Pattern(2, 3 * kChunkBytes)).ok());
  }
  const std::string extent = o.backing_dir + "/nodes/test-node/extents/0000000001.kvx";
  ASSERT_EQ(::truncate(extent.c_str(), 4096 + 4096 + 100000 + 4096 + 4096 + kChunkBytes), 0);
  auto e = MustOpen(o);
  EXPECT_TRUE(Mentions(e->problems(), extent));
  EXPECT_EQ(*e->GetFile("first"), Pattern(1, 100000));
  EXPECT_EQ(ErrnoOf(e->GetFile("second").status()), EIO);
  // The extent is sealed: new files never land in the cut-off region.
  ASSERT_TRUE(e->PutFile("third", Pattern(3, 5000)).ok());
  EXPECT_EQ(*e->GetFile("third"), Pattern(3, 5000));
  EXPECT_EQ(e->OpenReader(e->Stat("third")->ino).value()->inode().extent_id, 2u);
}

TEST(BadInput, NewerFormatIsRefusedNamingTheFile) {
  TempDir dir;
  EngineOptions o = TestOptions(dir);
  { auto e = MustOpen(o); }
  const std::string format = o.backing_dir + "/kvfs-format";
  std::string text = ReadAll(format);
  size_t at = text.find("format=1");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 8, "format=7");
  WriteFile(format, text);
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(o);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find(format), absl::string_view::npos) << e.status();
  EXPECT_NE(e.status().message().find("version 7"), absl::string_view::npos) << e.status();
  EXPECT_EQ(ReadAll(format), text);
}

TEST(BadInput, NonEmptyForeignDirectoryIsRefused) {
  TempDir dir;
  EngineOptions o = TestOptions(dir);
  WriteFile(o.backing_dir + "/precious.dat", "user data");
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(o);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("precious.dat"), absl::string_view::npos) << e.status();
  EXPECT_FALSE(fs::exists(o.backing_dir + "/kvfs-format"));
  EXPECT_FALSE(fs::exists(o.backing_dir + "/nodes"));
  EXPECT_EQ(ReadAll(o.backing_dir + "/precious.dat"), "user data");
}

TEST(BadInput, BackingDirectoryInUseByTheSameNodeIsRefused) {
  TempDir dir;
  EngineOptions o = TestOptions(dir);
  auto first = MustOpen(o);
  ASSERT_TRUE(first->PutFile("f", "1").ok());
  EngineOptions again = o;
  again.index_dir = dir.Sub("index2");
  absl::StatusOr<std::unique_ptr<Engine>> second = Engine::Open(again);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(ErrnoOf(second.status()), EBUSY);
  EXPECT_NE(second.status().message().find("already in use"), absl::string_view::npos);
  EXPECT_NE(second.status().message().find("pid " + std::to_string(::getpid())),
            absl::string_view::npos)
      << second.status();
  // Another node may share the backing directory.
  EngineOptions other = again;
  other.node_id = "other-node";
  auto peer = MustOpen(other);
  ASSERT_TRUE(peer);
  peer.reset();
  // Once the first process lets go, the node opens again.
  first.reset();
  auto reopened = MustOpen(again);
  ASSERT_TRUE(reopened);
  EXPECT_EQ(*reopened->GetFile("f"), "1");
}

TEST(BadInput, ForeignIndexDirectoryAndBadOptionsAreRefused) {
  TempDir dir;
  EngineOptions o = TestOptions(dir);
  ::mkdir(o.index_dir.c_str(), 0755);
  WriteFile(o.index_dir + "/thesis.tex", "do not delete");
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(o);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find(o.index_dir), absl::string_view::npos);
  EXPECT_EQ(ReadAll(o.index_dir + "/thesis.tex"), "do not delete");

  EngineOptions bad = TestOptions(dir);
  bad.index_dir = dir.Sub("i2");
  bad.node_id = "no/slashes";
  EXPECT_EQ(ErrnoOf(Engine::Open(bad).status()), EINVAL);
  bad.node_id = "ok";
  bad.backing_dir = dir.Sub("does-not-exist");
  absl::StatusOr<std::unique_ptr<Engine>> missing = Engine::Open(bad);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("does-not-exist"), absl::string_view::npos);
}

// The node lock file names its holder; kvfs umount and the "already in use"
// message read it back.
TEST(BadInput, LockFileHolderLinesParse) {
  std::optional<NodeHolder> plain = ParseNodeHolder("pid 12 on host gpu-3\n");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->pid, 12);
  EXPECT_EQ(plain->host, "gpu-3");
  EXPECT_EQ(plain->serving, "");
  std::optional<NodeHolder> serving = ParseNodeHolder("pid 7 on host h, serving /mnt/kv cache\n");
  ASSERT_TRUE(serving);
  EXPECT_EQ(serving->pid, 7);
  EXPECT_EQ(serving->host, "h");
  EXPECT_EQ(serving->serving, "/mnt/kv cache");
  for (const char* bad : {"", "another process", "pid x on host h", "pid 5", "pid 5 host h"}) {
    EXPECT_FALSE(ParseNodeHolder(bad)) << bad;
  }
}

}  // namespace
}  // namespace kvfs
