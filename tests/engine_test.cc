// The engine's namespace and data behaviour, one process, one thread.
#include <cerrno>
#include <climits>
#include <set>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "kvfs/errors.h"
#include "tests/test_util.h"

namespace kvfs {
namespace {

using testing::MustOpen;
using testing::Pattern;
using testing::TempDir;
using testing::TestOptions;

TEST(Engine, PutGetAcrossChunkBoundariesAndSizes) {
  TempDir dir;
  auto e = MustOpen(TestOptions(dir));
  ASSERT_TRUE(e);
  for (size_t size : {size_t{0}, size_t{1}, size_t{4095}, size_t{kChunkBytes},
                      size_t{kChunkBytes + 1}, size_t{3 * kChunkBytes - 7}}) {
    std::string path = "m_r0/abc/de_g0/f" + std::to_string(size) + ".bin";
    ASSERT_TRUE(e->PutFile(path, Pattern(size, size)).ok());
    absl::StatusOr<Attr> attr = e->Stat(path);
    ASSERT_TRUE(attr.ok());
    EXPECT_EQ(attr->size, size);
    EXPECT_GE(attr->stored_bytes, size);
    absl::StatusOr<std::string> back = e->GetFile(path);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, Pattern(size, size));
  }
}

TEST(Engine, ReadsAtAnyOffsetAndLength) {
  TempDir dir;
  auto e = MustOpen(TestOptions(dir));
  const size_t size = 2 * kChunkBytes + 12345;
  const std::string data = Pattern(9, size);
  ASSERT_TRUE(e->PutFile("f", data).ok());
  absl::StatusOr<Attr> attr = e->Stat("f");
  ASSERT_TRUE(attr.ok());
  absl::StatusOr<std::unique_ptr<FileReader>> r = e->OpenReader(attr->ino);
  ASSERT_TRUE(r.ok());
  // Suffix reads computed from the end, unaligned, straddling chunks.
  for (auto [off, len] : std::vector<std::pair<uint64_t, size_t>>{
           {0, 10}, {size - 1, 10}, {size - 1280 * 1024, 1280 * 1024},
           {kChunkBytes - 3, 6}, {777, 2 * kChunkBytes}, {size, 5}, {size + 9, 5}}) {
    std::string buf(len, '\0');
    absl::StatusOr<size_t> n = (*r)->Read(off, len, buf.data());
    ASSERT_TRUE(n.ok()) << n.status();
    size_t want = off >= size ? 0 : std::min<size_t>(len, size - off);
    ASSERT_EQ(*n, want) << off;
    EXPECT_EQ(buf.substr(0, *n), data.substr(std::min<size_t>(off, size), want)) << off;
  }
}

TEST(Engine, UncommittedFileIsInvisibleAndAbandonedSpaceIsDead) {
  TempDir dir;
  auto e = MustOpen(TestOptions(dir));
  absl::StatusOr<Attr> root = e->Stat("");
  ASSERT_TRUE(root.ok());
  {
    absl::StatusOr<std::unique_ptr<FileWriter>> w = e->CreateWriter();
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Write(0, Pattern(1, 100000)).ok());
    std::vector<std::string> names;
    ASSERT_TRUE(e->ReadDir(kRootIno, "", [&](absl::string_view n, const Attr&) {
                   names.emplace_back(n);
                   return true;
                 }).ok());
    EXPECT_TRUE(names.empty());
    // A file being written reads back what was written so far.
    std::string buf(10, '\0');
    absl::StatusOr<size_t> n = (*w)->Read(99990, 10, buf.data());
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(buf, Pattern(1, 100000).substr(99990));
  }  // abandoned
  uint64_t dead = 0;
  for (const auto& [id, s] : e->ExtentStates()) dead += s.dead_bytes;
  EXPECT_GE(dead, 100000u);
  EXPECT_EQ(e->stats().aborted_writes.load(), 1u);
  // The next file goes after the abandoned bytes and is intact.
  ASSERT_TRUE(e->PutFile("after", Pattern(2, 5000)).ok());
  e.reset();
  e = MustOpen(TestOptions(dir));
  EXPECT_EQ(*e->GetFile("after"), Pattern(2, 5000));
  EXPECT_TRUE(e->problems().empty());
}

