// `kvfs bench`: the KV-cache clients' patterns against a kvfs mount and
// against a plain directory on the same disk, in one run, with ratios.
//
//   store      temp file + writev + rename (llm-d), ending with syncfs
//   cold load  page cache of the files (and of kvfs's extents) dropped
//   warm load  everything cached
//   lukewarm   kvfs only: extents cached, the mount's page cache dropped,
//              so every byte crosses FUSE (the FUSE data path itself)
//   small      2 MiB files (one GPU block per file): stores/s and loads/s
//   stat       existing and missing names, many threads, stats/s
//   backing    files created in the backing directory per stored file
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "kvfs/posix_file.h"
#include "tools/bench_util.h"
#include "tools/control_client.h"
#include "tools/loopback_sshfs.h"
#include "tools/page_cache_folios.h"
#include "tools/self_exec.h"
#include "tools/subcommands.h"
#include "tools/units.h"

namespace kvfs {
namespace {

namespace fs = std::filesystem;
using bench::DropCache;
using bench::FillCache;
using bench::Parallel;
using bench::SyncFs;

struct BenchConfig {
  std::string dir;
  double gib = 8;
  int file_mib = 32;
  int threads = 16;
  int small_files = 512;
  double stat_seconds = 2;
  bool sshfs = false;  // plain and backing directories on a loopback sshfs
  std::string mount_options;  // passed on to `kvfs mount`, to compare settings
  uint64_t touch_bytes = 0;   // memory touched once before measuring
};


std::string FilePath(const std::string& root, int i) {
  std::string hash = absl::StrFormat("%064x", 0x9e3779b97f4a7c15ULL * (i + 1));
  return absl::StrFormat("%s/model_0123456789ab_r0/%s/%s_g0/%s.bin", root, hash.substr(0, 3),
                         hash.substr(3, 2), hash);
}

// Time spent in each system call of the clients' sequences, summed over
// threads: where a store or a load spends its time, for both directories.
struct StepTimes {
  static constexpr const char* kNames[] = {"probe", "mkdir -p", "create", "write",
                                           "rename", "close", "open", "read"};
  std::atomic<int64_t> ns[std::size(kNames)] = {};

  // Runs `call` and adds its time to step `step`.
  template <typename Fn>
  auto Time(int step, Fn call) {
    const int64_t start = absl::GetCurrentTimeNanos();
    auto result = call();
    ns[step].fetch_add(absl::GetCurrentTimeNanos() - start, std::memory_order_relaxed);
    return result;
  }
  void Reset() {
    for (auto& n : ns) n = 0;
  }
  // "probe 12 us, mkdir -p 3 us, ..." per file, for the steps that took time.
  std::string PerFile(int files) const {
    std::string out;
    for (size_t i = 0; i < std::size(kNames); ++i) {
      if (ns[i] == 0) continue;
      absl::StrAppend(&out, out.empty() ? "" : ", ", kNames[i], " ",
                      absl::StrFormat("%.0f", ns[i] / 1e3 / files), " us");
    }
    return out;
  }
};
enum Step { kProbe, kMkdir, kCreate, kWrite, kRename, kClose, kOpen, kRead };

bool Store(const std::string& final, const std::string& data, int thread,
           StepTimes* steps) {
  int fd = steps->Time(kProbe, [&] { return ::open(final.c_str(), O_RDONLY); });  // dedup
  if (fd >= 0) {
    ::close(fd);
    return true;
  }
  steps->Time(kMkdir, [&] {
    return EnsureDirectories(final.substr(0, final.rfind('/')), 0777).ok();
  });
  std::string tmp = final + "_" + std::to_string(thread) + ".tmp";
  fd = steps->Time(kCreate,
                   [&] { return ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666); });
  if (fd < 0) return false;
  iovec iov = {const_cast<char*>(data.data()), data.size()};
  bool ok = steps->Time(kWrite, [&] { return ::writev(fd, &iov, 1); }) ==
                static_cast<ssize_t>(data.size()) &&
            steps->Time(kRename, [&] { return ::rename(tmp.c_str(), final.c_str()); }) == 0;
  steps->Time(kClose, [&] { return ::close(fd); });
  return ok;
}

bool Load(const std::string& path, std::string* buf, StepTimes* steps) {
  int fd = steps->Time(kOpen, [&] { return ::open(path.c_str(), O_RDONLY); });
  if (fd < 0) return false;
  off_t size = ::lseek(fd, 0, SEEK_END);
  buf->resize(size);
  bool ok = ::lseek(fd, 0, SEEK_SET) == 0 &&
            steps->Time(kRead, [&] { return ::read(fd, buf->data(), size); }) == size;
  steps->Time(kClose, [&] { return ::close(fd); });
  return ok;
}

size_t CountFiles(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) n += e.is_regular_file();
  return n;
}

