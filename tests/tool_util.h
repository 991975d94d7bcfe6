// Running the kvfs command (and other programs) from tests, as an operator
// would: exit code and everything it printed. Needs KVFS_BINARY.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace kvfs::testing {

struct ToolResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

inline ToolResult Shell(const std::string& command) {
  ToolResult r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), p)) > 0;) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline ToolResult Kvfs(const std::string& args) {
  return Shell(std::string(KVFS_BINARY) + " " + args);
}

}  // namespace kvfs::testing
