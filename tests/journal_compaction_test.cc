// Journal compaction: a checkpoint replaces the journal files it covers, and
// nothing a node or the nodes following it knew is lost: its own rebuild,
// other nodes following it (from where they stopped, or from nothing), and
// the crash windows of a compaction.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "kvfs/fsck.h"
#include "kvfs/journal.h"
#include "tests/node_util.h"
#include "tests/test_util.h"

namespace kvfs {
namespace {

using testing::Dirs;
using testing::Files;
using testing::MustOpen;
using testing::NodeOptions;
using testing::Pattern;
using testing::Read;
using testing::Rebuilt;
using testing::TempDir;

namespace fs = std::filesystem;

std::string JournalDir(const TempDir& dir, const std::string& node) {
  return dir.Sub("backing/nodes/" + node + "/journal");
}

JournalFiles ListJournal(const TempDir& dir, const std::string& node) {
  absl::StatusOr<JournalFiles> files = ListJournalFiles(JournalDir(dir, node));
  EXPECT_TRUE(files.ok()) << files.status();
  return files.ok() ? *files : JournalFiles{};
}

uint64_t DirBytes(const std::string& dir) {
  uint64_t bytes = 0;
  for (const fs::directory_entry& f : fs::directory_iterator(dir)) bytes += f.file_size();
  return bytes;
}

// Puts back the files of `saved` (a copy of a journal directory) that
// `journal` no longer has: what a crash before their removal leaves.
void PutBack(const std::string& saved, const std::string& journal) {
  for (const fs::directory_entry& f : fs::directory_iterator(saved)) {
    fs::copy_file(f.path(), journal + "/" + f.path().filename().string(),
                  fs::copy_options::skip_existing);
  }
}

// Every file's path, and its contents in short: size and a hash (or the
// error reading it).
std::string Digest(const std::string& data) {
  return std::to_string(data.size()) + " bytes, " +
         std::to_string(std::hash<std::string>{}(data));
}
std::map<std::string, std::string> Contents(Engine& e) {
  std::map<std::string, std::string> out;
  for (const std::string& path : Files(e)) out[path] = Digest(Read(e, path));
  return out;
}

TEST(JournalCompaction, ARebuildFromTheCheckpointGivesTheSameNamespace) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  ASSERT_TRUE(a);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(a->PutFile("d/f" + std::to_string(i), Pattern(i, 1000 + i * 777)).ok());
  }
  ASSERT_TRUE(a->PutFile("d/big", Pattern(99, 2 * kChunkBytes + 17)).ok());
  ASSERT_TRUE(a->MkdirAll("e/empty").ok());
  ASSERT_TRUE(a->MkdirAll("gone").ok());
  ASSERT_TRUE(a->Rmdir(kRootIno, "gone").ok());
  absl::StatusOr<Attr> d = a->Stat("d");
  absl::StatusOr<Attr> e = a->Stat("e");
  ASSERT_TRUE(d.ok() && e.ok());
  ASSERT_TRUE(a->Unlink(d->ino, "f1").ok());
  ASSERT_TRUE(a->PutFile("d/f2", "f2, rewritten").ok());
  ASSERT_TRUE(a->Rename(d->ino, "f3", e->ino, "moved").ok());
  absl::StatusOr<Attr> moved = a->Stat("e/moved");
  ASSERT_TRUE(moved.ok());
  ASSERT_TRUE(a->ReclaimDue().ok());  // retired records' headers become skip markers

  constexpr uint64_t covered = 1;  // everything so far is in journal file 1
  ASSERT_TRUE(a->CompactJournal().ok());
  JournalFiles files = ListJournal(dir, "node-a");
  ASSERT_EQ(files.checkpoints.size(), 1u);
  EXPECT_EQ(files.checkpoints[0], covered);
  ASSERT_FALSE(files.journals.empty());
  EXPECT_GT(files.journals.front(), files.checkpoints[0]);  // the covered ones are gone
  EXPECT_TRUE(files.unfinished.empty());
  EXPECT_EQ(a->stats().checkpoints.load(), 1u);

