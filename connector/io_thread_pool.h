// The connector's I/O threads. Two queues: loads (unbounded, always served
// first: a waiting load stalls a request's prefill) and stores (bounded:
// under overload excess stores are refused, since a KV cache may always skip
// a store). Idle threads sleep on a condition variable; nothing spins, so
// more threads than cores cost nothing.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"

namespace kvfs::connector {

struct PoolTask {
  uint64_t tag = 0;                   // the job it belongs to (for cancellation)
  std::function<void(int worker)> run;
  std::function<void()> cancel;       // called instead of run when cancelled
};

class IoThreadPool {
 public:
  // nice: the workers' nice value (0: the caller's).
  IoThreadPool(int threads, size_t max_queued_writes, int nice = 0);
  ~IoThreadPool();  // cancels queued writes, finishes everything else
  IoThreadPool(const IoThreadPool&) = delete;
  IoThreadPool& operator=(const IoThreadPool&) = delete;

  void SubmitRead(PoolTask task);
  // Queues as many of `tasks` as the write queue has room for; returns how
  // many were queued (the rest are the caller's to account for).
  size_t SubmitWrites(std::vector<PoolTask>& tasks);
  // Removes queued (not yet started) writes whose tag is in `tags` and runs
  // their cancel callbacks. Returns how many.
  size_t CancelWrites(const absl::flat_hash_set<uint64_t>& tags);

  int threads() const { return static_cast<int>(workers_.size()); }
  size_t queued_writes() const;

 private:
  void WorkerLoop(int worker, int nice);

  const size_t max_queued_writes_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<PoolTask> reads_;
  std::deque<PoolTask> writes_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace kvfs::connector
