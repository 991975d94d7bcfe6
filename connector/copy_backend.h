// How block pages move between the KV tensors and a worker's staging buffer.
// Backends: host memory (memcpy; tensors are ordinary host buffers, for
// machines without a GPU) and CUDA (cuda/: DMA batches or a copy kernel).
// Copies are asynchronous per slot so that a worker can copy chunk i+1 while
// it does the file I/O of chunk i.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "connector/kv_layout.h"

namespace kvfs::connector {

// Whole blocks of one group; in staging they lie back to back in file order.
struct ChunkCopy {
  uint32_t group = 0;
  std::span<const int64_t> block_ids;
};

// "The caller's compute stream up to the moment of submit": a store's copies
// wait for it so that they read finished KV data.
class StoreMarker {
 public:
  virtual ~StoreMarker() = default;
};

// One per I/O thread. Owns a staging buffer of kSlots slots (pinned and
// pre-faulted when the backend is CUDA), allocated once at start.
class CopyStream {
 public:
  static constexpr int kSlots = 2;
  virtual ~CopyStream() = default;

  uint8_t* slot(int s) const { return staging_ + static_cast<uint64_t>(s) * slot_bytes_; }
  uint64_t slot_bytes() const { return slot_bytes_; }

  // Copies started after this call begin only once `marker` is reached.
  virtual absl::Status WaitForMarker(StoreMarker* marker) = 0;
  // Tensor pages -> staging slot (store) and back (load).
  virtual absl::Status StartGather(const ChunkCopy& chunk, int s) = 0;
  virtual absl::Status StartScatter(const ChunkCopy& chunk, int s) = 0;
  // Blocks until the copies last started on slot s are complete.
  virtual absl::Status WaitSlot(int s) = 0;

 protected:
  uint8_t* staging_ = nullptr;
  uint64_t slot_bytes_ = 0;
};

enum class MemoryKind { kHost, kCuda };
// kAuto picks, per group, the path measured faster for its page size.
enum class CopyPath { kAuto, kDma, kKernel };

struct CopyBackendOptions {
  MemoryKind memory = MemoryKind::kHost;
  CopyPath path = CopyPath::kAuto;
  int device = 0;  // CUDA device ordinal
};

class CopyBackend {
 public:
  virtual ~CopyBackend() = default;
  // A short description for logs and benchmarks ("host", "cuda:0 dma", ...).
  virtual std::string Describe() const = 0;
  // Called on the submitting thread; must not block. compute_stream is a
  // cudaStream_t as an integer (0: the legacy default stream).
  virtual absl::StatusOr<std::unique_ptr<StoreMarker>> RecordMarker(uint64_t compute_stream) = 0;
  virtual absl::StatusOr<std::unique_ptr<CopyStream>> CreateStream(uint64_t slot_bytes) = 0;
};

// The host backend always exists; the CUDA one when built with nvcc.
absl::StatusOr<std::unique_ptr<CopyBackend>> MakeCopyBackend(const KvLayout& layout,
                                                             const CopyBackendOptions& options);
std::unique_ptr<CopyBackend> MakeHostCopyBackend(const KvLayout& layout);
bool CudaSupportCompiled();

// Calls fn(tensor_page, staged_page, bytes) for every page of the chunk, in
// file order; staging is the slot the chunk's first block starts at.
template <typename Fn>
void ForEachPage(const KvLayout& layout, const ChunkCopy& chunk, uint8_t* staging, Fn&& fn) {
  const KvGroup& group = layout.group(chunk.group);
  const uint64_t block_bytes = layout.block_bytes(chunk.group);
  for (size_t j = 0; j < chunk.block_ids.size(); ++j) {
    const uint64_t block = static_cast<uint64_t>(chunk.block_ids[j]);
    for (size_t t = 0; t < group.tensors.size(); ++t) {
      const TensorDesc& d = group.tensors[t];
      fn(reinterpret_cast<uint8_t*>(d.base + block * d.block_stride),
         staging + j * block_bytes + layout.page_offset(chunk.group, t), d.page_bytes);
    }
  }
}

// Bytes, in staging order, of one chunk's pages: block j's page of tensor t
// sits at j * block_bytes + page_offset(t).
inline uint64_t ChunkBytes(const KvLayout& layout, const ChunkCopy& chunk) {
  return chunk.block_ids.size() * layout.block_bytes(chunk.group);
}

}  // namespace kvfs::connector
