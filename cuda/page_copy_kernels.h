// Gather/scatter kernels: copy whole pages between KV tensors in GPU memory
// and a block-major staging buffer in mapped pinned host memory.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace kvfs::connector {

// Device-side description of one KV group (arrays in device memory).
struct DeviceGroupTable {
  const uint64_t* bases = nullptr;
  const uint64_t* strides = nullptr;
  const uint64_t* page_bytes = nullptr;
  const uint64_t* page_offsets = nullptr;  // in a block's file bytes
  uint32_t tensors = 0;
  uint64_t block_bytes = 0;
};

// Block ids travel as a kernel argument: no upload per chunk.
inline constexpr int kMaxBlocksPerLaunch = 64;
struct LaunchBlocks {
  int64_t ids[kMaxBlocksPerLaunch];
  uint32_t count;
};

// staging: device-visible address of the first block's bytes. Pages, bases,
// strides and offsets must be 16-byte aligned (checked by the caller).
cudaError_t LaunchGatherPages(const DeviceGroupTable& group, const LaunchBlocks& blocks,
                              uint8_t* staging, cudaStream_t stream);
cudaError_t LaunchScatterPages(const DeviceGroupTable& group, const LaunchBlocks& blocks,
                               const uint8_t* staging, cudaStream_t stream);

}  // namespace kvfs::connector
