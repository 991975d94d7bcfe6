// Several nodes sharing one backing directory: each engine follows the
// others' journals (SyncPeers), and all end with the same namespace.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <random>
#include <set>
#include <thread>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kvfs/errors.h"
#include "tests/node_util.h"
#include "tests/sshfs_util.h"
#include "tests/test_util.h"

namespace kvfs {
namespace {

using testing::MustOpen;
using testing::Pattern;
using testing::TempDir;
using testing::Dirs;
using testing::Files;
using testing::kSecond;
using testing::NodeOptions;
using testing::Read;
using testing::Rebuilt;

TEST(Peers, EachNodeReadsTheOthersFiles) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  auto b = MustOpen(NodeOptions(dir, "node-b"));
  ASSERT_TRUE(a && b);
  const std::string big = Pattern(1, 2 * kChunkBytes + 4321);
  ASSERT_TRUE(a->PutFile("model/r0/blk1.bin", big).ok());
  ASSERT_TRUE(b->PutFile("model/r0/blk2.bin", Pattern(2, 5000)).ok());
  EXPECT_EQ(Files(*b), std::set<std::string>{"model/r0/blk2.bin"});  // not followed yet
  ASSERT_TRUE(a->SyncPeers().ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  const std::set<std::string> both = {"model/r0/blk1.bin", "model/r0/blk2.bin"};
  EXPECT_EQ(Files(*a), both);
  EXPECT_EQ(Files(*b), both);
  EXPECT_EQ(Read(*b, "model/r0/blk1.bin"), big);
  EXPECT_EQ(Read(*a, "model/r0/blk2.bin"), Pattern(2, 5000));
  absl::StatusOr<Attr> st = b->Stat("model/r0/blk1.bin");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->size, big.size());
  // Each node's capacity counts what it stored, not what it sees.
  EXPECT_LT(b->Capacity().live, big.size());
  EXPECT_GE(a->Capacity().live, big.size());
  EXPECT_EQ(b->stats().peer_files.load(), 1u);
  // Following again finds nothing new.
  ASSERT_TRUE(b->SyncPeers().ok());
  EXPECT_EQ(b->stats().peer_files.load(), 1u);
  EXPECT_TRUE(a->problems().empty());
  EXPECT_TRUE(b->problems().empty());
}

TEST(Peers, TheLaterVersionOfANameWinsOnEveryNode) {
  TempDir dir;
  std::atomic<int64_t> clock_a{1000 * kSecond}, clock_b{2000 * kSecond};
  auto a = MustOpen(NodeOptions(dir, "node-a", &clock_a));
  auto b = MustOpen(NodeOptions(dir, "node-b", &clock_b));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->PutFile("x", "from a, earlier").ok());
  ASSERT_TRUE(b->PutFile("x", "from b, later").ok());
  ASSERT_TRUE(b->SyncPeers().ok());  // a's older version loses here
  ASSERT_TRUE(a->SyncPeers().ok());  // and replaces a's own
  EXPECT_EQ(Read(*a, "x"), "from b, later");
  EXPECT_EQ(Read(*b, "x"), "from b, later");
  EXPECT_EQ(a->stats().peer_superseded.load(), 1u);
  // a's replaced record is dead space now, returned like any retired one.
  uint64_t dead = 0;
  for (const auto& [id, st] : a->ExtentStates()) dead += st.dead_bytes;
  EXPECT_GT(dead, 0u);
  EXPECT_EQ(a->Capacity().live, 0u);

