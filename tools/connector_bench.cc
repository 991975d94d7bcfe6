// kvfs_connector_bench: store and load GB/s of the connector for a model's KV
// cache, against the ceilings measured in the same run: pinned cudaMemcpy
// each way, and plain sequential write/read of files of the same size by the
// same number of threads into the same directory. With several --dir, the
// connector's figures are also given as ratios to the first directory's.
//
//   kvfs_connector_bench --dir /dev/shm/x [--dir /mnt/kvfs/x] [--shape 8b|70b]
//       [--threads 16] [--gib 8] [--copy auto|dma|kernel] [--memory cuda|host]
//       [--sync] [--cold]
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "connector/staging_memory.h"
#include "connector/transfer_engine.h"
#include "tools/bench_util.h"

#ifdef KVFS_CONNECTOR_CUDA
#include <cuda_runtime_api.h>
#endif

namespace kvfs::connector {
namespace {

struct Args {
  std::vector<std::string> dirs;
  std::string shape = "8b";
  int threads = 16;
  double gib = 8;
  CopyPath copy = CopyPath::kAuto;
  MemoryKind memory = MemoryKind::kCuda;
  bool sync = false;
  bool cold = false;
  double chunk_mib = 4;
  bool probe = false;
  int repeat = 3;
  int nice = 10;
};

struct Shape {
  int tensors;
  uint64_t page;
  uint32_t blocks_per_file = 16;
  uint64_t block_bytes() const { return tensors * page; }
  uint64_t file_bytes() const { return block_bytes() * blocks_per_file; }
};

[[noreturn]] void Usage(const char* error) {
  std::fprintf(stderr,
               "%s%skvfs_connector_bench --dir DIR [--dir DIR2 ...] [--shape 8b|70b] "
               "[--threads N] [--gib G]\n"
               "    [--copy auto|dma|kernel] [--memory cuda|host] [--sync] [--cold]\n"
               "    [--chunk-mib M (4)] [--nice N (10)] [--repeat R (3)] [--probe]\n"
               "  8b:  32 layers, K and V, 32 KiB pages, 16 blocks = 32 MiB files\n"
               "  70b: 80 layers, K and V, 8 KiB pages, 16 blocks = 20 MiB files (TP4 shard)\n"
               "  --sync: stores end with syncfs (local disks); --cold: drop the page cache\n"
               "          before loads (needs root); --probe: how long slow submits waited\n"
               "          for a CPU; figures are medians of R runs, alternating plain and\n"
               "          connector\n",
               error ? error : "", error ? "\n" : "");
  std::exit(2);
}

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(("missing value for " + arg).c_str());
      return argv[++i];
    };
    if (arg == "--dir") a.dirs.push_back(value());
    else if (arg == "--shape") a.shape = value();
    else if (arg == "--threads") a.threads = std::atoi(value().c_str());
    else if (arg == "--gib") a.gib = std::atof(value().c_str());
    else if (arg == "--sync") a.sync = true;
    else if (arg == "--chunk-mib") a.chunk_mib = std::atof(value().c_str());
    else if (arg == "--nice") a.nice = std::atoi(value().c_str());
    else if (arg == "--probe") a.probe = true;
    else if (arg == "--repeat") a.repeat = std::atoi(value().c_str());
    else if (arg == "--cold") a.cold = true;
    else if (arg == "--copy") {
      const std::string v = value();
      a.copy = v == "dma" ? CopyPath::kDma : v == "kernel" ? CopyPath::kKernel : CopyPath::kAuto;
      if (v != "dma" && v != "kernel" && v != "auto") Usage("--copy: auto, dma or kernel");
    } else if (arg == "--memory") {
      const std::string v = value();
      if (v != "cuda" && v != "host") Usage("--memory: cuda or host");
      a.memory = v == "cuda" ? MemoryKind::kCuda : MemoryKind::kHost;
    } else if (arg == "--help" || arg == "-h") Usage(nullptr);
    else Usage(("unknown option " + arg).c_str());
  }
  if (a.dirs.empty()) Usage("--dir is required");
  if (a.shape != "8b" && a.shape != "70b") Usage("--shape: 8b or 70b");
  if (a.threads < 1 || a.gib <= 0 || a.repeat < 1)
    Usage("--threads, --gib and --repeat must be positive");
  return a;
}

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// syncfs of the directory's filesystem, then sync(): on a kvfs mount the
// bytes are only durable once the backing filesystem has them too.
void SyncAll(const std::string& dir) {
  bench::SyncFs(dir);
  ::sync();
}