void Row(const char* what, double plain, double kvfs, const char* unit) {
  std::printf("  %-40s plain %9.2f %s   kvfs %9.2f %s   ratio %.2f\n", what, plain, unit, kvfs,
              unit, kvfs / plain);
}

// Under the warm rows: the folios the kernel caches one file in, on each
// side. Copying out of 4 KiB folios is slower than out of large ones, and a
// FUSE mount gets large folios only from kernels that support them there.
void PrintFolios(const std::string& plain, const std::string& kvfs) {
  absl::StatusOr<FolioCensus> p = CountPageCacheFolios(plain);
  absl::StatusOr<FolioCensus> k = CountPageCacheFolios(kvfs);
  if (!p.ok() || !k.ok()) {
    std::printf("    page cache folios: not counted (%s)\n",
                std::string((p.ok() ? k : p).status().message()).c_str());
    return;
  }
  std::printf("    page cache folios of one file: plain %zu, %.0f KiB on average; kvfs %zu, %.0f "
              "KiB on average\n",
              p->folios, p->AverageKiB(), k->folios, k->AverageKiB());
}

// Seconds on each side of the comparison.
struct Pair {
  double plain = 0, kvfs = 0;
};

// Runs `side(kvfs, from, to)` on the two halves of n files in the order
// plain, kvfs, kvfs, plain, so that drift in the machine (a disk's burst
// allowance running out, caches filling) weighs on both sides alike.
template <typename Fn>
Pair Abba(int n, Fn side) {
  const int half = n / 2;
  Pair p;
  p.plain += side(false, 0, half);
  p.kvfs += side(true, 0, half);
  p.kvfs += side(true, half, n);
  p.plain += side(false, half, n);
  return p;
}

// Where the time of each file went, both sides (thread time, per file).
void Steps(const StepTimes& plain, const StepTimes& kvfs, int files) {
  std::printf("    per file, plain: %s\n", plain.PerFile(files).c_str());
  std::printf("    per file, kvfs:  %s\n", kvfs.PerFile(files).c_str());
}

int Compare(const BenchConfig& c, const std::string& plain, const std::string& backing,
            const std::string& mnt, const std::string& index);

}  // namespace

