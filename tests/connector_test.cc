// The connector in host-memory mode (the "GPU tensors" are host buffers): the
// file layout byte for byte, round trips with head offsets and partial loads,
// concurrency, cancellation, overload, failures, lookup, and a store/load
// through a real kvfs mount.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "connector/transfer_engine.h"
#include "gtest/gtest.h"
#include "tests/mount_util.h"
#include "tests/test_util.h"

namespace kvfs::connector {
namespace {

using kvfs::testing::TempDir;

// A model's KV cache in host memory: per tensor, num_blocks pages of
// page_bytes at a stride with a gap (as vLLM's padded layouts have).
struct HostCache {
  struct Tensor {
    std::vector<uint8_t> memory;
    uint64_t page_bytes, stride;
  };
  std::vector<std::vector<Tensor>> groups;  // [group][tensor]
  uint64_t num_blocks;

  HostCache(const std::vector<std::pair<int, uint64_t>>& shape, uint64_t blocks)
      : num_blocks(blocks) {
    for (const auto& [tensors, page] : shape) {
      groups.emplace_back();
      for (int t = 0; t < tensors; ++t)
        groups.back().push_back(Tensor{std::vector<uint8_t>((page + 64) * blocks), page,
                                       page + 64});
    }
  }
  uint8_t* page(size_t g, size_t t, int64_t block) {
    Tensor& x = groups[g][t];
    return x.memory.data() + static_cast<uint64_t>(block) * x.stride;
  }
  void Fill(uint64_t seed) {
    std::mt19937_64 gen(seed);
    for (auto& g : groups)
      for (Tensor& t : g)
        for (uint8_t& b : t.memory) b = static_cast<uint8_t>(gen());
  }
  void Clear() {
    for (auto& g : groups)
      for (Tensor& t : g) std::fill(t.memory.begin(), t.memory.end(), 0);
  }
  KvLayout Layout(uint32_t blocks_per_file) {
    std::vector<KvGroup> out;
    for (auto& g : groups) {
      out.emplace_back();
      for (Tensor& t : g)
        out.back().tensors.push_back(TensorDesc{reinterpret_cast<uint64_t>(t.memory.data()),
                                                t.page_bytes, t.stride, num_blocks});
    }
    return *KvLayout::Create(std::move(out), blocks_per_file);
  }
  // The file bytes of these blocks, built independently of the connector:
  // block-major, then tensor, each page back to back.
  std::string Expected(size_t g, std::span<const int64_t> blocks) {
    std::string out;
    for (int64_t b : blocks)
      for (size_t t = 0; t < groups[g].size(); ++t)
        out.append(reinterpret_cast<const char*>(page(g, t, b)), groups[g][t].page_bytes);
    return out;
  }
};

// Compares without printing megabytes: sizes and the first differing offset.
::testing::AssertionResult SameBytes(const std::string& got, const std::string& want) {
  if (got == want) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  return ::testing::AssertionFailure() << "got " << got.size() << " bytes, want " << want.size()
                                       << "; first difference at offset " << i;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct Harness {
  std::vector<std::string> log;
  std::mutex log_mu;
  std::unique_ptr<TransferEngine> engine;

  Harness(KvLayout layout, EngineOptions options) {
    options.log = [this](absl::string_view m) {
      std::lock_guard<std::mutex> lock(log_mu);
      std::fprintf(stderr, "connector log: %.*s\n", static_cast<int>(m.size()), m.data());
      log.emplace_back(m);
    };
    auto e = TransferEngine::Create(std::move(layout), options);
    EXPECT_TRUE(e.ok()) << e.status();
    if (e.ok()) engine = std::move(*e);
  }
  // Polls GetFinished until `job` is reported (Wait would cancel its queued
  // stores).
  JobResult Finish(uint64_t job) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (std::chrono::steady_clock::now() < deadline) {
      for (const JobResult& r : engine->GetFinished()) results.push_back(r);
      for (const JobResult& r : results)
        if (r.job == job) return r;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ADD_FAILURE() << "job " << job << " never reported";
    return {};
  }
  std::vector<JobResult> results;
};

EngineOptions SmallChunks(int threads = 4) {
  EngineOptions o;
  o.threads = threads;
  o.chunk_bytes = 100 << 10;  // not a multiple of a block: chunks of whole blocks
  return o;
}

FileRequest Request(const std::string& path, uint32_t group, std::vector<int64_t> blocks,
                    uint32_t head = 0) {
  return FileRequest{path, group, std::move(blocks), head};
}

TEST(ConnectorTest, FileBytesMatchTheLlmdLayoutExactly) {
  TempDir dir;
  HostCache cache({{6, 32 << 10}, {4, 8 << 10}}, 40);  // two groups, 32 and 8 KiB pages
  cache.Fill(1);
  Harness h(cache.Layout(16), SmallChunks());
  const std::vector<int64_t> blocks = {7, 3, 30, 31, 0, 12};
  const std::string a = dir.Sub("m_r0/abc/de_g0/a.bin");
  const std::string b = dir.Sub("m_r0/abc/de_g1/b.bin");
  ASSERT_TRUE(h.engine->StoreAsync(1, {Request(a, 0, blocks), Request(b, 1, blocks, 2)}).ok());
  JobResult r = h.Finish(1);
  EXPECT_TRUE(r.success);
  EXPECT_EQ(r.bytes, 6u * 6 * (32 << 10) + 4u * 4 * (8 << 10));
  EXPECT_TRUE(SameBytes(ReadFile(a), cache.Expected(0, blocks)));
  // A head offset leaves the first blocks out of the file.
  EXPECT_TRUE(SameBytes(ReadFile(b), cache.Expected(1, std::span<const int64_t>(blocks).subspan(2))));
  // No temp file is left beside them.
  size_t entries = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path()))
    entries += e.is_regular_file();
  EXPECT_EQ(entries, 2u);
}

TEST(ConnectorTest, RoundTripsBothModelShapesWithHeadOffsetsAndPartialLoads) {
  // 8B-like (K and V per layer, 32 KiB pages) and 70B-TP4-like (8 KiB pages).
  for (const uint64_t page : {uint64_t{32} << 10, uint64_t{8} << 10}) {
    SCOPED_TRACE(page);
    TempDir dir;
    HostCache cache({{8, page}, {2, page}}, 64);
    cache.Fill(page);
    Harness h(cache.Layout(16), SmallChunks());
    std::vector<FileRequest> stores;
    std::vector<std::vector<int64_t>> blocks;
    for (int f = 0; f < 8; ++f) {
      std::vector<int64_t> ids;
      for (int j = 0; j < 16; ++j) ids.push_back((f * 16 + j * 5) % 64);
      blocks.push_back(ids);
      stores.push_back(Request(dir.Sub(absl::StrCat("g", f % 2, "/f", f, ".bin")),
                               static_cast<uint32_t>(f % 2), ids, static_cast<uint32_t>(f)));
    }
    ASSERT_TRUE(h.engine->StoreAsync(10, stores).ok());
    ASSERT_TRUE(h.Finish(10).success);
    HostCache original = cache;
    cache.Clear();
    // Full loads, then partial ones that need only the file's last blocks.
    std::vector<FileRequest> loads;
    for (int f = 0; f < 8; ++f)
      loads.push_back(Request(stores[f].path, stores[f].group, blocks[f],
                              static_cast<uint32_t>(f + (f % 3))));
    ASSERT_TRUE(h.engine->LoadAsync(11, loads).ok());
    JobResult r = h.Finish(11);
    ASSERT_TRUE(r.success);
    uint64_t expected_bytes = 0;
    for (int f = 0; f < 8; ++f) {
      const uint32_t g = static_cast<uint32_t>(f % 2);
      const std::span<const int64_t> loaded =
          std::span<const int64_t>(blocks[f]).subspan(f + (f % 3));
      EXPECT_TRUE(SameBytes(cache.Expected(g, loaded), original.Expected(g, loaded))) << "file " << f;
      expected_bytes += loaded.size() * h.engine->layout().block_bytes(g);
    }
    EXPECT_EQ(r.bytes, expected_bytes);
    // Blocks that were not asked for stay untouched (zero).
    const std::span<const int64_t> skipped = std::span<const int64_t>(blocks[2]).first(2);
    EXPECT_TRUE(SameBytes(cache.Expected(0, skipped), std::string(skipped.size() * 8 * page, '\0')));
  }
}

TEST(ConnectorTest, ConcurrentJobsFromManyThreads) {
  TempDir dir;
  HostCache cache({{4, 16 << 10}}, 256);
  cache.Fill(7);
  Harness h(cache.Layout(8), SmallChunks(8));
  std::vector<std::thread> submitters;
  for (int s = 0; s < 4; ++s) {
    submitters.emplace_back([&, s] {
      for (int j = 0; j < 8; ++j) {
        std::vector<FileRequest> files;
        for (int f = 0; f < 4; ++f) {
          const int n = (s * 8 + j) * 4 + f;
          std::vector<int64_t> ids;
          for (int b = 0; b < 8; ++b) ids.push_back((n * 8 + b) % 256);
          files.push_back(Request(dir.Sub(absl::StrCat("d", n % 7, "/", n, ".bin")), 0, ids));
        }
        EXPECT_TRUE(h.engine->StoreAsync(static_cast<uint64_t>(s * 100 + j), files).ok());
      }
    });
  }
  for (std::thread& t : submitters) t.join();
  std::vector<uint64_t> jobs;
  for (int s = 0; s < 4; ++s)
    for (int j = 0; j < 8; ++j) jobs.push_back(static_cast<uint64_t>(s * 100 + j));
  for (uint64_t job : jobs) EXPECT_TRUE(h.Finish(job).success) << job;
  EXPECT_EQ(h.results.size(), jobs.size());
  EXPECT_TRUE(h.engine->GetFinished().empty()) << "a job was reported twice";
  for (int n = 0; n < 128; ++n) {
    std::vector<int64_t> ids;
    for (int b = 0; b < 8; ++b) ids.push_back((n * 8 + b) % 256);
    EXPECT_TRUE(SameBytes(ReadFile(dir.Sub(absl::StrCat("d", n % 7, "/", n, ".bin"))),
              cache.Expected(0, ids)));
  }
  EXPECT_EQ(h.engine->counters().stores_written, 128u);
}

TEST(ConnectorTest, StoreSkipsAFileThatExistsAndLookupCountsLeadingHits) {
  TempDir dir;
  HostCache cache({{2, 4096}}, 8);
  cache.Fill(3);
  Harness h(cache.Layout(4), SmallChunks(2));
  const std::string a = dir.Sub("x/a.bin"), b = dir.Sub("x/b.bin"), c = dir.Sub("x/c.bin");
  ASSERT_TRUE(h.engine->StoreAsync(1, {Request(a, 0, {0, 1}), Request(c, 0, {2, 3})}).ok());
  ASSERT_TRUE(h.Finish(1).success);
  ASSERT_TRUE(h.engine->StoreAsync(2, {Request(a, 0, {4, 5})}).ok());
  JobResult r = h.Finish(2);
  EXPECT_TRUE(r.success);
  EXPECT_EQ(r.bytes, 0u);
  EXPECT_EQ(h.engine->counters().stores_skipped, 1u);
  EXPECT_TRUE(SameBytes(ReadFile(a), cache.Expected(0, std::vector<int64_t>{0, 1})));  // not overwritten
  const std::vector<std::string> paths = {a, b, c};
  EXPECT_EQ(h.engine->Lookup(paths), 1u);
  EXPECT_EQ(h.engine->Lookup(std::span<const std::string>(paths).subspan(2)), 1u);
  EXPECT_EQ(h.engine->Lookup(std::span<const std::string>(paths).subspan(1)), 0u);
}

TEST(ConnectorTest, MissingShortAndForeignFilesFailTheirJobAndSayWhy) {
  TempDir dir;
  HostCache cache({{2, 4096}}, 8);
  cache.Fill(4);
  Harness h(cache.Layout(4), SmallChunks(2));
  const std::string good = dir.Sub("good.bin");
  ASSERT_TRUE(h.engine->StoreAsync(1, {Request(good, 0, {0, 1, 2, 3})}).ok());
  ASSERT_TRUE(h.Finish(1).success);
  // Missing.
  ASSERT_TRUE(h.engine->LoadAsync(2, {Request(good, 0, {0}), Request(dir.Sub("nope.bin"), 0, {1})}).ok());
  EXPECT_FALSE(h.Finish(2).success);
  // Truncated to fewer blocks than the load needs.
  std::filesystem::copy_file(good, dir.Sub("short.bin"));
  ASSERT_EQ(::truncate(dir.Sub("short.bin").c_str(), 2 * 8192), 0);
  ASSERT_TRUE(h.engine->LoadAsync(3, {Request(dir.Sub("short.bin"), 0, {0, 1, 2})}).ok());
  EXPECT_FALSE(h.Finish(3).success);
  // A suffix of it still loads: the last blocks are intact.
  ASSERT_TRUE(h.engine->LoadAsync(4, {Request(dir.Sub("short.bin"), 0, {5, 6})}).ok());
  EXPECT_TRUE(h.Finish(4).success);
  // Not a whole number of blocks: not a file of this layout.
  ASSERT_EQ(::truncate(dir.Sub("short.bin").c_str(), 8192 + 100), 0);
  ASSERT_TRUE(h.engine->LoadAsync(5, {Request(dir.Sub("short.bin"), 0, {0})}).ok());
  EXPECT_FALSE(h.Finish(5).success);
  // A store into a place that cannot hold a directory.
  ASSERT_TRUE(h.engine->StoreAsync(6, {Request(good + "/sub/x.bin", 0, {0})}).ok());
  EXPECT_FALSE(h.Finish(6).success);

  const EngineCounters c = h.engine->counters();
  EXPECT_EQ(c.load_failures, 3u);
  EXPECT_EQ(c.loads_done, 2u);
  EXPECT_EQ(c.store_failures, 1u);
  ASSERT_EQ(h.log.size(), 4u);
  EXPECT_NE(h.log[0].find("nope.bin"), std::string::npos) << h.log[0];
  EXPECT_NE(h.log[0].find("errno 2"), std::string::npos) << h.log[0];
  EXPECT_NE(h.log[1].find("fewer than the needed 3 blocks"), std::string::npos) << h.log[1];
  EXPECT_NE(h.log[2].find("not a whole number"), std::string::npos) << h.log[2];
  EXPECT_NE(h.log[3].find("not a directory"), std::string::npos) << h.log[3];
}

TEST(ConnectorTest, BadRequestsAreRefusedAtSubmit) {
  TempDir dir;
  HostCache cache({{2, 4096}}, 8);
  Harness h(cache.Layout(4), SmallChunks(1));
  EXPECT_FALSE(h.engine->StoreAsync(1, {Request(dir.Sub("a"), 1, {0})}).ok());   // no group 1
  EXPECT_FALSE(h.engine->StoreAsync(1, {Request(dir.Sub("a"), 0, {8})}).ok());   // block 8 of 8
  EXPECT_FALSE(h.engine->StoreAsync(1, {Request(dir.Sub("a"), 0, {-1})}).ok());
  EXPECT_FALSE(h.engine->StoreAsync(1, {Request(dir.Sub("a"), 0, {0, 1, 2, 3, 4})}).ok());
  EXPECT_FALSE(h.engine->LoadAsync(1, {Request(dir.Sub("a"), 0, {0, 1}, 2)}).ok());
  EXPECT_FALSE(h.engine->LoadAsync(1, {Request("", 0, {0})}).ok());
  // An empty job finishes at once; a job id still running is refused.
  ASSERT_TRUE(h.engine->LoadAsync(2, {}).ok());
  EXPECT_TRUE(h.Finish(2).success);
  EXPECT_FALSE(KvLayout::Create({}, 4).ok());
  EXPECT_FALSE(KvLayout::Create({KvGroup{{TensorDesc{64, 4096, 1024, 8}}}}, 4).ok());
  EXPECT_FALSE(KvLayout::Create({KvGroup{{TensorDesc{64, 4096, 4096, 8}}}}, 0).ok());
}

// Stores that sit in the queue: one slow I/O thread, many files.
std::vector<FileRequest> ManyFiles(const TempDir& dir, const std::string& prefix, int n) {
  std::vector<FileRequest> files;
  for (int i = 0; i < n; ++i)
    files.push_back(Request(dir.Sub(absl::StrCat(prefix, i, ".bin")), 0, {0, 1, 2, 3}));
  return files;
}

TEST(ConnectorTest, WaitCancelsQueuedStoresAndLeavesNoPartialFile) {
  TempDir dir;
  HostCache cache({{16, 256 << 10}}, 8);  // 16 MiB files
  cache.Fill(5);
  EngineOptions o = SmallChunks(1);
  Harness h(cache.Layout(4), o);
  ASSERT_TRUE(h.engine->StoreAsync(1, ManyFiles(dir, "a", 40)).ok());
  const uint64_t jobs[] = {1};
  h.engine->Wait(jobs);
  std::vector<JobResult> done = h.engine->GetFinished();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_FALSE(done[0].success);
  const EngineCounters c = h.engine->counters();
  EXPECT_GT(c.stores_cancelled, 0u);
  EXPECT_EQ(c.stores_cancelled + c.stores_written, 40u);
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    ++files;
    EXPECT_EQ(e.path().extension(), ".bin") << e.path();
    EXPECT_TRUE(SameBytes(ReadFile(e.path()), cache.Expected(0, std::vector<int64_t>{0, 1, 2, 3})));
  }
  EXPECT_EQ(files, c.stores_written);
  h.engine.reset();
}

