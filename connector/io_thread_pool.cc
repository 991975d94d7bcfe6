#include "connector/io_thread_pool.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace kvfs::connector {

IoThreadPool::IoThreadPool(int threads, size_t max_queued_writes, int nice)
    : max_queued_writes_(max_queued_writes) {
  workers_.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) workers_.emplace_back([this, i, nice] { WorkerLoop(i, nice); });
}

IoThreadPool::~IoThreadPool() {
  std::deque<PoolTask> cancelled;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    cancelled.swap(writes_);
  }
  cv_.notify_all();
  for (PoolTask& t : cancelled)
    if (t.cancel) t.cancel();
  for (std::thread& w : workers_) w.join();
}

void IoThreadPool::SubmitRead(PoolTask task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    reads_.push_back(std::move(task));
  }
  cv_.notify_one();
}

size_t IoThreadPool::SubmitWrites(std::vector<PoolTask>& tasks) {
  size_t queued = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (queued < tasks.size() && writes_.size() < max_queued_writes_ && !stopping_)
      writes_.push_back(std::move(tasks[queued++]));
  }
  if (queued == 1) cv_.notify_one();
  if (queued > 1) cv_.notify_all();
  return queued;
}

size_t IoThreadPool::CancelWrites(const absl::flat_hash_set<uint64_t>& tags) {
  std::vector<PoolTask> cancelled;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::deque<PoolTask> kept;
    for (PoolTask& t : writes_) {
      if (tags.contains(t.tag)) {
        cancelled.push_back(std::move(t));
      } else {
        kept.push_back(std::move(t));
      }
    }
    writes_.swap(kept);
  }
  for (PoolTask& t : cancelled)
    if (t.cancel) t.cancel();
  return cancelled.size();
}

size_t IoThreadPool::queued_writes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return writes_.size();
}

void IoThreadPool::WorkerLoop(int worker, int nice) {
  // Per thread on Linux; failure (e.g. a negative value without privilege)
  // only leaves the default priority.
  if (nice != 0) setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), nice);
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stopping_ || !reads_.empty() || !writes_.empty(); });
    PoolTask task;
    if (!reads_.empty()) {
      task = std::move(reads_.front());
      reads_.pop_front();
    } else if (!writes_.empty()) {
      task = std::move(writes_.front());
      writes_.pop_front();
    } else {
      return;  // stopping, and nothing left to do
    }
    lock.unlock();
    task.run(worker);
    task = PoolTask();  // release captures outside the lock
    lock.lock();
  }
}

}  // namespace kvfs::connector
