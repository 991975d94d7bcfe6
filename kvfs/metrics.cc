#include "kvfs/metrics.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvfs {

void LatencyHistogram::Observe(int64_t ns) {
  ns = std::max<int64_t>(ns, 0);
  const double seconds = static_cast<double>(ns) / 1e9;
  for (size_t i = 0; i < kBoundsSeconds.size(); ++i) {
    if (seconds <= kBoundsSeconds[i]) {
      buckets_[i].fetch_add(1, std::memory_order_relaxed);
      break;
    }
  }  // slower than the last bound: only in +Inf (count)
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(ns), std::memory_order_relaxed);
}

uint64_t LatencyHistogram::CumulativeCount(size_t i) const {
  uint64_t total = 0;
  for (size_t b = 0; b <= i && b < buckets_.size(); ++b) {
    total += buckets_[b].load(std::memory_order_relaxed);
  }
  return total;
}

namespace {

class Exposition {
 public:
  void Counter(absl::string_view name, absl::string_view help, uint64_t value) {
    Family(name, help, "counter");
    absl::StrAppend(&out_, name, " ", value, "\n");
  }
  void CounterSeconds(absl::string_view name, absl::string_view help, uint64_t ns) {
    Family(name, help, "counter");
    absl::StrAppend(&out_, name, " ", absl::StrFormat("%.9f", static_cast<double>(ns) / 1e9),
                    "\n");
  }
  void Gauge(absl::string_view name, absl::string_view help, double value) {
    Family(name, help, "gauge");
    absl::StrAppend(&out_, name, " ", absl::StrFormat("%.17g", value), "\n");
  }
  void Histogram(absl::string_view name, absl::string_view help,
                 const LatencyHistogram& h) {
    Family(name, help, "histogram");
    // Observations may land between these reads: +Inf is raised to the last
    // bucket so the rendering stays cumulative.
    uint64_t count = h.count();
    uint64_t last = 0;
    for (size_t i = 0; i < LatencyHistogram::kBoundsSeconds.size(); ++i) {
      last = h.CumulativeCount(i);
      absl::StrAppend(&out_, name, "_bucket{le=\"",
                      absl::StrFormat("%g", LatencyHistogram::kBoundsSeconds[i]), "\"} ",
                      last, "\n");
    }
    count = std::max(count, last);
    absl::StrAppend(&out_, name, "_bucket{le=\"+Inf\"} ", count, "\n");
    absl::StrAppend(&out_, name, "_sum ",
                    absl::StrFormat("%.9f", static_cast<double>(h.sum_ns()) / 1e9), "\n");
    absl::StrAppend(&out_, name, "_count ", count, "\n");
  }
  std::string Release() { return std::move(out_); }