  // A node's own commit wins everywhere even with its clock behind the
  // version it replaces.
  clock_a = 5000 * kSecond;
  ASSERT_TRUE(a->PutFile("y", "a at 5000").ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  clock_b = 3000 * kSecond;
  ASSERT_TRUE(b->PutFile("y", "b at 3000, but after seeing a's").ok());
  ASSERT_TRUE(a->SyncPeers().ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  EXPECT_EQ(Read(*a, "y"), "b at 3000, but after seeing a's");
  EXPECT_EQ(Read(*b, "y"), "b at 3000, but after seeing a's");

  // a's own journal says which of its records are retired: a rebuilt index
  // agrees, and nothing is reported as damage.
  a = Rebuilt(std::move(a), dir, "node-a", &clock_a);
  ASSERT_TRUE(a);
  EXPECT_EQ(Read(*a, "x"), "from b, later");
  EXPECT_EQ(Read(*a, "y"), "b at 3000, but after seeing a's");
}

TEST(Peers, UnlinkRemovesTheVersionItSawOnEveryNode) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  auto b = MustOpen(NodeOptions(dir, "node-b"));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->PutFile("d/x", "a's x").ok());
  ASSERT_TRUE(a->PutFile("d/z", "a's z, first").ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  absl::StatusOr<Attr> d = b->Stat("d");
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(b->Unlink(d->ino, "x").ok());  // another node's file
  // a stores z again before it hears of b's unlink of the first z.
  ASSERT_TRUE(a->PutFile("d/z", "a's z, second").ok());
  ASSERT_TRUE(b->Unlink(d->ino, "z").ok());
  ASSERT_TRUE(a->SyncPeers().ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  EXPECT_EQ(Files(*a), std::set<std::string>{"d/z"});
  EXPECT_EQ(Files(*b), std::set<std::string>{"d/z"});
  EXPECT_EQ(Read(*b, "d/z"), "a's z, second");
  EXPECT_EQ(a->stats().peer_superseded.load(), 1u);  // x, through a's journal

  // A node that joins later sees the same, whatever order it reads in.
  auto c = MustOpen(NodeOptions(dir, "node-c"));
  ASSERT_TRUE(c);
  EXPECT_EQ(Files(*c), std::set<std::string>{"d/z"});
  EXPECT_EQ(Read(*c, "d/z"), "a's z, second");
  // b's rebuilt index too: its unlink of a's x is replayed before a's
  // journal is read, and must keep x from coming back.
  b = Rebuilt(std::move(b), dir, "node-b");
  ASSERT_TRUE(b);
  EXPECT_EQ(Files(*b), std::set<std::string>{"d/z"});
}

// A node may read another's unlink of a version before the commit of that
// version (it reads the nodes in name order). The late commit is skipped,
// but the older version it had replaced goes as well.
TEST(Peers, AVersionUnlinkedBeforeItsCommitIsSeenStillReplacesTheOlderOne) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  auto b = MustOpen(NodeOptions(dir, "node-b"));
  auto c = MustOpen(NodeOptions(dir, "node-c"));
  ASSERT_TRUE(a && b && c);
  ASSERT_TRUE(c->PutFile("d/n", "c's first").ok());
  ASSERT_TRUE(b->SyncPeers().ok());  // b has the first version
  ASSERT_TRUE(c->PutFile("d/n", "c's second").ok());
  ASSERT_TRUE(a->SyncPeers().ok());
  absl::StatusOr<Attr> d = a->Stat("d");
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(a->Unlink(d->ino, "n").ok());  // the second version
  ASSERT_TRUE(b->SyncPeers().ok());  // a's unlink first, then c's commit
  ASSERT_TRUE(c->SyncPeers().ok());
  EXPECT_TRUE(Files(*a).empty());
  EXPECT_TRUE(Files(*c).empty());
  EXPECT_TRUE(Files(*b).empty()) << Read(*b, "d/n");
}

// The mark that keeps a version unlinked before its commit was seen from
// coming back goes once the version's owner has retired it, so marks do not
// pile up with every replacement across nodes; a rebuild from the journals
// neither brings the version back nor leaves a mark.
TEST(Peers, AMarkOfAVersionRemovedEarlyGoesWhenItsOwnerRetiresIt) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  auto b = MustOpen(NodeOptions(dir, "node-b"));
  auto c = MustOpen(NodeOptions(dir, "node-c"));
  ASSERT_TRUE(a && b && c);
  ASSERT_TRUE(c->PutFile("d/n", "c's").ok());
  ASSERT_TRUE(a->SyncPeers().ok());
  absl::StatusOr<Attr> d = a->Stat("d");
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(a->Unlink(d->ino, "n").ok());
  ASSERT_TRUE(b->SyncPeers().ok());  // a's unlink first, then c's commit
  EXPECT_TRUE(Files(*b).empty());
  EXPECT_EQ(*b->PeerGoneMarks(), 1u);
  ASSERT_TRUE(c->SyncPeers().ok());  // c retires its version
  ASSERT_TRUE(b->SyncPeers().ok());
  EXPECT_EQ(*b->PeerGoneMarks(), 0u);
  EXPECT_TRUE(Files(*b).empty());
  b = Rebuilt(std::move(b), dir, "node-b");
  ASSERT_TRUE(b);
  EXPECT_TRUE(Files(*b).empty());
  EXPECT_EQ(*b->PeerGoneMarks(), 0u);
  EXPECT_TRUE(b->problems().empty());
}

// A node that follows another late (it was down, or slower than the other's
// reclaim grace) meets commits whose records are already reclaimed. It skips
// them, but each had replaced what its name held: the older version it has
// goes as well, through a commit or a rename (vLLM's close, then rename).
TEST(Peers, AVersionReclaimedBeforeItsEntryIsReadStillReplacesTheOlderOne) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  auto b = MustOpen(NodeOptions(dir, "node-b"));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(b->PutFile("d/n", "b's first n").ok());
  ASSERT_TRUE(b->PutFile("d/r", "b's first r").ok());
  ASSERT_TRUE(a->PutFile("d/m", "a's m").ok());
  ASSERT_TRUE(a->SyncPeers().ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  ASSERT_EQ(Files(*a), (std::set<std::string>{"d/m", "d/n", "d/r"}));
  absl::StatusOr<Attr> d = b->Stat("d");
  ASSERT_TRUE(d.ok());
  // While a is away: n replaced twice, then unlinked; r and a's m replaced
  // by renames of temp files, then unlinked.
  ASSERT_TRUE(b->PutFile("d/n", "b's second n").ok());
  ASSERT_TRUE(b->PutFile("d/n", "b's third n").ok());
  ASSERT_TRUE(b->Unlink(d->ino, "n").ok());
  for (const char* name : {"r", "m"}) {
    ASSERT_TRUE(b->PutFile(absl::StrCat("d/", name, "_1.tmp"), "b's new one").ok());
    ASSERT_TRUE(b->Rename(d->ino, absl::StrCat(name, "_1.tmp"), d->ino, name).ok());
    ASSERT_TRUE(b->Unlink(d->ino, name).ok());
  }
  ASSERT_TRUE(b->ReclaimDue().ok());  // every version b had is reclaimed
  EXPECT_TRUE(Files(*b).empty());
  ASSERT_TRUE(a->SyncPeers().ok());
  EXPECT_TRUE(Files(*a).empty()) << Read(*a, "d/n") << Read(*a, "d/r") << Read(*a, "d/m");
}

