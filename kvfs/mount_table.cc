#include "kvfs/mount_table.h"

#include <fstream>
#include <sstream>

namespace kvfs {
namespace {

std::string Unescape(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && field[i + 1] >= '0' && field[i + 1] <= '3') {
      out += static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                               (field[i + 3] - '0'));
      i += 3;
    } else {
      out += field[i];
    }
  }
  return out;
}

}  // namespace

std::optional<std::string> TopMountTypeAt(const std::string& mountpoint) {
  std::optional<std::string> type;
  std::ifstream info("/proc/self/mountinfo");
  for (std::string line; std::getline(info, line);) {
    const size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream head(line.substr(0, dash));
    std::string id, parent, device, root, point;
    head >> id >> parent >> device >> root >> point;
    if (Unescape(point) != mountpoint) continue;
    std::istringstream tail(line.substr(dash + 3));
    std::string fstype;
    tail >> fstype;
    type = fstype;  // a later line is a mount on top of this one
  }
  return type;
}

std::vector<KvfsMount> ReadKvfsMounts() {
  std::vector<KvfsMount> mounts;
  std::ifstream info("/proc/self/mountinfo");
  for (std::string line; std::getline(info, line);) {
    constexpr char kType[] = " - fuse.kvfs ";
    const size_t type_at = line.find(kType);
    if (type_at == std::string::npos) continue;
    std::istringstream head(line.substr(0, type_at));
    std::string id, parent, device, root, point;
    head >> id >> parent >> device >> root >> point;
    std::istringstream tail(line.substr(type_at + sizeof(kType) - 1));
    std::string source;
    tail >> source;
    source = Unescape(source);
    mounts.push_back({device, Unescape(point),
                      source.rfind("kvfs:", 0) == 0 ? source.substr(5) : std::string()});
  }
  return mounts;
}

}  // namespace kvfs
