// Capacity and eviction in the engine: LRU order by kvfs's own access times,
// rank groups, space returned to the backing filesystem, readers kept safe,
// manual eviction, a store storm against the capacity, and rebuilds after
// eviction.
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "kvfs/errors.h"
#include "kvfs/recent_bytes.h"
#include "tests/sshfs_util.h"
#include "tests/test_util.h"

namespace kvfs {
namespace {

using testing::AllocatedBytes;
using testing::MustOpen;
using testing::Pattern;
using testing::TempDir;
using testing::TestOptions;

constexpr int64_t kSecond = 1'000'000'000;

// A clock the test moves by hand (access times have 1 s granularity).
struct ManualClock {
  std::shared_ptr<std::atomic<int64_t>> now =
      std::make_shared<std::atomic<int64_t>>(int64_t{1'700'000'000} * kSecond);
  std::function<int64_t()> fn() const {
    auto n = now;
    return [n] { return n->load(); };
  }
  void Advance(int64_t ns = kSecond) { *now += ns; }
};

EngineOptions EvictionOptions(const TempDir& dir, const ManualClock& clock,
                              uint64_t capacity) {
  EngineOptions o = TestOptions(dir);
  o.capacity_bytes = capacity;
  o.min_free_bytes = 0;
  o.background_eviction = false;
  o.reclaim_grace_ns = 0;
  o.clock = clock.fn();
  return o;
}

bool Exists(Engine& e, const std::string& path) { return e.Stat(path).ok(); }

// `noted`: the accesses go through NoteAccess (as the FUSE layer's) and are
// in memory only when the eviction starts; otherwise through RecordAccess.
void LeastRecentlyAccessedGoFirst(bool noted) {
  TempDir dir;
  ManualClock clock;
  // Ten 1 MiB files; the capacity holds ten, the low watermark seven.
  auto e = MustOpen(EvictionOptions(dir, clock, 10 * ((1 << 20) + 8192) + 64 * 4096));
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(e->PutFile("f" + std::to_string(i), Pattern(i, 1 << 20)).ok());
    clock.Advance();
  }
  // Touch the three oldest: they become the most recent.
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<Attr> a = e->Stat("f" + std::to_string(i));
    ASSERT_TRUE(a.ok());
    if (noted) {
      e->NoteAccess(a->ino, a->atime_ns);
    } else {
      ASSERT_TRUE(e->RecordAccess(a->ino).ok());
    }
  }
  clock.Advance();
  // One more file does not fit: its writer evicts (this engine has no
  // background evictor), down to the low watermark.
  ASSERT_TRUE(e->PutFile("f10", Pattern(10, 1 << 20)).ok());
  EXPECT_GE(e->stats().space_waits.load(), 1u);
  ASSERT_TRUE(e->RunEvictionPass().ok());
  // f3, f4, ... went in order; the touched ones and the newest stayed.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(Exists(*e, "f" + std::to_string(i))) << i;
  EXPECT_TRUE(Exists(*e, "f10"));
  EXPECT_FALSE(Exists(*e, "f3"));
  EXPECT_FALSE(Exists(*e, "f4"));
  int kept_from = 3;
  while (kept_from < 10 && !Exists(*e, "f" + std::to_string(kept_from))) ++kept_from;
  for (int i = kept_from; i < 10; ++i) EXPECT_TRUE(Exists(*e, "f" + std::to_string(i))) << i;
  const CapacityStatus c = e->Capacity();
  EXPECT_LE(c.used, c.low + (1 << 20)) << "evicted down to the low watermark";
  EXPECT_EQ(e->stats().evicted_files.load(), static_cast<uint64_t>(kept_from - 3));
}

TEST(Eviction, LeastRecentlyAccessedGoFirst) { LeastRecentlyAccessedGoFirst(false); }
TEST(Eviction, LeastRecentlyAccessedGoFirstWithNotedAccesses) {
  LeastRecentlyAccessedGoFirst(true);
}

// A noted access shows in stat at once, reaches the index without an
// eviction (at close here), and survives a reopen.
TEST(Eviction, NotedAccessShowsAtOnceAndIsKept) {
  TempDir dir;
  ManualClock clock;
  EngineOptions o = EvictionOptions(dir, clock, 64 << 20);
  int64_t noted_at;
  {
    auto e = MustOpen(o);
    ASSERT_TRUE(e->PutFile("f", "x").ok());
    absl::StatusOr<Attr> a = e->Stat("f");
    ASSERT_TRUE(a.ok());
    clock.Advance();
    noted_at = clock.fn()();
    e->NoteAccess(a->ino, a->atime_ns);
    EXPECT_EQ(e->Stat("f")->atime_ns, noted_at);
    EXPECT_EQ(e->GetAttr(a->ino)->atime_ns, noted_at);
  }
  auto e = MustOpen(o);
  EXPECT_EQ(e->Stat("f")->atime_ns, noted_at) << "lost at close";
}

TEST(Eviction, RankGroupsGoTogetherRankZeroFirst) {
  TempDir dir;
  ManualClock clock;
  auto e = MustOpen(EvictionOptions(dir, clock, 64 << 20));
  std::vector<std::vector<EvictedFile>> batches;
  e->SetEvictionListener([&](const std::vector<EvictedFile>& f) { batches.push_back(f); });
  const std::string rest = "abc/de_g0/0123456789abcdef.bin";
  // Rank 2 stored first (oldest), then ranks 0 and 1; another hash is older
  // still but has no rank directory.
  ASSERT_TRUE(e->PutFile("plain/old.bin", Pattern(9, 5000)).ok());
  clock.Advance();
  for (int rank : {2, 0, 1}) {
    ASSERT_TRUE(e->PutFile("m_abc_r" + std::to_string(rank) + "/" + rest,
                           Pattern(rank, 7000)).ok());
    clock.Advance();
  }
  ASSERT_TRUE(e->PutFile("m_abc_r0/abc/de_g0/other.bin", Pattern(5, 7000)).ok());
  ASSERT_TRUE(e->PutFile("m_abc/config.json", "{}").ok());

  EvictRequest one;
  one.max_bytes = 1;  // the oldest file, then stop
  absl::StatusOr<std::vector<EvictedFile>> gone = e->Evict(one);
  ASSERT_TRUE(gone.ok()) << gone.status();
  ASSERT_EQ(gone->size(), 1u);
  EXPECT_EQ((*gone)[0].path, "plain/old.bin");

  gone = e->Evict(one);  // the next oldest is rank 2's file: its whole group goes
  ASSERT_TRUE(gone.ok()) << gone.status();
  ASSERT_EQ(gone->size(), 3u);
  EXPECT_EQ((*gone)[0].path, "m_abc_r0/" + rest) << "rank 0 first";
  EXPECT_EQ((*gone)[1].path, "m_abc_r1/" + rest);
  EXPECT_EQ((*gone)[2].path, "m_abc_r2/" + rest);
  for (int rank : {0, 1, 2}) {
    EXPECT_FALSE(Exists(*e, "m_abc_r" + std::to_string(rank) + "/" + rest)) << rank;
  }
  EXPECT_TRUE(Exists(*e, "m_abc_r0/abc/de_g0/other.bin"));
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[1].size(), 3u) << "the listener hears of every name";
}

TEST(Eviction, SpaceComesBackAndDeadExtentsAreRemoved) {
  TempDir dir;
  ManualClock clock;
  EngineOptions o = EvictionOptions(dir, clock, 1ull << 40);
  o.extent_bytes = 8 << 20;
  o.reclaim_grace_ns = 30 * kSecond;
  auto e = MustOpen(o);
  for (int i = 0; i < 12; ++i) {
    ASSERT_TRUE(e->PutFile("f" + std::to_string(i), Pattern(i, 2 << 20)).ok());
  }
  const std::string extents = e->layout().ExtentsDir();
  // Written back first: ext4 gives back a block of its delayed-allocation
  // reserve when writeback allocates, and write-behind does that at its own
  // pace (on its thread), so st_blocks could move by 4 KiB by itself.
  ::sync();
  const uint64_t before = AllocatedBytes(extents);
  EXPECT_GE(before, 24u << 20);
  const size_t extent_files = e->ExtentStates().size();
  EXPECT_GE(extent_files, 3u);

  EvictRequest older;
  older.max_bytes = 8 << 20;  // the four oldest files (each a little over 2 MiB)
  absl::StatusOr<std::vector<EvictedFile>> gone = e->Evict(older);
  ASSERT_TRUE(gone.ok()) << gone.status();
  EXPECT_EQ(gone->size(), 4u);
  ASSERT_TRUE(e->ReclaimDue().ok());
  ::sync();
  EXPECT_EQ(AllocatedBytes(extents), before) << "nothing returned within the grace period";
  EXPECT_GT(e->Capacity().reclaimable, 8u << 20);

  clock.Advance(31 * kSecond);
  ASSERT_TRUE(e->ReclaimDue().ok());
  const uint64_t after = AllocatedBytes(extents);
  EXPECT_LE(after + (8u << 20) - (64 << 10), before)
      << "before " << before << " after " << after;
  EXPECT_GE(e->stats().dropped_extents.load(), 1u) << "the first extent held only those";
  EXPECT_LT(e->ExtentStates().size(), extent_files);
  for (int i = 4; i < 12; ++i) {
    EXPECT_EQ(*e->GetFile("f" + std::to_string(i)), Pattern(i, 2 << 20)) << i;
  }
  // Reopened, and rebuilt from the journal: the same files, nothing reported.
  e.reset();
  e = MustOpen(o);
  EXPECT_TRUE(e->problems().empty()) << e->problems()[0];
  e.reset();
  std::filesystem::remove_all(o.index_dir);
  e = MustOpen(o);
  EXPECT_TRUE(e->problems().empty()) << e->problems()[0];
  for (int i = 0; i < 12; ++i) {
    absl::StatusOr<std::string> got = e->GetFile("f" + std::to_string(i));
    if (i < 4) {
      EXPECT_EQ(ErrnoOf(got.status()), ENOENT) << i;
    } else {
      ASSERT_TRUE(got.ok()) << i << got.status();
      EXPECT_EQ(*got, Pattern(i, 2 << 20)) << i;
    }
  }
}

// On a filesystem that cannot punch holes (sshfs here; NFS before 4.2) only
// whole dead extents give space back. Extents are then sealed at a 32nd of
// the capacity (16 MiB at least, a quarter of it at most): a capacity
// smaller than the configured extent size keeps taking stores and keeps the
// newest files.
TEST(Eviction, WithoutHolePunchingWholeExtentsComeBack) {
  if (std::string why = testing::SshfsView::SkipReason(); !why.empty()) GTEST_SKIP() << why;
  for (const uint64_t capacity : {uint64_t{48} << 20, uint64_t{8} << 20}) {
    SCOPED_TRACE(capacity);
    TempDir dir;
    const std::string remote = testing::SshfsView::Remote(dir);
    testing::SshfsView view(dir, remote, "sshfs");
    ASSERT_TRUE(view.Start());
    ManualClock clock;
    EngineOptions o = EvictionOptions(dir, clock, capacity);
    o.backing_dir = view.Path("backing");
    o.extent_bytes = 1 << 30;  // the default, far above the capacity
    auto e = MustOpen(o);
    ASSERT_TRUE(e);
    for (int i = 0; i < 100; ++i) {
      absl::Status s = e->PutFile("f" + std::to_string(i), Pattern(i, 1 << 20)).status();
      ASSERT_TRUE(s.ok()) << "store " << i << ": " << s;
      clock.Advance();
    }
    EXPECT_GE(e->stats().dropped_extents.load(), 3u);
    EXPECT_LE(e->Capacity().used, capacity);
    size_t kept = 0;
    for (int i = 0; i < 100; ++i) {
      absl::StatusOr<std::string> got = e->GetFile("f" + std::to_string(i));
      if (!got.ok()) continue;
      ++kept;
      EXPECT_EQ(*got, Pattern(i, 1 << 20)) << i;
    }
    // Eviction frees whole extents (a quarter of the capacity, or less).
    const int newest = static_cast<int>(capacity / (3 << 20));
    for (int i = 100 - newest; i < 100; ++i) {
      EXPECT_TRUE(Exists(*e, "f" + std::to_string(i))) << i;
    }
    const uint64_t target = std::min<uint64_t>(16 << 20, capacity / 4);
    for (const auto& entry : std::filesystem::directory_iterator(
             remote + "/backing/nodes/" + o.node_id + "/extents")) {
      EXPECT_LE(entry.file_size(), target + (1 << 20) + (64 << 10)) << entry.path();
    }
    // Rebuilt from the journal: the same files, nothing reported.
    e.reset();
    std::filesystem::remove_all(o.index_dir);
    e = MustOpen(o);
    ASSERT_TRUE(e);
    EXPECT_TRUE(e->problems().empty()) << e->problems()[0];
    size_t rebuilt = 0;
    for (int i = 0; i < 100; ++i) rebuilt += Exists(*e, "f" + std::to_string(i));
    EXPECT_EQ(rebuilt, kept);
  }
}

TEST(Eviction, OpenReadersKeepTheirBytes) {
  TempDir dir;
  ManualClock clock;
  auto e = MustOpen(EvictionOptions(dir, clock, 1ull << 40));
  const std::string data = Pattern(7, 3 << 20);
  ASSERT_TRUE(e->PutFile("held.bin", data).ok());
  absl::StatusOr<std::unique_ptr<FileReader>> r = e->OpenReader(e->Stat("held.bin")->ino);
  ASSERT_TRUE(r.ok());
  EvictRequest all;
  ASSERT_EQ(e->Evict(all)->size(), 1u);
  EXPECT_FALSE(Exists(*e, "held.bin")) << "the name goes at once";
  clock.Advance(3600 * kSecond);
  ASSERT_TRUE(e->ReclaimDue().ok());
  EXPECT_EQ(e->stats().reclaimed_bytes.load(), 0u) << "an open reader pins its record";
  std::string got(data.size(), '\0');
  ASSERT_EQ(*(*r)->Read(0, got.size(), got.data()), data.size());
  EXPECT_EQ(got, data);
  r->reset();
  ASSERT_TRUE(e->ReclaimDue().ok());
  EXPECT_GE(e->stats().reclaimed_bytes.load(), data.size()) << "returned once closed";
}

TEST(Eviction, ConcurrentReadsGetRightBytesOrACleanMiss) {
  TempDir dir;
  EngineOptions o = TestOptions(dir);
  o.capacity_bytes = 1ull << 40;
  o.min_free_bytes = 0;
  o.reclaim_grace_ns = 0;  // the harshest case: space goes back at once
  auto e = MustOpen(o);
  constexpr int kFiles = 64;
  for (int i = 0; i < kFiles; ++i) {
    ASSERT_TRUE(e->PutFile("d/f" + std::to_string(i), Pattern(i, 256 << 10)).ok());
  }
  std::atomic<bool> done{false};
  std::atomic<int> wrong{0}, read_ok{0}, misses{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&, t] {
      for (int round = 0; !done; ++round) {
        const int i = (round * 7 + t) % kFiles;
        absl::StatusOr<Attr> a = e->Stat("d/f" + std::to_string(i));
        if (!a.ok()) {
          ++misses;
          continue;
        }
        absl::StatusOr<std::unique_ptr<FileReader>> r = e->OpenReader(a->ino);
        if (!r.ok()) {
          if (ErrnoOf(r.status()) != ENOENT) {
            ++wrong;
            ADD_FAILURE() << "open of f" << i << ": " << r.status();
          }
          ++misses;
          continue;
        }
        std::string buf(256 << 10, '\0');
        absl::StatusOr<size_t> n = (*r)->Read(0, buf.size(), buf.data());
        if (!n.ok() || *n != buf.size() || buf != Pattern(i, 256 << 10)) {
          ++wrong;
          ADD_FAILURE() << "read of f" << i << ": "
                        << (n.ok() ? absl::StrCat(*n, " bytes, wrong") : n.status().ToString());
        } else {
          ++read_ok;
        }
      }
    });
  }
  for (int i = 0; i < kFiles; ++i) {
    EvictRequest one;
    one.max_bytes = 1;
    ASSERT_TRUE(e->Evict(one).ok());
    ASSERT_TRUE(e->ReclaimDue().ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(read_ok.load(), 0);
  EXPECT_GT(misses.load(), 0);
  EXPECT_EQ(e->stats().checksum_errors.load(), 0u);
}

TEST(Eviction, ManualEvictionFilters) {
  TempDir dir;
  ManualClock clock;
  auto e = MustOpen(EvictionOptions(dir, clock, 1ull << 40));
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(e->PutFile("a/f" + std::to_string(i), Pattern(i, 10000)).ok());
    ASSERT_TRUE(e->PutFile("b/f" + std::to_string(i), Pattern(i, 10000)).ok());
    clock.Advance(60 * kSecond);
  }
  // Files of the first three minutes are older than 3.5 minutes now.
  EvictRequest req;
  req.older_than_ns = 210 * kSecond;
  req.prefix = "a/";
  req.dry_run = true;
  absl::StatusOr<std::vector<EvictedFile>> listed = e->Evict(req);
  ASSERT_TRUE(listed.ok()) << listed.status();
  std::vector<std::string> paths;
  for (const EvictedFile& f : *listed) paths.push_back(f.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"a/f0", "a/f1", "a/f2"}));
  EXPECT_TRUE(Exists(*e, "a/f0")) << "a dry run changes nothing";

  req.dry_run = false;
  req.max_bytes = 20000;  // two records of 16 KiB (stored bytes count)
  absl::StatusOr<std::vector<EvictedFile>> gone = e->Evict(req);
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(gone->size(), 2u);
  EXPECT_FALSE(Exists(*e, "a/f0"));
  EXPECT_FALSE(Exists(*e, "a/f1"));
  EXPECT_TRUE(Exists(*e, "a/f2"));
  EXPECT_TRUE(Exists(*e, "b/f0")) << "outside the prefix";
  req.prefix = "/a";  // slashes around a prefix do not matter
  req.max_bytes = UINT64_MAX;
  EXPECT_EQ(e->Evict(req)->size(), 1u);
  EXPECT_TRUE(Exists(*e, "a/f3"));
}