// node-b removes a directory and node-a makes it again after reading that.
// node-c reads node-a's journal first (nodes are read in name order), so it
// meets the older rmdir last: it keeps the directory, as every node does.
TEST(Peers, ADirectoryMadeAgainAfterAnRmdirStaysWhereverTheRmdirIsReadLast) {
  TempDir dir;
  std::atomic<int64_t> clock{1000 * kSecond};
  auto remover = MustOpen(NodeOptions(dir, "node-b", &clock));
  auto maker = MustOpen(NodeOptions(dir, "node-a", &clock));
  auto follower = MustOpen(NodeOptions(dir, "node-c", &clock));
  ASSERT_TRUE(remover && maker && follower);
  ASSERT_TRUE(remover->MkdirAll("x").ok());
  ASSERT_TRUE(maker->SyncPeers().ok());
  ASSERT_TRUE(follower->SyncPeers().ok());
  ASSERT_EQ(Dirs(*follower), std::set<std::string>{"x"});
  clock += kSecond;
  ASSERT_TRUE(remover->Rmdir(kRootIno, "x").ok());
  ASSERT_TRUE(maker->SyncPeers().ok());
  ASSERT_TRUE(Dirs(*maker).empty());
  clock += kSecond;
  ASSERT_TRUE(maker->MkdirAll("x").ok());
  for (Engine* e : {follower.get(), remover.get(), maker.get()}) {
    ASSERT_TRUE(e->SyncPeers().ok());
  }
  for (Engine* e : {follower.get(), remover.get(), maker.get()}) {
    EXPECT_EQ(Dirs(*e), std::set<std::string>{"x"});
    for (const std::string& p : e->problems()) ADD_FAILURE() << p;
  }
}

TEST(Peers, RenameMovesTheFileOnEveryNode) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  auto b = MustOpen(NodeOptions(dir, "node-b"));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->PutFile("in/f", "payload").ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  absl::StatusOr<Attr> in = b->Stat("in");
  absl::StatusOr<Attr> out = b->MkdirAll("out");
  ASSERT_TRUE(in.ok() && out.ok());
  ASSERT_TRUE(b->Rename(in->ino, "f", out->ino, "g").ok());
  EXPECT_EQ(Read(*b, "out/g"), "payload");
  ASSERT_TRUE(a->SyncPeers().ok());
  EXPECT_EQ(Files(*a), std::set<std::string>{"out/g"});
  EXPECT_EQ(Read(*a, "out/g"), "payload");
  // a unlinks its file under the name b gave it; a's own journal never
  // named "out/g", and a rebuild replays it before b's rename.
  absl::StatusOr<Attr> out_a = a->Stat("out");
  ASSERT_TRUE(out_a.ok());
  ASSERT_TRUE(a->Unlink(out_a->ino, "g").ok());
  a = Rebuilt(std::move(a), dir, "node-a");
  ASSERT_TRUE(a);
  EXPECT_TRUE(Files(*a).empty());
  ASSERT_TRUE(b->SyncPeers().ok());
  EXPECT_TRUE(Files(*b).empty());
}

