#include "cuda/cuda_copy_backend.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "connector/staging_memory.h"
#include "cuda/cuda_dispatcher.h"
#include "cuda/page_copy_kernels.h"

namespace kvfs::connector {
namespace {

absl::Status CudaError(absl::string_view what, cudaError_t err) {
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorName(err), " (",
                                          cudaGetErrorString(err), ")"));
}

#define KVFS_CUDA_RETURN_IF_ERROR(what, call)      \
  do {                                             \
    const cudaError_t kvfs_err_ = (call);          \
    if (kvfs_err_ != cudaSuccess) return CudaError(what, kvfs_err_); \
  } while (0)

// Events for store markers, reused: creating and destroying one per job
// would add two driver calls (and their locks) to every submit.
class EventPool {
 public:
  ~EventPool() {
    for (cudaEvent_t e : free_) cudaEventDestroy(e);
  }
  absl::StatusOr<cudaEvent_t> Take() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        cudaEvent_t e = free_.back();
        free_.pop_back();
        return e;
      }
    }
    cudaEvent_t e = nullptr;
    KVFS_CUDA_RETURN_IF_ERROR("cudaEventCreate", cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    return e;
  }
  void Give(cudaEvent_t e) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(e);
  }

 private:
  std::mutex mu_;
  std::vector<cudaEvent_t> free_;
};

class CudaStoreMarker final : public StoreMarker {
 public:
  CudaStoreMarker(EventPool& pool, cudaEvent_t event) : pool_(pool), event_(event) {}
  ~CudaStoreMarker() override { pool_.Give(event_); }
  cudaEvent_t event() const { return event_; }

 private:
  EventPool& pool_;
  cudaEvent_t event_;
};

bool Aligned16(uint64_t v) { return v % 16 == 0; }

// Per group: which path it uses, and its table in device memory for the kernel.
struct GroupPlan {
  bool use_kernel = false;
  DeviceGroupTable table;
};

// A slot's copies, with the status of issuing them. With the dispatcher, a
// host callback on the stream finishes it once the copies have run; without,
// the I/O thread finishes it as soon as they are issued, and WaitSlot then
// waits on the slot's event.
struct SlotCompletion {
  std::mutex mu;
  std::condition_variable cv;
  bool done = true;
  absl::Status status;

  void Finish(absl::Status s) {
    {
      std::lock_guard<std::mutex> lock(mu);
      status = std::move(s);
      done = true;
    }
    cv.notify_all();
  }
  absl::Status Wait() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
    return status;
  }
};

void CUDART_CB SlotCopiesDone(void* completion) {
  static_cast<SlotCompletion*>(completion)->Finish(absl::OkStatus());
}

// Copies are issued on this stream's CUDA stream by the dispatcher thread
// (kernel launches: a few calls per chunk), and a host callback on the
// stream completes the slot; or, with no dispatcher (DMA), by the I/O thread
// itself, which then waits on a slot event, as before the dispatcher: DMA
// batches of thousands of 8 KiB descriptors issued by one thread, or
// completed through host callbacks, ran at 9 GB/s stores and 4-5 GB/s loads
// instead of 11-14 and 10-11 (H100, docs/performance.md).
class CudaCopyStream final : public CopyStream {
 public:
  CudaCopyStream(const KvLayout& layout, const std::vector<GroupPlan>& plans, int device,
                 CudaDispatcher* dispatcher)
      : layout_(layout), plans_(plans), device_(device), dispatcher_(dispatcher) {}

  ~CudaCopyStream() override {
    for (SlotCompletion& c : slots_) c.Wait().IgnoreError();  // nothing left posted
    cudaSetDevice(device_);
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    for (cudaEvent_t e : slot_events_)
      if (e != nullptr) cudaEventDestroy(e);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    if (registered_) cudaHostUnregister(buffer_.get());
  }