void DropCaches(const std::string& dir) {
  bench::SyncFs(dir);
  const int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
  if (fd >= 0 && write(fd, "3", 1) == 1) {
    close(fd);
    return;
  }
  if (fd >= 0) close(fd);
  bench::DropCache(dir);  // not root: at least this tree's pages
}

// The KV tensors: one allocation per tensor, blocks contiguous.
class Tensors {
 public:
  Tensors(MemoryKind memory, const Shape& shape, uint64_t blocks) : memory_(memory) {
    for (int t = 0; t < shape.tensors; ++t) {
      void* p = nullptr;
      const uint64_t bytes = shape.page * blocks;
#ifdef KVFS_CONNECTOR_CUDA
      if (memory == MemoryKind::kCuda) {
        if (cudaMalloc(&p, bytes) != cudaSuccess) Fail("cudaMalloc of the KV tensors failed");
        cudaMemset(p, t + 1, bytes);
      }
#endif
      if (memory == MemoryKind::kHost) {
        p = std::aligned_alloc(4096, bytes);
        if (p == nullptr) Fail("allocation of the KV tensors failed");
        std::memset(p, t + 1, bytes);
      }
      group_.tensors.push_back(TensorDesc{reinterpret_cast<uint64_t>(p), shape.page, shape.page,
                                          blocks});
    }
  }
  ~Tensors() {
    for (const TensorDesc& d : group_.tensors) {
#ifdef KVFS_CONNECTOR_CUDA
      if (memory_ == MemoryKind::kCuda) cudaFree(reinterpret_cast<void*>(d.base));
#endif
      if (memory_ == MemoryKind::kHost) std::free(reinterpret_cast<void*>(d.base));
    }
  }
  const KvGroup& group() const { return group_; }
  [[noreturn]] static void Fail(const char* what) {
    std::fprintf(stderr, "kvfs_connector_bench: %s\n", what);
    std::exit(1);
  }

 private:
  MemoryKind memory_;
  KvGroup group_;
};

void PrintCopyCeilings() {
#ifdef KVFS_CONNECTOR_CUDA
  const uint64_t bytes = 256ull << 20;
  void* device = nullptr;
  void* host = nullptr;
  if (cudaMalloc(&device, bytes) != cudaSuccess || cudaMallocHost(&host, bytes) != cudaSuccess) {
    std::printf("ceiling: pinned cudaMemcpy unavailable\n");
    return;
  }
  auto measure = [&](cudaMemcpyKind kind) {
    cudaMemcpy(kind == cudaMemcpyDeviceToHost ? host : device,
               kind == cudaMemcpyDeviceToHost ? device : host, bytes, kind);  // warm-up
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 8; ++i)
      cudaMemcpy(kind == cudaMemcpyDeviceToHost ? host : device,
                 kind == cudaMemcpyDeviceToHost ? device : host, bytes, kind);
    return 8.0 * bytes / Seconds(start) / 1e9;
  };
  std::printf("ceiling: pinned cudaMemcpy 256 MiB: GPU->host %.1f GB/s, host->GPU %.1f GB/s\n",
              measure(cudaMemcpyDeviceToHost), measure(cudaMemcpyHostToDevice));
  cudaFree(device);
  cudaFreeHost(host);
#endif
}

// Every repetition's figures; the report gives medians.
struct DirFigures {
  std::vector<double> plain_write, plain_read, store, load;
  std::vector<double> submit_us;     // every store_async call
  std::vector<double> run_delay_us;  // of those: time spent waiting for a CPU
  bool ok = true;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double Percentile(std::vector<double> v, int p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, v.size() * p / 100)];
}

// This thread's time spent runnable but not running (Linux schedstat), in us.
double RunDelayUs() {
  std::FILE* f = std::fopen("/proc/thread-self/schedstat", "r");
  unsigned long long cpu = 0, wait = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "%llu %llu", &cpu, &wait) != 2) wait = 0;
    std::fclose(f);
  }
  return static_cast<double>(wait) / 1e3;
}

std::string FileName(const std::string& dir, const std::string& kind, int i) {
  char hash[32];
  std::snprintf(hash, sizeof(hash), "%016llx", 0x9e3779b97f4a7c15ULL * (i + 1));
  return absl::StrCat(dir, "/", kind, "_r0/", std::string(hash, 3), "/", std::string(hash + 3, 2),
                      "_g0/", hash, ".bin");
}

