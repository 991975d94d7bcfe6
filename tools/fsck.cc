// `kvfs fsck BACKING [--repair] [--verify-data] [--json]`: is the node's part
// of the backing directory healthy? Exit codes as e2fsck's: 0 clean, 1 errors
// corrected, 4 errors left uncorrected, 8 operational error.
#include <getopt.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "kvfs/fsck.h"
#include "tools/control_client.h"
#include "tools/json.h"
#include "tools/subcommands.h"

namespace kvfs {
namespace {

constexpr char kFsckUsage[] =
    "usage: kvfs fsck BACKING [options]\n"
    "\n"
    "Checks one node's part of a kvfs backing directory: the format file, every\n"
    "journal entry, every record of every extent, and the node's index against\n"
    "them; finds orphan temp files, records no file uses, dead space, and stray\n"
    "or foreign files (reported, never touched). Checking is read-only and may\n"
    "run while the node is mounted; --repair needs it unmounted.\n"
    "\n"
    "options:\n"
    "  --repair          rebuild the index from the journal and extents when it is\n"
    "                    wrong, remove orphan temp files and files whose data fails\n"
    "                    its checksums; never deletes a valid record\n"
    "  --verify-data     also read every file and check every chunk checksum\n"
    "  --json            print a machine-readable summary on stdout\n"
    "  --node-id ID      the node to check (default: the host name, as kvfs mount)\n"
    "  --index-dir DIR   its index (default: as kvfs mount)\n"
    "  -h, --help        this text\n"
    "\n"
    "exit status: 0 clean, 1 errors corrected, 4 errors left uncorrected,\n"
    "8 operational error (not a backing directory, unreadable, mounted for --repair)\n";

int UsageError(const std::string& message) {
  std::fprintf(stderr, "kvfs fsck: %s\n\n%s", message.c_str(), kFsckUsage);
  return 8;
}

const char* SeverityName(FsckSeverity s) {
  switch (s) {
    case FsckSeverity::kError: return "error";
    case FsckSeverity::kWarning: return "warning";
    case FsckSeverity::kInfo: return "info";
  }
  return "?";
}

// A one-line progress bar on stderr, redrawn at most 10 times a second.
class ProgressBar {
 public:
  void Update(const FsckProgress& p) {
    const int64_t now = absl::GetCurrentTimeNanos();
    if (phase_ != p.phase) {
      phase_ = p.phase;
      phase_start_ = now;
    }
    if (now - last_draw_ < 100'000'000 && p.done_files != p.total_files) return;
    last_draw_ = now;
    const double seconds = static_cast<double>(now - phase_start_) / 1e9;
    std::string line = absl::StrFormat("%-8s %llu/%llu files", p.phase,
                                       static_cast<unsigned long long>(p.done_files),
                                       static_cast<unsigned long long>(p.total_files));
    if (p.total_bytes > 0) {
      const double rate = seconds > 0 ? static_cast<double>(p.done_bytes) / seconds : 0;
      absl::StrAppend(&line, ", ", HumanBytes(p.done_bytes), "/", HumanBytes(p.total_bytes),
                      ", ", HumanBytes(static_cast<uint64_t>(rate)), "/s");
      if (rate > 0 && p.done_bytes < p.total_bytes) {
        absl::StrAppendFormat(&line, ", %.0fs left",
                              static_cast<double>(p.total_bytes - p.done_bytes) / rate);
      }
    }
    std::fprintf(stderr, "\r%-79s", line.c_str());
    drawn_ = true;
  }
  void Finish() {
    if (drawn_) std::fprintf(stderr, "\r%79s\r", "");
  }

