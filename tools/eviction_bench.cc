// kvfs_eviction_bench --dir DIR [--files N] [--file-mib M] [--threads T]
//
// Eviction figures from the engine, in one run: how fast eviction removes
// files and returns their space (files/s, GB/s freed), and the load
// throughput and p99 load latency of T reader threads without and then
// during an eviction storm (ratio printed).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kvfs/engine.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct LoadFigures {
  double gbps = 0;
  double p99_ms = 0;
};

// T threads load random files of the `keep` set for `seconds`.
LoadFigures Load(kvfs::Engine& e, int threads, int keep, uint64_t file_bytes, double seconds) {
  std::atomic<uint64_t> bytes{0};
  std::vector<std::vector<double>> lat(threads);
  std::vector<std::thread> ts;
  const auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::string buf(file_bytes, '\0');
      uint64_t x = 88172645463325252ull + t;
      while (Seconds(start, Clock::now()) < seconds) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const auto t0 = Clock::now();
        absl::StatusOr<kvfs::Attr> a = e.Stat(absl::StrCat("keep/f", x % keep));
        if (!a.ok()) continue;
        absl::StatusOr<std::unique_ptr<kvfs::FileReader>> r = e.OpenReader(a->ino);
        if (!r.ok()) continue;
        absl::StatusOr<size_t> n = (*r)->Read(0, buf.size(), buf.data());
        if (n.ok()) bytes += *n;
        lat[t].push_back(Seconds(t0, Clock::now()) * 1e3);
      }
    });
  }
  for (auto& t : ts) t.join();
  std::vector<double> all;
  for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  LoadFigures f;
  f.gbps = bytes / Seconds(start, Clock::now()) / 1e9;
  f.p99_ms = all.empty() ? 0 : all[all.size() * 99 / 100];
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  int files = 2000, threads = 4;
  uint64_t file_mib = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--dir") dir = argv[i + 1];
    else if (a == "--files") files = std::atoi(argv[i + 1]);
    else if (a == "--file-mib") file_mib = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--threads") threads = std::atoi(argv[i + 1]);
  }
  if (dir.empty() || files < 10 || file_mib < 1 || threads < 1) {
    std::fprintf(stderr, "usage: kvfs_eviction_bench --dir DIR [--files N] [--file-mib M] "
                         "[--threads T]\n");
    return 2;
  }
  kvfs::EngineOptions o;
  o.backing_dir = dir + "/backing";
  o.index_dir = dir + "/index";
  o.node_id = "evict-bench";
  o.capacity_bytes = uint64_t{1} << 50;  // evictions here are the manual storm
  o.reclaim_grace_ns = 0;
  (void)!std::system(absl::StrCat("rm -rf ", o.backing_dir, " ", o.index_dir, "; mkdir -p ",
                           o.backing_dir).c_str());
  absl::StatusOr<std::unique_ptr<kvfs::Engine>> opened = kvfs::Engine::Open(o);
  if (!opened.ok()) {
    std::fprintf(stderr, "open: %s\n", std::string(opened.status().message()).c_str());
    return 1;
  }
  kvfs::Engine& e = **opened;
  const uint64_t file_bytes = file_mib << 20;
  const std::string data(file_bytes, 'e');
  const int keep = std::max(8, files / 8);
  for (int i = 0; i < keep; ++i) (void)e.PutFile(absl::StrCat("keep/f", i), data);
  for (int i = 0; i < files; ++i) (void)e.PutFile(absl::StrCat("cold/f", i), data);
  // The kept files are the most recently accessed: eviction takes the cold ones.
  for (int i = 0; i < keep; ++i) {
    absl::StatusOr<kvfs::Attr> a = e.Stat(absl::StrCat("keep/f", i));
    if (a.ok()) (void)e.RecordAccess(a->ino);
  }
  std::printf("kvfs_eviction_bench: %d cold + %d hot files of %llu MiB, %d reader threads\n",
              files, keep, static_cast<unsigned long long>(file_mib), threads);
  const LoadFigures quiet = Load(e, threads, keep, file_bytes, 2.0);

  std::atomic<bool> evicting{true};
  double evict_s = 0;
  uint64_t evicted_files = 0;
  const uint64_t freed_before = e.stats().reclaimed_bytes;
  std::thread evictor([&] {
    const auto t0 = Clock::now();
    kvfs::EvictRequest req;
    req.prefix = "cold";
    absl::StatusOr<std::vector<kvfs::EvictedFile>> gone = e.Evict(req);
    (void)e.ReclaimDue();
    evict_s = Seconds(t0, Clock::now());
    evicted_files = gone.ok() ? gone->size() : 0;
    evicting = false;
  });
  LoadFigures busy{};
  std::vector<LoadFigures> during;
  while (evicting) during.push_back(Load(e, threads, keep, file_bytes, 0.25));
  evictor.join();
  for (const LoadFigures& f : during) {
    busy.gbps += f.gbps / during.size();
    busy.p99_ms = std::max(busy.p99_ms, f.p99_ms);
  }
  const uint64_t freed = e.stats().reclaimed_bytes - freed_before;
  std::printf("eviction: %llu files in %.2f s = %.0f files/s, %.2f GB/s freed "
              "(%llu extents removed)\n",
              static_cast<unsigned long long>(evicted_files), evict_s,
              evicted_files / evict_s, freed / evict_s / 1e9,
              static_cast<unsigned long long>(e.stats().dropped_extents.load()));
  std::printf("loads without eviction: %.2f GB/s, p99 %.2f ms\n", quiet.gbps, quiet.p99_ms);
  std::printf("loads during eviction:  %.2f GB/s, p99 %.2f ms (worst window)\n", busy.gbps,
              busy.p99_ms);
  std::printf("ratio during/without: %.2fx (target >= 0.8x)\n", busy.gbps / quiet.gbps);
  return 0;
}
