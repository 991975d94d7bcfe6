// `kvfs du [PATH...] [-h] [-s] [-d DEPTH] [--json]`: logical bytes, stored
// bytes and file counts per directory, from the index (no file is opened or
// stat'ed). A PATH on a kvfs mount asks its daemon (MOUNTPOINT/.kvfs/du); a
// backing directory is read through its node's index, opened read-only.
#include <getopt.h>
#include <sys/stat.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kvfs/control_files.h"
#include "kvfs/errors.h"
#include "kvfs/offline_index.h"
#include "kvfs/usage.h"
#include "tools/control_client.h"
#include "tools/json.h"
#include "tools/subcommands.h"

namespace kvfs {
namespace {

constexpr char kDuUsage[] =
    "usage: kvfs du [PATH...] [options]\n"
    "\n"
    "Space use per directory (per model, configuration, rank), computed from the\n"
    "index without walking files. PATH is a directory or file on a kvfs mount\n"
    "(default: the current directory), or a backing directory (its node's index\n"
    "is read; the mount may be live). Columns: logical bytes (what du\n"
    "--apparent-size reports on the mount), bytes stored in extents (headers and\n"
    "alignment included), files, path.\n"
    "\n"
    "options:\n"
    "  -h, --human-readable   sizes as 1.5K, 20M, 3.1G\n"
    "  -s, --summarize        only a total for each PATH\n"
    "  -d, --max-depth N      directories at most N levels below PATH (default: all)\n"
    "  --json                 one JSON object per PATH, with its directories\n"
    "  --node-id ID           backing directory: the node (default: the host name)\n"
    "  --index-dir DIR        backing directory: the node's index (default as mount)\n"
    "  --help                 this text\n";

int UsageError(const std::string& message) {
  std::fprintf(stderr, "kvfs du: %s\n\n%s", message.c_str(), kDuUsage);
  return 2;
}

absl::StatusOr<std::vector<DirUsage>> UsageOf(const std::string& path, int depth,
                                              const std::string& node_id,
                                              const std::string& index_dir) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return SysError(path);
  if (absl::StatusOr<MountedPath> mounted = FindKvfsMount(path); mounted.ok()) {
    absl::StatusOr<std::string> answer = AskDaemon(
        mounted->mountpoint, kDuFileName, EncodeUsageRequest({mounted->relative, depth}));
    if (!answer.ok()) return answer.status();
    return ParseUsageAnswer(*answer);
  }
  if (absl::StatusOr<InspectedBacking> b = InspectBackingDir(path, "node"); !b.ok()) {
    return ErrnoError(ENOENT, absl::StrCat(path, " is neither on a kvfs mount nor a kvfs "
                                           "backing directory"));
  }
  absl::StatusOr<OfflineIndex> offline = OpenOfflineIndex(path, node_id, index_dir);
  if (!offline.ok()) return offline.status();
  absl::StatusOr<std::optional<Inode>> root = offline->index->GetChild(0, "");
  if (!root.ok()) return root.status();
  if (!*root) return absl::DataLossError("the index has no root directory");
  return ComputeUsage(*offline->index, **root, "", depth);
}

std::string Shown(const std::string& arg, const std::string& relative_to_arg) {
  if (relative_to_arg.empty()) return arg;
  return absl::StrCat(arg, arg.back() == '/' ? "" : "/", relative_to_arg);
}

}  // namespace

int RunDu(int argc, char** argv) {
  bool human = false, json = false;
  int depth = -1;
  std::string node_id, index_dir;
  enum { kJson = 1000, kNode, kIndex, kHelp };
  static const option kOptions[] = {{"human-readable", no_argument, nullptr, 'h'},
                                    {"summarize", no_argument, nullptr, 's'},
                                    {"max-depth", required_argument, nullptr, 'd'},
                                    {"json", no_argument, nullptr, kJson},
                                    {"node-id", required_argument, nullptr, kNode},
                                    {"index-dir", required_argument, nullptr, kIndex},
                                    {"help", no_argument, nullptr, kHelp},
                                    {nullptr, 0, nullptr, 0}};
  optind = 1;
  for (int opt; (opt = getopt_long(argc, argv, "hsd:", kOptions, nullptr)) != -1;) {
    switch (opt) {
      case kHelp: std::fputs(kDuUsage, stdout); return 0;
      case 'h': human = true; break;
      case 's': depth = 0; break;
      case 'd':
        if (!absl::SimpleAtoi(optarg, &depth) || depth < 0) {
          return UsageError(absl::StrCat("bad --max-depth '", optarg, "'"));
        }
        break;
      case kJson: json = true; break;
      case kNode:
        if (*optarg == '\0') return UsageError("--node-id must not be empty");
        node_id = optarg;
        break;
      case kIndex:
        if (*optarg == '\0') return UsageError("--index-dir must not be empty");
        index_dir = optarg;
        break;
      default: return UsageError("unknown option");
    }
  }
  std::vector<std::string> paths(argv + optind, argv + argc);
  if (paths.empty()) paths.push_back(".");
  int rc = 0;
  bool first = true;
  if (json) std::printf("[");
  for (const std::string& path : paths) {
    absl::StatusOr<std::vector<DirUsage>> usage = UsageOf(path, depth, node_id, index_dir);
    if (!usage.ok()) {
      std::fprintf(stderr, "kvfs du: %s\n", std::string(usage.status().message()).c_str());
      rc = 1;
      continue;
    }
    const std::string base = usage->back().path;  // PATH relative to its root
    auto below = [&](const DirUsage& u) {
      return u.path.size() > base.size() ? u.path.substr(base.empty() ? 0 : base.size() + 1)
                                         : std::string();
    };
    if (json) {
      const DirUsage& t = usage->back();
      std::printf("%s\n {\"path\": %s, \"logical_bytes\": %lu, \"stored_bytes\": %lu, "
                  "\"files\": %lu, \"dirs\": %lu, \"entries\": [",
                  first ? "" : ",", JsonString(path).c_str(), t.logical_bytes,
                  t.stored_bytes, t.files, t.dirs);
      for (size_t i = 0; i + 1 < usage->size(); ++i) {
        const DirUsage& u = (*usage)[i];
        std::printf("%s\n  {\"path\": %s, \"logical_bytes\": %lu, \"stored_bytes\": %lu, "
                    "\"files\": %lu, \"dirs\": %lu}",
                    i == 0 ? "" : ",", JsonString(Shown(path, below(u))).c_str(),
                    u.logical_bytes, u.stored_bytes, u.files, u.dirs);
      }
      std::printf("]}");
      first = false;
      continue;
    }
    for (const DirUsage& u : *usage) {
      auto size = [&](uint64_t b) { return human ? HumanBytes(b) : absl::StrCat(b); };
      std::printf("%s\t%s\t%lu\t%s\n", size(u.logical_bytes).c_str(),
                  size(u.stored_bytes).c_str(), u.files, Shown(path, below(u)).c_str());
    }
  }
  if (json) std::printf("\n]\n");
  return rc;
}

}  // namespace kvfs
