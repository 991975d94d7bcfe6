#include "connector/transfer_engine.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <random>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace kvfs::connector {

absl::StatusOr<std::unique_ptr<TransferEngine>> TransferEngine::Create(KvLayout layout,
                                                                      EngineOptions options) {
  if (options.threads < 1 || options.threads > 1024)
    return absl::InvalidArgumentError(
        absl::StrCat("threads must be 1..1024, not ", options.threads));
  if (options.chunk_bytes == 0) return absl::InvalidArgumentError("chunk_bytes must be > 0");
  std::unique_ptr<TransferEngine> engine(new TransferEngine(std::move(layout), options));
  absl::StatusOr<std::unique_ptr<CopyBackend>> backend =
      MakeCopyBackend(engine->layout_, engine->options_.copy);
  if (!backend.ok()) return backend.status();
  engine->backend_ = std::move(*backend);
  // A slot holds at least one block of the largest group.
  // Slots start page-aligned (the copy kernel needs 16-byte alignment).
  const uint64_t slot_bytes =
      (std::max(engine->options_.chunk_bytes, engine->layout_.max_block_bytes()) + 4095) &
      ~uint64_t{4095};
  for (int i = 0; i < engine->options_.threads; ++i) {
    absl::StatusOr<std::unique_ptr<CopyStream>> stream = engine->backend_->CreateStream(slot_bytes);
    if (!stream.ok()) return stream.status();
    engine->streams_.push_back(std::move(*stream));
  }
  engine->pool_ = std::make_unique<IoThreadPool>(engine->options_.threads,
                                                 engine->options_.max_queued_stores,
                                                 engine->options_.worker_nice);
  return engine;
}

TransferEngine::TransferEngine(KvLayout layout, EngineOptions options)
    : layout_(std::move(layout)), options_(std::move(options)) {
  // Temp names differ between processes storing the same file at once.
  temp_id_base_ = static_cast<uint32_t>(std::random_device{}()) & 0x7fff0000u;
}

TransferEngine::~TransferEngine() { pool_.reset(); }

std::string TransferEngine::Describe() const {
  return absl::StrCat(backend_->Describe(), ", ", options_.threads, " threads, ",
                      streams_.empty() ? 0 : streams_[0]->slot_bytes() >> 10,
                      " KiB chunks");
}

void TransferEngine::Log(absl::string_view message) const {
  if (options_.log) {
    options_.log(message);
  } else {
    std::fprintf(stderr, "kvfs-connector: %.*s\n", static_cast<int>(message.size()),
                 message.data());
  }
}