  // Changes after the checkpoint: the journal carries them. Checkpointed
  // files unlinked or replaced, their records reclaimed: the rebuild meets
  // them unreadable, and the later entries say why.
  ASSERT_TRUE(a->PutFile("d/after", "stored after the checkpoint").ok());
  ASSERT_TRUE(a->Unlink(d->ino, "f0").ok());
  ASSERT_TRUE(a->PutFile("d/f4", "f4, replaced after the checkpoint").ok());
  ASSERT_TRUE(a->ReclaimDue().ok());
  const std::map<std::string, std::string> expected = Contents(*a);
  const std::set<std::string> expected_dirs = Dirs(*a);
  EXPECT_EQ(expected.count("d/f0") + expected.count("d/f1") + expected.count("d/f3"), 0u);
  EXPECT_EQ(expected.at("d/f2"), Digest("f2, rewritten"));
  EXPECT_EQ(expected.at("e/moved"), Digest(Pattern(3, 1000 + 3 * 777)));
  EXPECT_TRUE(expected_dirs.count("e/empty"));
  EXPECT_FALSE(expected_dirs.count("gone"));

  a = Rebuilt(std::move(a), dir, "node-a");  // fails on any problem reported
  ASSERT_TRUE(a);
  EXPECT_EQ(Contents(*a), expected);
  EXPECT_EQ(Dirs(*a), expected_dirs);
  absl::StatusOr<Attr> moved_again = a->Stat("e/moved");
  ASSERT_TRUE(moved_again.ok());
  EXPECT_EQ(moved_again->ino, moved->ino);  // inode numbers survive
  // The times too: contents changed at the commit, the name at the rename.
  EXPECT_LT(moved->mtime_ns, moved->ctime_ns);
  EXPECT_EQ(moved_again->mtime_ns, moved->mtime_ns);
  EXPECT_EQ(moved_again->ctime_ns, moved->ctime_ns);
  // New stores get new inodes and records, and everything survives a reopen.
  ASSERT_TRUE(a->PutFile("d/later", "after the rebuild").ok());
  a.reset();
  a = MustOpen(NodeOptions(dir, "node-a"));
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->problems().empty());
  std::map<std::string, std::string> with_later = expected;
  with_later["d/later"] = Digest("after the rebuild");
  EXPECT_EQ(Contents(*a), with_later);
  // And a second compaction covers the first checkpoint too.
  ASSERT_TRUE(a->CompactJournal().ok());
  files = ListJournal(dir, "node-a");
  ASSERT_EQ(files.checkpoints.size(), 1u);
  EXPECT_GT(files.checkpoints[0], covered);
  a = Rebuilt(std::move(a), dir, "node-a");
  ASSERT_TRUE(a);
  EXPECT_EQ(Contents(*a), with_later);

  FsckOptions check;
  check.backing_dir = dir.Sub("backing");
  check.node_id = "node-a";
  check.index_dir = dir.Sub("index-node-a");
  a.reset();
  absl::StatusOr<FsckReport> report = RunFsck(check);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->Count(FsckSeverity::kError), 0u);
  EXPECT_EQ(report->exit_code, 0);
}

