// Trace-driven eviction quality: a synthetic KV-cache trace (popular shared
// prefixes, multi-turn conversations that extend earlier requests, one-hit
// tails) replayed against kvfs (default watermarks) and against an exact LRU
// cache of the same capacity. kvfs's block hit ratio must reach 0.95x LRU's,
// also when two nodes share the cache and serve alternate requests.
#include <list>
#include <random>
#include <unordered_map>

#include "test_util.h"

namespace kvfs {
namespace {

using testing::MustOpen;
using testing::TempDir;
using testing::TestOptions;

constexpr int64_t kSecond = 1'000'000'000;
constexpr size_t kFileBytes = 64 << 10;

// One request: block keys in prefix order (each key names a file).
using Request = std::vector<uint64_t>;

std::vector<Request> MakeTrace(size_t requests, uint64_t seed) {
  std::mt19937_64 rng(seed);
  // 40 system prompts of 4-12 blocks, Zipf-like popularity.
  std::vector<Request> prompts;
  uint64_t next_key = 1;
  for (int p = 0; p < 40; ++p) {
    Request r(4 + rng() % 9);
    for (uint64_t& k : r) k = next_key++;
    prompts.push_back(r);
  }
  std::vector<double> weights;
  for (int p = 0; p < 40; ++p) weights.push_back(1.0 / (p + 1));
  std::discrete_distribution<int> pick_prompt(weights.begin(), weights.end());
  std::vector<Request> conversations;  // open conversations, extended by new turns
  std::vector<Request> trace;
  for (size_t i = 0; i < requests; ++i) {
    Request r;
    const uint64_t kind = rng() % 100;
    if (kind < 45 && !conversations.empty()) {
      // Another turn of a recent conversation: its whole history plus new blocks.
      const size_t recent = std::min<size_t>(conversations.size(), 200);
      Request& c = conversations[conversations.size() - 1 - rng() % recent];
      for (int b = 1 + rng() % 3; b > 0; --b) c.push_back(next_key++);
      r = c;
    } else {
      r = prompts[pick_prompt(rng)];
      const int tail = 1 + rng() % 6;
      for (int b = 0; b < tail; ++b) r.push_back(next_key++);
      if (kind < 75) conversations.push_back(r);  // else a one-hit request
    }
    trace.push_back(std::move(r));
  }
  return trace;
}

// The client's pattern: look blocks up in order, stop at the first miss,
// store the rest. Returns the blocks that hit.
template <typename Cache>
uint64_t Replay(const std::vector<Request>& trace, Cache& cache, uint64_t* total) {
  uint64_t hits = 0;
  for (const Request& r : trace) {
    size_t i = 0;
    while (i < r.size() && cache.Load(r[i])) ++i;
    hits += i;
    for (; i < r.size(); ++i) cache.Store(r[i]);
    *total += r.size();
    cache.Tick();
  }
  return hits;
}

class ExactLru {
 public:
  explicit ExactLru(size_t capacity_files) : capacity_(capacity_files) {}
  bool Load(uint64_t key) {
    auto it = where_.find(key);
    if (it == where_.end()) return false;
    order_.splice(order_.begin(), order_, it->second);
    return true;
  }
  void Store(uint64_t key) {
    if (where_.count(key)) return;
    order_.push_front(key);
    where_[key] = order_.begin();
    if (order_.size() > capacity_) {
      where_.erase(order_.back());
      order_.pop_back();
    }
  }
  void Tick() {}

