// The KV cache as the connector sees it: vLLM's canonical per-layer tensors
// (num_blocks pages of page_bytes at base + block * block_stride) grouped into
// KV-cache groups, and the file format of the llm-d FS backend: a file holds
// consecutive blocks of one group, block-major then tensor, no header.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvfs::connector {

struct TensorDesc {
  uint64_t base = 0;          // address of block 0 (device, or host in host mode)
  uint64_t page_bytes = 0;    // bytes of one block of this tensor
  uint64_t block_stride = 0;  // bytes between consecutive blocks (>= page_bytes)
  uint64_t num_blocks = 0;
};

struct KvGroup {
  std::vector<TensorDesc> tensors;  // file order within a block (L0.K, L0.V, ...)
};

class KvLayout {
 public:
  // Checks the description: non-empty groups, non-zero pages, strides that do
  // not make pages of one tensor overlap, blocks_per_file >= 1.
  static absl::StatusOr<KvLayout> Create(std::vector<KvGroup> groups,
                                         uint32_t blocks_per_file);

  size_t group_count() const { return groups_.size(); }
  const KvGroup& group(size_t g) const { return groups_[g]; }
  uint32_t blocks_per_file() const { return blocks_per_file_; }

  // Bytes one block of group g occupies in a file (the sum of its pages).
  uint64_t block_bytes(size_t g) const { return block_bytes_[g]; }
  // Offset of tensor t's page inside one block's bytes in a file.
  uint64_t page_offset(size_t g, size_t t) const { return page_offsets_[g][t]; }
  uint64_t max_block_bytes() const;
  uint64_t min_page_bytes(size_t g) const;

  // Checks a request's blocks against group g (ids in range, count within
  // blocks_per_file).
  absl::Status CheckBlocks(size_t g, std::span<const int64_t> block_ids) const;

 private:
  std::vector<KvGroup> groups_;
  std::vector<uint64_t> block_bytes_;
  std::vector<std::vector<uint64_t>> page_offsets_;
  uint32_t blocks_per_file_ = 0;
};

}  // namespace kvfs::connector
