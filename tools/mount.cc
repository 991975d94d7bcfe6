// `kvfs mount BACKING MOUNTPOINT [options]` and `kvfs umount MOUNTPOINT`.
#include <fcntl.h>
#include <getopt.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "kvfs/backing_dir.h"
#include "kvfs/engine.h"
#include "kvfs/fuse_server.h"
#include "kvfs/mount_table.h"
#include "tools/subcommands.h"
#include "tools/units.h"

namespace kvfs {
namespace {

constexpr char kMountUsage[] =
    "usage: kvfs mount BACKING MOUNTPOINT [options]\n"
    "\n"
    "Serves the kvfs backing directory BACKING (any directory, shared or local;\n"
    "an empty one is initialised) as a filesystem at MOUNTPOINT.\n"
    "\n"
    "options:\n"
    "  -f, --foreground          stay in the foreground (default: detach once mounted)\n"
    "  --node-id ID              this node's id in BACKING (default: the host name)\n"
    "  --index-dir DIR           local directory of the index (default: under\n"
    "                            /var/lib/kvfs, or ~/.local/state/kvfs for non-root)\n"
    "  --threads N               FUSE worker threads (default 96); the kernel keeps\n"
    "                            at most min(2N/3, 64) readahead READs in flight\n"
    "  --readahead SIZE          kernel readahead of the mount (default 8M)\n"
    "  --extent-size SIZE        size at which extent files are sealed (default 1 GiB)\n"
    "  --attr-timeout SECONDS    kernel cache time of names and attributes (default 3600)\n"
    "  --negative-timeout SECONDS  kernel cache time of missing names (default 1)\n"
    "  --temp-grace SECONDS      how long a closed, never-renamed temp file stays (default 30)\n"
    "  --sync                    fsync data, journal and index at every commit\n"
    "  --no-write-behind         leave stored data to the kernel's periodic writeback\n"
    "                            (default: start writing it to disk at once, unawaited)\n"
    "  --cold-window SIZE        read files streamed from the disk in direct reads of\n"
    "                            SIZE, a multiple of 1M (default 8M; 0: through the\n"
    "                            backing filesystem's page cache like other reads)\n"
    "  --metrics-file PATH       also write the metrics (MOUNTPOINT/.kvfs/metrics) to\n"
    "                            PATH, atomically, e.g. for node_exporter's textfile\n"
    "                            collector (PATH should end in .prom)\n"
    "  --metrics-interval SECONDS  how often (default 5)\n"
    "  --log-file PATH           where the daemon's messages go once it has detached\n"
    "                            (default: kvfs.log in the index directory); with -f,\n"
    "                            stderr unless this is given\n"
    "\n"
    "capacity (least recently accessed files are evicted, whole rank groups at once):\n"
    "  --capacity SIZE           bytes this node may store, e.g. 500G (default: 80% of\n"
    "                            the backing filesystem's size)\n"
    "  --high-watermark PCT      start evicting above this share of the limit (default 95)\n"
    "  --low-watermark PCT       evict down to this share (default 90); both move\n"
    "                            down by what writers store in one reclaim grace\n"
    "                            period, whose space comes back only after it\n"
    "  --min-free SIZE           free space always left on the backing filesystem\n"
    "                            (default: 5% of its size)\n"
    "  --reclaim-grace SECONDS   how long an evicted or replaced file's bytes stay\n"
    "                            readable before its space is reused (default 10)\n"
    "  --space-wait SECONDS      how long a write waits for eviction to make room\n"
    "                            before it fails with ENOSPC (default 15; 0: at once)\n"
    "\n"
    "sharing BACKING with other nodes (each mounts it with its own --node-id; a second\n"
    "daemon of one node id is refused, on this machine or, through the lock file's\n"
    "heartbeat, on another):\n"
    "  --peer-poll SECONDS       how often the other nodes' journals are read for\n"
    "                            their new files and changes (default 1; 0: only at\n"
    "                            mount)\n"
    "  --access-hints SECONDS    tell the node that stored a file of reads here, at\n"
    "                            most once per file and this many seconds, so that\n"
    "                            its eviction keeps what other nodes use (default 60;\n"
    "                            0: never, access times stay local)\n"
    "\n"
    "journal:\n"
    "  --journal-compact SIZE    compact the node's journal into a checkpoint once it\n"
    "                            holds this much beyond the last one (and at least\n"
    "                            twice that checkpoint's size), e.g. 256M (the default);\n"
    "                            0: never\n"
    "  -h, --help                this text\n"
    "\n"
    "SIGTERM or SIGINT unmounts cleanly; so does 'kvfs umount MOUNTPOINT'.\n";

// Seconds: a finite number from 0 to about three years (they become int64
// nanoseconds; "inf" and "nan" parse as doubles too).
bool ParseSeconds(const char* text, double* out) {
  return absl::SimpleAtod(text, out) && *out >= 0 && *out <= 1e8;
}

// Whether `path` is `dir` or lies below it, symlinks resolved as far as the
// paths exist (both absolute).
bool IsAtOrBelow(const std::string& path, const std::string& dir) {
  std::error_code ec;
  const std::filesystem::path p = std::filesystem::weakly_canonical(path, ec);
  if (ec) return false;
  const std::filesystem::path d = std::filesystem::weakly_canonical(dir, ec);
  if (ec) return false;
  const auto d_end = std::mismatch(d.begin(), d.end(), p.begin(), p.end()).first;
  return d_end == d.end() || (std::next(d_end) == d.end() && d_end->empty());  // "dir/"
}

// The daemon reaches its backing directory, index and files by path: under
// its own mount point they would lead back into the mount, and it would
// wait on itself. A mount point inside the backing directory would put
// the mount among kvfs's own files.
std::string PathsThatCollide(const EngineOptions& engine, const MountOptions& mount,
                             const std::string& mountpoint, const std::string& log_file) {
  if (IsAtOrBelow(engine.backing_dir, mountpoint)) {
    return absl::StrCat("the backing directory ", engine.backing_dir,
                        " is the mount point or inside it: kvfs would read its own mount");
  }
  if (IsAtOrBelow(mountpoint, engine.backing_dir)) {
    return absl::StrCat("the mount point ", mountpoint, " is inside the backing directory ",
                        engine.backing_dir, ": choose one outside it");
  }
  const std::pair<const char*, std::string> own[] = {{"--index-dir", engine.index_dir},
                                                     {"--log-file", log_file},
                                                     {"--metrics-file", mount.metrics_file}};
  for (const auto& [option, path] : own) {
    if (!path.empty() && IsAtOrBelow(path, mountpoint)) {
      return absl::StrCat(option, " ", path, " is inside the mount point ", mountpoint,
                          ": kvfs would write into its own mount");
    }
  }
  return "";
}

int UsageError(const std::string& message) {
  std::fprintf(stderr, "kvfs mount: %s\n\n%s", message.c_str(), kMountUsage);
  return 2;
}

// "2026-11-22T18:40:01.123Z kvfs: LINE\n": the daemon's log lines.
std::string LogText(absl::string_view line) {
  return absl::StrCat(
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()), " kvfs: ",
      line, "\n");
}

// Log lines on stderr. Until the mount is up they are also kept, so that a
// detached daemon's log file gets what opening the engine said (a rebuild,
// a filesystem that cannot punch holes) and not only the terminal.
class StartupLog {
 public:
  void Write(absl::string_view line) {
    const std::string text = LogText(line);
    {
      std::lock_guard lock(mu_);
      if (keeping_) kept_ += text;
    }
    (void)!::write(STDERR_FILENO, text.data(), text.size());
  }
  // What was logged so far; later lines are no longer kept.
  std::string TakeKept() {
    std::lock_guard lock(mu_);
    keeping_ = false;
    return std::move(kept_);
  }

