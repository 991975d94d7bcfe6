// Many writers and readers at once: no interleaved bytes, atomic commits.
#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "kvfs/errors.h"
#include "tests/test_util.h"

namespace kvfs {
namespace {

using testing::MustOpen;
using testing::Pattern;
using testing::TempDir;
using testing::TestOptions;

// 256 files open for writing at the same time, written piecewise in lockstep
// by 16 threads, so every writer holds its extent while the others write.
TEST(Concurrency, TwoHundredFiftySixConcurrentWriters) {
  TempDir dir;
  EngineOptions o = TestOptions(dir);
  o.extent_bytes = 64 << 20;
  auto e = MustOpen(o);
  constexpr int kFiles = 256;
  constexpr size_t kSize = 3 * kChunkBytes / 2 + 99;
  constexpr size_t kPiece = 64 << 10;
  ASSERT_TRUE(e->MkdirAll("w").ok());
  const uint64_t parent = e->Stat("w")->ino;

  std::vector<std::unique_ptr<FileWriter>> writers;
  for (int i = 0; i < kFiles; ++i) {
    absl::StatusOr<std::unique_ptr<FileWriter>> w = e->CreateWriter();
    ASSERT_TRUE(w.ok()) << w.status();
    writers.push_back(*std::move(w));
  }
  std::vector<std::string> data;
  for (int i = 0; i < kFiles; ++i) data.push_back(Pattern(i, kSize));

  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      for (size_t off = 0; off < kSize; off += kPiece) {
        for (int i = t; i < kFiles; i += 16) {
          size_t n = std::min(kPiece, kSize - off);
          if (!writers[i]->Write(off, absl::string_view(data[i]).substr(off, n)).ok()) {
            ++failures;
          }
        }
      }
      for (int i = t; i < kFiles; i += 16) {
        if (!e->Commit(*writers[i], parent, "f" + std::to_string(i)).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);
  writers.clear();
  // Every writer had an extent of its own.
  EXPECT_GE(e->ExtentStates().size(), static_cast<size_t>(kFiles));
  for (int i = 0; i < kFiles; ++i) {
    absl::StatusOr<std::string> got = e->GetFile("w/f" + std::to_string(i));
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(*got, data[i]) << "file " << i;
  }
  e.reset();
  e = MustOpen(o);
  for (int i = 0; i < kFiles; i += 17) {
    EXPECT_EQ(*e->GetFile("w/f" + std::to_string(i)), data[i]);
  }
}

// Readers look a name up and read it while it is replaced over and over by
// versions of different sizes: each read sees nothing or exactly one version,
// complete and with its exact size.
TEST(Concurrency, CommitIsAtomicForConcurrentReaders) {
  TempDir dir;
  auto e = MustOpen(TestOptions(dir));
  constexpr int kVersions = 60;
  auto version_size = [](int v) { return size_t{1000} + static_cast<size_t>(v) * 37000; };
  std::vector<std::string> versions;
  for (int v = 0; v < kVersions; ++v) versions.push_back(Pattern(1000 + v, version_size(v)));

  std::atomic<bool> done{false};
  std::atomic<int> reads{0}, misses{0}, bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      while (!done) {
        absl::StatusOr<Attr> attr = e->Lookup(kRootIno, "block.bin");
        if (!attr.ok()) {
          ++misses;
          continue;
        }
        absl::StatusOr<std::unique_ptr<FileReader>> r = e->OpenReader(attr->ino);
        if (!r.ok()) {
          ++misses;  // replaced between lookup and open: a clean miss
          continue;
        }
        std::string buf((*r)->size(), '\0');
        absl::StatusOr<size_t> n = (*r)->Read(0, buf.size(), buf.data());
        if (!n.ok() || *n != buf.size()) {
          ++bad;
          continue;
        }
        bool matches = false;
        for (const std::string& v : versions) matches |= (v == buf);
        if (!matches || attr->size != buf.size()) ++bad;
        ++reads;
      }
    });
  }
  for (int v = 0; v < kVersions; ++v) {
    absl::StatusOr<std::unique_ptr<FileWriter>> w = e->CreateWriter();
    ASSERT_TRUE(w.ok());
    // Written in pieces, so a reader racing the writer would see partial data.
    const std::string& data = versions[v];
    for (size_t off = 0; off < data.size(); off += 8192) {
      ASSERT_TRUE((*w)->Write(off, absl::string_view(data).substr(off, 8192)).ok());
    }
    if (v % 2) {  // llm-d: temp name, then rename over the final name
      ASSERT_TRUE(e->Commit(**w, kRootIno, "block.bin_" + std::to_string(v) + ".tmp").ok());
      ASSERT_TRUE(e->Rename(kRootIno, "block.bin_" + std::to_string(v) + ".tmp", kRootIno,
                            "block.bin").ok());
    } else {
      ASSERT_TRUE(e->Commit(**w, kRootIno, "block.bin").ok());
    }
  }
  while (reads < 200) std::this_thread::yield();
  done = true;
  for (auto& th : readers) th.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(*e->GetFile("block.bin"), versions.back());
}

// Many threads creating the same directories and storing the same names with
// identical bytes, as duplicate stores from several ranks do.
TEST(Concurrency, DuplicateStoresAndMkdirRaces) {
  TempDir dir;
  auto e = MustOpen(TestOptions(dir));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        std::string path = "m_r0/" + std::to_string(i % 5) + "/ab_g0/h" + std::to_string(i) + ".bin";
        if (!e->PutFile(path, Pattern(i, 50000 + i)).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  for (int i = 0; i < 20; ++i) {
    std::string path = "m_r0/" + std::to_string(i % 5) + "/ab_g0/h" + std::to_string(i) + ".bin";
    EXPECT_EQ(*e->GetFile(path), Pattern(i, 50000 + i));
  }
}

}  // namespace
}  // namespace kvfs