  absl::Status Init(uint64_t slot_bytes, int numa_node) {
    KVFS_CUDA_RETURN_IF_ERROR("cudaSetDevice", cudaSetDevice(device_));
    absl::StatusOr<MappedBuffer> buffer = AllocatePrefaulted(slot_bytes * kSlots, numa_node);
    if (!buffer.ok()) return buffer.status();
    buffer_ = std::move(*buffer);
    // Registering pre-faulted memory is ~10x cheaper than cudaHostAlloc's
    // pinning of fresh pages; Mapped lets the copy kernel address it.
    KVFS_CUDA_RETURN_IF_ERROR(
        "cudaHostRegister of the staging buffer",
        cudaHostRegister(buffer_.get(), slot_bytes * kSlots,
                         cudaHostRegisterPortable | cudaHostRegisterMapped));
    registered_ = true;
    void* device_view = nullptr;
    KVFS_CUDA_RETURN_IF_ERROR("cudaHostGetDevicePointer",
                              cudaHostGetDevicePointer(&device_view, buffer_.get(), 0));
    device_staging_ = static_cast<uint8_t*>(device_view);
    staging_ = buffer_.get();
    slot_bytes_ = slot_bytes;
    KVFS_CUDA_RETURN_IF_ERROR("cudaStreamCreate",
                              cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    for (cudaEvent_t& e : slot_events_) {
      // Blocking sync: a waiting I/O thread sleeps instead of spinning, so
      // many threads on few cores do not steal each other's CPU.
      KVFS_CUDA_RETURN_IF_ERROR(
          "cudaEventCreate",
          cudaEventCreateWithFlags(&e, cudaEventDisableTiming | cudaEventBlockingSync));
    }
    return absl::OkStatus();
  }

  // The next copies posted wait for the marker on the GPU. The job holds the
  // marker (its event) until its copies are complete.
  absl::Status WaitForMarker(StoreMarker* marker) override {
    marker_ = marker == nullptr ? nullptr : static_cast<CudaStoreMarker*>(marker)->event();
    return absl::OkStatus();
  }

  absl::Status StartGather(const ChunkCopy& chunk, int s) override { return Start(chunk, s, true); }
  absl::Status StartScatter(const ChunkCopy& chunk, int s) override {
    return Start(chunk, s, false);
  }

  absl::Status WaitSlot(int s) override {
    if (!pending_[s]) return absl::OkStatus();
    pending_[s] = false;
    absl::Status status = slots_[s].Wait();
    if (status.ok() && dispatcher_ == nullptr) {
      KVFS_CUDA_RETURN_IF_ERROR("waiting for a staging copy",
                                cudaEventSynchronize(slot_events_[s]));
    }
    return status;
  }

 private:
  absl::Status Start(const ChunkCopy& chunk, int s, bool to_staging) {
    // The caller's block ids may not outlive this call: keep a copy.
    ids_[s].assign(chunk.block_ids.begin(), chunk.block_ids.end());
    const uint32_t group = chunk.group;
    const cudaEvent_t marker = marker_;
    marker_ = nullptr;
    {
      std::lock_guard<std::mutex> lock(slots_[s].mu);
      slots_[s].done = false;
    }
    pending_[s] = true;
    auto issue = [this, s, group, to_staging, marker] {
      const ChunkCopy copy{group, ids_[s]};
      absl::Status status;
      if (dispatcher_ == nullptr) {  // on the I/O thread
        const cudaError_t err = cudaSetDevice(device_);
        if (err != cudaSuccess) status = CudaError("cudaSetDevice", err);
      }
      if (status.ok() && marker != nullptr) {
        const cudaError_t err = cudaStreamWaitEvent(stream_, marker, 0);
        if (err != cudaSuccess) status = CudaError("cudaStreamWaitEvent", err);
      }
      if (status.ok()) {
        status = plans_[group].use_kernel ? CopyWithKernel(copy, s, to_staging)
                                          : CopyWithDma(copy, s, to_staging);
      }
      if (status.ok() && dispatcher_ == nullptr) {
        const cudaError_t err = cudaEventRecord(slot_events_[s], stream_);
        if (err != cudaSuccess) status = CudaError("cudaEventRecord", err);
      } else if (status.ok()) {
        const cudaError_t err = cudaLaunchHostFunc(stream_, SlotCopiesDone, &slots_[s]);
        if (err == cudaSuccess) return;
        status = CudaError("cudaLaunchHostFunc", err);
      }
      slots_[s].Finish(std::move(status));  // nothing more will run on the stream for it
    };
    if (dispatcher_ != nullptr) {
      dispatcher_->Post(std::move(issue));
    } else {
      issue();
    }
    return absl::OkStatus();
  }

  absl::Status CopyWithKernel(const ChunkCopy& chunk, int s, bool to_staging) {
    const GroupPlan& plan = plans_[chunk.group];
    uint8_t* staging = device_staging_ + static_cast<uint64_t>(s) * slot_bytes_;
    for (size_t first = 0; first < chunk.block_ids.size(); first += kMaxBlocksPerLaunch) {
      LaunchBlocks blocks;
      blocks.count = static_cast<uint32_t>(
          std::min<size_t>(kMaxBlocksPerLaunch, chunk.block_ids.size() - first));
      for (uint32_t j = 0; j < blocks.count; ++j) blocks.ids[j] = chunk.block_ids[first + j];
      uint8_t* at = staging + first * plan.table.block_bytes;
      const cudaError_t err = to_staging ? LaunchGatherPages(plan.table, blocks, at, stream_)
                                         : LaunchScatterPages(plan.table, blocks, at, stream_);
      if (err != cudaSuccess) return CudaError("page copy kernel launch", err);
    }
    return absl::OkStatus();
  }

  absl::Status CopyWithDma(const ChunkCopy& chunk, int s, bool to_staging) {
    dsts_.clear();
    srcs_.clear();
    sizes_.clear();
    ForEachPage(layout_, chunk, slot(s), [&](uint8_t* gpu, uint8_t* host, uint64_t bytes) {
      void* dst = to_staging ? static_cast<void*>(host) : static_cast<void*>(gpu);
      const void* src = to_staging ? static_cast<const void*>(gpu) : static_cast<const void*>(host);
      // Merge a page that continues the previous one on both sides.
      if (!sizes_.empty() && static_cast<const uint8_t*>(srcs_.back()) + sizes_.back() == src &&
          static_cast<uint8_t*>(dsts_.back()) + sizes_.back() == dst) {
        sizes_.back() += bytes;
        return;
      }
      dsts_.push_back(dst);
      srcs_.push_back(src);
      sizes_.push_back(bytes);
    });
    const cudaMemcpyKind kind = to_staging ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice;
#if CUDART_VERSION >= 12080
    if (!batch_unsupported_) {
      cudaMemcpyAttributes attr = {};
      attr.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
      size_t attr_index = 0;
      const cudaError_t err = cudaMemcpyBatchAsync(dsts_.data(), srcs_.data(), sizes_.data(),
                                                   sizes_.size(), &attr, &attr_index, 1, stream_);
      if (err == cudaSuccess) return absl::OkStatus();
      if (err != cudaErrorNotSupported && err != cudaErrorInvalidValue)
        return CudaError("cudaMemcpyBatchAsync", err);
      cudaGetLastError();  // clear, then copy one by one from now on
      batch_unsupported_ = true;
    }
#endif
    for (size_t i = 0; i < sizes_.size(); ++i)
      KVFS_CUDA_RETURN_IF_ERROR("cudaMemcpyAsync",
                                cudaMemcpyAsync(dsts_[i], srcs_[i], sizes_[i], kind, stream_));
    return absl::OkStatus();
  }

  const KvLayout& layout_;
  const std::vector<GroupPlan>& plans_;
  const int device_;
  CudaDispatcher* const dispatcher_;  // null: issue on the I/O thread
  MappedBuffer buffer_;
  bool registered_ = false;
  uint8_t* device_staging_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t marker_ = nullptr;  // for the next copies posted
  std::array<bool, kSlots> pending_{};
  std::array<SlotCompletion, kSlots> slots_;
  std::array<cudaEvent_t, kSlots> slot_events_{};  // without a dispatcher
  std::array<std::vector<int64_t>, kSlots> ids_;
  // Used by whichever thread issues the copies.
  bool batch_unsupported_ = false;
  std::vector<void*> dsts_;
  std::vector<const void*> srcs_;
  std::vector<size_t> sizes_;
};

class CudaCopyBackend final : public CopyBackend {
 public:
  CudaCopyBackend(const KvLayout& layout, const CopyBackendOptions& options)
      : layout_(layout), options_(options) {}

