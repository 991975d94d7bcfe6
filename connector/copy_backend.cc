#include "connector/copy_backend.h"

#ifdef KVFS_CONNECTOR_CUDA
#include "cuda/cuda_copy_backend.h"
#endif

namespace kvfs::connector {

bool CudaSupportCompiled() {
#ifdef KVFS_CONNECTOR_CUDA
  return true;
#else
  return false;
#endif
}

absl::StatusOr<std::unique_ptr<CopyBackend>> MakeCopyBackend(const KvLayout& layout,
                                                             const CopyBackendOptions& options) {
  if (options.memory == MemoryKind::kHost) return MakeHostCopyBackend(layout);
#ifdef KVFS_CONNECTOR_CUDA
  return MakeCudaCopyBackend(layout, options);
#else
  return absl::FailedPreconditionError(
      "CUDA memory requested, but this kvfs connector was built without CUDA (no nvcc at "
      "build time)");
#endif
}

}  // namespace kvfs::connector
