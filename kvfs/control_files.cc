#include "kvfs/control_files.h"

#include <cerrno>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "kvfs/errors.h"

namespace kvfs {

absl::StatusOr<EvictRequest> ParseEvictRequest(absl::string_view text) {
  EvictRequest r;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    bool ok = true;
    if (kv.first == "older_than_ns") {
      ok = absl::SimpleAtoi(kv.second, &r.older_than_ns) && r.older_than_ns >= 0;
    } else if (kv.first == "prefix") {
      r.prefix = std::string(kv.second);
    } else if (kv.first == "max_bytes") {
      ok = absl::SimpleAtoi(kv.second, &r.max_bytes);
    } else if (kv.first == "dry_run") {
      r.dry_run = kv.second == "1";
      ok = kv.second == "1" || kv.second == "0";
    } else {
      ok = false;
    }
    if (!ok) return ErrnoError(EINVAL, absl::StrCat("bad eviction request line '", line, "'"));
  }
  return r;
}

std::string EncodeEvictRequest(const EvictRequest& r) {
  std::string out;
  if (r.older_than_ns >= 0) absl::StrAppend(&out, "older_than_ns=", r.older_than_ns, "\n");
  if (!r.prefix.empty()) absl::StrAppend(&out, "prefix=", r.prefix, "\n");
  if (r.max_bytes != UINT64_MAX) absl::StrAppend(&out, "max_bytes=", r.max_bytes, "\n");
  if (r.dry_run) out += "dry_run=1\n";
  return out;
}

std::string FormatEvictAnswer(const EvictRequest& request,
                              const std::vector<EvictedFile>& files) {
  std::string out = request.dry_run ? "would evict\n" : "evicted\n";
  uint64_t bytes = 0;
  for (const EvictedFile& f : files) {
    absl::StrAppend(&out, f.bytes, "\t", f.atime_ns, "\t", f.path, "\n");
    bytes += f.bytes;
  }
  absl::StrAppend(&out, "total ", files.size(), " ", bytes, "\n");
  return out;
}

}  // namespace kvfs