// A rename of another node's file can be read before that file's commit: by
// a node that follows the renamer first (node-c reads node-b's journal
// before node-z's), and by the renamer itself when its index is rebuilt (its
// own journal is replayed before the others' are followed). The commit, once
// read, puts the file under its new name; the marks that said so go once the
// owner unlinks the version.
TEST(Peers, ARenameReadBeforeTheCommitPutsTheFileAtTheNewName) {
  TempDir dir;
  auto z = MustOpen(NodeOptions(dir, "node-z"));
  auto b = MustOpen(NodeOptions(dir, "node-b"));
  ASSERT_TRUE(z && b);
  ASSERT_TRUE(z->PutFile("in/f", "z's payload").ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  absl::StatusOr<Attr> in = b->Stat("in");
  ASSERT_TRUE(in.ok());
  ASSERT_TRUE(b->Rename(in->ino, "f", in->ino, "g").ok());
  auto c = MustOpen(NodeOptions(dir, "node-c"));  // follows b, then z
  ASSERT_TRUE(c);
  EXPECT_EQ(Files(*c), std::set<std::string>{"in/g"});
  EXPECT_EQ(Read(*c, "in/g"), "z's payload");
  EXPECT_EQ(*c->PeerRenameMarks(), 1u);
  b = Rebuilt(std::move(b), dir, "node-b");
  ASSERT_TRUE(b);
  EXPECT_EQ(Files(*b), std::set<std::string>{"in/g"});
  EXPECT_EQ(Read(*b, "in/g"), "z's payload");
  ASSERT_TRUE(z->SyncPeers().ok());
  EXPECT_EQ(Files(*z), std::set<std::string>{"in/g"});
  absl::StatusOr<Attr> in_z = z->Stat("in");
  ASSERT_TRUE(in_z.ok());
  ASSERT_TRUE(z->Unlink(in_z->ino, "g").ok());
  for (Engine* e : {b.get(), c.get()}) {
    ASSERT_TRUE(e->SyncPeers().ok());
    EXPECT_TRUE(Files(*e).empty());
    EXPECT_EQ(*e->PeerRenameMarks(), 0u);
    for (const std::string& p : e->problems()) ADD_FAILURE() << p;
  }
}

// The owner may write a checkpoint before it reads another node's rename of
// its file: that checkpoint lists the file under its old name. A node that
// applied the rename and then reads the checkpoint (its place in the owner's
// journal compacted away) keeps the new name: the rename is newer than the
// listing.
TEST(Peers, ARenamedFileKeepsItsNameWhenTheOwnersOlderCheckpointIsRead) {
  TempDir dir;
  auto z = MustOpen(NodeOptions(dir, "node-z"));
  auto b = MustOpen(NodeOptions(dir, "node-b"));
  auto c = MustOpen(NodeOptions(dir, "node-c"));
  ASSERT_TRUE(z && b && c);
  ASSERT_TRUE(z->PutFile("in/f", "z's payload").ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  ASSERT_TRUE(c->SyncPeers().ok());
  absl::StatusOr<Attr> in = b->Stat("in");
  ASSERT_TRUE(in.ok());
  ASSERT_TRUE(b->Rename(in->ino, "f", in->ino, "g").ok());
  ASSERT_TRUE(c->SyncPeers().ok());
  ASSERT_EQ(Files(*c), std::set<std::string>{"in/g"});
  ASSERT_TRUE(z->CompactJournal().ok());  // z has not read b's rename
  ASSERT_TRUE(z->PutFile("in/h", "after the checkpoint").ok());
  const std::set<std::string> expected{"in/g", "in/h"};
  ASSERT_TRUE(c->SyncPeers().ok());
  EXPECT_EQ(c->stats().peer_checkpoints.load(), 1u);
  EXPECT_EQ(Files(*c), expected);
  EXPECT_EQ(Read(*c, "in/g"), "z's payload");
  ASSERT_TRUE(b->SyncPeers().ok());  // the renamer itself
  EXPECT_EQ(Files(*b), expected);
  b = Rebuilt(std::move(b), dir, "node-b");
  ASSERT_TRUE(b);
  EXPECT_EQ(Files(*b), expected);
  // z reads the rename at last; its next checkpoint lists the new name.
  ASSERT_TRUE(z->SyncPeers().ok());
  EXPECT_EQ(Files(*z), expected);
  ASSERT_TRUE(z->CompactJournal().ok());
  ASSERT_TRUE(z->PutFile("in/i", "after the second checkpoint").ok());
  for (Engine* e : {b.get(), c.get()}) {
    ASSERT_TRUE(e->SyncPeers().ok());
    EXPECT_EQ(Files(*e), (std::set<std::string>{"in/g", "in/h", "in/i"}));
    EXPECT_EQ(Read(*e, "in/g"), "z's payload");
    for (const std::string& p : e->problems()) ADD_FAILURE() << p;
  }
}

TEST(Peers, EachNodeEvictsOnlyWhatItStored) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  auto b = MustOpen(NodeOptions(dir, "node-b"));
  ASSERT_TRUE(a && b);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(a->PutFile("m/a" + std::to_string(i), Pattern(i, 10000)).ok());
  }
  ASSERT_TRUE(b->PutFile("m/b0", Pattern(9, 10000)).ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  absl::StatusOr<std::vector<EvictedFile>> by_b = b->Evict(EvictRequest{});
  ASSERT_TRUE(by_b.ok()) << by_b.status();
  ASSERT_EQ(by_b->size(), 1u);
  EXPECT_EQ((*by_b)[0].path, "m/b0");
  EXPECT_EQ(Files(*b).size(), 4u);  // a's files stay
  absl::StatusOr<std::vector<EvictedFile>> by_a = a->Evict(EvictRequest{});
  ASSERT_TRUE(by_a.ok());
  EXPECT_EQ(by_a->size(), 4u);
  ASSERT_TRUE(b->SyncPeers().ok());
  EXPECT_TRUE(Files(*b).empty());
  ASSERT_TRUE(a->SyncPeers().ok());
  EXPECT_TRUE(Files(*a).empty());
}

TEST(Peers, AnEntryBeingAppendedIsWaitedFor) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  auto b = MustOpen(NodeOptions(dir, "node-b"));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->PutFile("f1", "one").ok());
  // What a reader can see while a's next entry is half written.
  const std::string journal = dir.Sub("backing/nodes/node-a/journal/0000000001.kvj");
  const uint64_t clean_end = std::filesystem::file_size(journal);
  {
    const int fd = ::open(journal.c_str(), O_WRONLY | O_APPEND);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "KVJE\x40\0\0\0partial", 15), 15);
    ::close(fd);
  }
  ASSERT_TRUE(b->SyncPeers().ok());
  EXPECT_EQ(Files(*b), std::set<std::string>{"f1"});
  ASSERT_TRUE(::truncate(journal.c_str(), static_cast<off_t>(clean_end)) == 0);
  ASSERT_TRUE(a->PutFile("f2", "two").ok());  // the entry, complete
  ASSERT_TRUE(b->SyncPeers().ok());
  EXPECT_EQ(Files(*b), (std::set<std::string>{"f1", "f2"}));
  EXPECT_EQ(Read(*b, "f2"), "two");
}