TEST(ConnectorTest, LoadsAreServedBeforeQueuedStores) {
  TempDir dir;
  HostCache cache({{16, 256 << 10}}, 8);  // 16 MiB files: milliseconds each
  cache.Fill(5);
  Harness h(cache.Layout(4), SmallChunks(1));
  ASSERT_TRUE(h.engine->StoreAsync(1, {Request(dir.Sub("a.bin"), 0, {0, 1, 2, 3})}).ok());
  ASSERT_TRUE(h.Finish(1).success);
  // Hold the only I/O thread: a load of a FIFO blocks in open() until a writer comes.
  const std::string gate = dir.Sub("gate.bin");
  ASSERT_EQ(::mkfifo(gate.c_str(), 0600), 0);
  ASSERT_TRUE(h.engine->LoadAsync(2, {Request(gate, 0, {0})}).ok());
  ASSERT_TRUE(h.engine->StoreAsync(3, ManyFiles(dir, "b", 10)).ok());
  ASSERT_TRUE(h.engine->LoadAsync(4, {Request(dir.Sub("a.bin"), 0, {4, 5, 6, 7})}).ok());
  const int fd = ::open(gate.c_str(), O_WRONLY);  // releases the thread
  ASSERT_GE(fd, 0);
  ::close(fd);
  EXPECT_FALSE(h.Finish(2).success);  // a FIFO is no KV file
  EXPECT_TRUE(h.Finish(4).success);
  // The load went first although every store was queued before it (one more
  // store may have finished while this thread polled).
  EXPECT_LE(h.engine->counters().stores_written, 2u);
  EXPECT_TRUE(h.Finish(3).success);
}