// Plain files: each thread writes whole files with one write() from its own
// buffer (or reads them with one read()), the ceiling for the connector.
void PlainFiles(const Args& args, const std::string& dir, const Shape& shape, int files,
                DirFigures& out) {
  std::vector<MappedBuffer> buffers;
  for (int t = 0; t < args.threads; ++t) {
    absl::StatusOr<MappedBuffer> b = AllocatePrefaulted(shape.file_bytes(), -1);
    if (!b.ok()) Tensors::Fail("staging for plain files");
    std::memset(b->get(), t + 1, shape.file_bytes());
    buffers.push_back(std::move(*b));
  }
  std::atomic<bool> ok{true};
  auto write_all = [&] {
    return bench::Parallel(files, args.threads, [&](int i, int t) {
      const std::string path = FileName(dir, "plain", i);
      if (!MakeParentDirectories(path).ok()) ok = false;
      const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0 || write(fd, buffers[t].get(), shape.file_bytes()) !=
                        static_cast<ssize_t>(shape.file_bytes()))
        ok = false;
      if (fd >= 0) close(fd);
    });
  };
  // A first pass warms what the connector will find warm too (the
  // filesystem's free pages and directories); the second is measured.
  write_all();
  if (args.sync) SyncAll(dir);
  std::filesystem::remove_all(dir + "/plain_r0");
  double secs = write_all();
  if (args.sync) {
    const auto start = std::chrono::steady_clock::now();
    SyncAll(dir);
    secs += Seconds(start);
  }
  out.plain_write.push_back(files * static_cast<double>(shape.file_bytes()) / secs / 1e9);
  if (args.cold) DropCaches(dir);
  secs = bench::Parallel(files, args.threads, [&](int i, int t) {
    const int fd = open(FileName(dir, "plain", i).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, buffers[t].get(), shape.file_bytes()) !=
                      static_cast<ssize_t>(shape.file_bytes()))
      ok = false;
    if (fd >= 0) close(fd);
  });
  out.plain_read.push_back(files * static_cast<double>(shape.file_bytes()) / secs / 1e9);
  if (!ok) {
    std::printf("  plain files in %s: I/O failed\n", dir.c_str());
    out.ok = false;
  }
  std::filesystem::remove_all(dir + "/plain_r0");
}

bool WaitAll(TransferEngine& engine, int jobs) {
  int done = 0;
  bool ok = true;
  while (done < jobs) {
    for (const JobResult& r : engine.GetFinished()) {
      ++done;
      ok = ok && r.success;
    }
    if (done < jobs) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return ok;
}

void ConnectorFiles(const Args& args, const std::string& dir, const Shape& shape,
                    TransferEngine& engine, int files, DirFigures& out) {
  // One job per file, all submitted at once: the queue is full and every I/O
  // thread busy while most submits happen, the case that must not block.
  std::vector<FileRequest> requests;
  for (int i = 0; i < files; ++i) {
    std::vector<int64_t> ids;
    for (uint32_t b = 0; b < shape.blocks_per_file; ++b)
      ids.push_back(static_cast<int64_t>(i) * shape.blocks_per_file + b);
    requests.push_back(FileRequest{FileName(dir, "kv", i), 0, ids, 0});
  }
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < files; ++i) {
    const double delay = args.probe ? RunDelayUs() : 0;
    const auto s = std::chrono::steady_clock::now();
    if (!engine.StoreAsync(static_cast<uint64_t>(i), {requests[i]}).ok()) out.ok = false;
    out.submit_us.push_back(Seconds(s) * 1e6);
    if (args.probe) out.run_delay_us.push_back(RunDelayUs() - delay);
  }
  bool ok = WaitAll(engine, files);
  if (args.sync) SyncAll(dir);
  out.store.push_back(files * static_cast<double>(shape.file_bytes()) / Seconds(start) / 1e9);

  if (args.cold) DropCaches(dir);
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < files; ++i)
    if (!engine.LoadAsync(static_cast<uint64_t>(files + i), {requests[i]}).ok()) out.ok = false;
  ok = WaitAll(engine, files) && ok;
  out.load.push_back(files * static_cast<double>(shape.file_bytes()) / Seconds(start) / 1e9);
  if (!ok) {
    std::printf("  connector jobs in %s failed (see the log above)\n", dir.c_str());
    out.ok = false;
  }
  std::filesystem::remove_all(dir + "/kv_r0");
}

