// Access hints: a file read only on other nodes keeps its place in the
// eviction order of the node that stored it. Nodes run on test clocks and
// follow each other only when the test calls SyncPeers.
#include <atomic>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kvfs/engine.h"
#include "tests/node_util.h"
#include "tests/test_util.h"

namespace kvfs {
namespace {

using testing::kSecond;
using testing::MustOpen;
using testing::NodeOptions;
using testing::Pattern;
using testing::Rebuilt;
using testing::TempDir;

constexpr int64_t kStart = 1'800'000'000 * kSecond;  // a whole minute

// The order in which `e` would evict its files: least recently accessed first.
std::vector<std::string> EvictionOrder(Engine& e) {
  EvictRequest request;
  request.dry_run = true;
  absl::StatusOr<std::vector<EvictedFile>> files = e.Evict(request);
  EXPECT_TRUE(files.ok()) << files.status();
  std::vector<std::string> paths;
  if (files.ok()) {
    for (const EvictedFile& f : *files) paths.push_back(f.path);
  }
  return paths;
}

// Node `id` on `clock`, sending hints at most once per `interval` (0: none).
EngineOptions HintingNode(const TempDir& dir, const std::string& id,
                          std::atomic<int64_t>* clock, int64_t interval = 60 * kSecond) {
  EngineOptions o = NodeOptions(dir, id, clock);
  o.access_hint_interval_ns = interval;
  return o;
}

// A stores two files, "old" first; B reads "old" two minutes later. With
// hints A then evicts "new" first; without, "old".
std::vector<std::string> OrderAfterARemoteRead(int64_t interval, bool noted) {
  TempDir dir;
  std::atomic<int64_t> clock_a{kStart}, clock_b{kStart};
  auto a = MustOpen(HintingNode(dir, "node-a", &clock_a, interval));
  auto b = MustOpen(HintingNode(dir, "node-b", &clock_b, interval));
  EXPECT_TRUE(a && b);
  if (!a || !b) return {};
  EXPECT_TRUE(a->PutFile("m/old.bin", Pattern(1, 5000)).ok());
  clock_a += kSecond;
  EXPECT_TRUE(a->PutFile("m/new.bin", Pattern(2, 5000)).ok());
  EXPECT_TRUE(b->SyncPeers().ok());
  clock_a += 120 * kSecond;
  clock_b += 120 * kSecond;
  absl::StatusOr<Attr> seen = b->Stat("m/old.bin");
  EXPECT_TRUE(seen.ok()) << seen.status();
  if (!seen.ok()) return {};
  if (noted) {  // as the FUSE layer's lookups and opens: written in batches
    b->NoteAccess(seen->ino, seen->atime_ns);
    EXPECT_TRUE(b->FlushAccessTimes().ok());
  } else {  // as utimensat
    EXPECT_TRUE(b->RecordAccess(seen->ino).ok());
  }
  EXPECT_TRUE(a->SyncPeers().ok());
  EXPECT_EQ(b->stats().access_hints_sent.load(), interval > 0 ? 1u : 0u);
  EXPECT_EQ(a->stats().access_hints_applied.load(), interval > 0 ? 1u : 0u);
  EXPECT_TRUE(a->problems().empty());
  EXPECT_TRUE(b->problems().empty());
  return EvictionOrder(*a);
}

TEST(AccessHints, AFileReadOnAnotherNodeIsEvictedLastByItsOwner) {
  const std::vector<std::string> hinted = {"m/new.bin", "m/old.bin"};
  EXPECT_EQ(OrderAfterARemoteRead(60 * kSecond, /*noted=*/false), hinted);
  EXPECT_EQ(OrderAfterARemoteRead(60 * kSecond, /*noted=*/true), hinted);
  // Without hints the owner never hears of the read.
  EXPECT_EQ(OrderAfterARemoteRead(0, /*noted=*/false),
            (std::vector<std::string>{"m/old.bin", "m/new.bin"}));
}

TEST(AccessHints, AtMostOneHintPerFileAndInterval) {
  TempDir dir;
  std::atomic<int64_t> clock_a{kStart}, clock_b{kStart};
  auto a = MustOpen(HintingNode(dir, "node-a", &clock_a));
  auto b = MustOpen(HintingNode(dir, "node-b", &clock_b));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->PutFile("m/f.bin", Pattern(1, 5000)).ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  absl::StatusOr<Attr> f = b->Stat("m/f.bin");
  ASSERT_TRUE(f.ok());
  // Read every second for three minutes (starting in the minute it was
  // stored, which its owner knows of already): one hint per new minute.
  for (int s = 1; s <= 180; ++s) {
    clock_a += kSecond;
    clock_b += kSecond;
    b->NoteAccess(f->ino, -1);
    ASSERT_TRUE(b->FlushAccessTimes().ok());
  }
  EXPECT_EQ(b->stats().access_hints_sent.load(), 3u);
  ASSERT_TRUE(a->SyncPeers().ok());
  EXPECT_EQ(a->stats().access_hints_applied.load(), 3u);
  // The owner's access time is the last hinted one: within an interval of
  // the last read.
  absl::StatusOr<Attr> at_a = a->Stat("m/f.bin");
  ASSERT_TRUE(at_a.ok());
  EXPECT_EQ(at_a->atime_ns, kStart + 180 * kSecond);
  // The nodes' own files are never hinted.
  ASSERT_TRUE(b->PutFile("m/g.bin", Pattern(2, 5000)).ok());
  absl::StatusOr<Attr> g = b->Stat("m/g.bin");
  ASSERT_TRUE(g.ok());
  clock_b += 120 * kSecond;
  ASSERT_TRUE(b->RecordAccess(g->ino).ok());
  EXPECT_EQ(b->stats().access_hints_sent.load(), 3u);
}

TEST(AccessHints, OnlyTheVersionThatWasReadAndOnlyByItsOwner) {
  TempDir dir;
  std::atomic<int64_t> clock{kStart};
  auto a = MustOpen(HintingNode(dir, "node-a", &clock));
  auto b = MustOpen(HintingNode(dir, "node-b", &clock));
  auto c = MustOpen(HintingNode(dir, "node-c", &clock));
  ASSERT_TRUE(a && b && c);
  ASSERT_TRUE(a->PutFile("m/f.bin", Pattern(1, 5000)).ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  clock += 120 * kSecond;
  absl::StatusOr<Attr> f = b->Stat("m/f.bin");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(b->RecordAccess(f->ino).ok());
  EXPECT_EQ(b->stats().access_hints_sent.load(), 1u);
  // A third node follows the hint and ignores it: the file is not its own.
  ASSERT_TRUE(c->SyncPeers().ok());
  EXPECT_EQ(c->stats().access_hints_applied.load(), 0u);
  // The owner stored a new version meanwhile: the read was of the old one.
  clock += kSecond;
  ASSERT_TRUE(a->PutFile("m/f.bin", Pattern(2, 5000)).ok());
  const int64_t stored = clock.load();
  ASSERT_TRUE(a->SyncPeers().ok());
  EXPECT_EQ(a->stats().access_hints_applied.load(), 0u);
  absl::StatusOr<Attr> at_a = a->Stat("m/f.bin");
  ASSERT_TRUE(at_a.ok());
  EXPECT_EQ(at_a->atime_ns, stored);
  EXPECT_TRUE(a->problems().empty());
  EXPECT_TRUE(c->problems().empty());
}

TEST(AccessHints, AReaderClockAheadCountsAsTheOwnersNow) {
  TempDir dir;
  std::atomic<int64_t> clock_a{kStart}, clock_b{kStart + 3600 * kSecond};
  auto a = MustOpen(HintingNode(dir, "node-a", &clock_a));
  auto b = MustOpen(HintingNode(dir, "node-b", &clock_b));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->PutFile("m/f.bin", Pattern(1, 5000)).ok());
  ASSERT_TRUE(b->SyncPeers().ok());
  absl::StatusOr<Attr> f = b->Stat("m/f.bin");
  ASSERT_TRUE(f.ok());
  clock_b += 120 * kSecond;
  ASSERT_TRUE(b->RecordAccess(f->ino).ok());
  clock_a += 5 * kSecond;
  ASSERT_TRUE(a->SyncPeers().ok());
  EXPECT_EQ(a->stats().access_hints_applied.load(), 1u);
  absl::StatusOr<Attr> at_a = a->Stat("m/f.bin");
  ASSERT_TRUE(at_a.ok());
  EXPECT_EQ(at_a->atime_ns, clock_a.load());
}

// On one clock: A stores "m/old.bin", then "m/new.bin" a second later; B
// reads "old" two minutes on (as utimensat), which journals a hint.
void StoreOnAReadOldOnB(const TempDir& dir, std::atomic<int64_t>* clock,
                        std::unique_ptr<Engine>* a, std::unique_ptr<Engine>* b) {
  *a = MustOpen(HintingNode(dir, "node-a", clock));
  *b = MustOpen(HintingNode(dir, "node-b", clock));
  ASSERT_TRUE(*a && *b);
  ASSERT_TRUE((*a)->PutFile("m/old.bin", Pattern(1, 5000)).ok());
  *clock += kSecond;
  ASSERT_TRUE((*a)->PutFile("m/new.bin", Pattern(2, 5000)).ok());
  ASSERT_TRUE((*b)->SyncPeers().ok());
  *clock += 120 * kSecond;
  absl::StatusOr<Attr> f = (*b)->Stat("m/old.bin");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*b)->RecordAccess(f->ino).ok());
}

