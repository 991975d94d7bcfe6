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
    ForEachPage(layout_, chunk, slot(s), [to_staging](uint8_t* page, uint8_t* staged, uint64_t n) {
      if (to_staging) {
        std::memcpy(staged, page, n);
      } else {
        std::memcpy(page, staged, n);
      }
    });
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
