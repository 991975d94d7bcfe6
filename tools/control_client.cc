#include "tools/control_client.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "kvfs/control_files.h"
#include "kvfs/errors.h"

namespace kvfs {
namespace {

absl::StatusOr<std::string> ReadAll(int fd, const std::string& path) {
  std::string out;
  char buf[1 << 16];
  for (ssize_t n; (n = ::read(fd, buf, sizeof(buf))) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      return SysError(absl::StrCat("read ", path));
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

absl::StatusOr<int> OpenControl(const std::string& mountpoint, absl::string_view file,
                                int flags, std::string* path) {
  *path = absl::StrCat(mountpoint, "/", kControlDirName, "/", file);
  const int fd = ::open(path->c_str(), flags);
  if (fd < 0) {
    return SysError(absl::StrCat("cannot open ", *path, " (is ", mountpoint,
                                 " a kvfs mount?)"));
  }
  return fd;
}

// mountinfo escapes blanks and backslashes in paths as \ooo (octal).
std::string Unescape(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      absl::string_view digits = s.substr(i + 1, 3);
      if (digits.find_first_not_of("01234567") == absl::string_view::npos) {
        out.push_back(static_cast<char>((digits[0] - '0') * 64 + (digits[1] - '0') * 8 +
                                        (digits[2] - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> AskDaemon(const std::string& mountpoint, absl::string_view file,
                                      absl::string_view request) {
  std::string path;
  absl::StatusOr<int> fd = OpenControl(mountpoint, file, O_RDWR, &path);
  if (!fd.ok()) return fd.status();
  if (!request.empty() &&
      ::write(*fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    absl::Status s = SysError(absl::StrCat("sending the request to ", path));
    ::close(*fd);
    return s;
  }
  absl::StatusOr<std::string> answer = ReadAll(*fd, path);
  ::close(*fd);
  return answer;
}

absl::StatusOr<std::string> ReadControlFile(const std::string& mountpoint,
                                            absl::string_view file) {
  std::string path;
  absl::StatusOr<int> fd = OpenControl(mountpoint, file, O_RDONLY, &path);
  if (!fd.ok()) return fd.status();
  absl::StatusOr<std::string> text = ReadAll(*fd, path);
  ::close(*fd);
  return text;
}

absl::StatusOr<MountedPath> FindKvfsMount(const std::string& path) {
  char resolved[PATH_MAX];
  if (::realpath(path.c_str(), resolved) == nullptr) return SysError(path);
  const std::string target = resolved;
  FILE* info = std::fopen("/proc/self/mountinfo", "r");
  if (info == nullptr) return SysError("open /proc/self/mountinfo");
  std::string best;
  char line[8192];
  while (std::fgets(line, sizeof(line), info) != nullptr) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE ...
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    if (f.size() < 5) continue;
    auto dash = std::find(f.begin() + 5, f.end(), "-");
    if (dash == f.end() || dash + 1 == f.end() || *(dash + 1) != "fuse.kvfs") continue;
    std::string point = Unescape(f[4]);
    const bool inside = target == point ||
                        (absl::StartsWith(target, point) &&
                         (point == "/" || target[point.size()] == '/'));
    if (inside && point.size() >= best.size()) best = point;
  }
  std::fclose(info);
  if (best.empty()) return ErrnoError(ENOENT, absl::StrCat(path, " is on no kvfs mount"));
  MountedPath out;
  out.mountpoint = best;
  out.relative = target.size() > best.size() ? target.substr(best.size() + (best == "/" ? 0 : 1))
                                             : "";
  return out;
}

std::string HumanBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"", "K", "M", "G", "T", "P", "E"};
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024 && unit < 6) {
    v /= 1024;
    ++unit;
  }
  if (unit == 0) return absl::StrCat(bytes);
  return v < 10 ? absl::StrFormat("%.1f%s", v, kUnits[unit])
                : absl::StrFormat("%.0f%s", v, kUnits[unit]);
}

}  // namespace kvfs
