// The kvfs mounts in the kernel's mount table (/proc/self/mountinfo), with
// its octal escapes undone (a space in a path reads \040 there).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace kvfs {

struct KvfsMount {
  std::string device;      // "major:minor", for /sys/class/bdi
  std::string mountpoint;  // absolute
  std::string backing;     // the backing directory (the mount's source "kvfs:DIR")
};

// In mount order: the newest mount of a point comes last.
std::vector<KvfsMount> ReadKvfsMounts();

// The filesystem type ("ext4", "fuse.kvfs") of the newest mount at the
// absolute `mountpoint`, the one an unmount would take away; nullopt where
// nothing is mounted there.
std::optional<std::string> TopMountTypeAt(const std::string& mountpoint);

}  // namespace kvfs
