// The CUDA copy backend: block pages move between GPU memory and a worker's
// pinned staging slots either with the DMA engines (cudaMemcpyBatchAsync, one
// descriptor per page, adjacent pages merged) or with the gather/scatter copy
// kernel of page_copy_kernels.cu (SMs reading or writing mapped host memory).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "connector/copy_backend.h"

namespace kvfs::connector {

absl::StatusOr<std::unique_ptr<CopyBackend>> MakeCudaCopyBackend(
    const KvLayout& layout, const CopyBackendOptions& options);

// Pages up to this size go through the copy kernel under CopyPath::kAuto. On
// the H100 the kernel beat the DMA engines for both 8 KiB and 32 KiB pages
// (docs/performance.md); larger pages were not measured, and there the DMA
// engines, which leave the SMs to the model, are kept.
inline constexpr uint64_t kKernelUpToPageBytes = 64 << 10;

}  // namespace kvfs::connector