TEST(JournalCompaction, TheJournalStaysBoundedWhileTheSameNamesAreRewritten) {
  TempDir dir;
  EngineOptions o = NodeOptions(dir, "node-a");
  o.journal_file_bytes = 32 << 10;
  o.journal_compact_bytes = 64 << 10;  // the background compactor's threshold
  auto a = MustOpen(o);
  ASSERT_TRUE(a);
  constexpr int kNames = 50, kWrites = 4000;
  for (int i = 0; i < kWrites; ++i) {
    ASSERT_TRUE(a->PutFile("blocks/b" + std::to_string(i % kNames), Pattern(i, 100)).ok());
  }
  // About 400 KiB were journalled, six times the threshold; the compactor
  // (a tick a second, perhaps already during the loop) brings it back.
  for (int i = 0; i < 100 && a->UncoveredJournalBytes() >= o.journal_compact_bytes; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_GE(a->stats().checkpoints.load(), 1u);
  EXPECT_LT(a->UncoveredJournalBytes(), o.journal_compact_bytes);
  // What is on disk: one checkpoint of 50 files and the file in use.
  EXPECT_LT(DirBytes(JournalDir(dir, "node-a")), 64u << 10);
  EXPECT_LE(a->stats().checkpoint_entries.load(), uint64_t{kNames} + 1);  // + "blocks"
  std::map<std::string, std::string> expected;
  for (int i = kWrites - kNames; i < kWrites; ++i) {
    expected["blocks/b" + std::to_string(i % kNames)] = Digest(Pattern(i, 100));
  }
  EXPECT_EQ(Contents(*a), expected);
  a.reset();
  EXPECT_TRUE(fs::remove_all(o.index_dir) > 0);
  a = MustOpen(o);
  ASSERT_TRUE(a);
  for (const std::string& p : a->problems()) ADD_FAILURE() << p;
  EXPECT_EQ(Contents(*a), expected);
}

TEST(JournalCompaction, OtherNodesFollowTheCheckpointFromWhereverTheyStopped) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  auto b = MustOpen(NodeOptions(dir, "node-b"));
  ASSERT_TRUE(a && b);
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(a->PutFile("m/x" + std::to_string(i), Pattern(i, 3000)).ok());
  }
  ASSERT_TRUE(b->SyncPeers().ok());
  EXPECT_EQ(Files(*b).size(), 5u);
  // Changes b has not followed, then the journal files holding them go.
  absl::StatusOr<Attr> m = a->Stat("m");
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(a->Unlink(m->ino, "x1").ok());
  ASSERT_TRUE(a->PutFile("m/x2", "x2, second version").ok());
  ASSERT_TRUE(a->Rename(m->ino, "x3", m->ino, "y3").ok());
  ASSERT_TRUE(a->CompactJournal().ok());
  ASSERT_TRUE(a->PutFile("m/x6", "after the checkpoint").ok());
  const std::map<std::string, std::string> expected = Contents(*a);
  ASSERT_EQ(expected.size(), 5u);  // x2 x4 x5 y3 x6

  ASSERT_TRUE(b->SyncPeers().ok());
  EXPECT_EQ(Contents(*b), expected);
  EXPECT_EQ(b->stats().peer_checkpoints.load(), 1u);
  ASSERT_TRUE(b->SyncPeers().ok());  // nothing more to do
  EXPECT_EQ(b->stats().peer_checkpoints.load(), 1u);
  EXPECT_EQ(Contents(*b), expected);
  // A node that never followed a starts from the checkpoint.
  auto c = MustOpen(NodeOptions(dir, "node-c"));
  ASSERT_TRUE(c);
  EXPECT_EQ(Contents(*c), expected);
  EXPECT_EQ(c->stats().peer_checkpoints.load(), 1u);
  // A renamed file's times: its contents changed at the commit, its name later.
  absl::StatusOr<Attr> y3_a = a->Stat("m/y3"), y3_c = c->Stat("m/y3");
  ASSERT_TRUE(y3_a.ok() && y3_c.ok());
  EXPECT_LT(y3_a->mtime_ns, y3_a->ctime_ns);
  EXPECT_EQ(y3_c->mtime_ns, y3_a->mtime_ns);
  EXPECT_EQ(y3_c->ctime_ns, y3_a->ctime_ns);
  // b's rebuilt index too.
  b = Rebuilt(std::move(b), dir, "node-b");
  ASSERT_TRUE(b);
  EXPECT_EQ(Contents(*b), expected);
  // Following goes on past the checkpoint.
  ASSERT_TRUE(a->Unlink(m->ino, "x4").ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  ASSERT_TRUE(c->SyncPeers().ok());
  EXPECT_EQ(Files(*b), Files(*a));
  EXPECT_EQ(Files(*c), Files(*a));
  for (Engine* e : {a.get(), b.get(), c.get()}) {
    for (const std::string& p : e->problems()) ADD_FAILURE() << p;
  }
}