TEST(Eviction, StoreStormStaysWithinCapacity) {
  TempDir dir;
  EngineOptions o = TestOptions(dir);
  o.extent_bytes = 16 << 20;
  o.capacity_bytes = 128 << 20;
  o.min_free_bytes = 0;
  o.reclaim_grace_ns = 0;
  auto e = MustOpen(o);
  const std::string extents = e->layout().ExtentsDir();
  std::atomic<bool> done{false};
  std::atomic<uint64_t> worst{0};
  std::thread watcher([&] {
    while (!done) {
      const uint64_t used = AllocatedBytes(extents);
      uint64_t seen = worst;
      while (used > seen && !worst.compare_exchange_weak(seen, used)) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < 64; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < 6; ++i) {
        const std::string name = "s/t" + std::to_string(t) + "_" + std::to_string(i);
        absl::StatusOr<Attr> put = e->PutFile(name, Pattern(t * 100 + i, 1 << 20));
        if (!put.ok()) {
          ++failures;
          ADD_FAILURE() << name << ": " << put.status();
        }
      }
    });
  }
  for (auto& w : writers) w.join();
  done = true;
  watcher.join();
  EXPECT_EQ(failures.load(), 0);
  const uint64_t allowed = o.capacity_bytes + o.extent_bytes;
  EXPECT_LE(worst.load(), allowed) << "backing bytes peaked at " << worst.load();
  EXPECT_GT(e->stats().evicted_files.load(), 0u) << "384 MiB stored into 128 MiB";
  // Whatever is left reads back right. The evictor may still be at work: a
  // file it takes between the listing and the read is gone (ENOENT), which
  // is no error; any other failure, or wrong bytes, is.
  absl::StatusOr<std::vector<TreeEntry>> tree = e->ListTree();
  ASSERT_TRUE(tree.ok());
  int files = 0;
  for (const TreeEntry& t : *tree) {
    if (t.inode.is_dir) continue;
    ++files;
    int writer = -1, index = -1;
    ASSERT_EQ(std::sscanf(t.path.c_str(), "s/t%d_%d", &writer, &index), 2) << t.path;
    absl::StatusOr<std::string> got = e->GetFile(t.path);
    if (!got.ok() && ErrnoOf(got.status()) == ENOENT) continue;
    ASSERT_TRUE(got.ok()) << t.path << ": " << got.status();
    EXPECT_TRUE(*got == Pattern(writer * 100 + index, 1 << 20)) << t.path;
  }
  EXPECT_GT(files, 0);
}