 private:
  size_t capacity_;
  std::list<uint64_t> order_;
  std::unordered_map<uint64_t, std::list<uint64_t>::iterator> where_;
};

// kvfs through the engine calls the FUSE layer makes: lookup, open (which
// records the access), store; one trace step per second.
class KvfsCache {
 public:
  KvfsCache(Engine& e, std::shared_ptr<std::atomic<int64_t>> clock)
      : e_(e), clock_(std::move(clock)), data_(kFileBytes, 'k') {}
  bool Load(uint64_t key) {
    absl::StatusOr<Attr> a = e_.Stat(Path(key));
    if (!a.ok()) return false;
    absl::StatusOr<std::unique_ptr<FileReader>> r = e_.OpenReader(a->ino);
    if (!r.ok()) return false;
    EXPECT_TRUE(e_.RecordAccess(a->ino, a->atime_ns).ok());
    return true;
  }
  void Store(uint64_t key) {
    absl::StatusOr<Attr> put = e_.PutFile(Path(key), data_);
    EXPECT_TRUE(put.ok()) << put.status();
  }
  void Tick() {
    *clock_ += kSecond;
    EXPECT_TRUE(e_.RunEvictionPass().ok());  // what the background evictor does
    EXPECT_TRUE(e_.ReclaimDue().ok());
  }

 private:
  static std::string Path(uint64_t key) {
    return "m_r0/" + std::to_string(key % 256) + "/" + std::to_string(key) + ".bin";
  }
  Engine& e_;
  std::shared_ptr<std::atomic<int64_t>> clock_;
  std::string data_;
};

// Nodes sharing one backing directory, an equal share of the capacity each,
// serving requests in turn (a load balancer that ignores prefixes): each
// finds what any of them stored, stores its misses itself, and evicts only
// its own. Once per trace step (a second) all follow each other and evict.
class KvfsCluster {
 public:
  KvfsCluster(const std::vector<std::unique_ptr<Engine>>& nodes,
              std::shared_ptr<std::atomic<int64_t>> clock)
      : clock_(std::move(clock)) {
    for (const auto& n : nodes) {
      engines_.push_back(n.get());
      caches_.push_back(std::make_unique<KvfsCache>(*n, clock_));
    }
  }
  bool Load(uint64_t key) { return serving().Load(key); }
  void Store(uint64_t key) { serving().Store(key); }
  void Tick() {
    *clock_ += kSecond;
    for (Engine* e : engines_) {
      EXPECT_TRUE(e->FlushAccessTimes().ok());  // what the evictor does first
      EXPECT_TRUE(e->SyncPeers().ok());
      EXPECT_TRUE(e->RunEvictionPass().ok());
      EXPECT_TRUE(e->ReclaimDue().ok());
    }
    ++step_;
  }