TEST(Engine, SparseAndOutOfOrderWrites) {
  TempDir dir;
  auto e = MustOpen(TestOptions(dir));
  const std::string data = Pattern(3, 3 * kChunkBytes);
  absl::StatusOr<std::unique_ptr<FileWriter>> w = e->CreateWriter();
  ASSERT_TRUE(w.ok());
  // Tail first, then the middle; the head is never written (O_DIRECT
  // clients leave sparse heads): it must read as zeros.
  ASSERT_TRUE((*w)->Write(2 * kChunkBytes, data.substr(2 * kChunkBytes)).ok());
  ASSERT_TRUE((*w)->Write(kChunkBytes + 5, data.substr(kChunkBytes + 5, kChunkBytes - 5)).ok());
  absl::StatusOr<Attr> attr = e->Commit(**w, kRootIno, "sparse");
  ASSERT_TRUE(attr.ok()) << attr.status();
  EXPECT_EQ(attr->size, 3 * kChunkBytes);
  std::string want = std::string(kChunkBytes + 5, '\0') + data.substr(kChunkBytes + 5);
  EXPECT_EQ(*e->GetFile("sparse"), want);
}

TEST(Engine, TruncateThenRewrite) {
  TempDir dir;
  auto e = MustOpen(TestOptions(dir));
  absl::StatusOr<std::unique_ptr<FileWriter>> w = e->CreateWriter();
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Write(0, Pattern(4, 5000)).ok());
  ASSERT_TRUE((*w)->Truncate(100).ok());
  ASSERT_TRUE((*w)->Truncate(300).ok());  // grows again: zeros after 100
  ASSERT_TRUE(e->Commit(**w, kRootIno, "t").ok());
  EXPECT_EQ(*e->GetFile("t"), Pattern(4, 5000).substr(0, 100) + std::string(200, '\0'));
  EXPECT_EQ(ErrnoOf((*w)->Write(0, "x")), EBADF);  // committed files are immutable
}

TEST(Engine, RenameReplacesAndOldReaderKeepsOldBytes) {
  TempDir dir;
  auto e = MustOpen(TestOptions(dir));
  ASSERT_TRUE(e->PutFile("d/final.bin", Pattern(1, 3000)).ok());
  absl::StatusOr<Attr> old_attr = e->Stat("d/final.bin");
  absl::StatusOr<std::unique_ptr<FileReader>> old_reader = e->OpenReader(old_attr->ino);
  ASSERT_TRUE(old_reader.ok());

  ASSERT_TRUE(e->PutFile("d/final.bin_3.tmp", Pattern(2, 7000)).ok());
  absl::StatusOr<Attr> d = e->Stat("d");
  ASSERT_TRUE(e->Rename(d->ino, "final.bin_3.tmp", d->ino, "final.bin").ok());
  EXPECT_EQ(ErrnoOf(e->Stat("d/final.bin_3.tmp").status()), ENOENT);
  EXPECT_EQ(*e->GetFile("d/final.bin"), Pattern(2, 7000));

  std::string buf(3000, '\0');
  absl::StatusOr<size_t> n = (*old_reader)->Read(0, buf.size(), buf.data());
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(buf, Pattern(1, 3000));

  ASSERT_TRUE(e->PutFile("d/other", "x").ok());
  EXPECT_EQ(ErrnoOf(e->Rename(d->ino, "other", d->ino, "final.bin", /*no_replace=*/true)),
            EEXIST);
}

TEST(Engine, NamespaceErrors) {
  TempDir dir;
  auto e = MustOpen(TestOptions(dir));
  ASSERT_TRUE(e->MkdirAll("a/b").ok());
  ASSERT_TRUE(e->PutFile("a/b/f", "data").ok());
  absl::StatusOr<Attr> a = e->Stat("a");
  absl::StatusOr<Attr> b = e->Stat("a/b");
  EXPECT_EQ(ErrnoOf(e->Mkdir(a->ino, "b", 0755).status()), EEXIST);
  EXPECT_EQ(ErrnoOf(e->Rmdir(a->ino, "b")), ENOTEMPTY);
  EXPECT_EQ(ErrnoOf(e->Rmdir(b->ino, "f")), ENOTDIR);
  EXPECT_EQ(ErrnoOf(e->Unlink(a->ino, "b")), EISDIR);
  EXPECT_EQ(ErrnoOf(e->Unlink(a->ino, "nope")), ENOENT);
  EXPECT_EQ(ErrnoOf(e->Lookup(a->ino, std::string(NAME_MAX + 1, 'n')).status()), ENAMETOOLONG);
  EXPECT_EQ(ErrnoOf(e->Mkdir(a->ino, std::string(NAME_MAX + 1, 'n'), 0755).status()),
            ENAMETOOLONG);
  EXPECT_EQ(ErrnoOf(e->Rename(kRootIno, "a", b->ino, "loop")), EINVAL);
  EXPECT_EQ(ErrnoOf(e->Mkdir(b->ino + 1000, "x", 0755).status()), ENOENT);
  absl::StatusOr<Attr> f = e->Stat("a/b/f");
  EXPECT_EQ(ErrnoOf(e->Mkdir(f->ino, "x", 0755).status()), ENOTDIR);
  absl::StatusOr<std::unique_ptr<FileWriter>> w = e->CreateWriter();
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(ErrnoOf(e->Commit(**w, kRootIno, "a").status()), EISDIR);
  EXPECT_EQ(ErrnoOf(e->OpenReader(a->ino).status()), EISDIR);

  ASSERT_TRUE(e->Unlink(b->ino, "f").ok());
  ASSERT_TRUE(e->Rmdir(a->ino, "b").ok());
  EXPECT_EQ(ErrnoOf(e->Stat("a/b").status()), ENOENT);
}