// Where a record of `path` in node `node`'s extents starts, and its extent file.
std::pair<std::string, uint64_t> RecordPlace(Engine& e, const TempDir& dir,
                                             const std::string& node,
                                             const std::string& path) {
  absl::StatusOr<std::vector<TreeEntry>> tree = e.ListTree();
  EXPECT_TRUE(tree.ok());
  for (const TreeEntry& t : tree.ok() ? *tree : std::vector<TreeEntry>{}) {
    if (t.path != path) continue;
    char name[32];
    std::snprintf(name, sizeof(name), "%010llu.kvx",
                  static_cast<unsigned long long>(t.inode.extent_id));
    return {dir.Sub("backing/nodes/" + node + "/extents/" + name), t.inode.record_offset};
  }
  ADD_FAILURE() << path << " not found";
  return {"", 0};
}

// On a network filesystem another node may see a journal entry before the
// record it commits: the follower waits for the record, then gives up.
TEST(Peers, ACommitWaitsUntilItsRecordIsReadable) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  EngineOptions ob = NodeOptions(dir, "node-b");
  ob.peer_record_wait_ns = 3600 * kSecond;
  auto b = MustOpen(ob);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->PutFile("f1", "first").ok());
  ASSERT_TRUE(a->PutFile("f2", "second").ok());
  // f1's record header, as if its bytes had not reached this node yet.
  const auto [extent, offset] = RecordPlace(*a, dir, "node-a", "f1");
  std::string header(kBlockAlign, '\0');
  {
    const int fd = ::open(extent.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pread(fd, header.data(), header.size(), offset), 4096);
    ASSERT_EQ(::pwrite(fd, std::string(kBlockAlign, '\0').data(), kBlockAlign, offset), 4096);
    ::close(fd);
  }
  ASSERT_TRUE(b->SyncPeers().ok());
  EXPECT_TRUE(Files(*b).empty());  // f2 waits behind f1
  {
    const int fd = ::open(extent.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, header.data(), header.size(), offset), 4096);
    ::close(fd);
  }
  ASSERT_TRUE(b->SyncPeers().ok());
  EXPECT_EQ(Read(*b, "f1"), "first");
  EXPECT_EQ(Read(*b, "f2"), "second");

  // A record that never becomes readable is skipped once the wait is over.
  ASSERT_TRUE(a->PutFile("f3", "third").ok());
  ASSERT_TRUE(a->PutFile("f4", "fourth").ok());
  const auto [extent3, offset3] = RecordPlace(*a, dir, "node-a", "f3");
  {
    const int fd = ::open(extent3.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, std::string(kBlockAlign, '\0').data(), kBlockAlign, offset3), 4096);
    ::close(fd);
  }
  EngineOptions oc = NodeOptions(dir, "node-c");
  oc.peer_record_wait_ns = 0;
  auto c = MustOpen(oc);
  ASSERT_TRUE(c);
  EXPECT_EQ(Files(*c), (std::set<std::string>{"f1", "f2", "f4"}));
  EXPECT_EQ(c->stats().peer_unreadable.load(), 1u);
}

TEST(Peers, ARebuiltIndexHasTheOtherNodesFilesAtOnce) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  auto b = MustOpen(NodeOptions(dir, "node-b"));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->PutFile("shared/a", "a").ok());
  ASSERT_TRUE(b->PutFile("shared/b", "b").ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  b = Rebuilt(std::move(b), dir, "node-b");
  ASSERT_TRUE(b);
  EXPECT_EQ(Files(*b), (std::set<std::string>{"shared/a", "shared/b"}));
  EXPECT_EQ(Read(*b, "shared/a"), "a");
  // A node's files created while b was down show up at b's next open.
  b.reset();
  ASSERT_TRUE(a->PutFile("shared/c", "c").ok());
  b = MustOpen(NodeOptions(dir, "node-b"));
  ASSERT_TRUE(b);
  EXPECT_EQ(Read(*b, "shared/c"), "c");
}

