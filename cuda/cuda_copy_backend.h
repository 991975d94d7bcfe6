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

// Pages smaller than this go through the copy kernel under CopyPath::kAuto:
// below it the DMA engines' per-descriptor cost dominates (see docs/performance.md).
inline constexpr uint64_t kKernelBelowPageBytes = 28 << 10;

}  // namespace kvfs::connector
