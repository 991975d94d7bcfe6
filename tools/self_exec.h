// For subcommands that drive the kvfs binary itself (mount, umount) the way
// an operator would: this program's path, and running a shell command.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace kvfs {

inline std::string SelfPath() {
  char path[4096];
  ssize_t n = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
  return n > 0 ? std::string(path, n) : "kvfs";
}

// Runs `command` with /bin/sh after flushing stdout; returns its exit code.
inline int RunShell(const std::string& command) {
  std::fflush(stdout);
  int rc = std::system(command.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 1;
}

}  // namespace kvfs