TEST(JournalCompaction, UnlinksOfOtherNodesFilesAreCarriedUntilTheirOwnerRetiresThem) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  auto b = MustOpen(NodeOptions(dir, "node-b"));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(b->PutFile("p", "b's p").ok());
  ASSERT_TRUE(b->PutFile("q", "b's q").ok());
  ASSERT_TRUE(a->SyncPeers().ok());
  ASSERT_TRUE(a->Unlink(kRootIno, "p").ok());  // only a's journal says so
  ASSERT_TRUE(a->CompactJournal().ok());
  const uint64_t carrying = a->stats().checkpoint_entries.load();
  EXPECT_EQ(carrying, 1u);  // a has no file of its own: only the unlink

  ASSERT_TRUE(b->SyncPeers().ok());  // from a's checkpoint
  EXPECT_EQ(Files(*b), std::set<std::string>{"q"});
  auto c = MustOpen(NodeOptions(dir, "node-c"));
  ASSERT_TRUE(c);
  EXPECT_EQ(Files(*c), std::set<std::string>{"q"});
  // b retired its record through its own journal and returned the space:
  // a's next checkpoint need not carry the unlink any more.
  ASSERT_TRUE(b->ReclaimDue().ok());
  ASSERT_TRUE(a->CompactJournal().ok());
  EXPECT_EQ(a->stats().checkpoint_entries.load(), 0u);
  auto d = MustOpen(NodeOptions(dir, "node-d"));
  ASSERT_TRUE(d);
  EXPECT_EQ(Files(*d), std::set<std::string>{"q"});
}

// A checkpoint lists the directories there are: the rmdirs of the last hour
// come with it, so that a node that was behind removes them too.
TEST(JournalCompaction, DirectoriesRemovedSinceAFollowerStoppedGoThereToo) {
  TempDir dir;
  std::atomic<int64_t> clock{1'800'000'000 * testing::kSecond};
  auto a = MustOpen(NodeOptions(dir, "node-a", &clock));
  auto b = MustOpen(NodeOptions(dir, "node-b", &clock));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->PutFile("gone/inner/f", "x").ok());
  ASSERT_TRUE(a->MkdirAll("again").ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  EXPECT_EQ(Dirs(*b), (std::set<std::string>{"again", "gone", "gone/inner"}));
  clock += testing::kSecond;
  absl::StatusOr<Attr> gone = a->Stat("gone"), inner = a->Stat("gone/inner");
  ASSERT_TRUE(gone.ok() && inner.ok());
  ASSERT_TRUE(a->Unlink(inner->ino, "f").ok());
  ASSERT_TRUE(a->Rmdir(gone->ino, "inner").ok());
  ASSERT_TRUE(a->Rmdir(kRootIno, "gone").ok());
  ASSERT_TRUE(a->Rmdir(kRootIno, "again").ok());
  ASSERT_TRUE(a->MkdirAll("again").ok());  // made again: listed, no rmdir
  ASSERT_TRUE(a->CompactJournal().ok());
  EXPECT_EQ(a->stats().checkpoint_entries.load(), 3u);  // mkdir again, two rmdirs

  ASSERT_TRUE(b->SyncPeers().ok());  // from a's checkpoint
  EXPECT_EQ(Dirs(*b), std::set<std::string>{"again"});
  EXPECT_TRUE(Files(*b).empty());
  auto c = MustOpen(NodeOptions(dir, "node-c", &clock));
  ASSERT_TRUE(c);
  EXPECT_EQ(Dirs(*c), std::set<std::string>{"again"});
  // a's own rebuild takes its directories from the mkdirs (Rebuilt fails on
  // any problem, such as an rmdir of a directory that is not there).
  a = Rebuilt(std::move(a), dir, "node-a", &clock);
  ASSERT_TRUE(a);
  EXPECT_EQ(Dirs(*a), std::set<std::string>{"again"});
  // An hour on, a checkpoint no longer carries them.
  clock += 7200 * testing::kSecond;
  ASSERT_TRUE(a->CompactJournal().ok());
  EXPECT_EQ(a->stats().checkpoint_entries.load(), 1u);
  for (Engine* e : {a.get(), b.get(), c.get()}) {
    for (const std::string& p : e->problems()) ADD_FAILURE() << p;
  }
}

TEST(JournalCompaction, ACompactionCutShortByACrashLosesNothing) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  ASSERT_TRUE(a);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(a->PutFile("k/" + std::to_string(i), Pattern(i, 5000)).ok());
  }
  ASSERT_TRUE(a->Unlink(a->Stat("k")->ino, "7").ok());
  const std::string journal = JournalDir(dir, "node-a");
  const std::string saved = dir.Sub("saved-journal");
  fs::copy(journal, saved);
  ASSERT_TRUE(a->CompactJournal().ok());
  ASSERT_TRUE(a->PutFile("k/after", "after").ok());
  const std::map<std::string, std::string> expected = Contents(*a);
  a.reset();

  // Killed after the checkpoint was renamed into place, before the covered
  // files went; and killed while writing the next checkpoint.
  PutBack(saved, journal);
  const JournalFiles before = ListJournal(dir, "node-a");
  ASSERT_EQ(before.checkpoints.size(), 1u);
  const uint64_t covered = before.checkpoints[0];
  {
    std::FILE* f = std::fopen((journal + "/0000000099.kvc.tmp").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("half a checkpoint", f);
    std::fclose(f);
  }
  a = MustOpen(NodeOptions(dir, "node-a"));
  ASSERT_TRUE(a);
  for (const std::string& p : a->problems()) ADD_FAILURE() << p;
  EXPECT_EQ(Contents(*a), expected);
  const JournalFiles after = ListJournal(dir, "node-a");
  EXPECT_TRUE(after.unfinished.empty());
  ASSERT_FALSE(after.journals.empty());
  EXPECT_GT(after.journals.front(), covered);  // finished removing what it covers
  a = Rebuilt(std::move(a), dir, "node-a");
  ASSERT_TRUE(a);
  EXPECT_EQ(Contents(*a), expected);
}

