// The pool of extents open for appending. A file being written leases one
// extent for its whole life, so its record is contiguous and no two files'
// bytes interleave; concurrent writers lease different extents (created on
// demand). An extent that reaches its target size is sealed and leaves the
// pool. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "kvfs/extent_store.h"

namespace kvfs {

struct ExtentLease {
  std::shared_ptr<Extent> extent;
  uint64_t tail = 0;  // where the leaseholder's record starts
};

class ExtentPool {
 public:
  // `create(id)` makes a new extent; ids continue after `next_id - 1`.
  ExtentPool(uint64_t target_bytes, uint64_t next_id,
             std::function<absl::StatusOr<std::shared_ptr<Extent>>(uint64_t)> create)
      : target_bytes_(target_bytes), next_id_(next_id), create_(std::move(create)) {}

  // Adds an existing, unsealed extent whose next record goes at `tail`.
  void AddIdle(ExtentLease lease);
  absl::StatusOr<ExtentLease> Acquire();
  // Returns a lease; the extent's next record goes at `new_tail`. Returns
  // true when the extent reached its target size and was sealed.
  bool Release(ExtentLease lease, uint64_t new_tail);

  // Takes extent `id` out of the pool for good, if it is idle (no writer
  // holds it). Returns whether it did.
  bool TakeIdle(uint64_t id);

  size_t idle_count() const;
  uint64_t target_bytes() const { return target_bytes_; }

 private:
  const uint64_t target_bytes_;
  mutable std::mutex mu_;
  uint64_t next_id_;
  std::vector<ExtentLease> idle_;  // LIFO: fill recently used extents first
  std::function<absl::StatusOr<std::shared_ptr<Extent>>(uint64_t)> create_;
};

}  // namespace kvfs
