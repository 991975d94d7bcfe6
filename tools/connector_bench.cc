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
  bool probe_cuda = false;
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
               "    [--chunk-mib M (4)] [--nice N (10)] [--probe-cuda]\n"
               "  8b:  32 layers, K and V, 32 KiB pages, 16 blocks = 32 MiB files\n"
               "  70b: 80 layers, K and V, 8 KiB pages, 16 blocks = 20 MiB files (TP4 shard)\n"
               "  --sync: stores end with syncfs (local disks); --cold: drop the page cache\n"
               "          before loads (needs root)\n",
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
    else if (arg == "--probe-cuda") a.probe_cuda = true;
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
  if (a.threads < 1 || a.gib <= 0) Usage("--threads and --gib must be positive");
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

struct DirFigures {
  double plain_write = 0, plain_read = 0, store = 0, load = 0;
  double submit_p50_us = 0, submit_p99_us = 0, submit_max_us = 0;
  std::vector<double> probe_us;  // a bare cudaEventRecord beside each submit
  bool ok = true;
};

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
  out.plain_write = files * static_cast<double>(shape.file_bytes()) / secs / 1e9;
  if (args.cold) DropCaches(dir);
  secs = bench::Parallel(files, args.threads, [&](int i, int t) {
    const int fd = open(FileName(dir, "plain", i).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, buffers[t].get(), shape.file_bytes()) !=
                      static_cast<ssize_t>(shape.file_bytes()))
      ok = false;
    if (fd >= 0) close(fd);
  });
  out.plain_read = files * static_cast<double>(shape.file_bytes()) / secs / 1e9;
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
  std::vector<double> submit_us;
  auto start = std::chrono::steady_clock::now();
#ifdef KVFS_CONNECTOR_CUDA
  cudaEvent_t probe = nullptr;
  if (args.probe_cuda) cudaEventCreateWithFlags(&probe, cudaEventDisableTiming);
#endif
  for (int i = 0; i < files; ++i) {
#ifdef KVFS_CONNECTOR_CUDA
    if (probe != nullptr) {
      const auto p = std::chrono::steady_clock::now();
      cudaEventRecord(probe, nullptr);
      out.probe_us.push_back(Seconds(p) * 1e6);
    }
#endif
    const auto s = std::chrono::steady_clock::now();
    if (!engine.StoreAsync(static_cast<uint64_t>(i), {requests[i]}).ok()) out.ok = false;
    submit_us.push_back(Seconds(s) * 1e6);
  }
#ifdef KVFS_CONNECTOR_CUDA
  if (probe != nullptr) cudaEventDestroy(probe);
#endif
  bool ok = WaitAll(engine, files);
  if (args.sync) SyncAll(dir);
  out.store = files * static_cast<double>(shape.file_bytes()) / Seconds(start) / 1e9;
  std::sort(submit_us.begin(), submit_us.end());
  out.submit_p50_us = submit_us[submit_us.size() / 2];
  out.submit_p99_us = submit_us[submit_us.size() * 99 / 100];
  out.submit_max_us = submit_us.back();

  if (args.cold) DropCaches(dir);
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < files; ++i)
    if (!engine.LoadAsync(static_cast<uint64_t>(files + i), {requests[i]}).ok()) out.ok = false;
  ok = WaitAll(engine, files) && ok;
  out.load = files * static_cast<double>(shape.file_bytes()) / Seconds(start) / 1e9;
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

  std::vector<DirFigures> figures;
  for (const std::string& dir : args.dirs) {
    DirFigures f;
    PlainFiles(args, dir, shape, files, f);
    ConnectorFiles(args, dir, shape, **engine, files, f);
    std::printf("%s:\n", dir.c_str());
    std::printf("  plain write%s %6.2f GB/s   connector store %6.2f GB/s  %.2fx\n",
                args.sync ? "+sync" : "     ", f.plain_write, f.store, f.store / f.plain_write);
    std::printf("  plain read%s  %6.2f GB/s   connector load  %6.2f GB/s  %.2fx\n",
                args.cold ? " cold" : "     ", f.plain_read, f.load, f.load / f.plain_read);
    std::printf("  store_async while busy: p50 %.1f us, p99 %.1f us, max %.1f us\n",
                f.submit_p50_us, f.submit_p99_us, f.submit_max_us);
    if (!f.probe_us.empty()) {
      std::sort(f.probe_us.begin(), f.probe_us.end());
      std::printf("  bare cudaEventRecord meanwhile: p50 %.1f us, p99 %.1f us, max %.1f us\n",
                  f.probe_us[f.probe_us.size() / 2], f.probe_us[f.probe_us.size() * 99 / 100],
                  f.probe_us.back());
    }
    if (!figures.empty())
      std::printf("  vs %s: store %.2fx, load %.2fx\n", args.dirs[0].c_str(),
                  f.store / figures[0].store, f.load / figures[0].load);
    figures.push_back(f);
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
