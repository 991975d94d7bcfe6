// A network filesystem for tests on one machine: a directory seen through
// sshfs, its SFTP server run over a pipe (no sshd, no port, no network).
// Two views of one directory behave like two machines mounting one share:
// each has sshfs's own caches of attributes, listings and data.
// Needs the Debian packages sshfs and openssh-sftp-server (./dev installs
// them); SkipReason() says so when they are missing.
#pragma once

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "tests/fuse_util.h"
#include "tests/test_util.h"

namespace kvfs::testing {

inline constexpr char kSftpServer[] = "/usr/lib/openssh/sftp-server";

class SshfsView {
 public:
  static std::string SkipReason() {
    if (std::string why = kvfs::SkipReason(); !why.empty()) return why;
    if (::access("/usr/bin/sshfs", X_OK) != 0 || ::access(kSftpServer, X_OK) != 0) {
      return "needs sshfs and openssh-sftp-server (apt-get install sshfs "
             "openssh-sftp-server; ./dev does)";
    }
    return "";
  }

  // The directory to share, `dir`/remote, with an empty backing/ in it.
  static std::string Remote(const TempDir& dir) {
    const std::string remote = dir.Sub("remote");
    std::filesystem::create_directories(remote + "/backing");
    return remote;
  }

  // `remote` seen at `dir`/`name`.
  SshfsView(const TempDir& dir, const std::string& remote, const std::string& name)
      : remote_(remote), mnt_(dir.Sub(name)), server_(dir.Sub(name + "-sftp")) {}
  ~SshfsView() { Stop(); }

  bool Start() {
    ::mkdir(mnt_.c_str(), 0755);
    // sshfs runs this instead of ssh: the SFTP server itself, on the pipe.
    std::ofstream(server_) << "#!/bin/sh\nexec " << kSftpServer << "\n";
    ::chmod(server_.c_str(), 0755);
    const dev_t before = DeviceOf(mnt_);
    const std::string cmd =
        "sshfs -o ssh_command=" + server_ + " localhost:" + remote_ + " " + mnt_;
    mounted_ = std::system(cmd.c_str()) == 0 && DeviceOf(mnt_) != before;
    return mounted_;
  }

  // After every kvfs daemon over it has stopped.
  void Stop() {
    if (!mounted_) return;
    const std::string cmd = "fusermount3 -u " + mnt_ + " 2>/dev/null";
    for (int i = 0; i < 50; ++i) {
      if (std::system(cmd.c_str()) == 0) {
        mounted_ = false;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ::umount2(mnt_.c_str(), MNT_DETACH);
    mounted_ = false;
  }

  std::string Path(const std::string& rel) const { return mnt_ + "/" + rel; }

 private:
  std::string remote_, mnt_, server_;
  bool mounted_ = false;
};

}  // namespace kvfs::testing