// Below the high watermark (95% of the limit) is room for less than one
// file: the waiting store's own bytes make the pass evict.
TEST(Eviction, AStoreLargerThanTheRoomBelowTheHighWatermarkStillEvicts) {
  TempDir dir;
  ManualClock clock;
  auto e = MustOpen(EvictionOptions(dir, clock, 8 << 20));
  for (int i = 0; i < 30; ++i) {
    absl::Status s = e->PutFile("f" + std::to_string(i), Pattern(i, 1 << 20)).status();
    ASSERT_TRUE(s.ok()) << "store " << i << ": " << s;
    clock.Advance();
  }
  EXPECT_GE(e->stats().evicted_files.load(), 20u);
  EXPECT_TRUE(Exists(*e, "f29"));
}

TEST(Eviction, RecentBytesCountOneSpan) {
  RecentBytes recent(16 * kSecond);  // buckets of 1 s
  const int64_t t0 = 1'700'000'000 * kSecond;
  recent.Add(t0, 100);
  recent.Add(t0 + 5 * kSecond, 20);
  EXPECT_EQ(recent.Sum(t0 + 5 * kSecond), 120u);
  EXPECT_EQ(recent.Sum(t0 + 15 * kSecond), 120u);
  EXPECT_EQ(recent.Sum(t0 + 16 * kSecond), 20u) << "the first second left the span";
  recent.Add(t0 + 3 * kSecond, 7);  // a clock that went back counts as now
  EXPECT_EQ(recent.Sum(t0 + 16 * kSecond), 27u);
  EXPECT_EQ(recent.Sum(t0 + 60 * kSecond), 0u);
  RecentBytes off(0);
  off.Add(t0, 5);
  EXPECT_EQ(off.Sum(t0), 0u);
}

