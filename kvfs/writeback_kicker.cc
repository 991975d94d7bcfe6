#include "kvfs/writeback_kicker.h"

#include <utility>

namespace kvfs {

WritebackKicker::WritebackKicker() : thread_([this] { Loop(); }) {}

WritebackKicker::~WritebackKicker() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void WritebackKicker::Kick(std::shared_ptr<const Extent> extent, uint64_t offset,
                           uint64_t length) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back({std::move(extent), offset, length});
  }
  cv_.notify_one();
}

void WritebackKicker::Loop() {
  std::vector<Range> batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left
      batch.swap(queue_);
    }
    for (const Range& r : batch) r.extent->file().StartWriteback(r.offset, r.length);
    batch.clear();
  }
}

}  // namespace kvfs
