// `kvfs evict MOUNTPOINT [--older-than DURATION] [--prefix PATH] [--bytes SIZE]
// [--dry-run]`: asks the running daemon (through MOUNTPOINT/.kvfs/evict) to
// evict the least recently accessed files that match, whole rank groups at once.
#include <fcntl.h>
#include <getopt.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "kvfs/control_files.h"
#include "tools/control_client.h"
#include "tools/subcommands.h"
#include "tools/units.h"

namespace kvfs {
namespace {

constexpr char kEvictUsage[] =
    "usage: kvfs evict MOUNTPOINT [options]\n"
    "\n"
    "Evicts files from a mounted kvfs, least recently accessed first. Files of one\n"
    "KV block stored by several ranks (the same path below sibling '..._r<N>'\n"
    "directories) go together, rank 0's first. Without options: everything.\n"
    "\n"
    "options:\n"
    "  --older-than DURATION   only files not accessed for this long (e.g. 90s, 2h, 7d)\n"
    "  --prefix PATH           only files below PATH (relative to the mount)\n"
    "  --bytes SIZE            stop once this many bytes were freed (e.g. 100G)\n"
    "  --dry-run               list what would go, change nothing\n"
    "  -q, --quiet             print only the total\n"
    "  -h, --help              this text\n";

int UsageError(const std::string& message) {
  std::fprintf(stderr, "kvfs evict: %s\n\n%s", message.c_str(), kEvictUsage);
  return 2;
}

std::optional<int64_t> ParseDurationNs(std::string text) {
  // absl has no days; operators think in them.
  if (!text.empty() && text.back() == 'd') {
    double days;
    if (!absl::SimpleAtod(text.substr(0, text.size() - 1), &days) || days < 0) {
      return std::nullopt;
    }
    return static_cast<int64_t>(days * 86400e9);
  }
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d < absl::ZeroDuration()) return std::nullopt;
  return absl::ToInt64Nanoseconds(d);
}

}  // namespace

int RunEvict(int argc, char** argv) {
  EvictRequest request;
  bool quiet = false;
  enum { kOlder = 1000, kPrefix, kBytes, kDry };
  static const option kOptions[] = {{"older-than", required_argument, nullptr, kOlder},
                                    {"prefix", required_argument, nullptr, kPrefix},
                                    {"bytes", required_argument, nullptr, kBytes},
                                    {"dry-run", no_argument, nullptr, kDry},
                                    {"quiet", no_argument, nullptr, 'q'},
                                    {"help", no_argument, nullptr, 'h'},
                                    {nullptr, 0, nullptr, 0}};
  optind = 1;
  for (int opt; (opt = getopt_long(argc, argv, "qh", kOptions, nullptr)) != -1;) {
    switch (opt) {
      case 'h': std::fputs(kEvictUsage, stdout); return 0;
      case 'q': quiet = true; break;
      case kOlder: {
        std::optional<int64_t> ns = ParseDurationNs(optarg);
        if (!ns) return UsageError(absl::StrCat("bad --older-than '", optarg, "'"));
        request.older_than_ns = *ns;
        break;
      }
      case kPrefix: request.prefix = optarg; break;
      case kBytes: {
        std::optional<uint64_t> b = ParseSize(optarg);
        if (!b || *b == 0) return UsageError(absl::StrCat("bad --bytes '", optarg, "'"));
        request.max_bytes = *b;
        break;
      }
      case kDry: request.dry_run = true; break;
      default: return UsageError("unknown option");
    }
  }
  if (argc - optind != 1) return UsageError("expected MOUNTPOINT");
  if (request.prefix.find('\n') != std::string::npos) return UsageError("bad --prefix");
  absl::StatusOr<std::string> asked =
      AskDaemon(argv[optind], kEvictFileName, EncodeEvictRequest(request));
  if (!asked.ok()) {
    std::fprintf(stderr, "kvfs evict: %s\n", std::string(asked.status().message()).c_str());
    return 1;
  }
  const std::string& answer = *asked;
  if (absl::StartsWith(answer, "error: ")) {
    std::fprintf(stderr, "kvfs evict: %s", answer.substr(7).c_str());
    return 1;
  }
  std::vector<absl::string_view> lines = absl::StrSplit(answer, '\n', absl::SkipEmpty());
  if (lines.empty() || !absl::StartsWith(lines.back(), "total ")) {
    std::fprintf(stderr, "kvfs evict: unexpected answer from the daemon\n");
    return 1;
  }
  const bool dry = request.dry_run;
  for (size_t i = 1; !quiet && i + 1 < lines.size(); ++i) {
    std::vector<absl::string_view> f = absl::StrSplit(lines[i], absl::MaxSplits('\t', 2));
    if (f.size() != 3) continue;
    std::printf("%s%s\t%s\n", dry ? "would evict " : "", std::string(f[0]).c_str(),
                std::string(f[2]).c_str());
  }
  std::vector<absl::string_view> total = absl::StrSplit(lines.back(), ' ');
  std::printf("%s %s files, %s bytes\n", dry ? "would evict" : "evicted",
              std::string(total.size() > 1 ? total[1] : "?").c_str(),
              std::string(total.size() > 2 ? total[2] : "?").c_str());
  return 0;
}

}  // namespace kvfs