 private:
  std::mutex mu_;
  bool keeping_ = true;
  std::string kept_;
};

// Points stdout and stderr at `log_fd` and stdin at /dev/null. A daemon that
// kept the starter's terminal or pipe would hold it open for its whole life
// (`kvfs mount ... | tee`, or an ssh session, would never end).
void RedirectStdio(int log_fd) {
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd >= 0) {
    ::dup2(null_fd, STDIN_FILENO);
    ::close(null_fd);
  }
  std::fflush(stdout);
  std::fflush(stderr);
  ::dup2(log_fd, STDOUT_FILENO);
  ::dup2(log_fd, STDERR_FILENO);
  ::close(log_fd);
}

// Every extent of this node stays open, with a second descriptor once it is
// read directly (cold_reads.h): with 1 GiB extents, the usual soft limit of
// 1024 descriptors is reached at about half a terabyte, and opens would then
// fail. So the daemon takes what the hard limit allows.
void RaiseOpenFileLimit() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return;
  // The kernel refuses more than fs.nr_open (1 Mi by default).
  const rlim_t want = std::min<rlim_t>(r.rlim_max, 1 << 20);
  if (r.rlim_cur >= want) return;
  r.rlim_cur = want;
  (void)::setrlimit(RLIMIT_NOFILE, &r);
}