 private:
  KvfsCache& serving() { return *caches_[step_ % caches_.size()]; }
  std::shared_ptr<std::atomic<int64_t>> clock_;
  std::vector<Engine*> engines_;
  std::vector<std::unique_ptr<KvfsCache>> caches_;
  uint64_t step_ = 0;
};

TEST(EvictionTrace, HitRatioWithinFivePercentOfExactLru) {
  const std::vector<Request> trace = MakeTrace(6000, 42);
  constexpr size_t kCapacityFiles = 1500;

  ExactLru lru(kCapacityFiles);
  uint64_t lru_total = 0;
  const uint64_t lru_hits = Replay(trace, lru, &lru_total);

  TempDir dir;
  EngineOptions o = TestOptions(dir);
  o.extent_bytes = 8 << 20;
  // The same capacity in bytes: each file's record (header, payload and
  // checksums, 4 KiB-aligned) is what kvfs stores for it.
  Inode probe;
  probe.size = kFileBytes;
  o.capacity_bytes = kCapacityFiles * probe.record_bytes();
  o.min_free_bytes = 0;
  o.background_eviction = false;  // the replay runs the evictor's steps itself
  o.reclaim_grace_ns = kSecond;
  auto clock = std::make_shared<std::atomic<int64_t>>(int64_t{1'700'000'000} * kSecond);
  o.clock = [clock] { return clock->load(); };
  auto e = MustOpen(o);
  ASSERT_TRUE(e);
  KvfsCache kvfs(*e, clock);
  uint64_t kvfs_total = 0;
  const uint64_t kvfs_hits = Replay(trace, kvfs, &kvfs_total);

  ASSERT_EQ(lru_total, kvfs_total);
  const double lru_ratio = static_cast<double>(lru_hits) / lru_total;
  const double kvfs_ratio = static_cast<double>(kvfs_hits) / kvfs_total;
  std::printf("blocks requested %llu: exact LRU hit ratio %.4f, kvfs %.4f (%.3fx); "
              "kvfs evicted %llu files\n",
              static_cast<unsigned long long>(lru_total), lru_ratio, kvfs_ratio,
              kvfs_ratio / lru_ratio,
              static_cast<unsigned long long>(e->stats().evicted_files.load()));
  EXPECT_GT(e->stats().evicted_files.load(), 1000u) << "the trace must overflow the cache";
  EXPECT_LT(lru_ratio, 0.9) << "a trace that fits says nothing";
  EXPECT_GE(kvfs_ratio, 0.95 * lru_ratio);
  const CapacityStatus c = e->Capacity();
  EXPECT_LE(c.used, c.capacity);
}

// A cluster's hit ratio with access hints, against the same without them and
// against one exact LRU cache of the cluster's capacity. Without hints, a
// block stored on one node and read on others ages on the first.
TEST(EvictionTrace, NodesWithAccessHintsKeepWhatAnyNodeReads) {
  const std::vector<Request> trace = MakeTrace(4000, 7);
  constexpr size_t kCapacityFiles = 2000;  // of all nodes together
  ExactLru lru(kCapacityFiles);
  uint64_t lru_total = 0;
  const uint64_t lru_hits = Replay(trace, lru, &lru_total);
  const double lru_ratio = static_cast<double>(lru_hits) / lru_total;
  EXPECT_LT(lru_ratio, 0.9) << "a trace that fits says nothing";

  auto cluster_ratio = [&](int node_count, int64_t hint_interval_ns) {
    TempDir dir;
    auto clock = std::make_shared<std::atomic<int64_t>>(int64_t{1'700'000'000} * kSecond);
    std::vector<std::unique_ptr<Engine>> nodes;
    for (int i = 0; i < node_count; ++i) {
      const std::string id = "node-" + std::to_string(i);
      EngineOptions o = TestOptions(dir);
      o.node_id = id;
      o.index_dir = dir.Sub("index-" + id);
      o.extent_bytes = 8 << 20;
      Inode probe;
      probe.size = kFileBytes;
      o.capacity_bytes = kCapacityFiles / node_count * probe.record_bytes();
      o.min_free_bytes = 0;
      o.background_eviction = false;
      o.peer_poll_ns = 0;
      o.journal_compact_bytes = 0;
      o.reclaim_grace_ns = kSecond;
      o.access_hint_interval_ns = hint_interval_ns;
      o.clock = [clock] { return clock->load(); };
      nodes.push_back(MustOpen(o));
      if (!nodes.back()) return 0.0;
    }
    KvfsCluster cluster(nodes, clock);
    uint64_t total = 0;
    const uint64_t hits = Replay(trace, cluster, &total);
    EXPECT_EQ(total, lru_total);
    uint64_t evicted = 0, hints = 0;
    for (const auto& n : nodes) {
      evicted += n->stats().evicted_files.load();
      hints += n->stats().access_hints_applied.load();
      EXPECT_TRUE(n->problems().empty());
    }
    const double ratio = static_cast<double>(hits) / total;
    std::printf("%d nodes, access hints every %lld s: hit ratio %.4f (%.3fx of exact LRU "
                "%.4f); %llu files evicted, %llu hints applied\n",
                node_count, static_cast<long long>(hint_interval_ns / kSecond), ratio,
                ratio / lru_ratio, lru_ratio, static_cast<unsigned long long>(evicted),
                static_cast<unsigned long long>(hints));
    EXPECT_GT(evicted, 1000u) << "the trace must overflow the cache";
    return ratio;
  };
  for (int node_count : {2, 4}) {
    const double hinted = cluster_ratio(node_count, 60 * kSecond);  // the default
    const double local = cluster_ratio(node_count, 0);
    std::printf("%d nodes: with hints / without: %.3fx\n", node_count, hinted / local);
    EXPECT_GE(hinted, 0.95 * lru_ratio) << node_count << " nodes";
    EXPECT_GT(hinted, local) << node_count << " nodes";
  }
}

}  // namespace
}  // namespace kvfs