int RunBench(int argc, char** argv) {
  BenchConfig c;
  static const option kOptions[] = {{"dir", required_argument, nullptr, 'd'},
                                    {"gib", required_argument, nullptr, 'g'},
                                    {"file-mib", required_argument, nullptr, 'm'},
                                    {"threads", required_argument, nullptr, 't'},
                                    {"small-files", required_argument, nullptr, 's'},
                                    {"sshfs", no_argument, nullptr, 'n'},
                                    {"mount-options", required_argument, nullptr, 'o'},
                                    {"touch-memory", required_argument, nullptr, 'T'},
                                    {"help", no_argument, nullptr, 'h'},
                                    {nullptr, 0, nullptr, 0}};
  optind = 1;
  for (int opt; (opt = getopt_long(argc, argv, "h", kOptions, nullptr)) != -1;) {
    switch (opt) {
      case 'd': c.dir = optarg; break;
      case 'g': c.gib = std::atof(optarg); break;
      case 'm': c.file_mib = std::atoi(optarg); break;
      case 't': c.threads = std::atoi(optarg); break;
      case 's': c.small_files = std::atoi(optarg); break;
      case 'n': c.sshfs = true; break;
      case 'o': c.mount_options = optarg; break;
      case 'T': {
        std::optional<uint64_t> v = ParseSize(optarg);
        // Touching more than is free would wake the OOM killer, not warm up.
        const uint64_t free_bytes =
            static_cast<uint64_t>(::sysconf(_SC_AVPHYS_PAGES)) * ::sysconf(_SC_PAGESIZE);
        if (!v || *v > free_bytes) {
          std::fprintf(stderr,
                       "kvfs bench: --touch-memory must be a size up to the free memory "
                       "(%llu MiB), not '%s'\n",
                       static_cast<unsigned long long>(free_bytes >> 20), optarg);
          return 2;
        }
        c.touch_bytes = *v;
        break;
      }
      default:
        std::printf("usage: kvfs bench --dir DIR [--gib 8] [--file-mib 32] [--threads 16]\n"
                    "                  [--small-files 512] [--sshfs] [--mount-options OPTS]\n"
                    "                  [--touch-memory SIZE]\n\n"
                    "Mounts kvfs with its backing directory in DIR and runs the clients'\n"
                    "patterns against it and against a plain directory in DIR (same disk).\n"
                    "--sshfs puts both on a network filesystem instead: sshfs from an sshd\n"
                    "the benchmark starts on a free 127.0.0.1 port (apt-get install sshfs\n"
                    "openssh-server), kvfs's index staying local.\n"
                    "--mount-options adds OPTS to kvfs mount's command line, e.g.\n"
                    "'--readahead 8M --threads 32'.\n"
                    "--touch-memory touches SIZE of memory once before measuring (e.g. 96G\n"
                    "of 128G): a fresh virtual machine's host backs guest memory at first\n"
                    "touch, which would otherwise slow whichever side fills memory first.\n"
                    "Needs root and /dev/fuse. DIR must not be in use.\n");
        return opt == 'h' ? 0 : 2;
    }
  }
  if (c.dir.empty() || c.gib <= 0 || c.file_mib <= 0 || c.threads <= 0) {
    std::fprintf(stderr, "kvfs bench: --dir is required; sizes must be positive\n");
    return 2;
  }
  if (c.touch_bytes > 0) {
    const double seconds = bench::TouchMemory(c.touch_bytes);
    if (seconds < 0) {
      std::fprintf(stderr, "kvfs bench: cannot map %llu MiB of memory to touch\n",
                   static_cast<unsigned long long>(c.touch_bytes >> 20));
      return 1;
    }
    std::printf("kvfs bench: touched %llu MiB of memory in %.1f s\n",
                static_cast<unsigned long long>(c.touch_bytes >> 20), seconds);
  }
  if (!c.sshfs) {
    return Compare(c, c.dir + "/plain", c.dir + "/backing", c.dir + "/mnt", c.dir + "/index");
  }
  LoopbackSshfs net;
  if (absl::Status st = net.Start(c.dir + "/net"); !st.ok()) {
    std::fprintf(stderr, "kvfs bench: sshfs: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  std::printf("kvfs bench: plain one-file-per-block directory and kvfs's backing directory "
              "both on sshfs (loopback sshd at 127.0.0.1)\n");
  const int rc = Compare(c, net.mountpoint() + "/plain", net.mountpoint() + "/backing",
                         c.dir + "/mnt", c.dir + "/index");
  net.Stop();
  return rc;
}

namespace {

// The comparison: the clients' patterns on `plain` and on a kvfs mount at
// `mnt` over `backing`, in one run.
int Compare(const BenchConfig& c, const std::string& plain, const std::string& backing,
            const std::string& mnt, const std::string& index) {
  for (const std::string& d : {plain, backing, mnt}) fs::create_directories(d);
  const std::string mount = absl::StrCat(SelfPath(), " mount ", backing, " ", mnt, " --index-dir ",
                                         index, " --node-id bench ", c.mount_options);
  if (!c.mount_options.empty()) {
    std::printf("kvfs bench: mount options: %s\n", c.mount_options.c_str());
  }
  if (RunShell(mount) != 0) return 1;
  // Never measure the bare directory under a mount that is not there.
  auto mounted = [&] {
    absl::StatusOr<MountedPath> m = FindKvfsMount(mnt);
    return m.ok() && m->relative.empty();
  };
  if (!mounted()) {
    std::fprintf(stderr, "kvfs bench: no kvfs mount at %s after mounting; stopping\n",
                 mnt.c_str());
    return 1;
  }

  const size_t size = static_cast<size_t>(c.file_mib) << 20;
  const int files = std::max(1, static_cast<int>(c.gib * 1024 / c.file_mib));
  const double bytes = static_cast<double>(size) * files;
  std::string data(size, '\0');
  std::mt19937_64 gen(5);
  for (size_t i = 0; i + 8 <= size; i += 8) {
    uint64_t v = gen();
    std::memcpy(&data[i], &v, 8);
  }
  std::printf("kvfs bench: %d files of %d MiB (%.1f GiB), %d threads, in %s\n", files,
              c.file_mib, bytes / (1 << 30), c.threads, c.dir.c_str());
  std::atomic<int> errors{0};
  const size_t backing_before = CountFiles(backing);
  auto root_of = [&](bool kvfs) { return kvfs ? mnt : plain; };
  // Writes dirty pages back, then drops the cached pages of one side (of
  // kvfs: the mount's and the extents'), so that its next reads are cold.
  auto drop = [&](bool kvfs) {
    SyncFs(kvfs ? backing : plain);
    DropCache(kvfs ? mnt : plain);
    if (kvfs) DropCache(backing);
  };

  // Stores files [from, to) of the set under `root` and syncs; seconds.
  struct StoreTimes { double write = 0, sync = 0; };
  StoreTimes store_times[2];
  StepTimes store_steps[2];
  auto store = [&](const std::string& set, const std::string& payload, bool kvfs, int from,
                   int to) {
    const std::string root = root_of(kvfs) + set;
    const double write = Parallel(to - from, c.threads, [&](int i, int t) {
      if (!Store(FilePath(root, from + i), payload, t, &store_steps[kvfs])) ++errors;
    });
    const absl::Time s = absl::Now();
    SyncFs(kvfs ? backing : plain);
    const double sync = absl::ToDoubleSeconds(absl::Now() - s);
    store_times[kvfs].write += write;
    store_times[kvfs].sync += sync;
    return write + sync;
  };
  auto load = [&](const std::string& set, const std::string& expected, bool kvfs, int from,
                  int to, int threads, StepTimes* steps) {
    const std::string root = root_of(kvfs) + set;
    std::vector<std::string> bufs(threads);
    return Parallel(to - from, threads, [&](int i, int t) {
      if (!Load(FilePath(root, from + i), &bufs[t], steps) || bufs[t] != expected) ++errors;
    });
  };

  Pair st = Abba(files, [&](bool kvfs, int from, int to) {
    return store("", data, kvfs, from, to);
  });
  Row(absl::StrCat("store ", c.file_mib, " MiB files (+ syncfs), GB/s").c_str(),
      bytes / st.plain / 1e9, bytes / st.kvfs / 1e9, "  ");
  std::printf("    writes + syncfs: plain %.2f + %.2f s, kvfs %.2f + %.2f s\n",
              store_times[0].write, store_times[0].sync, store_times[1].write,
              store_times[1].sync);
  Steps(store_steps[0], store_steps[1], files);
  const size_t backing_files = CountFiles(backing) - backing_before;

  for (int threads : {1, c.threads}) {
    StepTimes cold_steps[2], unused;
    Pair cold = Abba(files, [&](bool kvfs, int from, int to) {
      drop(kvfs);
      return load("", data, kvfs, from, to, threads, &cold_steps[kvfs]);
    });
    Row(absl::StrCat("cold load, ", threads, " thread(s), GB/s").c_str(), bytes / cold.plain / 1e9,
        bytes / cold.kvfs / 1e9, "  ");
    Steps(cold_steps[0], cold_steps[1], files);
    for (bool kvfs : {false, true}) load("", data, kvfs, 0, files, threads, &unused);  // warm up
    Pair warm = Abba(files, [&](bool kvfs, int from, int to) {
      return load("", data, kvfs, from, to, threads, &unused);
    });
    Row(absl::StrCat("warm load, ", threads, " thread(s), GB/s").c_str(), bytes / warm.plain / 1e9,
        bytes / warm.kvfs / 1e9, "  ");
    if (threads == 1) PrintFolios(FilePath(root_of(false), 0), FilePath(root_of(true), 0));
    // Extents cached (cold loads read them around the page cache, so they
    // are read here), the mount not: every byte crosses FUSE.
    FillCache(backing);
    DropCache(mnt);
    const double lukewarm = load("", data, true, 0, files, threads, &unused);
    std::printf("  %-40s kvfs %9.2f GB/s (the FUSE data path)\n",
                absl::StrCat("lukewarm load, ", threads, " thread(s)").c_str(),
                bytes / lukewarm / 1e9);
  }

  // One GPU block per file.
  {
    const std::string block = data.substr(0, 2 << 20);
    const int n = c.small_files;
    for (StepTimes& steps : store_steps) steps.Reset();
    Pair small = Abba(n, [&](bool kvfs, int from, int to) {
      return store("/small", block, kvfs, from, to);
    });
    Row("store 2 MiB files (+ syncfs), files/s", n / small.plain, n / small.kvfs, "/s");
    Steps(store_steps[0], store_steps[1], n);
    StepTimes load_steps[2];
    Pair small_load = Abba(n, [&](bool kvfs, int from, int to) {
      drop(kvfs);
      return load("/small", block, kvfs, from, to, c.threads, &load_steps[kvfs]);
    });
    Row("cold load 2 MiB files, files/s", n / small_load.plain, n / small_load.kvfs, "/s");
    Steps(load_steps[0], load_steps[1], n);
  }

  // Hit checks: stat of existing and of missing names.
  for (bool missing : {false, true}) {
    auto rate = [&](const std::string& root) {
      std::atomic<uint64_t> count{0};
      std::atomic<bool> stop{false};
      std::vector<std::thread> pool;
      for (int t = 0; t < c.threads; ++t) {
        pool.emplace_back([&, t] {
          struct stat st;
          uint64_t n = 0;
          for (int i = t % files; !stop; i = (i + c.threads) % files, ++n) {
            int rc = ::stat(FilePath(root, missing ? files + i : i).c_str(), &st);
            if ((rc == 0) == missing) ++errors;
          }
          count += n;
        });
      }
      std::this_thread::sleep_for(
          std::chrono::milliseconds(static_cast<int>(c.stat_seconds * 1000)));
      stop = true;
      for (auto& th : pool) th.join();
      return count / c.stat_seconds;
    };
    Row(missing ? "stat of missing names, stats/s" : "stat of existing names, stats/s",
        rate(plain), rate(mnt), "/s");
  }
  std::printf("  backing directory: %zu files created for %d stored files (plain: one file, one "
              "rename and a temp file per store)\n",
              backing_files, files + c.small_files);

  if (!mounted()) {
    std::fprintf(stderr, "kvfs bench: the kvfs mount at %s went away during the run: its "
                 "figures are not kvfs's\n", mnt.c_str());
    return 1;
  }
  RunShell(absl::StrCat(SelfPath(), " umount ", mnt));
  if (errors > 0) {
    std::fprintf(stderr, "kvfs bench: %d operations failed or returned wrong bytes\n",
                 errors.load());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace kvfs