TEST(JournalCompaction, ADamagedCheckpointIsReportedAndTheJournalUsedIfStillThere) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  ASSERT_TRUE(a);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(a->PutFile("k/" + std::to_string(i), Pattern(i, 5000)).ok());
  }
  const std::string journal = JournalDir(dir, "node-a");
  const std::string saved = dir.Sub("saved-journal");
  fs::copy(journal, saved);
  ASSERT_TRUE(a->CompactJournal().ok());
  const std::map<std::string, std::string> expected = Contents(*a);
  a.reset();
  const JournalFiles files = ListJournal(dir, "node-a");
  ASSERT_EQ(files.checkpoints.size(), 1u);
  const std::string checkpoint =
      BackingLayout{dir.Sub("backing"), "node-a"}.CheckpointPath(files.checkpoints[0]);
  {
    // One byte of an entry flipped.
    std::FILE* f = std::fopen(checkpoint.c_str(), "r+");
    ASSERT_NE(f, nullptr);
    std::fseek(f, 4096 + 40, SEEK_SET);
    const int c = std::fgetc(f);
    std::fseek(f, 4096 + 40, SEEK_SET);
    std::fputc(c ^ 0x5a, f);
    std::fclose(f);
  }
  PutBack(saved, journal);
  EXPECT_TRUE(fs::remove_all(dir.Sub("index-node-a")) > 0);
  a = MustOpen(NodeOptions(dir, "node-a"));
  ASSERT_TRUE(a);
  bool reported = false;
  for (const std::string& p : a->problems()) {
    reported = reported || p.find(".kvc") != std::string::npos;
  }
  EXPECT_TRUE(reported);
  EXPECT_EQ(Contents(*a), expected);
  // Its covered journal files stay while the checkpoint is damaged.
  a.reset();
  a = MustOpen(NodeOptions(dir, "node-a"));
  ASSERT_TRUE(a);
  EXPECT_EQ(ListJournal(dir, "node-a").journals.front(), 1u);
  // Another node meets the damage too: it says so and reads the journal.
  std::vector<std::string> logged;
  EngineOptions ob = NodeOptions(dir, "node-b");
  ob.log = [&logged](absl::string_view line) { logged.emplace_back(line); };
  auto b = MustOpen(ob);
  ASSERT_TRUE(b);
  EXPECT_EQ(Contents(*b), expected);
  bool said = false;
  for (const std::string& line : logged) {
    said = said || line.find("following its journal instead") != std::string::npos;
  }
  EXPECT_TRUE(said);
}

}  // namespace
}  // namespace kvfs
