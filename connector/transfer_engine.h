// The connector's engine: asynchronous store and load jobs of KV-cache files,
// run by an I/O thread pool, each thread with its own staging buffer and copy
// stream. Talks to the filesystem only with plain POSIX calls, so it works on
// a kvfs mount and on any directory.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "connector/copy_backend.h"
#include "connector/file_transfer.h"
#include "connector/io_thread_pool.h"
#include "connector/kv_layout.h"

namespace kvfs::connector {

struct EngineOptions {
  int threads = 16;
  // Bytes of one staging slot; each thread has two. A file moves in chunks of
  // this many bytes (whole blocks; at least one block).
  uint64_t chunk_bytes = 4ull << 20;
  // Stores (files) that may wait in the queue; beyond it stores are dropped.
  size_t max_queued_stores = 4096;
  // Nice value of the I/O threads. Above 0 they yield the CPU to the
  // caller's threads (the inference scheduler submitting jobs), which keeps
  // submits fast when the I/O threads saturate the cores.
  int worker_nice = 10;
  CopyBackendOptions copy;
  // Where failures are reported (path and errno); default: stderr.
  std::function<void(absl::string_view)> log;
};

struct JobResult {
  uint64_t job = 0;
  bool success = false;
  uint64_t bytes = 0;     // file bytes moved
  double seconds = 0.0;   // from submit to the last file
};

struct EngineCounters {
  uint64_t stores_written = 0;    // files
  uint64_t stores_skipped = 0;    // already present
  uint64_t stores_dropped = 0;    // refused: the store queue was full
  uint64_t stores_cancelled = 0;  // removed from the queue by Wait
  uint64_t store_failures = 0;
  uint64_t loads_done = 0;
  uint64_t load_failures = 0;
  uint64_t bytes_written = 0;
  uint64_t bytes_read = 0;
};

class TransferEngine {
 public:
  static absl::StatusOr<std::unique_ptr<TransferEngine>> Create(KvLayout layout,
                                                               EngineOptions options);
  ~TransferEngine();  // drops queued stores, finishes what runs

  // Both return at once; the job is reported by GetFinished when its last
  // file is done. A request that does not fit the layout is refused here.
  // Stores read the tensors only after the work queued so far on
  // compute_stream (a cudaStream_t; 0 = legacy default stream) is done.
  absl::Status StoreAsync(uint64_t job, std::vector<FileRequest> requests,
                          uint64_t compute_stream = 0);
  absl::Status LoadAsync(uint64_t job, std::vector<FileRequest> requests);

  // Jobs finished since the last call; each job is reported exactly once.
  std::vector<JobResult> GetFinished();
  // Cancels the queued (not started) stores of these jobs, then blocks until
  // every one of them is finished. Their results still come from GetFinished.
  void Wait(std::span<const uint64_t> jobs);
  // How many leading paths exist (stops at the first miss).
  size_t Lookup(std::span<const std::string> paths) const;

  EngineCounters counters() const;
  const KvLayout& layout() const { return layout_; }
  std::string Describe() const;

 private:
  struct Job {
    size_t remaining = 0;
    bool ok = true;
    uint64_t bytes = 0;
    std::chrono::steady_clock::time_point start;
  };

  TransferEngine(KvLayout layout, EngineOptions options);
  absl::Status CheckRequests(const std::vector<FileRequest>& requests) const;
  absl::Status BeginJob(uint64_t job, size_t files);
  void FinishFileLocked(uint64_t job, bool ok, uint64_t bytes);  // mu_ held
  void RunStore(int worker, uint64_t job, const FileRequest& request, StoreMarker* marker);
  void RunLoad(int worker, uint64_t job, const FileRequest& request);
  void Log(absl::string_view message) const;

  const KvLayout layout_;
  const EngineOptions options_;
  uint32_t temp_id_base_ = 0;
  std::unique_ptr<CopyBackend> backend_;
  std::vector<std::unique_ptr<CopyStream>> streams_;  // one per worker

  mutable std::mutex mu_;
  std::condition_variable job_done_;
  absl::flat_hash_map<uint64_t, Job> jobs_;
  std::vector<JobResult> finished_;
  EngineCounters counters_;

  std::unique_ptr<IoThreadPool> pool_;  // last: its threads use all of the above
};

}  // namespace kvfs::connector
