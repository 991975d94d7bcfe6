#include "cuda/page_copy_kernels.h"

namespace kvfs::connector {
namespace {

constexpr int kThreads = 256;

// One CUDA block per (tensor, KV block) page; 16-byte accesses.
template <bool kToStaging>
__global__ void CopyPages(DeviceGroupTable group, LaunchBlocks blocks, uint8_t* staging) {
  const uint32_t t = blockIdx.x;
  const uint32_t j = blockIdx.y;
  const uint64_t id = static_cast<uint64_t>(blocks.ids[j]);
  uint4* device_page = reinterpret_cast<uint4*>(group.bases[t] + id * group.strides[t]);
  uint4* staged_page =
      reinterpret_cast<uint4*>(staging + j * group.block_bytes + group.page_offsets[t]);
  const uint64_t words = group.page_bytes[t] / sizeof(uint4);
  for (uint64_t i = threadIdx.x; i < words; i += kThreads) {
    if constexpr (kToStaging) {
      staged_page[i] = device_page[i];
    } else {
      device_page[i] = staged_page[i];
    }
  }
}

}  // namespace

cudaError_t LaunchGatherPages(const DeviceGroupTable& group, const LaunchBlocks& blocks,
                              uint8_t* staging, cudaStream_t stream) {
  const dim3 grid(group.tensors, blocks.count);
  CopyPages<true><<<grid, kThreads, 0, stream>>>(group, blocks, staging);
  return cudaGetLastError();
}

cudaError_t LaunchScatterPages(const DeviceGroupTable& group, const LaunchBlocks& blocks,
                               const uint8_t* staging, cudaStream_t stream) {
  const dim3 grid(group.tensors, blocks.count);
  CopyPages<false><<<grid, kThreads, 0, stream>>>(group, blocks, const_cast<uint8_t*>(staging));
  return cudaGetLastError();
}

}  // namespace kvfs::connector