absl::Status TransferEngine::CheckRequests(const std::vector<FileRequest>& requests) const {
  for (const FileRequest& r : requests) {
    if (r.path.empty()) return absl::InvalidArgumentError("request with an empty path");
    if (r.head_offset >= r.block_ids.size())
      return absl::InvalidArgumentError(absl::StrCat(
          r.path, ": head offset ", r.head_offset, " leaves no blocks of ", r.block_ids.size()));
    if (absl::Status s = layout_.CheckBlocks(r.group, r.block_ids); !s.ok())
      return absl::InvalidArgumentError(absl::StrCat(r.path, ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status TransferEngine::BeginJob(uint64_t job, size_t files) {
  std::lock_guard<std::mutex> lock(mu_);
  if (jobs_.contains(job))
    return absl::AlreadyExistsError(absl::StrCat("job ", job, " is still running"));
  Job& j = jobs_[job];
  j.remaining = files;
  j.start = std::chrono::steady_clock::now();
  if (files == 0) FinishFileLocked(job, true, 0);  // nothing to do: finished now
  return absl::OkStatus();
}

void TransferEngine::FinishFileLocked(uint64_t job, bool ok, uint64_t bytes) {
  auto it = jobs_.find(job);
  Job& j = it->second;
  j.ok = j.ok && ok;
  j.bytes += bytes;
  if (j.remaining > 0) --j.remaining;
  if (j.remaining > 0) return;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - j.start).count();
  finished_.push_back(JobResult{job, j.ok, j.bytes, seconds});
  jobs_.erase(it);
  job_done_.notify_all();
}

absl::Status TransferEngine::StoreAsync(uint64_t job, std::vector<FileRequest> requests,
                                        uint64_t compute_stream) {
  if (absl::Status s = CheckRequests(requests); !s.ok()) return s;
  std::shared_ptr<StoreMarker> marker;
  if (!requests.empty()) {
    absl::StatusOr<std::unique_ptr<StoreMarker>> m = backend_->RecordMarker(compute_stream);
    if (!m.ok()) return m.status();
    marker = std::move(*m);
  }
  if (absl::Status s = BeginJob(job, requests.size()); !s.ok()) return s;
  std::vector<PoolTask> tasks;
  tasks.reserve(requests.size());
  for (FileRequest& r : requests) {
    auto request = std::make_shared<FileRequest>(std::move(r));
    tasks.push_back(PoolTask{
        job,
        [this, job, request, marker](int worker) { RunStore(worker, job, *request, marker.get()); },
        [this, job] {
          std::lock_guard<std::mutex> lock(mu_);
          ++counters_.stores_cancelled;
          FinishFileLocked(job, false, 0);
        }});
  }
  const size_t queued = pool_->SubmitWrites(tasks);
  if (queued < tasks.size()) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = queued; i < tasks.size(); ++i) {
      ++counters_.stores_dropped;
      FinishFileLocked(job, false, 0);
    }
  }
  return absl::OkStatus();
}

absl::Status TransferEngine::LoadAsync(uint64_t job, std::vector<FileRequest> requests) {
  if (absl::Status s = CheckRequests(requests); !s.ok()) return s;
  if (absl::Status s = BeginJob(job, requests.size()); !s.ok()) return s;
  for (FileRequest& r : requests) {
    auto request = std::make_shared<FileRequest>(std::move(r));
    pool_->SubmitRead(PoolTask{
        job, [this, job, request](int worker) { RunLoad(worker, job, *request); }, nullptr});
  }
  return absl::OkStatus();
}

void TransferEngine::RunStore(int worker, uint64_t job, const FileRequest& request,
                              StoreMarker* marker) {
  absl::StatusOr<StoreOutcome> outcome =
      StoreFile(layout_, request, *streams_[static_cast<size_t>(worker)], marker,
                temp_id_base_ + static_cast<uint32_t>(worker));
  if (!outcome.ok()) Log(absl::StrCat("store job ", job, ": ", outcome.status().message()));
  std::lock_guard<std::mutex> lock(mu_);
  if (!outcome.ok()) {
    ++counters_.store_failures;
  } else if (outcome->skipped) {
    ++counters_.stores_skipped;
  } else {
    ++counters_.stores_written;
    counters_.bytes_written += outcome->bytes;
  }
  FinishFileLocked(job, outcome.ok(), outcome.ok() ? outcome->bytes : 0);
}

void TransferEngine::RunLoad(int worker, uint64_t job, const FileRequest& request) {
  absl::StatusOr<uint64_t> bytes =
      LoadFile(layout_, request, *streams_[static_cast<size_t>(worker)]);
  if (!bytes.ok()) Log(absl::StrCat("load job ", job, ": ", bytes.status().message()));
  std::lock_guard<std::mutex> lock(mu_);
  if (!bytes.ok()) {
    ++counters_.load_failures;
  } else {
    ++counters_.loads_done;
    counters_.bytes_read += *bytes;
  }
  FinishFileLocked(job, bytes.ok(), bytes.ok() ? *bytes : 0);
}

std::vector<JobResult> TransferEngine::GetFinished() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<JobResult> out;
  out.swap(finished_);
  return out;
}

void TransferEngine::Wait(std::span<const uint64_t> jobs) {
  absl::flat_hash_set<uint64_t> tags(jobs.begin(), jobs.end());
  pool_->CancelWrites(tags);
  std::unique_lock<std::mutex> lock(mu_);
  job_done_.wait(lock, [&] {
    for (uint64_t job : jobs)
      if (jobs_.contains(job)) return false;
    return true;
  });
}

size_t TransferEngine::Lookup(std::span<const std::string> paths) const {
  size_t hits = 0;
  struct stat st;
  for (const std::string& p : paths) {
    if (stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) break;
    ++hits;
  }
  return hits;
}

EngineCounters TransferEngine::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

}  // namespace kvfs::connector
