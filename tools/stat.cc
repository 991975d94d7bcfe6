// `kvfs stat MOUNTPOINT [--json] [--watch SECONDS]`: is the cache working?
// Reads the daemon's metrics (MOUNTPOINT/.kvfs/metrics, Prometheus text) and
// shows them for people; --watch redraws in place, with rates.
#include <getopt.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "kvfs/control_files.h"
#include "tools/control_client.h"
#include "tools/json.h"
#include "tools/subcommands.h"

namespace kvfs {
namespace {

constexpr char kStatUsage[] =
    "usage: kvfs stat MOUNTPOINT [options]\n"
    "\n"
    "Shows a mounted kvfs's capacity, use, files, lookups (hits and misses), opens,\n"
    "bytes read and written, stores, evictions, checksum errors, temp files\n"
    "reclaimed, latencies and uptime, from MOUNTPOINT/.kvfs/metrics.\n"
    "\n"
    "options:\n"
    "  --json             one JSON object (all the metrics, by name)\n"
    "  --watch SECONDS    redraw every SECONDS, with rates, until interrupted\n"
    "  -h, --help         this text\n";

int UsageError(const std::string& message) {
  std::fprintf(stderr, "kvfs stat: %s\n\n%s", message.c_str(), kStatUsage);
  return 2;
}

// Sample name (labels included, e.g. x_bucket{le="0.001"}) -> value.
using Samples = std::map<std::string, double>;

absl::StatusOr<Samples> ParseExposition(absl::string_view text) {
  Samples out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    double v;
    if (space == absl::string_view::npos || !absl::SimpleAtod(line.substr(space + 1), &v)) {
      return absl::DataLossError(absl::StrCat("malformed metrics line '", line, "'"));
    }
    out[std::string(line.substr(0, space))] = v;
  }
  return out;
}

double Get(const Samples& s, const std::string& name) {
  auto it = s.find(name);
  return it == s.end() ? 0 : it->second;
}

// The upper bound of the bucket holding quantile q of a histogram.
std::string Quantile(const Samples& s, const std::string& family, double q) {
  const double count = Get(s, family + "_count");
  if (count == 0) return "-";
  std::vector<std::pair<double, double>> buckets;  // (le, cumulative)
  const std::string prefix = family + "_bucket{le=\"";
  for (auto it = s.lower_bound(prefix); it != s.end() && it->first.rfind(prefix, 0) == 0;
       ++it) {
    std::string le = it->first.substr(prefix.size());
    le = le.substr(0, le.find('"'));
    double bound;
    if (le == "+Inf" || !absl::SimpleAtod(le, &bound)) continue;
    buckets.emplace_back(bound, it->second);
  }
  std::sort(buckets.begin(), buckets.end());
  for (const auto& [bound, cumulative] : buckets) {
    if (cumulative >= q * count) {
      return bound < 1e-3 ? absl::StrFormat("<=%.0fus", bound * 1e6)
             : bound < 1  ? absl::StrFormat("<=%.1fms", bound * 1e3)
                          : absl::StrFormat("<=%.0fs", bound);
    }
  }
  return absl::StrFormat(">%.0fs", buckets.empty() ? 0.0 : buckets.back().first);
}

std::string Bytes(double v) { return HumanBytes(static_cast<uint64_t>(v)); }

std::string Duration(double seconds) {
  const uint64_t s = static_cast<uint64_t>(seconds);
  if (s >= 86400) return absl::StrFormat("%ud %uh %um", s / 86400, s % 86400 / 3600, s % 3600 / 60);
  if (s >= 3600) return absl::StrFormat("%uh %um %us", s / 3600, s % 3600 / 60, s % 60);
  return absl::StrFormat("%um %us", s / 60, s % 60);
}

std::string Render(const std::string& mount, const Samples& s, const Samples* before,
                   double interval) {
  auto rate = [&](const std::string& name, bool bytes) -> std::string {
    if (before == nullptr || interval <= 0) return "";
    const double r = (Get(s, name) - Get(*before, name)) / interval;
    return bytes ? absl::StrCat("  (", Bytes(r), "/s)") : absl::StrFormat("  (%.0f/s)", r);
  };
  const double limit = Get(s, "kvfs_limit_bytes"), used = Get(s, "kvfs_used_bytes");
  std::string out;
  absl::StrAppend(&out, "kvfs at ", mount, ", up ", Duration(Get(s, "kvfs_uptime_seconds")),
                  "\n");
  absl::StrAppend(&out, "state             ",
                  Get(s, "kvfs_read_only") > 0
                      ? "READ-ONLY: a failure (the daemon's log says which) stopped every "
                        "change until kvfs is mounted again; reads go on"
                      : "ok",
                  "\n");
  absl::StrAppendFormat(&out, "capacity          %s (limit %s)\n",
                        Bytes(Get(s, "kvfs_capacity_bytes")), Bytes(limit));
  absl::StrAppendFormat(&out, "used              %s (%.1f%% of the limit), %s reclaimable\n",
                        Bytes(used), limit > 0 ? 100 * used / limit : 0.0,
                        Bytes(Get(s, "kvfs_reclaimable_bytes")));
  absl::StrAppendFormat(&out,
                        "room for writes   %s (kept free for one grace period's stores); "
                        "%.0f writes waited for room, %.0f refused\n",
                        Bytes(Get(s, "kvfs_write_room_bytes")),
                        Get(s, "kvfs_space_waits_total"), Get(s, "kvfs_space_refusals_total"));
  absl::StrAppendFormat(&out, "files             %.0f\n", Get(s, "kvfs_files"));
  absl::StrAppendFormat(&out, "lookups           %.0f (hits %.0f, misses %.0f)%s\n",
                        Get(s, "kvfs_lookups_total"), Get(s, "kvfs_lookup_hits_total"),
                        Get(s, "kvfs_lookup_misses_total"), rate("kvfs_lookups_total", false));
  absl::StrAppendFormat(&out, "opens             %.0f%s\n", Get(s, "kvfs_opens_total"),
                        rate("kvfs_opens_total", false));
  absl::StrAppendFormat(&out, "read              %s%s\n", Bytes(Get(s, "kvfs_read_bytes_total")),
                        rate("kvfs_read_bytes_total", true));
  absl::StrAppendFormat(&out, "written           %s%s\n",
                        Bytes(Get(s, "kvfs_written_bytes_total")),
                        rate("kvfs_written_bytes_total", true));
  absl::StrAppendFormat(&out, "stores            %.0f (failed %.0f)%s\n",
                        Get(s, "kvfs_stores_total"), Get(s, "kvfs_store_failures_total"),
                        rate("kvfs_stores_total", false));
  absl::StrAppendFormat(&out, "evictions         %.0f files, %s\n",
                        Get(s, "kvfs_evicted_files_total"),
                        Bytes(Get(s, "kvfs_evicted_bytes_total")));
  absl::StrAppendFormat(&out, "other nodes       %.0f changes followed, %.0f files added, "
                        "%.0f of ours replaced\n",
                        Get(s, "kvfs_peer_entries_total"), Get(s, "kvfs_peer_files_total"),
                        Get(s, "kvfs_peer_superseded_total"));
  absl::StrAppendFormat(&out, "access hints      %.0f sent (reads of theirs), %.0f applied "
                        "(their reads of ours)\n",
                        Get(s, "kvfs_access_hints_sent_total"),
                        Get(s, "kvfs_access_hints_applied_total"));
  absl::StrAppendFormat(&out, "journal           %.0f compactions (last checkpoint %.0f entries), "
                        "%.0f checkpoints of other nodes read\n",
                        Get(s, "kvfs_journal_checkpoints_total"),
                        Get(s, "kvfs_journal_checkpoint_entries"),
                        Get(s, "kvfs_peer_checkpoints_total"));
  absl::StrAppendFormat(&out, "checksum errors   %.0f\n", Get(s, "kvfs_checksum_errors_total"));
  absl::StrAppendFormat(&out, "I/O errors        %.0f\n", Get(s, "kvfs_io_errors_total"));
  absl::StrAppendFormat(&out, "temp files reclaimed %.0f\n",
                        Get(s, "kvfs_temp_files_reclaimed_total"));
  for (const char* what : {"lookup", "load", "store"}) {
    const std::string family = absl::StrCat("kvfs_", what, "_latency_seconds");
    absl::StrAppendFormat(&out, "%-6s latency    p50 %s  p99 %s  (%.0f timed)\n", what,
                          Quantile(s, family, 0.5), Quantile(s, family, 0.99),
                          Get(s, family + "_count"));
  }
  return out;
}

std::string RenderJson(const std::string& mount, const Samples& s) {
  std::string out = absl::StrCat("{\"mountpoint\": ", JsonString(mount));
  for (const auto& [name, value] : s) {
    if (name.find('{') != std::string::npos) continue;  // histogram buckets
    absl::StrAppend(&out, ", ", JsonString(name), ": ", absl::StrFormat("%.17g", value));
  }
  out += "}\n";
  return out;
}

}  // namespace