 private:
  std::string phase_;
  int64_t phase_start_ = 0, last_draw_ = 0;
  bool drawn_ = false;
};

void PrintJson(const std::string& backing, const FsckReport& r) {
  const FsckTotals& t = r.totals;
  std::printf("{\"backing\": %s, \"exit_code\": %d, \"live_mount\": %s, ",
              JsonString(backing).c_str(), r.exit_code, r.live_mount ? "true" : "false");
  std::printf("\"errors\": %llu, \"warnings\": %llu, ",
              static_cast<unsigned long long>(r.Count(FsckSeverity::kError)),
              static_cast<unsigned long long>(r.Count(FsckSeverity::kWarning)));
  std::printf("\"files\": %lu, \"dirs\": %lu, \"logical_bytes\": %lu, \"extents\": %lu, "
              "\"extent_bytes\": %lu, \"records\": %lu, \"live_records\": %lu, "
              "\"unreferenced_records\": %lu, \"unreferenced_bytes\": %lu, \"dead_bytes\": %lu, "
              "\"journal_files\": %lu, \"journal_entries\": %lu, \"orphan_temp_files\": %lu, "
              "\"verified_bytes\": %lu, ",
              t.files, t.dirs, t.logical_bytes, t.extents, t.extent_bytes, t.records,
              t.live_records, t.unreferenced_records, t.unreferenced_bytes, t.dead_bytes,
              t.journal_files, t.journal_entries, t.orphan_temp_files, t.verified_bytes);
  std::printf("\"findings\": [");
  for (size_t i = 0; i < r.findings.size(); ++i) {
    const FsckFinding& f = r.findings[i];
    std::printf("%s{\"severity\": \"%s\", \"kind\": %s, \"message\": %s}", i ? ", " : "",
                SeverityName(f.severity), JsonString(f.kind).c_str(),
                JsonString(f.message).c_str());
  }
  std::printf("], \"repairs\": [");
  for (size_t i = 0; i < r.repairs.size(); ++i) {
    std::printf("%s%s", i ? ", " : "", JsonString(r.repairs[i]).c_str());
  }
  std::printf("]}\n");
}

void PrintText(const std::string& backing, const FsckReport& r) {
  for (const std::string& line : r.repairs) std::printf("repaired: %s\n", line.c_str());
  for (const FsckFinding& f : r.findings) {
    std::printf("%s: %s: %s\n", SeverityName(f.severity), f.kind.c_str(), f.message.c_str());
  }
  const FsckTotals& t = r.totals;
  std::printf("%s%s: %lu files (%s), %lu directories, %lu extents (%s, %s dead), "
              "%lu journal entries",
              backing.c_str(), r.live_mount ? " (mounted: checked read-only)" : "", t.files,
              HumanBytes(t.logical_bytes).c_str(), t.dirs, t.extents,
              HumanBytes(t.extent_bytes).c_str(), HumanBytes(t.dead_bytes).c_str(),
              t.journal_entries);
  if (t.verified_bytes > 0) std::printf(", %s verified", HumanBytes(t.verified_bytes).c_str());
  const uint64_t errors = r.Count(FsckSeverity::kError);
  std::printf("\n%s\n", r.exit_code == 0   ? "clean"
                        : r.exit_code == 1 ? "errors corrected; clean now"
                                           : absl::StrCat(errors, " errors left").c_str());
}

}  // namespace

int RunFsck(int argc, char** argv) {
  FsckOptions options;
  bool json = false;
  enum { kRepair = 1000, kVerify, kJson, kNode, kIndex };
  static const option kOptions[] = {{"repair", no_argument, nullptr, kRepair},
                                    {"verify-data", no_argument, nullptr, kVerify},
                                    {"json", no_argument, nullptr, kJson},
                                    {"node-id", required_argument, nullptr, kNode},
                                    {"index-dir", required_argument, nullptr, kIndex},
                                    {"help", no_argument, nullptr, 'h'},
                                    {nullptr, 0, nullptr, 0}};
  optind = 1;
  for (int opt; (opt = getopt_long(argc, argv, "h", kOptions, nullptr)) != -1;) {
    switch (opt) {
      case 'h': std::fputs(kFsckUsage, stdout); return 0;
      case kRepair: options.repair = true; break;
      case kVerify: options.verify_data = true; break;
      case kJson: json = true; break;
      case kNode:
        if (*optarg == '\0') return UsageError("--node-id must not be empty");
        options.node_id = optarg;
        break;
      case kIndex:
        if (*optarg == '\0') return UsageError("--index-dir must not be empty");
        options.index_dir = optarg;
        break;
      default: return UsageError("unknown option");
    }
  }
  if (argc - optind != 1) return UsageError("expected BACKING");
  options.backing_dir = argv[optind];
  ProgressBar bar;
  if (::isatty(STDERR_FILENO)) {
    options.progress = [&](const FsckProgress& p) { bar.Update(p); };
  }
  options.log = [](const std::string& line) {
    std::fprintf(stderr, "kvfs fsck: %s\n", line.c_str());
  };
  absl::StatusOr<FsckReport> report = RunFsck(options);
  bar.Finish();
  if (!report.ok()) {
    std::fprintf(stderr, "kvfs fsck: %s\n", std::string(report.status().message()).c_str());
    if (json) {
      std::printf("{\"backing\": %s, \"exit_code\": 8, \"error\": %s}\n",
                  JsonString(options.backing_dir).c_str(),
                  JsonString(report.status().message()).c_str());
    }
    return 8;
  }
  if (json) {
    PrintJson(options.backing_dir, *report);
  } else {
    PrintText(options.backing_dir, *report);
  }
  return report->exit_code;
}

}  // namespace kvfs
