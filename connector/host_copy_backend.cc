// The host-memory backend: the "GPU tensors" are ordinary host buffers and a
// copy is a memcpy, done at once (so WaitSlot has nothing to wait for). It
// lets the whole file path run and be tested on machines without a GPU.
#include <cstring>

#include "connector/copy_backend.h"
#include "connector/staging_memory.h"

namespace kvfs::connector {
namespace {

class HostCopyStream final : public CopyStream {
 public:
  HostCopyStream(const KvLayout& layout, MappedBuffer buffer, uint64_t slot_bytes)
      : layout_(layout), buffer_(std::move(buffer)) {
    staging_ = buffer_.get();
    slot_bytes_ = slot_bytes;
  }

  absl::Status WaitForMarker(StoreMarker*) override { return absl::OkStatus(); }

  absl::Status StartGather(const ChunkCopy& chunk, int s) override {
    Copy(chunk, s, /*to_staging=*/true);
    return absl::OkStatus();
  }
  absl::Status StartScatter(const ChunkCopy& chunk, int s) override {
    Copy(chunk, s, /*to_staging=*/false);
    return absl::OkStatus();
  }
  absl::Status WaitSlot(int) override { return absl::OkStatus(); }

 private:
  void Copy(const ChunkCopy& chunk, int s, bool to_staging) {
    const KvGroup& group = layout_.group(chunk.group);
    const uint64_t block_bytes = layout_.block_bytes(chunk.group);
    uint8_t* staging = slot(s);
    for (size_t j = 0; j < chunk.block_ids.size(); ++j) {
      const uint64_t block = static_cast<uint64_t>(chunk.block_ids[j]);
      for (size_t t = 0; t < group.tensors.size(); ++t) {
        const TensorDesc& d = group.tensors[t];
        uint8_t* page = reinterpret_cast<uint8_t*>(d.base + block * d.block_stride);
        uint8_t* staged = staging + j * block_bytes + layout_.page_offset(chunk.group, t);
        if (to_staging) {
          std::memcpy(staged, page, d.page_bytes);
        } else {
          std::memcpy(page, staged, d.page_bytes);
        }
      }
    }
  }

  const KvLayout& layout_;
  MappedBuffer buffer_;
};

class HostCopyBackend final : public CopyBackend {
 public:
  explicit HostCopyBackend(const KvLayout& layout) : layout_(layout) {}
  std::string Describe() const override { return "host memory (memcpy)"; }
  absl::StatusOr<std::unique_ptr<StoreMarker>> RecordMarker(uint64_t) override {
    return std::unique_ptr<StoreMarker>();  // host data is final when submitted
  }
  absl::StatusOr<std::unique_ptr<CopyStream>> CreateStream(uint64_t slot_bytes) override {
    absl::StatusOr<MappedBuffer> buffer =
        AllocatePrefaulted(slot_bytes * CopyStream::kSlots, /*numa_node=*/-1);
    if (!buffer.ok()) return buffer.status();
    return std::unique_ptr<CopyStream>(
        new HostCopyStream(layout_, std::move(*buffer), slot_bytes));
  }

 private:
  const KvLayout& layout_;
};

}  // namespace

std::unique_ptr<CopyBackend> MakeHostCopyBackend(const KvLayout& layout) {
  return std::make_unique<HostCopyBackend>(layout);
}

}  // namespace kvfs::connector