int RunStat(int argc, char** argv) {
  bool json = false;
  double watch = 0;
  enum { kJson = 1000, kWatch };
  static const option kOptions[] = {{"json", no_argument, nullptr, kJson},
                                    {"watch", required_argument, nullptr, kWatch},
                                    {"help", no_argument, nullptr, 'h'},
                                    {nullptr, 0, nullptr, 0}};
  optind = 1;
  for (int opt; (opt = getopt_long(argc, argv, "h", kOptions, nullptr)) != -1;) {
    switch (opt) {
      case 'h': std::fputs(kStatUsage, stdout); return 0;
      case kJson: json = true; break;
      case kWatch:
        if (!absl::SimpleAtod(optarg, &watch) || watch <= 0) {
          return UsageError(absl::StrCat("bad --watch '", optarg, "'"));
        }
        break;
      default: return UsageError("unknown option");
    }
  }
  if (argc - optind != 1) return UsageError("expected MOUNTPOINT");
  const std::string mount = argv[optind];
  Samples before;
  bool have_before = false;
  while (true) {
    absl::StatusOr<std::string> text = ReadControlFile(mount, kMetricsFileName);
    absl::StatusOr<Samples> samples =
        text.ok() ? ParseExposition(*text) : absl::StatusOr<Samples>(text.status());
    if (!samples.ok()) {
      std::fprintf(stderr, "kvfs stat: %s\n", std::string(samples.status().message()).c_str());
      return 1;
    }
    if (json) {
      std::fputs(RenderJson(mount, *samples).c_str(), stdout);
    } else {
      if (watch > 0) std::fputs("\033[H\033[2J", stdout);  // home, clear: redraw in place
      std::fputs(Render(mount, *samples, have_before ? &before : nullptr, watch).c_str(),
                 stdout);
    }
    std::fflush(stdout);
    if (watch <= 0) return 0;
    before = *std::move(samples);
    have_before = true;
    std::this_thread::sleep_for(std::chrono::duration<double>(watch));
  }
}

}  // namespace kvfs
