#include "kvfs/usage.h"

#include <cerrno>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "kvfs/errors.h"

namespace kvfs {
namespace {

std::string Join(const std::string& dir, absl::string_view name) {
  return dir.empty() ? std::string(name) : absl::StrCat(dir, "/", name);
}

// Adds the subtree of directory `dir` to `total`; appends the entries of
// directories no deeper than `max_depth`.
absl::Status Walk(Index& index, uint64_t dir, const std::string& path, int depth,
                  int max_depth, DirUsage* total, std::vector<DirUsage>* out) {
  std::vector<std::pair<uint64_t, std::string>> subdirs;
  absl::Status s = index.ListDir(dir, "", [&](const Inode& child) {
    if (child.is_dir) {
      subdirs.emplace_back(child.ino, child.name);
    } else {
      total->logical_bytes += child.size;
      total->stored_bytes += child.record_bytes();
      ++total->files;
    }
    return true;
  });
  if (!s.ok()) return s;
  for (const auto& [ino, name] : subdirs) {
    DirUsage sub;
    sub.path = Join(path, name);
    sub.depth = depth + 1;
    if (absl::Status w = Walk(index, ino, sub.path, depth + 1, max_depth, &sub, out); !w.ok()) {
      return w;
    }
    total->logical_bytes += sub.logical_bytes;
    total->stored_bytes += sub.stored_bytes;
    total->files += sub.files;
    total->dirs += sub.dirs + 1;
    if (max_depth < 0 || sub.depth <= max_depth) out->push_back(std::move(sub));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<DirUsage>> ComputeUsage(Index& index, const Inode& start,
                                                   const std::string& start_path,
                                                   int max_depth) {
  std::vector<DirUsage> out;
  DirUsage top;
  top.path = start_path;
  top.is_dir = start.is_dir;
  if (start.is_dir) {
    if (absl::Status s = Walk(index, start.ino, start_path, 0, max_depth, &top, &out);
        !s.ok()) {
      return s;
    }
  } else {
    top.logical_bytes = start.size;
    top.stored_bytes = start.record_bytes();
    top.files = 1;
  }
  out.push_back(std::move(top));
  return out;
}

absl::StatusOr<UsageRequest> ParseUsageRequest(absl::string_view text) {
  UsageRequest r;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits('=', 1));
    bool ok = true;
    if (kv.first == "path") {
      r.path = std::string(kv.second);
    } else if (kv.first == "depth") {
      ok = absl::SimpleAtoi(kv.second, &r.max_depth) && r.max_depth >= -1;
    } else {
      ok = false;
    }
    if (!ok) return ErrnoError(EINVAL, absl::StrCat("bad usage request line '", line, "'"));
  }
  return r;
}

std::string EncodeUsageRequest(const UsageRequest& r) {
  return absl::StrCat("path=", r.path, "\ndepth=", r.max_depth, "\n");
}

std::string FormatUsageAnswer(const std::vector<DirUsage>& entries) {
  std::string out = "usage\n";
  for (const DirUsage& u : entries) {
    absl::StrAppend(&out, u.logical_bytes, "\t", u.stored_bytes, "\t", u.files, "\t", u.dirs,
                    "\t", u.depth, "\t", u.is_dir ? "d" : "f", "\t", u.path, "\n");
  }
  return out;
}

absl::StatusOr<std::vector<DirUsage>> ParseUsageAnswer(absl::string_view text) {
  if (absl::ConsumePrefix(&text, "error: ")) {
    return ErrnoError(EIO, std::string(absl::StripTrailingAsciiWhitespace(text)));
  }
  if (!absl::ConsumePrefix(&text, "usage\n")) {
    return ErrnoError(EPROTO, "the daemon's usage answer is malformed");
  }
  std::vector<DirUsage> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits('\t', 6));
    DirUsage u;
    if (f.size() != 7 || !absl::SimpleAtoi(f[0], &u.logical_bytes) ||
        !absl::SimpleAtoi(f[1], &u.stored_bytes) || !absl::SimpleAtoi(f[2], &u.files) ||
        !absl::SimpleAtoi(f[3], &u.dirs) || !absl::SimpleAtoi(f[4], &u.depth)) {
      return ErrnoError(EPROTO, absl::StrCat("malformed usage line '", line, "'"));
    }
    u.is_dir = f[5] == "d";
    u.path = std::string(f[6]);
    out.push_back(std::move(u));
  }
  return out;
}

}  // namespace kvfs