TEST(ConnectorTest, OverloadDropsStoresBeyondTheQueueAndCountsThem) {
  TempDir dir;
  HostCache cache({{16, 256 << 10}}, 8);
  cache.Fill(6);
  EngineOptions o = SmallChunks(1);
  o.max_queued_stores = 3;
  Harness h(cache.Layout(4), o);
  ASSERT_TRUE(h.engine->StoreAsync(1, ManyFiles(dir, "a", 20)).ok());
  JobResult r = h.Finish(1);
  EXPECT_FALSE(r.success);
  const EngineCounters c = h.engine->counters();
  EXPECT_GE(c.stores_dropped, 16u);
  EXPECT_EQ(c.stores_dropped + c.stores_written, 20u);
}

TEST(ConnectorTest, SubmitNeverWaitsForBusyThreads) {
  TempDir dir;
  HostCache cache({{16, 256 << 10}}, 8);
  cache.Fill(8);
  Harness h(cache.Layout(4), SmallChunks(2));
  std::vector<double> micros;
  for (int j = 0; j < 200; ++j) {
    const auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(h.engine->StoreAsync(static_cast<uint64_t>(j), ManyFiles(dir, absl::StrCat("j", j, "_"), 2)).ok());
    micros.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(micros.begin(), micros.end());
  // Not a timing assertion (machines are noisy): submits do not wait for a
  // 16 MiB file to be written, which takes milliseconds.
  EXPECT_LT(micros[micros.size() / 2], 1000.0);
  std::vector<uint64_t> jobs;
  for (int j = 0; j < 200; ++j) jobs.push_back(static_cast<uint64_t>(j));
  h.engine->Wait(jobs);
}

TEST(ConnectorTest, StoresAndLoadsThroughAKvfsMount) {
  const std::string reason = SkipReason();
  if (!reason.empty()) GTEST_SKIP() << reason;
  TempDir dir;
  Mount mount(dir);
  ASSERT_TRUE(mount.Start());
  HostCache cache({{8, 32 << 10}}, 64);
  cache.Fill(9);
  Harness h(cache.Layout(16), SmallChunks(8));
  std::vector<FileRequest> files;
  std::vector<std::vector<int64_t>> ids;
  for (int f = 0; f < 16; ++f) {
    ids.emplace_back();
    for (int b = 0; b < 16; ++b) ids.back().push_back((f * 3 + b) % 64);
    files.push_back(Request(mount.Path(absl::StrCat("m_abc_r0/", f % 4, "/f", f, ".bin")), 0,
                            ids.back(), static_cast<uint32_t>(f % 5)));
  }
  ASSERT_TRUE(h.engine->StoreAsync(1, files).ok());
  ASSERT_TRUE(h.Finish(1).success);
  HostCache original = cache;
  cache.Clear();
  ASSERT_TRUE(h.engine->LoadAsync(2, files).ok());
  ASSERT_TRUE(h.Finish(2).success);
  for (int f = 0; f < 16; ++f) {
    const auto loaded = std::span<const int64_t>(ids[f]).subspan(f % 5);
    EXPECT_TRUE(SameBytes(cache.Expected(0, loaded), original.Expected(0, loaded)));
    EXPECT_TRUE(SameBytes(ReadFile(files[f].path), original.Expected(0, loaded)));
  }
  std::vector<std::string> paths;
  for (const FileRequest& r : files) paths.push_back(r.path);
  EXPECT_EQ(h.engine->Lookup(paths), 16u);
  h.engine.reset();
  EXPECT_EQ(mount.Stop(), 0);
}

}  // namespace
}  // namespace kvfs::connector
