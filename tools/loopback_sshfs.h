// A network filesystem for benchmarks: sshfs mounted from an sshd that this
// process starts on a free 127.0.0.1 port, with its own keys and config
// under a work directory, and stops again (Debian: sshfs, openssh-server).
#pragma once

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"

namespace kvfs {

class LoopbackSshfs {
 public:
  ~LoopbackSshfs() { Stop(); }

  // Serves `work`/remote through sshd and mounts it at `work`/sshfs.
  absl::Status Start(const std::string& work);
  void Stop();
  const std::string& mountpoint() const { return mountpoint_; }

 private:
  std::string work_, mountpoint_;
  pid_t sshd_ = 0;
  bool mounted_ = false;
};

}  // namespace kvfs