// Says so where even that is too low for the extents the capacity allows.
void WarnIfOpenFileLimitIsLow(Engine& engine, const std::function<void(absl::string_view)>& log) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return;
  const uint64_t extents = engine.Capacity().capacity / engine.extent_size() + 1;
  // Two per extent, and room for the index, the journal and the FUSE threads.
  const uint64_t needed = 2 * extents + 1024;
  if (r.rlim_cur >= needed) return;
  log(absl::StrCat("the open-file limit is ", r.rlim_cur, " (hard limit ", r.rlim_max,
                   "), but this node may hold ", extents, " extents, each kept open (twice "
                   "once read directly): ", needed, " descriptors; raise it (ulimit -Hn, or "
                   "LimitNOFILE= of a systemd unit) or opens will fail as the cache fills"));
}

// Opens the engine, mounts, and tells `ready_fd` (if any) "ok" or the error.
// A detached daemon (ready_fd >= 0) logs to `log_file`, by default kvfs.log
// in the index directory.
int MountAndServe(EngineOptions engine_options, const MountOptions& mount_options,
                  const std::string& mountpoint, int ready_fd, std::string log_file) {
  auto startup = std::make_shared<StartupLog>();
  engine_options.log = [startup](absl::string_view line) { startup->Write(line); };
  auto report = [&](const std::string& message) {
    if (ready_fd >= 0) {
      (void)!::write(ready_fd, message.data(), message.size());
      ::close(ready_fd);
      ready_fd = -1;
    } else if (message != "ok") {
      std::fprintf(stderr, "kvfs mount: %s\n", message.c_str());
    }
  };
  RaiseOpenFileLimit();
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(engine_options);
  if (!engine.ok()) {
    report(std::string(engine.status().message()));
    return 1;
  }
  WarnIfOpenFileLimitIsLow(**engine, engine_options.log);
  // Opened before mounting, so that a bad path fails the mount, not the log.
  int log_fd = -1;
  if (ready_fd >= 0 && log_file.empty()) log_file = (*engine)->index_dir() + "/kvfs.log";
  if (!log_file.empty()) {
    log_fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (log_fd < 0) {
      report(absl::StrCat("cannot open the log file ", log_file, ": ", std::strerror(errno)));
      return 1;
    }
  }
  FuseServer server(**engine, mount_options);
  if (absl::Status s = server.Mount(mountpoint); !s.ok()) {
    report(std::string(s.message()));
    return 1;
  }
  const std::string opening = startup->TakeKept();
  if (log_fd >= 0) {
    RedirectStdio(log_fd);
    // What opening said went to the terminal; the log keeps it too.
    (void)!::write(STDERR_FILENO, opening.data(), opening.size());
  }
  (*engine)->Log(absl::StrCat("mounted ", engine_options.backing_dir, " on ", mountpoint,
                              " (pid ", ::getpid(), ", index ", (*engine)->index_dir(), ")"));
  report("ok");
  absl::Status s = server.Serve();
  if (!s.ok()) {
    (*engine)->Log(std::string(s.message()));
    return 1;
  }
  (*engine)->Log(absl::StrCat("unmounted ", mountpoint));
  return 0;
}

}  // namespace

