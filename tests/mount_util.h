// A `kvfs mount -f` child process for tests that need a real FUSE mount
// (root and /dev/fuse; SkipReason() says why not when they are missing).
#pragma once

#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/fuse_util.h"
#include "tests/test_util.h"

extern char** environ;

namespace kvfs {

// A `kvfs mount -f` child process.
class Mount {
 public:
  // `node`: one of several nodes sharing the backing directory in `dir`
  // (or `backing`, if given), each with its own mount point and index.
  Mount(const testing::TempDir& dir, std::vector<std::string> extra = {},
        const std::string& node = "", const std::string& backing = "")
      : backing_(backing.empty() ? dir.Sub("backing") : backing),
        mnt_(dir.Sub(node.empty() ? "mnt" : "mnt-" + node)),
        index_(dir.Sub(node.empty() ? "index" : "index-" + node)),
        node_(node.empty() ? "mount-test" : node),
        extra_(std::move(extra)) {
    ::mkdir(backing_.c_str(), 0755);
    ::mkdir(mnt_.c_str(), 0755);
  }
  ~Mount() { Stop(); }

  bool Start() {
    const dev_t before = DeviceOf(mnt_);
    std::vector<std::string> args = {KVFS_BINARY, "mount", backing_, mnt_, "-f",
                                     "--index-dir", index_, "--node-id", node_,
                                     "--temp-grace", "1"};
    args.insert(args.end(), extra_.begin(), extra_.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, KVFS_BINARY, nullptr, nullptr, argv.data(), environ) != 0) return false;
    // A daemon that fails exits (seen below at once); one that works may take
    // long: a rebuilt node reads the other nodes' whole journals before it
    // mounts, which took 12 s through sshfs with three test processes on two
    // cores.
    for (int i = 0; i < 6000; ++i) {
      if (DeviceOf(mnt_) != before) return true;
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  // SIGTERM: the daemon unmounts and exits 0.
  int Stop() {
    if (pid_ == 0) return 0;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = 0;
    ::umount2(mnt_.c_str(), MNT_DETACH);  // in case it did not
    return status;
  }

  // SIGKILL. The dead mount stays in place (calls fail with ENOTCONN) until
  // Detach(), so nothing can fall through to the directory underneath.
  void Kill9() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = 0;
  }
  void Detach() { ::umount2(mnt_.c_str(), MNT_DETACH); }

  std::string Path(const std::string& rel) const { return mnt_ + "/" + rel; }
  const std::string& backing() const { return backing_; }
  const std::string& index() const { return index_; }
  const std::string& node() const { return node_; }
  pid_t pid() const { return pid_; }

 private:
  std::string backing_, mnt_, index_, node_;
  std::vector<std::string> extra_;
  pid_t pid_ = 0;
};

}  // namespace kvfs
