// What the mount counts about itself, and its rendering in the Prometheus
// text exposition format (MOUNTPOINT/.kvfs/metrics, the --metrics-file,
// `kvfs stat`). Counters are plain atomics: the FUSE threads bump them on
// every operation, so nothing here takes a lock.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "kvfs/engine.h"

namespace kvfs {

// Request latencies in fixed buckets (upper bounds in seconds, Prometheus's
// `le`), from 10 us to 10 s.
class LatencyHistogram {
 public:
  static constexpr std::array<double, 16> kBoundsSeconds = {
      1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3,
      1e-2, 2.5e-2, 5e-2, 0.1,  0.25, 0.5,  1.0,  10.0};

  void Observe(int64_t ns);
  // Cumulative count of observations <= kBoundsSeconds[i].
  uint64_t CumulativeCount(size_t i) const;
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  uint64_t sum_ns() const { return sum_ns_.load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<uint64_t>, kBoundsSeconds.size()> buckets_{};  // not cumulative
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_ns_{0};
};

// What the FUSE layer sees (the engine's own counters are in EngineStats).
struct MountMetrics {
  int64_t started_ns = 0;
  std::atomic<uint64_t> lookups{0};
  std::atomic<uint64_t> lookup_hits{0};
  std::atomic<uint64_t> lookup_misses{0};
  std::atomic<uint64_t> opens{0};          // committed files opened to read
  std::atomic<uint64_t> creates{0};        // files opened for writing (new versions)
  std::atomic<uint64_t> bytes_read{0};     // returned to readers by the daemon
  std::atomic<uint64_t> bytes_written{0};  // received from writers
  std::atomic<uint64_t> stores{0};         // files committed through the mount
  std::atomic<uint64_t> store_failures{0};
  std::atomic<uint64_t> temp_files_reclaimed{0};  // never-renamed temp files dropped
  std::atomic<uint64_t> io_errors{0};      // reads or writes answered with an error
  // lookup: one LOOKUP request; load: one READ request of a committed file;
  // store: a file's first open for writing to its commit (the client's
  // whole write of the file, as it sees it).
  LatencyHistogram lookup_latency;
  LatencyHistogram load_latency;
  LatencyHistogram store_latency;
};

// The whole exposition: mount counters, engine counters, capacity gauges,
// and whether a failure made the engine read-only.
std::string RenderPrometheus(const MountMetrics& mount, const EngineStats& engine,
                             const CapacityStatus& capacity, uint64_t files, bool read_only,
                             int64_t now_ns);

}  // namespace kvfs