 private:
  void Family(absl::string_view name, absl::string_view help, absl::string_view type) {
    absl::StrAppend(&out_, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  }
  std::string out_;
};

uint64_t Load(const std::atomic<uint64_t>& v) { return v.load(std::memory_order_relaxed); }

}  // namespace

std::string RenderPrometheus(const MountMetrics& m, const EngineStats& e,
                             const CapacityStatus& c, uint64_t files, bool read_only,
                             int64_t now_ns) {
  Exposition x;
  x.Gauge("kvfs_read_only",
          "1 once a failure (the daemon's log says which) stopped every change until kvfs "
          "is mounted again; reads go on.",
          read_only ? 1 : 0);
  x.Gauge("kvfs_capacity_bytes", "Bytes this node may store (configured or derived).",
          static_cast<double>(c.capacity));
  x.Gauge("kvfs_limit_bytes",
          "Capacity, lowered to keep the backing filesystem's free-space floor.",
          static_cast<double>(c.limit));
  x.Gauge("kvfs_used_bytes", "Bytes the node's extents occupy plus writes in flight.",
          static_cast<double>(c.used));
  x.Gauge("kvfs_live_bytes", "Bytes of records that are some file's current version.",
          static_cast<double>(c.live));
  x.Gauge("kvfs_reclaimable_bytes", "Dead bytes not yet returned to the backing filesystem.",
          static_cast<double>(c.reclaimable));
  x.Gauge("kvfs_write_room_bytes",
          "Kept free below the limit for what writers store in one reclaim grace period.",
          static_cast<double>(c.write_room));
  x.Gauge("kvfs_files", "Files in the namespace.", static_cast<double>(files));
  x.Gauge("kvfs_uptime_seconds", "Seconds since the mount started.",
          static_cast<double>(now_ns - m.started_ns) / 1e9);
  x.Counter("kvfs_lookups_total", "LOOKUP requests for names.", Load(m.lookups));
  x.Counter("kvfs_lookup_hits_total", "Lookups that found the name.", Load(m.lookup_hits));
  x.Counter("kvfs_lookup_misses_total", "Lookups of missing names.", Load(m.lookup_misses));
  x.Counter("kvfs_opens_total", "Committed files opened for reading.", Load(m.opens));
  x.Counter("kvfs_creates_total", "Files opened for writing a new version.", Load(m.creates));
  x.Counter("kvfs_read_bytes_total", "Bytes returned to readers.", Load(m.bytes_read));
  x.Counter("kvfs_written_bytes_total", "Bytes received from writers.", Load(m.bytes_written));
  x.Counter("kvfs_stores_total", "Files committed through the mount.", Load(m.stores));
  x.Counter("kvfs_store_failures_total", "Commits that failed.", Load(m.store_failures));
  x.Counter("kvfs_io_errors_total", "Reads and writes answered with an error.",
            Load(m.io_errors));
  x.Counter("kvfs_temp_files_reclaimed_total",
            "Temporary files dropped because they were never renamed.",
            Load(m.temp_files_reclaimed));
  x.Counter("kvfs_commits_total", "Files committed by the engine (recovery included).",
            Load(e.commits));
  x.Counter("kvfs_committed_bytes_total", "Payload bytes committed.", Load(e.bytes_committed));
  x.Counter("kvfs_aborted_writes_total", "Writes abandoned before their commit.",
            Load(e.aborted_writes));
  x.Counter("kvfs_checksum_errors_total", "Chunks whose checksum did not match.",
            Load(e.checksum_errors));
  x.Counter("kvfs_cold_window_reads_total",
            "Direct reads of several chunks for a reader streaming from the disk.",
            Load(e.cold_windows));
  x.Counter("kvfs_cold_window_read_bytes_total", "Bytes those direct reads brought in.",
            Load(e.cold_window_bytes));
  x.Counter("kvfs_evicted_files_total", "Files evicted.", Load(e.evicted_files));
  x.Counter("kvfs_evicted_bytes_total", "Bytes of files evicted.", Load(e.evicted_bytes));
  x.Counter("kvfs_eviction_passes_total", "Eviction passes run.", Load(e.eviction_passes));
  x.CounterSeconds("kvfs_eviction_seconds_total", "Time spent evicting.",
                   Load(e.eviction_ns));
  x.Counter("kvfs_reclaimed_bytes_total", "Dead bytes returned to the backing filesystem.",
            Load(e.reclaimed_bytes));
  x.Counter("kvfs_dropped_extents_total", "Dead extent files removed.",
            Load(e.dropped_extents));
  x.Counter("kvfs_space_waits_total", "Writes that waited for eviction to make room.",
            Load(e.space_waits));
  x.Counter("kvfs_space_refusals_total", "Writes refused with ENOSPC.",
            Load(e.space_refusals));
  x.Counter("kvfs_peer_entries_total", "Other nodes' journal entries applied.",
            Load(e.peer_entries));
  x.Counter("kvfs_peer_files_total", "Other nodes' files added to the namespace.",
            Load(e.peer_files));
  x.Counter("kvfs_peer_superseded_total",
            "This node's files that another node's newer version or unlink replaced.",
            Load(e.peer_superseded));
  x.Counter("kvfs_peer_unreadable_total",
            "Other nodes' files skipped: their record stayed unreadable here.",
            Load(e.peer_unreadable));
  x.Counter("kvfs_peer_checkpoints_total",
            "Other nodes' checkpoints read (their journal files were compacted).",
            Load(e.peer_checkpoints));
  x.Counter("kvfs_access_hints_sent_total",
            "Reads of other nodes' files journalled for their owners' eviction order.",
            Load(e.access_hints_sent));
  x.Counter("kvfs_access_hints_applied_total",
            "Other nodes' reads of this node's files that moved them up its eviction order.",
            Load(e.access_hints_applied));
  x.Counter("kvfs_journal_checkpoints_total",
            "Journal compactions: checkpoints written, journal files they covered removed.",
            Load(e.checkpoints));
  x.Gauge("kvfs_journal_checkpoint_entries", "Entries of the last checkpoint written.",
          static_cast<double>(e.checkpoint_entries.load(std::memory_order_relaxed)));
  x.Histogram("kvfs_lookup_latency_seconds", "Latency of one LOOKUP request.",
              m.lookup_latency);
  x.Histogram("kvfs_load_latency_seconds", "Latency of one READ request of a committed file.",
              m.load_latency);
  x.Histogram("kvfs_store_latency_seconds",
              "From a file's open for writing to its commit.", m.store_latency);
  return x.Release();
}

}  // namespace kvfs
