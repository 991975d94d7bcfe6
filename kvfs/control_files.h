// The mount's control directory: MOUNTPOINT/.kvfs (hidden from readdir of the
// root, reserved: nothing can be created under that name). Its files are
// virtual; tools talk to the running daemon through them, so they work in
// any container that sees the mount.
//
//   .kvfs/evict   open read-write, write a request, read the answer:
//                   request: lines "older_than_ns=N", "prefix=PATH",
//                            "max_bytes=N", "dry_run=1" (all optional)
//                   answer (read from where the write left the offset):
//                            "evicted" or "would evict", then one line per
//                            file "BYTES<TAB>ATIME_NS<TAB>PATH", then
//                            "total FILES BYTES"; or "error: MESSAGE"
//   .kvfs/du      the same, for space use (usage.h has the request and answer)
//   .kvfs/metrics read-only: the Prometheus text exposition (metrics.h),
//                 made when the file is opened
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kvfs/engine.h"

namespace kvfs {

inline constexpr char kControlDirName[] = ".kvfs";
inline constexpr char kEvictFileName[] = "evict";
// Inode numbers far above any the engine allocates.
inline constexpr uint64_t kControlDirIno = uint64_t{1} << 62;
inline constexpr uint64_t kEvictFileIno = kControlDirIno + 1;
inline constexpr char kDuFileName[] = "du";
inline constexpr uint64_t kDuFileIno = kControlDirIno + 2;
inline constexpr char kMetricsFileName[] = "metrics";
inline constexpr uint64_t kMetricsFileIno = kControlDirIno + 3;

absl::StatusOr<EvictRequest> ParseEvictRequest(absl::string_view text);
std::string EncodeEvictRequest(const EvictRequest& request);
std::string FormatEvictAnswer(const EvictRequest& request,
                              const std::vector<EvictedFile>& files);

}  // namespace kvfs