  ~CudaCopyBackend() override {
    dispatcher_.reset();  // nothing posted may outlive the tables freed below
    cudaSetDevice(options_.device);
    for (void* p : device_allocations_) cudaFree(p);
  }

  absl::Status Init() {
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0)
      return absl::FailedPreconditionError(absl::StrCat(
          "no CUDA device visible (cudaGetDeviceCount: ",
          err != cudaSuccess ? cudaGetErrorString(err) : "0 devices", ")"));
    if (options_.device < 0 || options_.device >= count)
      return absl::InvalidArgumentError(
          absl::StrCat("CUDA device ", options_.device, " does not exist (", count, " devices)"));
    KVFS_CUDA_RETURN_IF_ERROR("cudaSetDevice", cudaSetDevice(options_.device));
    char bus_id[32] = {};
    if (cudaDeviceGetPCIBusId(bus_id, sizeof(bus_id), options_.device) == cudaSuccess)
      numa_node_ = NumaNodeOfPciDevice(bus_id);

    for (size_t g = 0; g < layout_.group_count(); ++g) {
      GroupPlan plan;
      const bool kernel_ok = KernelCanCopy(g);
      switch (options_.path) {
        case CopyPath::kDma: plan.use_kernel = false; break;
        case CopyPath::kKernel:
          if (!kernel_ok)
            return absl::InvalidArgumentError(absl::StrCat(
                "copy kernel asked for, but group ", g,
                " has pages, strides or bases that are not 16-byte aligned"));
          plan.use_kernel = true;
          break;
        case CopyPath::kAuto:
          plan.use_kernel = kernel_ok && layout_.min_page_bytes(g) <= kKernelUpToPageBytes;
          break;
      }
      if (absl::Status s = UploadTable(g, plan.table); !s.ok()) return s;
      plans_.push_back(plan);
    }
    // Kernel launches go through one dispatcher thread; a layout with any
    // DMA group keeps issuing from the I/O threads (see CudaCopyStream).
    if (std::all_of(plans_.begin(), plans_.end(), [](const GroupPlan& p) { return p.use_kernel; })) {
      dispatcher_ = std::make_unique<CudaDispatcher>(options_.device);
    }
    return absl::OkStatus();
  }