// The clients' `mkdir -p` finds most directories made by another node: a
// node's files there sit in directories its own journal never created.
TEST(Peers, FilesInAnotherNodesDirectoriesRebuildWithoutAlarm) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  auto b = MustOpen(NodeOptions(dir, "node-b"));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->PutFile("m_r0/abc/de_g0/a.bin", "a").ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  ASSERT_TRUE(b->PutFile("m_r0/abc/de_g0/b.bin", "b").ok());  // no mkdir of b's
  b = Rebuilt(std::move(b), dir, "node-b");  // fails on any problem
  ASSERT_TRUE(b);
  EXPECT_EQ(Files(*b),
            (std::set<std::string>{"m_r0/abc/de_g0/a.bin", "m_r0/abc/de_g0/b.bin"}));
  // Alone in the backing directory (node-a decommissioned), a directory
  // missing from the journal is damage again, and said so.
  a.reset();
  ASSERT_GT(std::filesystem::remove_all(dir.Sub("backing/nodes/node-a")), 0u);
  b.reset();
  ASSERT_GT(std::filesystem::remove_all(dir.Sub("index-node-b")), 0u);
  b = MustOpen(NodeOptions(dir, "node-b"));
  ASSERT_TRUE(b);
  EXPECT_EQ(Read(*b, "m_r0/abc/de_g0/b.bin"), "b");
  bool reported = false;
  for (const std::string& p : b->problems()) {
    reported |= p.find("recreated directory 'm_r0'") != std::string::npos;
  }
  EXPECT_TRUE(reported);
}

// The names in directory `dir`, listed by its inode number (as the kernel
// does, after looking the directory up), or "<error>" if that fails.
std::set<std::string> ListedByInode(Engine& e, const Attr& dir) {
  absl::StatusOr<Attr> by_ino = e.GetAttr(dir.ino);
  if (!by_ino.ok() || !by_ino->is_dir) return {"<not a directory>"};
  std::set<std::string> listed;
  absl::Status s = e.ReadDir(dir.ino, "", [&](absl::string_view name, const Attr&) {
    listed.insert(std::string(name));
    return true;
  });
  if (!s.ok()) return {"<" + std::string(s.message()) + ">"};
  return listed;
}

// A file's inode number is taken when it is created and journalled when it
// is renamed into place, so a journal's numbers are not in order. A
// directory replay recreates (another node made it) takes the next free
// number, which a later entry of the journal may name.
TEST(Peers, ADirectoryReplayRecreatesNeverSharesAnInodeWithAFile) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  auto b = MustOpen(NodeOptions(dir, "node-b"));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->PutFile("d/a.bin", "a").ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  absl::StatusOr<Attr> d = b->Stat("d");
  ASSERT_TRUE(d.ok());
  // Three writers, numbered in creation order, renamed in another.
  std::vector<std::unique_ptr<FileWriter>> w;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<std::unique_ptr<FileWriter>> made = b->CreateWriter();
    ASSERT_TRUE(made.ok()) << made.status();
    ASSERT_TRUE((*made)->Write(0, "b" + std::to_string(i)).ok());
    w.push_back(*std::move(made));
  }
  ASSERT_EQ(w[1]->ino(), w[0]->ino() + 1);
  ASSERT_EQ(w[2]->ino(), w[1]->ino() + 1);
  ASSERT_TRUE(b->Commit(*w[0], kRootIno, "first.bin").ok());
  ASSERT_TRUE(b->Commit(*w[2], d->ino, "last.bin").ok());  // into a's directory
  ASSERT_TRUE(b->Commit(*w[1], kRootIno, "middle.bin").ok());
  w.clear();
  b = Rebuilt(std::move(b), dir, "node-b");
  ASSERT_TRUE(b);
  d = b->Stat("d");
  absl::StatusOr<Attr> middle = b->Stat("middle.bin");
  ASSERT_TRUE(d.ok() && middle.ok());
  EXPECT_NE(d->ino, middle->ino);
  EXPECT_EQ(ListedByInode(*b, *d), (std::set<std::string>{"a.bin", "last.bin"}));
  EXPECT_EQ(Read(*b, "d/last.bin"), "b2");
  EXPECT_EQ(Read(*b, "middle.bin"), "b1");
  EXPECT_EQ(Read(*b, "d/a.bin"), "a");
}

// The same for a commit recovery completes: its record, written before the
// crash, names the number the recreated directory took.
TEST(Peers, ARolledForwardCommitMovesARecreatedDirectoryOutOfItsWay) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  auto b = MustOpen(NodeOptions(dir, "node-b"));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->PutFile("d/a.bin", "a").ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  ASSERT_TRUE(b->PutFile("d/f.bin", "f").ok());  // the journal's highest inode
  b.reset();
  // A node-b process killed between a commit's record header and its
  // journal entry: the record's inode is the next one after the journal's.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    EngineOptions o = NodeOptions(dir, "node-b");
    o.crash_hook = [](absl::string_view at) {
      if (at == "commit.after_header") ::raise(SIGKILL);
    };
    absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(o);
    if (e.ok()) (void)(*e)->PutFile("g.bin", "g");
    ::_exit(3);  // not killed: the test fails below
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  ASSERT_GT(std::filesystem::remove_all(dir.Sub("index-node-b")), 0u);
  b = MustOpen(NodeOptions(dir, "node-b"));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->stats().rolled_forward.load(), 1u);
  absl::StatusOr<Attr> d = b->Stat("d"), g = b->Stat("g.bin");
  ASSERT_TRUE(d.ok() && g.ok());
  EXPECT_NE(d->ino, g->ino);
  EXPECT_EQ(ListedByInode(*b, *d), (std::set<std::string>{"a.bin", "f.bin"}));
  EXPECT_EQ(Read(*b, "d/f.bin"), "f");
  EXPECT_EQ(Read(*b, "d/a.bin"), "a");
  EXPECT_EQ(Read(*b, "g.bin"), "g");
}