TEST(Engine, ReadDirListsInNameOrderWithTypesAndResumes) {
  TempDir dir;
  auto e = MustOpen(TestOptions(dir));
  ASSERT_TRUE(e->MkdirAll("top/sub").ok());
  for (const char* n : {"c", "a", "b"}) ASSERT_TRUE(e->PutFile(std::string("top/") + n, n).ok());
  absl::StatusOr<Attr> top = e->Stat("top");
  std::vector<std::pair<std::string, bool>> seen;
  ASSERT_TRUE(e->ReadDir(top->ino, "", [&](absl::string_view n, const Attr& a) {
                 seen.emplace_back(std::string(n), a.is_dir);
                 return true;
               }).ok());
  EXPECT_EQ(seen, (std::vector<std::pair<std::string, bool>>{
                      {"a", false}, {"b", false}, {"c", false}, {"sub", true}}));
  seen.clear();
  ASSERT_TRUE(e->ReadDir(top->ino, "b", [&](absl::string_view n, const Attr& a) {
                 seen.emplace_back(std::string(n), a.is_dir);
                 return true;
               }).ok());
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].first, "c");
}

TEST(Engine, InodesAndContentsSurviveReopen) {
  TempDir dir;
  EngineOptions o = TestOptions(dir);
  uint64_t file_ino, dir_ino;
  {
    auto e = MustOpen(o);
    ASSERT_TRUE(e->PutFile("x/y/z.bin", Pattern(5, 123456)).ok());
    file_ino = e->Stat("x/y/z.bin")->ino;
    dir_ino = e->Stat("x/y")->ino;
  }
  auto e = MustOpen(o);
  EXPECT_FALSE(e->index_was_rebuilt());
  EXPECT_EQ(e->Stat("x/y/z.bin")->ino, file_ino);
  EXPECT_EQ(e->Stat("x/y")->ino, dir_ino);
  EXPECT_EQ(*e->GetFile("x/y/z.bin"), Pattern(5, 123456));
  // New inodes never reuse old numbers.
  ASSERT_TRUE(e->PutFile("x/new", "n").ok());
  EXPECT_GT(e->Stat("x/new")->ino, file_ino);
}

TEST(Engine, RewriteInPlaceKeepsInode) {
  TempDir dir;
  auto e = MustOpen(TestOptions(dir));
  ASSERT_TRUE(e->PutFile("config.json", "{\"a\":1}").ok());
  uint64_t ino = e->Stat("config.json")->ino;
  absl::StatusOr<std::unique_ptr<FileWriter>> w = e->CreateWriter(0644, ino);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Write(0, "{\"a\":2,\"b\":3}").ok());
  ASSERT_TRUE(e->Commit(**w, kRootIno, "config.json").ok());
  EXPECT_EQ(e->Stat("config.json")->ino, ino);
  EXPECT_EQ(*e->GetFile("config.json"), "{\"a\":2,\"b\":3}");
}

// A rewrite committed under another name (renamed while open) leaves no
// second name for the inode, in the index or after a reopen or a rebuild.
TEST(Engine, RewriteCommittedUnderAnotherNameDropsTheOldName) {
  TempDir dir;
  EngineOptions o = TestOptions(dir);
  {
    auto e = MustOpen(o);
    ASSERT_TRUE(e->PutFile("config.json", "v1").ok());
    const uint64_t ino = e->Stat("config.json")->ino;
    absl::StatusOr<std::unique_ptr<FileWriter>> w = e->CreateWriter(0644, ino);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Write(0, "v2").ok());
    ASSERT_TRUE(e->Commit(**w, kRootIno, "config.json.new").ok());
    EXPECT_EQ(ErrnoOf(e->Stat("config.json").status()), ENOENT);
    EXPECT_EQ(e->Stat("config.json.new")->ino, ino);
    EXPECT_EQ(*e->GetFile("config.json.new"), "v2");
    EXPECT_EQ(e->LiveFiles(), 1u);
  }
  for (bool rebuild : {false, true}) {
    if (rebuild) std::filesystem::remove_all(o.index_dir);
    auto e = MustOpen(o);
    ASSERT_TRUE(e);
    EXPECT_EQ(ErrnoOf(e->Stat("config.json").status()), ENOENT) << rebuild;
    EXPECT_EQ(*e->GetFile("config.json.new"), "v2") << rebuild;
    EXPECT_EQ(e->LiveFiles(), 1u) << rebuild;
  }
}

