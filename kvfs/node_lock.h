// One live process per node of a backing directory.
//
// flock on the node's lock file keeps a second process out wherever the
// filesystem shares locks between its clients (local filesystems, NFSv4,
// CephFS, Lustre mounted with -o flock). Where it does not (sshfs, NFSv3
// mounted nolock), the lock file's heartbeat does: the holder rewrites its
// second line every heartbeat period, and a process that gets the flock
// anyway watches that line for four periods before it takes the node; if
// the line moves, the node is in use elsewhere and the process refuses. A
// holder that finds another process's line in the file stops writing: its
// engine turns read-only. Two processes that both find the node free (each
// before the other's line is written) would both get in: on a filesystem
// that may not share flocks, a process that has written its line waits a
// moment (the settle time) and reads the file again before it writes
// anything else, and the one whose line was overwritten refuses.
//
// The lock file (docs/format.md):
//
//   pid P on host H[, serving MOUNTPOINT]
//   heartbeat NNNNNNNNNNNNNNNNNNNN TOKEN PIDNS    (or "stopped" after a clean exit)
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kvfs/periodic_thread.h"
#include "kvfs/posix_file.h"

namespace kvfs {

struct BackingLayout;

// Who holds a node's lock, as the first line of its lock file says:
// "pid P on host H" or "pid P on host H, serving MOUNTPOINT".
struct NodeHolder {
  long pid = 0;
  std::string host;
  std::string serving;  // the mount point, once the daemon has mounted
};
std::optional<NodeHolder> ParseNodeHolder(absl::string_view text);

// What a lock file names this process by: its host, and its pid namespace
// (the same pid names another process in another container).
std::string ThisHostName();
std::string ThisPidNamespace();

// Whether flock on `path`'s filesystem reaches every process that can open
// the file: local filesystems (which other machines reach only through a
// network filesystem, whose side settles). False for network and FUSE
// filesystems, and where statfs fails.
bool FlockIsMachineLocal(const std::string& path);

// Whether a live process holds the node's flock (and who, from the lock file).
bool NodeIsLocked(const BackingLayout& layout, std::string* holder);

// The holder on this host, among the nodes of backing directory `root`,
// that serves `mountpoint` (absolute).
std::optional<NodeHolder> FindLocalHolderServing(const std::string& root,
                                                 const std::string& mountpoint);

class NodeLock {
 public:
  // Takes the node's lock: refuses (EBUSY, saying who holds it) if another
  // process holds the flock, keeps the heartbeat moving, or overwrote this
  // process's line within `settle_ns` of its writing (0: no wait; only with
  // a heartbeat). `heartbeat_ns`: the period (0: no heartbeat, flock
  // alone). `note`: set to a line worth logging when the node was taken
  // over from a holder that stopped beating without a clean exit.
  static absl::StatusOr<std::unique_ptr<NodeLock>> Acquire(const BackingLayout& layout,
                                                           int64_t heartbeat_ns,
                                                           int64_t settle_ns,
                                                           std::string* note);
  // The settle time for a lock file at `path`: none where flock is machine
  // local, else a tenth of the heartbeat period, at most 1 s.
  static int64_t SettleFor(const std::string& path, int64_t heartbeat_ns);
  // Stops the heartbeat and marks the file "stopped"; the flock goes with
  // the descriptor.
  ~NodeLock();
  NodeLock(const NodeLock&) = delete;
  NodeLock& operator=(const NodeLock&) = delete;

  // Adds the mount point this process serves to the first line, so that
  // `kvfs umount` can wait for it and a refused mount can say where it is.
  absl::Status NoteServing(const std::string& mountpoint);
  // Called once, from the heartbeat thread, if another process's line
  // replaced this one's: the node is no longer this process's to write.
  void OnLost(std::function<void(const std::string& why)> fn);

  const PosixFile& file() const { return file_; }

 private:
  NodeLock(PosixFile file, std::string token) : file_(std::move(file)), token_(std::move(token)) {}
  absl::Status WriteLocked(bool stopped);
  void Beat();

  PosixFile file_;
  const std::string token_;  // this holder's, in its heartbeat line
  std::mutex mu_;
  std::string serving_;
  uint64_t beats_ = 0;
  bool lost_ = false;
  std::function<void(const std::string&)> on_lost_;
  PeriodicThread heartbeat_;
};

}  // namespace kvfs
