#include "connector/kv_layout.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace kvfs::connector {

absl::StatusOr<KvLayout> KvLayout::Create(std::vector<KvGroup> groups,
                                          uint32_t blocks_per_file) {
  if (groups.empty()) return absl::InvalidArgumentError("KV layout: no groups");
  if (blocks_per_file == 0)
    return absl::InvalidArgumentError("KV layout: blocks_per_file must be >= 1");
  KvLayout layout;
  layout.blocks_per_file_ = blocks_per_file;
  for (size_t g = 0; g < groups.size(); ++g) {
    const KvGroup& group = groups[g];
    if (group.tensors.empty())
      return absl::InvalidArgumentError(absl::StrCat("KV layout: group ", g, " has no tensors"));
    std::vector<uint64_t> offsets;
    uint64_t block_bytes = 0;
    for (size_t t = 0; t < group.tensors.size(); ++t) {
      const TensorDesc& d = group.tensors[t];
      const std::string where = absl::StrCat("KV layout: group ", g, " tensor ", t, ": ");
      if (d.base == 0) return absl::InvalidArgumentError(where + "null base address");
      if (d.page_bytes == 0) return absl::InvalidArgumentError(where + "page_bytes is 0");
      if (d.num_blocks == 0) return absl::InvalidArgumentError(where + "num_blocks is 0");
      if (d.num_blocks > 1 && d.block_stride < d.page_bytes)
        return absl::InvalidArgumentError(absl::StrCat(
            where, "block_stride ", d.block_stride, " < page_bytes ", d.page_bytes,
            " (pages would overlap)"));
      offsets.push_back(block_bytes);
      block_bytes += d.page_bytes;
    }
    layout.block_bytes_.push_back(block_bytes);
    layout.page_offsets_.push_back(std::move(offsets));
  }
  layout.groups_ = std::move(groups);
  return layout;
}

uint64_t KvLayout::max_block_bytes() const {
  return *std::max_element(block_bytes_.begin(), block_bytes_.end());
}

uint64_t KvLayout::min_page_bytes(size_t g) const {
  uint64_t min = UINT64_MAX;
  for (const TensorDesc& t : groups_[g].tensors) min = std::min(min, t.page_bytes);
  return min;
}

absl::Status KvLayout::CheckBlocks(size_t g, std::span<const int64_t> block_ids) const {
  if (g >= groups_.size())
    return absl::InvalidArgumentError(
        absl::StrCat("group ", g, " does not exist (", groups_.size(), " groups)"));
  if (block_ids.size() > blocks_per_file_)
    return absl::InvalidArgumentError(absl::StrCat(
        block_ids.size(), " blocks for one file; a file holds at most ", blocks_per_file_));
  for (int64_t id : block_ids) {
    for (const TensorDesc& t : groups_[g].tensors) {
      if (id < 0 || static_cast<uint64_t>(id) >= t.num_blocks)
        return absl::InvalidArgumentError(
            absl::StrCat("block id ", id, " out of range [0, ", t.num_blocks, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace kvfs::connector