TEST(Peers, ARemovedNodesFilesGoAwayAndItMayComeBackAfresh) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  auto b = MustOpen(NodeOptions(dir, "node-b"));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->PutFile("m/x", "a's x").ok());
  ASSERT_TRUE(a->PutFile("m/y", "a's y").ok());
  ASSERT_TRUE(b->PutFile("m/z", "b's z").ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  absl::StatusOr<Attr> m = b->Stat("m");
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(b->Unlink(m->ino, "y").ok());  // b remembers a's y as removed
  EXPECT_EQ(Files(*b), (std::set<std::string>{"m/x", "m/z"}));
  // The operator decommissions node-a.
  a.reset();
  ASSERT_GT(std::filesystem::remove_all(dir.Sub("backing/nodes/node-a")), 0u);
  ASSERT_TRUE(std::filesystem::remove_all(dir.Sub("index-node-a")) > 0);
  ASSERT_TRUE(b->SyncPeers().ok());
  EXPECT_EQ(Files(*b), std::set<std::string>{"m/z"});
  // A new node-a starts from extent 1, journal 1: the same record places
  // as before, which b must not take for the removed versions.
  a = MustOpen(NodeOptions(dir, "node-a"));
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->PutFile("m/x", "new x").ok());
  ASSERT_TRUE(a->PutFile("m/y", "new y").ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  EXPECT_EQ(Read(*b, "m/x"), "new x");
  EXPECT_EQ(Read(*b, "m/y"), "new y");
}

// Other nodes remember removed versions by (node, extent, offset): a node
// must never put a new record where an old one was, even after its extents
// were removed and its index rebuilt.
TEST(Peers, ExtentIdsAreNeverReused) {
  TempDir dir;
  EngineOptions o = NodeOptions(dir, "node-a");
  o.extent_bytes = 64 << 10;  // sealed after one file
  uint64_t highest = 0;
  {
    auto a = MustOpen(o);
    ASSERT_TRUE(a);
    for (int i = 0; i < 4; ++i) {
      ASSERT_TRUE(a->PutFile("f" + std::to_string(i), Pattern(i, 60000)).ok());
    }
    for (const auto& [id, st] : a->ExtentStates()) highest = std::max(highest, id);
    ASSERT_GE(highest, 2u);
    absl::StatusOr<std::vector<EvictedFile>> gone = a->Evict(EvictRequest{});
    ASSERT_TRUE(gone.ok());
    ASSERT_TRUE(a->ReclaimDue().ok());
  }
  // Every extent file was removed with its last record.
  auto extents = [&] {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(
             dir.Sub("backing/nodes/node-a/extents"))) {
      names.push_back(entry.path().filename());
    }
    return names;
  };
  ASSERT_TRUE(extents().empty()) << extents().size();
  for (bool rebuild : {false, true}) {
    if (rebuild) {
      ASSERT_TRUE(std::filesystem::remove_all(dir.Sub("index-node-a")) > 0);
    }
    auto a = MustOpen(o);
    ASSERT_TRUE(a);
    const std::string name = rebuild ? "after-rebuild" : "after";
    ASSERT_TRUE(a->PutFile(name, Pattern(7, 60000)).ok());
    absl::StatusOr<std::vector<TreeEntry>> tree = a->ListTree();
    ASSERT_TRUE(tree.ok());
    uint64_t new_extent = 0;
    for (const TreeEntry& t : *tree) {
      if (t.path == name) new_extent = t.inode.extent_id;
    }
    EXPECT_GT(new_extent, highest) << name;
    for (const auto& [id, st] : a->ExtentStates()) highest = std::max(highest, id);
  }
}