  std::string Describe() const override {
    std::string paths;
    for (const GroupPlan& p : plans_) absl::StrAppend(&paths, paths.empty() ? "" : "/",
                                                      p.use_kernel ? "kernel" : "dma");
    return absl::StrCat("cuda:", options_.device, " ", paths,
                        dispatcher_ ? " (dispatcher thread)" : "",
                        numa_node_ >= 0 ? absl::StrCat(" numa", numa_node_) : "");
  }

  absl::StatusOr<std::unique_ptr<StoreMarker>> RecordMarker(uint64_t compute_stream) override {
    KVFS_CUDA_RETURN_IF_ERROR("cudaSetDevice", cudaSetDevice(options_.device));
    absl::StatusOr<cudaEvent_t> event = events_.Take();
    if (!event.ok()) return event.status();
    auto marker = std::make_unique<CudaStoreMarker>(events_, *event);
    KVFS_CUDA_RETURN_IF_ERROR(
        "cudaEventRecord on the compute stream",
        cudaEventRecord(*event, reinterpret_cast<cudaStream_t>(compute_stream)));
    return std::unique_ptr<StoreMarker>(std::move(marker));
  }

  absl::StatusOr<std::unique_ptr<CopyStream>> CreateStream(uint64_t slot_bytes) override {
    auto stream =
        std::make_unique<CudaCopyStream>(layout_, plans_, options_.device, dispatcher_.get());
    if (absl::Status s = stream->Init(slot_bytes, numa_node_); !s.ok()) return s;
    return std::unique_ptr<CopyStream>(std::move(stream));
  }

 private:
  bool KernelCanCopy(size_t g) const {
    for (const TensorDesc& d : layout_.group(g).tensors)
      if (!Aligned16(d.base) || !Aligned16(d.page_bytes) || !Aligned16(d.block_stride))
        return false;
    return true;
  }

  absl::Status UploadTable(size_t g, DeviceGroupTable& table) {
    const KvGroup& group = layout_.group(g);
    const size_t n = group.tensors.size();
    std::vector<uint64_t> host(4 * n);
    for (size_t t = 0; t < n; ++t) {
      host[t] = group.tensors[t].base;
      host[n + t] = group.tensors[t].block_stride;
      host[2 * n + t] = group.tensors[t].page_bytes;
      host[3 * n + t] = layout_.page_offset(g, t);
    }
    void* device = nullptr;
    KVFS_CUDA_RETURN_IF_ERROR("cudaMalloc", cudaMalloc(&device, host.size() * sizeof(uint64_t)));
    device_allocations_.push_back(device);
    KVFS_CUDA_RETURN_IF_ERROR("cudaMemcpy", cudaMemcpy(device, host.data(),
                                                       host.size() * sizeof(uint64_t),
                                                       cudaMemcpyHostToDevice));
    const uint64_t* d = static_cast<const uint64_t*>(device);
    table = DeviceGroupTable{d, d + n, d + 2 * n, d + 3 * n, static_cast<uint32_t>(n),
                             layout_.block_bytes(g)};
    return absl::OkStatus();
  }

  const KvLayout& layout_;
  const CopyBackendOptions options_;
  int numa_node_ = -1;
  std::vector<GroupPlan> plans_;
  std::vector<void*> device_allocations_;
  // Outlive every marker and stream: the engine drains its tasks before it
  // drops the backend.
  EventPool events_;
  std::unique_ptr<CudaDispatcher> dispatcher_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CopyBackend>> MakeCudaCopyBackend(
    const KvLayout& layout, const CopyBackendOptions& options) {
  auto backend = std::make_unique<CudaCopyBackend>(layout, options);
  if (absl::Status s = backend->Init(); !s.ok()) return s;
  return std::unique_ptr<CopyBackend>(std::move(backend));
}

}  // namespace kvfs::connector
