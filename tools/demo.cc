// `kvfs demo`: the engine doing its job on a local directory. Stores KV-cache
// files under the llm-d client's layout, loads them back bit-exact, replaces
// one the way clients do (temp file, rename), reopens the engine to show that
// everything persisted, and prints what it did at each step.
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <unistd.h>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "kvfs/engine.h"
#include "tools/subcommands.h"

namespace kvfs {

// Deterministic bytes standing in for KV blocks (shared with mount_demo.cc).
std::string BlockBytes(uint64_t seed, size_t size) {
  std::string data(size, '\0');
  std::mt19937_64 gen(seed);
  for (size_t i = 0; i + 8 <= size; i += 8) {
    uint64_t v = gen();
    std::memcpy(&data[i], &v, 8);
  }
  return data;
}

namespace {

std::string HashName(uint64_t seed) {
  std::mt19937_64 gen(seed * 7919 + 1);
  return absl::StrFormat("%016x%016x%016x%016x", gen(), gen(), gen(), gen());
}

// <model>_<d12>_r<rank>/<hhh>/<hh>_g<group>/<hash>.bin
std::string ClientPath(const std::string& hash, int rank) {
  return absl::StrCat("Qwen_Qwen3-0.6B_3f9a12c07b1e_r", rank, "/", hash.substr(0, 3), "/",
                      hash.substr(3, 2), "_g0/", hash, ".bin");
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "kvfs demo: %s\n", std::string(s.message()).c_str());
  return 1;
}

}  // namespace

// The engine alone, for machines where FUSE cannot be mounted.
int EngineDemo(const std::string& dir) {
  EngineOptions options;
  options.backing_dir = dir + "/backing";
  options.index_dir = dir + "/index";
  options.node_id = "demo-node";
  options.extent_bytes = 64 << 20;
  if (absl::Status s = EnsureDirectories(options.backing_dir); !s.ok()) return Fail(s);

  std::printf("kvfs engine demo in %s\n", dir.c_str());
  constexpr int kFiles = 8;
  constexpr size_t kFileBytes = 7 << 20;  // 4 blocks of 1.75 MiB (Qwen3-0.6B)
  std::vector<std::string> paths;
  {
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
    if (!engine.ok()) return Fail(engine.status());
    absl::Time start = absl::Now();
    for (int i = 0; i < kFiles; ++i) {
      std::string path = ClientPath(HashName(i), i % 2);
      absl::StatusOr<Attr> attr = (*engine)->PutFile(path, BlockBytes(i, kFileBytes));
      if (!attr.ok()) return Fail(attr.status());
      paths.push_back(path);
    }
    double secs = absl::ToDoubleSeconds(absl::Now() - start);
    std::printf("stored %d files of %.2f MiB in %.3f s (%.2f GB/s), e.g.\n  %s\n", kFiles,
                kFileBytes / 1048576.0, secs, kFiles * kFileBytes / secs / 1e9,
                paths[0].c_str());

    // Replace one file the llm-d way: write a temp file, rename it over.
    absl::StatusOr<Attr> parent = (*engine)->Stat(paths[0].substr(0, paths[0].rfind('/')));
    if (!parent.ok()) return Fail(parent.status());
    std::string name = paths[0].substr(paths[0].rfind('/') + 1);
    absl::StatusOr<std::unique_ptr<FileWriter>> w = (*engine)->CreateWriter();
    if (!w.ok()) return Fail(w.status());
    if (absl::Status s = (*w)->Write(0, BlockBytes(1000, kFileBytes / 2)); !s.ok()) return Fail(s);
    absl::StatusOr<Attr> tmp = (*engine)->Commit(**w, parent->ino, name + "_17.tmp");
    if (!tmp.ok()) return Fail(tmp.status());
    if (absl::Status s = (*engine)->Rename(parent->ino, name + "_17.tmp", parent->ino, name);
        !s.ok()) {
      return Fail(s);
    }
    std::printf("replaced %s via temp file + rename (now %.2f MiB)\n", name.c_str(),
                kFileBytes / 2 / 1048576.0);
    for (const auto& [id, e] : (*engine)->ExtentStates()) {
      std::printf("extent %llu: %.1f MiB live, %.1f MiB dead%s\n",
                  static_cast<unsigned long long>(id), e.live_bytes / 1048576.0,
                  e.dead_bytes / 1048576.0, e.sealed ? " (sealed)" : "");
    }
  }
  {
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
    if (!engine.ok()) return Fail(engine.status());
    absl::Time start = absl::Now();
    for (int i = 0; i < kFiles; ++i) {
      absl::StatusOr<std::string> data = (*engine)->GetFile(paths[i]);
      if (!data.ok()) return Fail(data.status());
      std::string want = i == 0 ? BlockBytes(1000, kFileBytes / 2) : BlockBytes(i, kFileBytes);
      if (*data != want) {
        std::fprintf(stderr, "kvfs demo: %s came back different\n", paths[i].c_str());
        return 1;
      }
    }
    double secs = absl::ToDoubleSeconds(absl::Now() - start);
    absl::StatusOr<std::vector<TreeEntry>> tree = (*engine)->ListTree();
    if (!tree.ok()) return Fail(tree.status());
    size_t files = 0;
    for (const TreeEntry& e : *tree) files += e.inode.is_dir ? 0 : 1;
    std::printf("reopened the engine: %zu files indexed; loaded all %d back bit-exact, "
                "checksums verified, in %.3f s\n", files, kFiles, secs);
  }
  std::printf("backing directory: %s/backing (extents and journal under nodes/demo-node/)\n",
              dir.c_str());
  std::printf("index: %s/index\n", dir.c_str());
  return 0;
}

int MountDemo(const std::string& dir);

int RunDemo(int argc, char** argv) {
  if (argc > 1 && (absl::string_view(argv[1]) == "--help" || absl::string_view(argv[1]) == "-h")) {
    std::printf("usage: kvfs demo [DIR]\n\nMounts kvfs with its backing directory in DIR "
                "(default: a new directory under /tmp)\nand stores and loads KV-cache files "
                "through the mount the way the llm-d client does.\nWithout root or "
                "/dev/fuse it runs the storage engine directly instead.\n");
    return 0;
  }
  std::string dir;
  if (argc > 1) {
    dir = argv[1];
  } else {
    char tmpl[] = "/tmp/kvfs-demo-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      std::perror("kvfs demo: mkdtemp");
      return 1;
    }
    dir = tmpl;
  }
  if (::geteuid() != 0 || ::access("/dev/fuse", R_OK | W_OK) != 0) {
    std::printf("(no FUSE here: mounting needs root and /dev/fuse; running the engine "
                "directly)\n");
    return EngineDemo(dir);
  }
  return MountDemo(dir);
}

}  // namespace kvfs