int RunMount(int argc, char** argv) {
  EngineOptions engine_options;
  MountOptions mount_options;
  bool foreground = false;
  std::string log_file;
  enum {
    kNode = 1000, kIndex, kThreads, kExtent, kAttr, kNegative, kGrace, kSync,
    kCapacity, kHigh, kLow, kMinFree, kReclaimGrace, kMetricsFile, kMetricsInterval,
    kReadahead, kLogFile, kNoWriteBehind, kColdWindow, kPeerPoll, kJournalCompact, kAccessHints,
    kSpaceWait
  };
  static const option kOptions[] = {
      {"foreground", no_argument, nullptr, 'f'},
      {"help", no_argument, nullptr, 'h'},
      {"node-id", required_argument, nullptr, kNode},
      {"index-dir", required_argument, nullptr, kIndex},
      {"threads", required_argument, nullptr, kThreads},
      {"extent-size", required_argument, nullptr, kExtent},
      {"readahead", required_argument, nullptr, kReadahead},
      {"attr-timeout", required_argument, nullptr, kAttr},
      {"negative-timeout", required_argument, nullptr, kNegative},
      {"temp-grace", required_argument, nullptr, kGrace},
      {"sync", no_argument, nullptr, kSync},
      {"no-write-behind", no_argument, nullptr, kNoWriteBehind},
      {"cold-window", required_argument, nullptr, kColdWindow},
      {"capacity", required_argument, nullptr, kCapacity},
      {"high-watermark", required_argument, nullptr, kHigh},
      {"low-watermark", required_argument, nullptr, kLow},
      {"min-free", required_argument, nullptr, kMinFree},
      {"reclaim-grace", required_argument, nullptr, kReclaimGrace},
      {"space-wait", required_argument, nullptr, kSpaceWait},
      {"peer-poll", required_argument, nullptr, kPeerPoll},
      {"journal-compact", required_argument, nullptr, kJournalCompact},
      {"access-hints", required_argument, nullptr, kAccessHints},
      {"metrics-file", required_argument, nullptr, kMetricsFile},
      {"metrics-interval", required_argument, nullptr, kMetricsInterval},
      {"log-file", required_argument, nullptr, kLogFile},
      {nullptr, 0, nullptr, 0}};
  optind = 1;
  for (int opt; (opt = getopt_long(argc, argv, "fh", kOptions, nullptr)) != -1;) {
    switch (opt) {
      case 'f': foreground = true; break;
      case 'h': std::fputs(kMountUsage, stdout); return 0;
      // Empty, as from an unset shell variable: not the default in disguise.
      case kNode:
        if (*optarg == '\0') return UsageError("--node-id must not be empty");
        engine_options.node_id = optarg;
        break;
      case kIndex:
        if (*optarg == '\0') return UsageError("--index-dir must not be empty");
        engine_options.index_dir = optarg;
        break;
      case kThreads:
        if (!absl::SimpleAtoi(optarg, &mount_options.threads) || mount_options.threads < 1 ||
            mount_options.threads > 1024) {
          return UsageError(absl::StrCat("--threads must be 1-1024, not '", optarg, "'"));
        }
        break;
      case kExtent:
      {
        std::optional<uint64_t> v = ParseSize(optarg);
        if (!v || *v < (64 << 10)) {
          return UsageError(absl::StrCat("--extent-size must be a size of at least 64K, not '",
                                         optarg, "'"));
        }
        engine_options.extent_bytes = *v;
        break;
      }
      case kReadahead: {
        std::optional<uint64_t> v = ParseSize(optarg);
        if (!v || *v < (4 << 10) || *v > (1ull << 30) || *v % (4 << 10) != 0) {
          return UsageError(absl::StrCat(
              "--readahead must be a multiple of 4K between 4K and 1G, not '", optarg, "'"));
        }
        mount_options.readahead_bytes = *v;
        break;
      }
      case kAttr:
        if (!ParseSeconds(optarg, &mount_options.attr_timeout)) {
          return UsageError(absl::StrCat("bad --attr-timeout '", optarg, "'"));
        }
        mount_options.entry_timeout = mount_options.attr_timeout;
        break;
      case kNegative:
        if (!ParseSeconds(optarg, &mount_options.negative_timeout)) {
          return UsageError(absl::StrCat("bad --negative-timeout '", optarg, "'"));
        }
        break;
      case kGrace:
        if (!absl::SimpleAtoi(optarg, &mount_options.temp_grace_seconds) ||
            mount_options.temp_grace_seconds < 0) {
          return UsageError(absl::StrCat("bad --temp-grace '", optarg, "'"));
        }
        break;
      case kSync: engine_options.sync_commits = true; break;
      case kNoWriteBehind: engine_options.write_behind = false; break;
      case kColdWindow: {
        std::optional<uint64_t> v = ParseSize(optarg);
        if (!v || *v % (1 << 20) != 0 || *v > (256 << 20)) {
          return UsageError(absl::StrCat(
              "--cold-window must be 0 or a multiple of 1M up to 256M, not '", optarg, "'"));
        }
        engine_options.cold_window_bytes = *v;
        break;
      }
      case kCapacity: {
        std::optional<uint64_t> v = ParseSize(optarg);
        if (!v || *v < (1 << 20)) {
          return UsageError(absl::StrCat("--capacity must be a size of at least 1M, not '",
                                         optarg, "'"));
        }
        engine_options.capacity_bytes = *v;
        break;
      }
      case kMinFree: {
        std::optional<uint64_t> v = ParseSize(optarg);
        if (!v) return UsageError(absl::StrCat("bad --min-free '", optarg, "'"));
        engine_options.min_free_bytes = *v;
        break;
      }
      case kHigh:
      case kLow: {
        std::optional<double> v = ParsePercent(optarg);
        if (!v) {
          return UsageError(absl::StrCat(opt == kHigh ? "--high" : "--low",
                                         "-watermark must be a percentage in (0, 100], not '",
                                         optarg, "'"));
        }
        (opt == kHigh ? engine_options.high_watermark : engine_options.low_watermark) = *v;
        break;
      }
      case kReclaimGrace: {
        double seconds;
        if (!ParseSeconds(optarg, &seconds)) {
          return UsageError(absl::StrCat("bad --reclaim-grace '", optarg, "'"));
        }
        engine_options.reclaim_grace_ns = static_cast<int64_t>(seconds * 1e9);
        break;
      }
      case kSpaceWait: {
        double seconds;
        if (!ParseSeconds(optarg, &seconds) || seconds > 3600) {
          return UsageError(absl::StrCat("bad --space-wait '", optarg,
                                         "': seconds between 0 and 3600"));
        }
        engine_options.space_wait_ns = static_cast<int64_t>(seconds * 1e9);
        break;
      }
      case kPeerPoll: {
        double seconds;
        if (!ParseSeconds(optarg, &seconds) || seconds > 86400) {
          return UsageError(absl::StrCat("bad --peer-poll '", optarg,
                                         "': seconds between 0 and 86400"));
        }
        engine_options.peer_poll_ns = static_cast<int64_t>(seconds * 1e9);
        break;
      }
      case kAccessHints: {
        double seconds;
        if (!ParseSeconds(optarg, &seconds) || seconds > 86400 ||
            (seconds > 0 && seconds < 1)) {
          return UsageError(absl::StrCat("bad --access-hints '", optarg,
                                         "': 0, or seconds between 1 and 86400"));
        }
        engine_options.access_hint_interval_ns = static_cast<int64_t>(seconds * 1e9);
        break;
      }
      case kJournalCompact: {
        std::optional<uint64_t> v = ParseSize(optarg);
        if (!v || (*v != 0 && *v < (uint64_t{1} << 20))) {
          return UsageError(absl::StrCat("--journal-compact must be 0 or a size of at least "
                                         "1M, not '", optarg, "'"));
        }
        engine_options.journal_compact_bytes = *v;
        break;
      }
      case kMetricsFile: {
        // Absolute: the daemon detaches and changes directory.
        std::string path = optarg;
        const size_t slash = path.find_last_of('/');
        const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
        char resolved[PATH_MAX];
        struct stat st;
        if (::realpath(dir.c_str(), resolved) == nullptr || ::stat(resolved, &st) != 0 ||
            !S_ISDIR(st.st_mode) || path.back() == '/') {
          return UsageError(absl::StrCat("--metrics-file '", optarg,
                                         "': not a file name in an existing directory"));
        }
        mount_options.metrics_file = absl::StrCat(
            resolved, "/", slash == std::string::npos ? path : path.substr(slash + 1));
        break;
      }
      case kMetricsInterval:
        if (!absl::SimpleAtoi(optarg, &mount_options.metrics_interval_seconds) ||
            mount_options.metrics_interval_seconds < 1) {
          return UsageError(absl::StrCat("--metrics-interval must be a whole number of "
                                         "seconds >= 1, not '", optarg, "'"));
        }
        break;
      case kLogFile:
        if (*optarg == '\0' || optarg[std::strlen(optarg) - 1] == '/') {
          return UsageError(absl::StrCat("--log-file '", optarg, "': not a file name"));
        }
        log_file = optarg;
        break;
      default: return UsageError("unknown option");
    }
  }
  if (argc - optind != 2) return UsageError("expected BACKING and MOUNTPOINT");
  if (engine_options.low_watermark > engine_options.high_watermark) {
    return UsageError("--low-watermark must not be above --high-watermark");
  }
  // The daemon runs in "/": relative paths are resolved here, against the
  // directory the command was started in.
  std::error_code ec;
  auto absolute = [&ec](const std::string& path) {
    return path.empty() ? path : std::filesystem::absolute(path, ec).lexically_normal().string();
  };
  engine_options.backing_dir = absolute(argv[optind]);
  const std::string mountpoint = absolute(argv[optind + 1]);
  engine_options.index_dir = absolute(engine_options.index_dir);
  mount_options.metrics_file = absolute(mount_options.metrics_file);
  log_file = absolute(log_file);
  if (ec) {
    std::fprintf(stderr, "kvfs mount: cannot resolve paths: %s\n", ec.message().c_str());
    return 1;
  }
  struct stat st;
  if (::stat(mountpoint.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    std::fprintf(stderr, "kvfs mount: mount point %s is not an existing directory\n",
                 mountpoint.c_str());
    return 1;
  }
  if (std::string why = PathsThatCollide(engine_options, mount_options, mountpoint, log_file);
      !why.empty()) {
    std::fprintf(stderr, "kvfs mount: %s\n", why.c_str());
    return 1;
  }
  if (foreground) return MountAndServe(engine_options, mount_options, mountpoint, -1, log_file);

  // Detach before the engine starts threads; the parent waits for the
  // child's word so that errors still reach the terminal and the exit code.
  int pipefd[2];
  if (::pipe(pipefd) != 0) {
    std::perror("kvfs mount: pipe");
    return 1;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("kvfs mount: fork");
    return 1;
  }
  if (pid == 0) {
    ::close(pipefd[0]);
    ::setsid();
    if (::chdir("/") != 0) _exit(1);
    int rc = MountAndServe(engine_options, mount_options, mountpoint, pipefd[1], log_file);
    _exit(rc);
  }
  ::close(pipefd[1]);
  std::string word;
  char buf[4096];
  for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof(buf))) > 0;) word.append(buf, n);
  if (word == "ok") return 0;
  std::fprintf(stderr, "kvfs mount: %s\n",
               word.empty() ? "the mount process died before mounting" : word.c_str());
  return 1;
}