TEST(Engine, AccessTimeIsRecordedOncePerSecond) {
  TempDir dir;
  auto e = MustOpen(TestOptions(dir));
  ASSERT_TRUE(e->PutFile("old", "1").ok());
  ASSERT_TRUE(e->PutFile("new", "2").ok());
  uint64_t old_ino = e->Stat("old")->ino;
  int64_t before = e->Stat("old")->atime_ns;
  ::usleep(1100 * 1000);  // access times have one-second granularity
  ASSERT_TRUE(e->RecordAccess(old_ino).ok());
  const int64_t recorded = e->Stat("old")->atime_ns;
  EXPECT_GT(recorded, before);
  // "new" is now the less recently accessed of the two.
  EXPECT_LT(e->Stat("new")->atime_ns, recorded);
  // A second access within the same second changes nothing, with or without
  // the caller's view of the access time.
  ASSERT_TRUE(e->RecordAccess(old_ino).ok());
  ASSERT_TRUE(e->RecordAccess(old_ino, recorded).ok());
  if (absl::GetCurrentTimeNanos() / 1000000000 == recorded / 1000000000) {
    EXPECT_EQ(e->Stat("old")->atime_ns, recorded);
  }
  absl::StatusOr<std::vector<TreeEntry>> tree = e->ListTree();
  ASSERT_TRUE(tree.ok());
  EXPECT_EQ(tree->size(), 2u);
}

TEST(Engine, SyncCommitsModeStoresAndReopens) {
  TempDir dir;
  EngineOptions o = TestOptions(dir);
  o.sync_commits = true;  // fdatasync of extent and journal, synced index writes
  {
    auto e = MustOpen(o);
    ASSERT_TRUE(e->PutFile("a/b", Pattern(8, 70000)).ok());
    ASSERT_TRUE(e->Rename(e->Stat("a")->ino, "b", kRootIno, "c").ok());
  }
  auto e = MustOpen(o);
  EXPECT_EQ(*e->GetFile("c"), Pattern(8, 70000));
}

TEST(Engine, ExtentsFillSealAndRotate) {
  TempDir dir;
  EngineOptions o = TestOptions(dir);
  o.extent_bytes = 1 << 20;
  auto e = MustOpen(o);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(e->PutFile("f" + std::to_string(i), Pattern(i, 300000)).ok());
  }
  std::map<uint64_t, ExtentState> states = e->ExtentStates();
  EXPECT_GE(states.size(), 3u);
  size_t sealed = 0;
  for (const auto& [id, s] : states) sealed += s.sealed;
  EXPECT_GE(sealed, 2u);
  e.reset();
  e = MustOpen(o);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(*e->GetFile("f" + std::to_string(i)), Pattern(i, 300000));
  }
}

}  // namespace
}  // namespace kvfs

namespace kvfs {
namespace {

// The file count (the kvfs_files gauge) follows commits, replacements,
// renames and unlinks, and survives a reopen, a journal replay and a rebuild.
TEST(Engine, FileCountFollowsTheNamespaceAcrossReopenAndRebuild) {
  testing::TempDir dir;
  EngineOptions o = testing::TestOptions(dir);
  {
    auto e = testing::MustOpen(o);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->LiveFiles(), 0u);
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(e->PutFile("d/f" + std::to_string(i), "x").ok());
    }
    ASSERT_TRUE(e->PutFile("d/f0", "replaced").ok());  // a new version, not a new file
    absl::StatusOr<Attr> d = e->Stat("d");
    ASSERT_TRUE(d.ok());
    ASSERT_TRUE(e->Rename(d->ino, "f1", d->ino, "f2").ok());  // replaces f2
    ASSERT_TRUE(e->Unlink(d->ino, "f3").ok());
    EXPECT_EQ(e->LiveFiles(), 3u);  // f0, f2, f4
  }
  auto e = testing::MustOpen(o);
  EXPECT_EQ(e->LiveFiles(), 3u) << "after a reopen";
  e.reset();
  std::filesystem::remove_all(o.index_dir + "/db");
  e = testing::MustOpen(o);
  ASSERT_TRUE(e->index_was_rebuilt());
  EXPECT_EQ(e->LiveFiles(), 3u) << "after a rebuild from the journal";
}

}  // namespace
}  // namespace kvfs