// Both nodes store and unlink the same names at the same time while each
// follows the other: afterwards both show the same files with the same
// bytes, each one node's version.
TEST(Peers, ConcurrentChangesOfTheSameNamesConverge) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  auto b = MustOpen(NodeOptions(dir, "node-b"));
  ASSERT_TRUE(a && b);
  constexpr int kNames = 24;
  constexpr int kRounds = 6;
  auto content = [](const std::string& node, int name, int round) {
    return node + "/" + std::to_string(name) + "/" + std::to_string(round) +
           Pattern(name * 100 + round, 3000 + name);
  };
  std::atomic<bool> stop{false};
  auto work = [&](Engine& e, const std::string& node, int seed) {
    std::mt19937 rng(seed);
    for (int round = 0; round < kRounds; ++round) {
      for (int i = 0; i < kNames; ++i) {
        const std::string path = "m/n" + std::to_string(i);
        if (rng() % 5 == 0) {
          absl::StatusOr<Attr> m = e.Stat("m");
          if (m.ok()) (void)e.Unlink(m->ino, "n" + std::to_string(i));  // may be gone
        } else {
          ASSERT_TRUE(e.PutFile(path, content(node, i, round)).ok());
        }
      }
    }
  };
  auto follow = [&](Engine& e) {
    while (!stop) {
      ASSERT_TRUE(e.SyncPeers().ok());
      std::this_thread::yield();
    }
  };
  std::thread fa(follow, std::ref(*a)), fb(follow, std::ref(*b));
  std::thread wa(work, std::ref(*a), "node-a", 1), wb(work, std::ref(*b), "node-b", 2);
  wa.join();
  wb.join();
  stop = true;
  fa.join();
  fb.join();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(a->SyncPeers().ok());
    ASSERT_TRUE(b->SyncPeers().ok());
  }
  const std::set<std::string> files = Files(*a);
  EXPECT_EQ(files, Files(*b));
  for (const std::string& path : files) {
    const std::string on_a = Read(*a, path);
    EXPECT_EQ(on_a, Read(*b, path)) << path;
    const int name = std::stoi(path.substr(3));
    bool known = false;
    for (const char* node : {"node-a", "node-b"}) {
      for (int round = 0; round < kRounds; ++round) known |= on_a == content(node, name, round);
    }
    EXPECT_TRUE(known) << path << ": " << on_a.substr(0, 40);
  }
  EXPECT_GT(files.size(), 0u);
  EXPECT_TRUE(a->problems().empty());
  EXPECT_TRUE(b->problems().empty());
}

TEST(Peers, TheFollowerThreadPicksUpChangesByItself) {
  TempDir dir;
  auto a = MustOpen(NodeOptions(dir, "node-a"));
  EngineOptions ob = NodeOptions(dir, "node-b");
  ob.peer_poll_ns = 20'000'000;
  auto b = MustOpen(ob);
  ASSERT_TRUE(a && b);
  std::atomic<int> notified{0};
  b->SetPeerListener([&](const std::vector<NameChange>& changes) {
    notified += static_cast<int>(changes.size());
  });
  ASSERT_TRUE(a->PutFile("late", "arrives").ok());
  for (int i = 0; i < 500 && !b->Stat("late").ok(); ++i) ::usleep(10'000);
  EXPECT_EQ(Read(*b, "late"), "arrives");
  for (int i = 0; i < 100 && notified == 0; ++i) ::usleep(10'000);
  EXPECT_GE(notified.load(), 1);
  b->SetPeerListener(nullptr);
}

// A node follows another's journal into its next file as soon as the file
// before it says so (kNextFile), not once the directory's listing shows it:
// a network filesystem caches listings (sshfs 20 s, NFS up to 60 s), and
// the other node's new files would stay unseen that long.
TEST(Peers, AFollowerGoesOnIntoTheNextJournalFileBeforeItIsListed) {
  if (std::string why = testing::SshfsView::SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  const std::string remote = testing::SshfsView::Remote(dir);
  testing::SshfsView view(dir, remote, "sshfs");
  ASSERT_TRUE(view.Start());
  EngineOptions ao = NodeOptions(dir, "node-a");
  ao.backing_dir = remote + "/backing";
  ao.journal_file_bytes = 16 << 10;
  EngineOptions bo = NodeOptions(dir, "node-b");
  bo.backing_dir = view.Path("backing");  // through sshfs's caches
  auto a = MustOpen(ao);
  auto b = MustOpen(bo);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->PutFile("m/f0", "0").ok());
  ASSERT_TRUE(b->SyncPeers().ok());  // b has listed a's journal directory now
  ASSERT_EQ(Read(*b, "m/f0"), "0");
  const std::string journal_dir = remote + "/backing/nodes/node-a/journal";
  auto journal_files = [&] {
    size_t n = 0;
    for (const auto& entry : std::filesystem::directory_iterator(journal_dir)) {
      n += entry.path().extension() == ".kvj";
    }
    return n;
  };
  const size_t before = journal_files();
  for (int i = 1; journal_files() == before; ++i) {
    ASSERT_LT(i, 2000) << "a's journal never went on into a new file";
    ASSERT_TRUE(a->PutFile(absl::StrCat("m/f", i), "x").ok());
  }
  ASSERT_TRUE(a->PutFile("m/after", "after").ok());
  // sshfs keeps a file's size for a second, its directory listings for 20 s:
  // b must see "after" well before the listing shows the new file.
  const auto start = std::chrono::steady_clock::now();
  while (Read(*b, "m/after") != "after" &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(10)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    ASSERT_TRUE(b->SyncPeers().ok());
  }
  EXPECT_EQ(Read(*b, "m/after"), "after");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

}  // namespace
}  // namespace kvfs
