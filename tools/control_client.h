// How the tools talk to a running kvfs daemon: through the virtual files in
// MOUNTPOINT/.kvfs/ (control_files.h), so they work wherever the mount is
// visible, containers included.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvfs {

// Writes `request` to MOUNTPOINT/.kvfs/FILE and returns the daemon's answer.
absl::StatusOr<std::string> AskDaemon(const std::string& mountpoint, absl::string_view file,
                                      absl::string_view request);
// Reads the whole read-only control file MOUNTPOINT/.kvfs/FILE.
absl::StatusOr<std::string> ReadControlFile(const std::string& mountpoint,
                                            absl::string_view file);

// The kvfs mount that holds `path` (after resolving it) and `path` relative
// to it ("" for the mount point); NotFound when `path` is on no kvfs mount.
struct MountedPath {
  std::string mountpoint;
  std::string relative;
};
absl::StatusOr<MountedPath> FindKvfsMount(const std::string& path);

// 1536 -> "1.5K" (binary units, as du -h).
std::string HumanBytes(uint64_t bytes);

}  // namespace kvfs