// Space evicted comes back one grace period later, so a writer that stores
// more in one grace period than the room above the high watermark (5% of the
// limit) would wait, or with no evictor thread fail. The watermarks move down
// by twice what writers stored in the last grace period: here 5 MiB/s with a
// 2 s grace against a 64 MiB capacity, 3.2 MiB above the high watermark.
// Without the rate, store 63 failed.
TEST(Eviction, WritersFasterThanTheGracePeriodDoNotWait) {
  TempDir dir;
  ManualClock clock;
  EngineOptions o = EvictionOptions(dir, clock, 64 << 20);
  o.reclaim_grace_ns = 2 * kSecond;
  auto e = MustOpen(o);
  CapacityStatus c;
  for (int i = 0; i < 200; ++i) {
    absl::Status s = e->PutFile("f" + std::to_string(i), Pattern(i, 1 << 20)).status();
    ASSERT_TRUE(s.ok()) << "store " << i << ": " << s;
    clock.Advance(kSecond / 5);
    // What the evictor thread does every tick.
    ASSERT_TRUE(e->RunEvictionPass().ok());
    ASSERT_TRUE(e->ReclaimDue().ok());
    c = e->Capacity();
    ASSERT_LE(c.used, c.limit);
  }
  EXPECT_EQ(e->stats().space_waits.load(), 0u);
  EXPECT_GE(e->stats().evicted_files.load(), 100u);
  // About 10 MiB per grace period: 20 MiB of room, the watermarks below it.
  EXPECT_GE(c.write_room, 18u << 20);
  EXPECT_LE(c.write_room, 22u << 20);
  EXPECT_LE(c.high, c.limit - c.write_room);
  EXPECT_GE(c.live, 36u << 20) << "what is not needed as room stays cached";
  EXPECT_TRUE(Exists(*e, "f199"));
  // With the writers gone, the room goes back to the watermarks' own.
  clock.Advance(3 * kSecond);
  c = e->Capacity();
  EXPECT_EQ(c.write_room, 0u);
  EXPECT_EQ(c.high, static_cast<uint64_t>(static_cast<double>(c.limit) * o.high_watermark));
}

TEST(Eviction, NothingEvictableMeansEnospc) {
  TempDir dir;
  ManualClock clock;
  EngineOptions o = EvictionOptions(dir, clock, 4 << 20);
  auto e = MustOpen(o);
  // A file being written cannot be evicted; it alone outgrows the capacity.
  absl::StatusOr<std::unique_ptr<FileWriter>> w = e->CreateWriter();
  ASSERT_TRUE(w.ok());
  absl::Status s;
  for (int i = 0; i < 8 && s.ok(); ++i) s = (*w)->Write(i << 20, Pattern(i, 1 << 20));
  EXPECT_EQ(ErrnoOf(s), ENOSPC) << s;
  EXPECT_NE(s.message().find("capacity"), std::string::npos) << s.message();
  EXPECT_GE(e->stats().space_refusals.load(), 1u);
}

TEST(Eviction, BadWatermarksAreRefused) {
  TempDir dir;
  EngineOptions o = TestOptions(dir);
  o.high_watermark = 0.5;
  o.low_watermark = 0.7;
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(o);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("watermark"), std::string::npos) << e.status();
}

}  // namespace
}  // namespace kvfs
