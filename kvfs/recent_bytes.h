// Bytes counted over a sliding span of time: what writers stored during the
// last reclaim grace period, which is how much room eviction must keep free
// for them (space evicted now comes back only one grace period later).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <mutex>

namespace kvfs {

class RecentBytes {
 public:
  // span_ns <= 0: counts nothing (Sum is always 0).
  explicit RecentBytes(int64_t span_ns) : width_ns_(span_ns > 0 ? span_ns / kBuckets : 0) {
    if (span_ns > 0 && width_ns_ == 0) width_ns_ = 1;
  }

  void Add(int64_t now_ns, uint64_t bytes) {
    if (width_ns_ == 0) return;
    std::lock_guard lock(mu_);
    AdvanceLocked(now_ns);
    buckets_[Slot(newest_)] += bytes;
  }

  // The bytes added within the span before now_ns (to a 16th of it: the
  // oldest bucket leaves whole).
  uint64_t Sum(int64_t now_ns) {
    if (width_ns_ == 0) return 0;
    std::lock_guard lock(mu_);
    AdvanceLocked(now_ns);
    uint64_t sum = 0;
    for (uint64_t b : buckets_) sum += b;
    return sum;
  }

 private:
  static constexpr int64_t kBuckets = 16;

  static size_t Slot(int64_t bucket) {
    return static_cast<size_t>(((bucket % kBuckets) + kBuckets) % kBuckets);
  }

  // Empties the buckets between the newest one and now's; a clock that went
  // back counts into the newest.
  void AdvanceLocked(int64_t now_ns) {
    const int64_t now_bucket = now_ns / width_ns_;
    if (now_bucket <= newest_) return;
    const int64_t stale = std::min(now_bucket - newest_, kBuckets);
    for (int64_t i = 1; i <= stale; ++i) buckets_[Slot(newest_ + i)] = 0;
    newest_ = now_bucket;
  }

  int64_t width_ns_;
  std::mutex mu_;
  std::array<uint64_t, kBuckets> buckets_{};
  int64_t newest_ = 0;  // now / width of the newest bucket
};

}  // namespace kvfs