namespace {

// The pid of the daemon on this host serving the kvfs mount at `mountpoint`
// (absolute): the mount table names the backing directory, and the daemon's
// node lock file there names its pid and mount point. 0 when not found.
long ServingDaemon(const std::string& mountpoint) {
  std::string root;
  for (const KvfsMount& m : ReadKvfsMounts()) {
    if (m.mountpoint == mountpoint) root = m.backing;  // the newest mount wins
  }
  if (root.empty()) return 0;
  std::optional<NodeHolder> holder = FindLocalHolderServing(root, mountpoint);
  return holder ? holder->pid : 0;
}

// Gone, or a zombie whose parent has yet to reap it (a `kvfs mount -f`
// started by a script): either way it holds nothing any more.
bool HasExited(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const size_t end_of_name = text.rfind(") ");
  return end_of_name != std::string::npos && end_of_name + 2 < text.size() &&
         text[end_of_name + 2] == 'Z';
}

// Unmounts, as root directly, otherwise through fusermount3; 0 or an errno.
int Unmount(const char* mountpoint) {
  if (::umount2(mountpoint, 0) == 0) return 0;
  const int err = errno;
  if (err != EPERM || ::access("/usr/bin/fusermount3", X_OK) != 0) return err;
  pid_t pid;
  const char* argv[] = {"fusermount3", "-u", mountpoint, nullptr};
  if (posix_spawn(&pid, "/usr/bin/fusermount3", nullptr, nullptr,
                  const_cast<char* const*>(argv), environ) != 0) {
    return err;
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : err;
}

}  // namespace

int RunUmount(int argc, char** argv) {
  if (argc != 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fprintf(argc == 2 ? stdout : stderr,
                 "usage: kvfs umount MOUNTPOINT\n\nUnmounts a kvfs mount and waits until "
                 "its daemon has finished its work\nand let go of the backing directory "
                 "(at most 60 s), so that it can be\nmounted again at once.\n");
    return argc == 2 ? 0 : 2;
  }
  // realpath fails on a mount whose daemon died (ENOTCONN): then the path
  // as given, made absolute.
  char resolved[PATH_MAX];
  std::error_code ec;
  std::string mountpoint =
      ::realpath(argv[1], resolved)
          ? std::string(resolved)
          : std::filesystem::absolute(argv[1], ec).lexically_normal().string();
  if (mountpoint.size() > 1 && mountpoint.back() == '/') mountpoint.pop_back();
  // Only kvfs: an unmount of whatever else is mounted there would succeed too.
  const std::optional<std::string> type = TopMountTypeAt(mountpoint);
  if (!type || *type != "fuse.kvfs") {
    std::fprintf(stderr, "kvfs umount: %s is %s: not unmounting it\n", argv[1],
                 type ? ("a " + *type + " mount, not a kvfs one").c_str()
                      : "not a mount point");
    return 1;
  }
  const long daemon = ServingDaemon(mountpoint);
  if (const int err = Unmount(argv[1]); err != 0) {
    std::fprintf(stderr, "kvfs umount: %s: %s\n", argv[1], std::strerror(err));
    return 1;
  }
  if (daemon <= 0) return 0;  // not known here (another kvfs, or mounted a moment ago)
  for (int i = 0; i < 6000; ++i) {
    if (HasExited(static_cast<pid_t>(daemon))) return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::fprintf(stderr,
               "kvfs umount: %s is unmounted, but its daemon (pid %ld) is still running after "
               "60 s; it holds the backing directory until it exits (see its log)\n",
               argv[1], daemon);
  return 1;
}

}  // namespace kvfs
