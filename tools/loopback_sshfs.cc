#include "tools/loopback_sshfs.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kvfs/errors.h"
#include "tools/self_exec.h"

extern char** environ;

namespace kvfs {
namespace {

namespace fs = std::filesystem;

// A port nothing listens on now (the kernel picks it).
absl::StatusOr<int> FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return SysError("socket");
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  if (port < 0) return SysError("bind to a loopback port");
  return port;
}

bool Listening(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

absl::Status LoopbackSshfs::Start(const std::string& work) {
  for (const char* tool : {"/usr/sbin/sshd", "/usr/bin/sshfs", "/usr/bin/ssh-keygen"}) {
    if (::access(tool, X_OK) != 0) {
      return ErrnoError(ENOENT, absl::StrCat(tool, " is missing: apt-get install sshfs "
                                             "openssh-server"));
    }
  }
  work_ = work;
  const std::string ssh = work + "/ssh", remote = work + "/remote";
  mountpoint_ = work + "/sshfs";
  for (const std::string& d : {ssh, remote, mountpoint_}) fs::create_directories(d);
  fs::permissions(ssh, fs::perms::owner_all);
  fs::create_directories("/run/sshd");  // sshd's privilege separation directory
  for (const char* key : {"host_key", "client_key"}) {
    const std::string path = ssh + "/" + key;
    if (!fs::exists(path) &&
        RunShell(absl::StrCat("ssh-keygen -q -t ed25519 -N '' -f ", path)) != 0) {
      return absl::InternalError("ssh-keygen failed");
    }
  }
  fs::copy_file(ssh + "/client_key.pub", ssh + "/authorized_keys",
                fs::copy_options::overwrite_existing);
  absl::StatusOr<int> port = FreeLoopbackPort();
  if (!port.ok()) return port.status();
  const std::string config = ssh + "/sshd_config";
  std::ofstream(config) << "Port " << *port << "\nListenAddress 127.0.0.1\n"
                        << "HostKey " << ssh << "/host_key\n"
                        << "AuthorizedKeysFile " << ssh << "/authorized_keys\n"
                        << "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                        << "UsePAM no\nStrictModes no\nPidFile " << ssh << "/sshd.pid\n"
                        << "Subsystem sftp internal-sftp\nLogLevel ERROR\n";
  std::vector<std::string> args = {"/usr/sbin/sshd", "-D", "-e", "-f", config};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // sshd's own messages (each probe below is a connection it logs) go to a file.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const std::string log = ssh + "/sshd.log";
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int spawned = posix_spawn(&sshd_, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    sshd_ = 0;
    return SysError("start sshd");
  }
  for (int i = 0; i < 200 && !Listening(*port); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  if (!Listening(*port)) return absl::InternalError("sshd did not start listening");
  const std::string mount = absl::StrCat(
      "sshfs -p ", *port, " -o IdentityFile=", ssh, "/client_key,StrictHostKeyChecking=no,",
      "UserKnownHostsFile=/dev/null,LogLevel=ERROR,BatchMode=yes root@127.0.0.1:", remote, " ",
      mountpoint_);
  if (RunShell(mount) != 0) return absl::InternalError(absl::StrCat("failed: ", mount));
  mounted_ = true;
  return absl::OkStatus();
}

void LoopbackSshfs::Stop() {
  if (mounted_) {
    // A kvfs daemon over it may still be closing its files after `kvfs umount`.
    bool done = false;
    for (int i = 0; i < 50 && !done; ++i) {
      done = RunShell(absl::StrCat("fusermount3 -u ", mountpoint_, " 2>/dev/null")) == 0;
      if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (!done) RunShell(absl::StrCat("umount -l ", mountpoint_));
    mounted_ = false;
  }
  if (sshd_ > 0) {
    ::kill(sshd_, SIGTERM);
    ::waitpid(sshd_, nullptr, 0);
    sshd_ = 0;
  }
}

}  // namespace kvfs