TEST(AccessHints, HintsSurviveRebuildsAndChangeNoNamespace) {
  TempDir dir;
  std::atomic<int64_t> clock{kStart};
  std::unique_ptr<Engine> a, b;
  ASSERT_NO_FATAL_FAILURE(StoreOnAReadOldOnB(dir, &clock, &a, &b));
  ASSERT_TRUE(b->PutFile("m/b.bin", Pattern(3, 5000)).ok());  // after the hint
  // B's own journal replays around its hint.
  b = Rebuilt(std::move(b), dir, "node-b", &clock);
  ASSERT_TRUE(b);
  EXPECT_EQ(testing::Files(*b),
            (std::set<std::string>{"m/b.bin", "m/new.bin", "m/old.bin"}));
  // A rebuilt index hears of the read again from B's journal.
  ASSERT_TRUE(a->SyncPeers().ok());
  a = Rebuilt(std::move(a), dir, "node-a", &clock);
  ASSERT_TRUE(a);
  EXPECT_EQ(EvictionOrder(*a), (std::vector<std::string>{"m/new.bin", "m/old.bin"}));
}

// The reader compacts its journal before the owner has followed it: the
// hint comes to the owner in the checkpoint, for an hour.
TEST(AccessHints, AHintReachesAnOwnerThatWasBehindThroughTheCheckpoint) {
  TempDir dir;
  std::atomic<int64_t> clock{kStart};
  std::unique_ptr<Engine> a, b;
  ASSERT_NO_FATAL_FAILURE(StoreOnAReadOldOnB(dir, &clock, &a, &b));
  ASSERT_EQ(b->stats().access_hints_sent.load(), 1u);
  ASSERT_TRUE(b->CompactJournal().ok());  // the hint's journal file goes
  ASSERT_TRUE(a->SyncPeers().ok());
  EXPECT_EQ(a->stats().access_hints_applied.load(), 1u);
  EXPECT_EQ(EvictionOrder(*a), (std::vector<std::string>{"m/new.bin", "m/old.bin"}));
  // A later checkpoint carries it again while it is recent: a rebuilt index
  // (access times back at the commits) hears of it once more.
  ASSERT_TRUE(b->CompactJournal().ok());
  a = Rebuilt(std::move(a), dir, "node-a", &clock);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->stats().access_hints_applied.load(), 1u);
  EXPECT_EQ(EvictionOrder(*a), (std::vector<std::string>{"m/new.bin", "m/old.bin"}));
  // Two hours on, a checkpoint no longer carries it.
  clock += 7200 * kSecond;
  ASSERT_TRUE(b->CompactJournal().ok());
  a = Rebuilt(std::move(a), dir, "node-a", &clock);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->stats().access_hints_applied.load(), 0u);
  EXPECT_EQ(EvictionOrder(*a), (std::vector<std::string>{"m/old.bin", "m/new.bin"}));
  EXPECT_TRUE(a->problems().empty());
  EXPECT_TRUE(b->problems().empty());
}

}  // namespace
}  // namespace kvfs