int Run(int argc, char** argv) {
  const Args args = Parse(argc, argv);
  const Shape shape = args.shape == "8b" ? Shape{64, 32 << 10} : Shape{160, 8 << 10};
  const int files = std::max<int>(
      1, static_cast<int>(args.gib * (1ull << 30) / static_cast<double>(shape.file_bytes())));
  std::printf("shape %s: %d tensors x %llu KiB pages, %llu MiB files, %d files (%.1f GiB), "
              "%d threads%s%s\n",
              args.shape.c_str(), shape.tensors,
              static_cast<unsigned long long>(shape.page >> 10),
              static_cast<unsigned long long>(shape.file_bytes() >> 20), files,
              files * static_cast<double>(shape.file_bytes()) / (1ull << 30), args.threads,
              args.sync ? ", stores end with syncfs" : "", args.cold ? ", cold loads" : "");
  if (args.memory == MemoryKind::kCuda) PrintCopyCeilings();

  Tensors tensors(args.memory, shape, static_cast<uint64_t>(files) * shape.blocks_per_file);
  absl::StatusOr<KvLayout> layout = KvLayout::Create({tensors.group()}, shape.blocks_per_file);
  if (!layout.ok()) Tensors::Fail(std::string(layout.status().message()).c_str());
  EngineOptions options;
  options.threads = args.threads;
  options.copy.memory = args.memory;
  options.copy.path = args.copy;
  options.max_queued_stores = static_cast<size_t>(files) + 1;
  options.chunk_bytes = static_cast<uint64_t>(args.chunk_mib * (1 << 20));
  options.worker_nice = args.nice;
  const auto setup = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<TransferEngine>> engine =
      TransferEngine::Create(std::move(*layout), options);
  if (!engine.ok()) Tensors::Fail(std::string(engine.status().message()).c_str());
  std::printf("engine: %s (set-up %.2f s)\n", (*engine)->Describe().c_str(), Seconds(setup));

  std::vector<DirFigures> figures(args.dirs.size());
  for (int rep = 0; rep < args.repeat; ++rep) {
    for (size_t d = 0; d < args.dirs.size(); ++d) {
      PlainFiles(args, args.dirs[d], shape, files, figures[d]);
      ConnectorFiles(args, args.dirs[d], shape, **engine, files, figures[d]);
    }
  }
  std::printf("medians of %d runs:\n", args.repeat);
  for (size_t d = 0; d < args.dirs.size(); ++d) {
    const DirFigures& f = figures[d];
    const double write = Median(f.plain_write), read = Median(f.plain_read);
    const double store = Median(f.store), load = Median(f.load);
    std::printf("%s:\n", args.dirs[d].c_str());
    std::printf("  plain write%s %6.2f GB/s   connector store %6.2f GB/s  %.2fx\n",
                args.sync ? "+sync" : "     ", write, store, store / write);
    std::printf("  plain read%s  %6.2f GB/s   connector load  %6.2f GB/s  %.2fx\n",
                args.cold ? " cold" : "     ", read, load, load / read);
    std::printf("  store_async while busy (%zu calls): p50 %.1f us, p99 %.1f us, max %.1f us\n",
                f.submit_us.size(), Percentile(f.submit_us, 50), Percentile(f.submit_us, 99),
                Percentile(f.submit_us, 100));
    if (!f.run_delay_us.empty())
      std::printf("    of which waiting for a CPU: p99 %.1f us, max %.1f us\n",
                  Percentile(f.run_delay_us, 99), Percentile(f.run_delay_us, 100));
    if (d > 0)
      std::printf("  vs %s: store %.2fx, load %.2fx\n", args.dirs[0].c_str(),
                  store / Median(figures[0].store), load / Median(figures[0].load));
  }
  const EngineCounters c = (*engine)->counters();
  std::printf("counters: %llu stores, %llu loads, %llu dropped, %llu failures\n",
              static_cast<unsigned long long>(c.stores_written),
              static_cast<unsigned long long>(c.loads_done),
              static_cast<unsigned long long>(c.stores_dropped),
              static_cast<unsigned long long>(c.store_failures + c.load_failures));
  for (const DirFigures& f : figures)
    if (!f.ok) return 1;
  return 0;
}

}  // namespace
}  // namespace kvfs::connector

int main(int argc, char** argv) { return kvfs::connector::Run(argc, argv); }
