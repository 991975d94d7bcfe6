// The C ABI (kvfs_connector.h) over TransferEngine.
#include <algorithm>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "connector/kvfs_connector.h"
#include "connector/transfer_engine.h"

using kvfs::connector::EngineOptions;
using kvfs::connector::FileRequest;
using kvfs::connector::JobResult;
using kvfs::connector::TransferEngine;

struct kvc_engine {
  std::unique_ptr<TransferEngine> engine;
  std::mutex mu;
  std::deque<JobResult> pending;  // finished but not yet handed out
};

namespace {

int Fail(const absl::Status& status, char* err, size_t err_len) {
  if (err != nullptr && err_len > 0) {
    const std::string message(status.message());
    const size_t n = std::min(message.size(), err_len - 1);
    std::memcpy(err, message.data(), n);
    err[n] = '\0';
  }
  return -1;
}

std::vector<FileRequest> ToRequests(const kvc_request* requests, size_t n) {
  std::vector<FileRequest> out(n);
  for (size_t i = 0; i < n; ++i) {
    out[i].path = requests[i].path != nullptr ? requests[i].path : "";
    out[i].group = requests[i].group;
    out[i].block_ids.assign(requests[i].block_ids, requests[i].block_ids + requests[i].num_blocks);
    out[i].head_offset = requests[i].head_offset;
  }
  return out;
}

}  // namespace

extern "C" {

kvc_engine* kvc_create(const kvc_config* config, const kvc_tensor* tensors, size_t num_tensors,
                       char* err, size_t err_len) {
  if (config == nullptr || config->abi_version != KVC_ABI_VERSION) {
    Fail(absl::InvalidArgumentError(absl::StrCat("kvc_create: config ABI version must be ",
                                                 KVC_ABI_VERSION)),
         err, err_len);
    return nullptr;
  }
  std::map<uint32_t, kvfs::connector::KvGroup> groups;
  for (size_t i = 0; i < num_tensors; ++i) {
    groups[tensors[i].group].tensors.push_back(kvfs::connector::TensorDesc{
        tensors[i].base, tensors[i].page_bytes, tensors[i].block_stride, tensors[i].num_blocks});
  }
  std::vector<kvfs::connector::KvGroup> group_list;
  for (auto& [index, group] : groups) {
    if (index != group_list.size()) {
      Fail(absl::InvalidArgumentError(
               absl::StrCat("kvc_create: groups must be numbered 0..n-1; group ",
                            group_list.size(), " has no tensors")),
           err, err_len);
      return nullptr;
    }
    group_list.push_back(std::move(group));
  }
  absl::StatusOr<kvfs::connector::KvLayout> layout =
      kvfs::connector::KvLayout::Create(std::move(group_list), config->blocks_per_file);
  if (!layout.ok()) {
    Fail(layout.status(), err, err_len);
    return nullptr;
  }
  EngineOptions options;
  if (config->threads != 0) options.threads = static_cast<int>(config->threads);
  if (config->chunk_bytes != 0) options.chunk_bytes = config->chunk_bytes;
  if (config->max_queued_stores != 0) options.max_queued_stores = config->max_queued_stores;
  options.copy.memory = config->memory == KVC_MEMORY_CUDA ? kvfs::connector::MemoryKind::kCuda
                                                          : kvfs::connector::MemoryKind::kHost;
  options.copy.path = config->copy_path == KVC_COPY_DMA      ? kvfs::connector::CopyPath::kDma
                      : config->copy_path == KVC_COPY_KERNEL ? kvfs::connector::CopyPath::kKernel
                                                             : kvfs::connector::CopyPath::kAuto;
  options.copy.device = config->device;
  absl::StatusOr<std::unique_ptr<TransferEngine>> engine =
      TransferEngine::Create(std::move(*layout), options);
  if (!engine.ok()) {
    Fail(engine.status(), err, err_len);
    return nullptr;
  }
  auto* handle = new kvc_engine;
  handle->engine = std::move(*engine);
  return handle;
}

void kvc_destroy(kvc_engine* engine) { delete engine; }

int kvc_store_async(kvc_engine* engine, uint64_t job, const kvc_request* requests,
                    size_t num_requests, uint64_t compute_stream, char* err, size_t err_len) {
  const absl::Status s =
      engine->engine->StoreAsync(job, ToRequests(requests, num_requests), compute_stream);
  return s.ok() ? 0 : Fail(s, err, err_len);
}

int kvc_load_async(kvc_engine* engine, uint64_t job, const kvc_request* requests,
                   size_t num_requests, char* err, size_t err_len) {
  const absl::Status s = engine->engine->LoadAsync(job, ToRequests(requests, num_requests));
  return s.ok() ? 0 : Fail(s, err, err_len);
}

size_t kvc_get_finished(kvc_engine* engine, kvc_result* out, size_t max) {
  std::lock_guard<std::mutex> lock(engine->mu);
  for (JobResult& r : engine->engine->GetFinished()) engine->pending.push_back(r);
  size_t n = 0;
  while (n < max && !engine->pending.empty()) {
    const JobResult& r = engine->pending.front();
    out[n++] = kvc_result{r.job, r.success ? 1 : 0, r.bytes, r.seconds};
    engine->pending.pop_front();
  }
  return n;
}

void kvc_wait(kvc_engine* engine, const uint64_t* jobs, size_t num_jobs) {
  engine->engine->Wait(std::span<const uint64_t>(jobs, num_jobs));
}

size_t kvc_lookup(kvc_engine* engine, const char* const* paths, size_t num_paths) {
  std::vector<std::string> list(paths, paths + num_paths);
  return engine->engine->Lookup(list);
}

void kvc_get_counters(kvc_engine* engine, kvc_counters* out) {
  const kvfs::connector::EngineCounters c = engine->engine->counters();
  *out = kvc_counters{c.stores_written, c.stores_skipped, c.stores_dropped,
                      c.stores_cancelled, c.store_failures, c.loads_done,
                      c.load_failures,    c.bytes_written,  c.bytes_read};
}

}  // extern "C"
