// The `kvfs` command: one program, one subcommand per job.
#include <cstdio>
#include <cstring>
#include <string>
#include "absl/strings/string_view.h"

#include "kvfs/format.h"
#include "tools/subcommands.h"

namespace {

void PrintUsage(FILE* out) {
  std::fprintf(out,
               "usage: kvfs COMMAND [ARGS]\n"
               "\n"
               "commands:\n"
               "  mount BACKING MOUNTPOINT   serve BACKING as a filesystem at MOUNTPOINT\n"
               "  umount MOUNTPOINT          unmount it\n"
               "  evict MOUNTPOINT           evict files now (by age, prefix or bytes)\n"
               "  stat MOUNTPOINT            capacity, use, hits, traffic, latencies\n"
               "  du [PATH...]               space use per directory, from the index\n"
               "  fsck BACKING               check (and --repair) a backing directory\n"
               "  bench --dir DIR            the clients' patterns on a mount vs a plain dir\n"
               "  demo [DIR]   store, load, replace and reload KV-cache files with the\n"
               "               storage engine in DIR (default: a new temporary directory)\n"
               "  version      print the kvfs version and backing format version\n"
               "\n"
               "Run 'kvfs COMMAND --help' for a command's options.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    PrintUsage(stderr);
    return 2;
  }
  const absl::string_view command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    PrintUsage(stdout);
    return 0;
  }
  if (command == "--version" || command == "version") {
    std::printf("kvfs %s (backing format %u)\n", KVFS_VERSION, kvfs::kFormatVersion);
    return 0;
  }
  if (command == "demo") return kvfs::RunDemo(argc - 1, argv + 1);
  if (command == "mount") return kvfs::RunMount(argc - 1, argv + 1);
  if (command == "umount") return kvfs::RunUmount(argc - 1, argv + 1);
  if (command == "evict") return kvfs::RunEvict(argc - 1, argv + 1);
  if (command == "du") return kvfs::RunDu(argc - 1, argv + 1);
  if (command == "stat") return kvfs::RunStat(argc - 1, argv + 1);
  if (command == "fsck") return kvfs::RunFsck(argc - 1, argv + 1);
  if (command == "bench") return kvfs::RunBench(argc - 1, argv + 1);
  std::fprintf(stderr, "kvfs: unknown command '%s'\n\n", argv[1]);
  PrintUsage(stderr);
  return 2;
}
