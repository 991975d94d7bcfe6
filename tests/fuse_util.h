// Whether this process can mount FUSE filesystems, for tests that need one.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <string>

namespace kvfs {

// Why FUSE mounts cannot be tested here, or "" if they can.
inline std::string SkipReason() {
  if (::geteuid() != 0) return "needs root to mount FUSE";
  if (::access("/dev/fuse", R_OK | W_OK) != 0) return "/dev/fuse is not usable here";
  return "";
}

// The device of `path`: a mount point's changes when something is mounted.
inline dev_t DeviceOf(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? st.st_dev : 0;
}

}  // namespace kvfs
