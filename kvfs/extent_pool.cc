#include "kvfs/extent_pool.h"

#include "kvfs/format.h"

namespace kvfs {

void ExtentPool::AddIdle(ExtentLease lease) {
  std::lock_guard lock(mu_);
  if (lease.extent->id() >= next_id_) next_id_ = lease.extent->id() + 1;
  idle_.push_back(std::move(lease));
}

absl::StatusOr<ExtentLease> ExtentPool::Acquire() {
  uint64_t id;
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      ExtentLease lease = std::move(idle_.back());
      idle_.pop_back();
      return lease;
    }
    id = next_id_++;
  }
  // Created outside the lock: it syncs a directory.
  absl::StatusOr<std::shared_ptr<Extent>> extent = create_(id);
  if (!extent.ok()) return extent.status();
  return ExtentLease{*std::move(extent), kFileHeaderBytes};
}

bool ExtentPool::Release(ExtentLease lease, uint64_t new_tail) {
  if (new_tail >= target_bytes_) return true;
  lease.tail = new_tail;
  std::lock_guard lock(mu_);
  idle_.push_back(std::move(lease));
  return false;
}

bool ExtentPool::TakeIdle(uint64_t id) {
  std::lock_guard lock(mu_);
  for (auto it = idle_.begin(); it != idle_.end(); ++it) {
    if (it->extent->id() == id) {
      idle_.erase(it);
      return true;
    }
  }
  return false;
}

size_t ExtentPool::idle_count() const {
  std::lock_guard lock(mu_);
  return idle_.size();
}

}  // namespace kvfs
