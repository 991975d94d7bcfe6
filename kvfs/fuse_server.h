// The FUSE filesystem over the engine (libfuse3 low-level API): every
// operation the KV-cache clients use, errno at this edge. Files being written
// live in an in-memory table (they are not in the index until committed);
// a rename of such a file commits it under the new name, which is what makes
// the llm-d client's rename-while-open publish complete data.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "kvfs/engine.h"
#include "kvfs/metrics.h"

struct fuse_session;

namespace kvfs {

struct MountOptions {
  double entry_timeout = 3600;   // committed names and files never change in place
  double attr_timeout = 3600;
  double negative_timeout = 1;   // peers publish new files at any time
  unsigned threads = 96;         // FUSE worker threads
  // Kernel readahead of the mount (read_ahead_kb): one sequential reader
  // keeps several 1 MiB FUSE reads in flight for the worker threads, and so
  // several disk reads (cold loads on the H100 machine: 0.84x of a plain
  // directory with 1 MiB, 0.93x with 8 MiB).
  uint64_t readahead_bytes = 8 << 20;
  bool clone_fd = true;
  int temp_grace_seconds = 30;   // closed, never-renamed temp files live this long
  bool allow_other = true;       // other users (inference servers) may use the mount
  // Where to write the metrics (node_exporter's textfile collector), every
  // metrics_interval_seconds, atomically (rename); empty: nowhere.
  std::string metrics_file;
  int metrics_interval_seconds = 5;
};

// One file being written (created, or opened with O_TRUNC).
struct InflightFile {
  std::unique_ptr<FileWriter> writer;
  uint64_t parent = 0;
  std::string name;
  int opens = 0;
  bool unlinked = false;
  bool committed = false;
  bool new_version = false;  // of a committed file, under its inode (O_TRUNC)
  int64_t closed_at_ns = 0;
  int64_t started_ns = 0;  // first opened for writing (store latency)
};

class FuseServer {
 public:
  FuseServer(Engine& engine, MountOptions options)
      : engine_(engine), options_(std::move(options)) {
    metrics_.started_ns = absl::GetCurrentTimeNanos();
  }
  ~FuseServer();

  // Mounts at `mountpoint`; Serve() then runs until unmounted or SIGTERM/SIGINT.
  absl::Status Mount(const std::string& mountpoint);
  absl::Status Serve();

  // Operations (called from the libfuse trampolines in fuse_server.cc).
  Engine& engine() { return engine_; }
  const MountOptions& options() const { return options_; }
  std::shared_ptr<InflightFile> FindInflight(uint64_t ino);
  std::shared_ptr<InflightFile> FindInflight(uint64_t parent, const std::string& name);
  std::shared_ptr<InflightFile> FindInflightLocked(uint64_t ino);  // needs mu_
  void AddInflight(uint64_t ino, std::shared_ptr<InflightFile> file);
  // Removes the file from the name table (and from the inode table once no
  // descriptor is open). Needs mu_.
  void DetachInflightLocked(uint64_t ino, InflightFile& file);
  // Committed versions open for reading: fstat of one keeps working after
  // its name is replaced or unlinked (the kernel's GETATTR carries no handle).
  // ReaderOpened says how the new descriptor may use the kernel's cached
  // pages of the inode. ReaderClosed says whether the last reader of an
  // inode rewritten in place (O_TRUNC) just closed: then its pages must go,
  // and ForgetCachedData(ino) must follow.
  enum class PageCacheUse {
    kKeep,    // committed bytes never change: keep what is cached
    kDrop,    // stale pages are being dropped: drop them at this open too
    kBypass,  // a reader of another version is open and may cache its
              // bytes at any time: read past the cache (direct_io)
  };
  // `rewrites_before` is RewritesCommitted() from before the open read the
  // inode: a rewrite committed since may have made `inode` an old version.
  PageCacheUse ReaderOpened(const Inode& inode, uint64_t rewrites_before);
  uint64_t RewritesCommitted() const { return rewrites_.load(std::memory_order_acquire); }
  bool ReaderClosed(uint64_t ino);
  std::optional<Inode> OpenReaderInode(uint64_t ino);
  // Drops closed temp files older than the grace period.
  void ReapTempFiles();
  MountMetrics& metrics() { return metrics_; }
  // Counts a commit of a file written through the mount.
  void CountStore(const InflightFile& file, bool ok);
  // A new version of `ino` was committed under the same inode (O_TRUNC):
  // marks its open readers as of an old version, and the kernel's cached
  // pages of it as about to be dropped. Call with mu_ held, in the same
  // critical section as the commit, then ForgetCachedData(ino) once mu_ is
  // released: an open between the two must not keep the old pages.
  void NewVersionCommittedLocked(uint64_t ino);
  // Drops the kernel's cached pages and attributes of `ino`, and ends the
  // forgetting that NewVersionCommittedLocked or ReaderClosed began. The
  // kernel takes no lock for it that a request waiting on this daemon holds,
  // so a handler may call it before replying.
  void ForgetCachedData(uint64_t ino);
  // The Prometheus text exposition of everything counted (metrics.h).
  std::string RenderMetrics();
  std::mutex& mu() { return mu_; }
  std::map<std::pair<uint64_t, std::string>, uint64_t>& inflight_names() { return by_name_; }

 private:
  Engine& engine_;
  MountOptions options_;
  fuse_session* session_ = nullptr;
  bool signals_set_ = false;
  MountMetrics metrics_;

  // Writes options_.metrics_file until Serve() returns.
  void MetricsFileLoop();
  std::mutex metrics_file_mu_;
  std::condition_variable metrics_file_cv_;
  bool metrics_file_stop_ = false;

  std::mutex mu_;
  std::map<uint64_t, std::shared_ptr<InflightFile>> by_ino_;
  std::map<std::pair<uint64_t, std::string>, uint64_t> by_name_;
  struct OpenReaders {
    int opens = 0;
    Inode version;           // of the first of them
    bool rewritten = false;  // a new version was committed in place since
  };
  std::map<uint64_t, OpenReaders> open_readers_;
  // Inodes whose cached pages are being dropped (how many times): their
  // opens get no keep_cache until ForgetCachedData is done, since the
  // commit that made them stale is visible to an open before the kernel
  // has dropped them.
  std::map<uint64_t, int> forgetting_;
  // In-place rewrites committed so far (changed under mu_).
  std::atomic<uint64_t> rewrites_{0};
};

}  // namespace kvfs
