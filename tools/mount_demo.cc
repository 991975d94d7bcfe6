// `kvfs demo` with FUSE: mounts kvfs over a local directory, stores KV-cache
// files through the mount with the llm-d client's exact calls (dedup probe,
// mkdir -p, temp file, writev, rename while open), loads block suffixes back,
// remounts and loads again, and prints what it did.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "kvfs/posix_file.h"
#include "tools/self_exec.h"

namespace kvfs {

std::string BlockBytes(uint64_t seed, size_t size);  // demo.cc

namespace {

}  // namespace

int MountDemo(const std::string& dir) {
  const std::string backing = dir + "/backing", mnt = dir + "/mnt", index = dir + "/index";
  ::mkdir(backing.c_str(), 0755);
  ::mkdir(mnt.c_str(), 0755);
  const std::string mount_cmd = absl::StrCat(SelfPath(), " mount ", backing, " ", mnt,
                                             " --index-dir ", index, " --node-id demo-node");
  std::printf("kvfs demo in %s\n$ %s\n", dir.c_str(), mount_cmd.c_str());
  if (RunShell(mount_cmd) != 0) return 1;

  constexpr int kFiles = 8;
  constexpr size_t kBlock = 1792 << 10;  // Qwen3-0.6B: 1.75 MiB per 16-token block
  constexpr size_t kFileBytes = 16 * kBlock;  // 28 MiB, 256 tokens
  std::vector<std::string> paths, contents;
  for (int i = 0; i < kFiles; ++i) contents.push_back(BlockBytes(i, kFileBytes));
  absl::Time start = absl::Now();
  for (int i = 0; i < kFiles; ++i) {
    std::mt19937_64 gen(i + 1);
    std::string hash = absl::StrFormat("%016x%016x%016x%016x", gen(), gen(), gen(), gen());
    std::string d = absl::StrCat(mnt, "/Qwen_Qwen3-0.6B_3f9a12c07b1e_r0/", hash.substr(0, 3),
                                 "/", hash.substr(3, 2), "_g0");
    std::string final = d + "/" + hash + ".bin", tmp = final + "_" + std::to_string(i) + ".tmp";
    int fd = ::open(final.c_str(), O_RDONLY);  // dedup probe
    if (fd >= 0) ::close(fd);
    if (absl::Status s = EnsureDirectories(d, 0777); !s.ok()) {  // mkdir -p
      std::fprintf(stderr, "kvfs demo: %s\n", std::string(s.message()).c_str());
      RunShell(SelfPath() + " umount " + mnt);
      return 1;
    }
    std::string& data = contents[i];
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    iovec iov = {data.data(), data.size()};
    if (fd < 0 || ::writev(fd, &iov, 1) != static_cast<ssize_t>(data.size()) ||
        ::rename(tmp.c_str(), final.c_str()) != 0) {
      std::perror("kvfs demo: store");
      RunShell(SelfPath() + " umount " + mnt);
      return 1;
    }
    ::close(fd);
    paths.push_back(final);
  }
  double secs = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf("stored %d files of 28 MiB through the mount in %.2f s (%.2f GB/s), e.g.\n  %s\n",
              kFiles, secs, kFiles * kFileBytes / secs / 1e9, paths[0].c_str() + mnt.size() + 1);

  auto load_all = [&](const char* when) {
    absl::Time t = absl::Now();
    for (int i = 0; i < kFiles; ++i) {
      int fd = ::open(paths[i].c_str(), O_RDONLY);
      off_t size = ::lseek(fd, 0, SEEK_END);
      const size_t n = (1 + i % 16) * kBlock;  // the last k blocks
      std::string buf(n, '\0');
      bool ok = fd >= 0 && size == static_cast<off_t>(kFileBytes) &&
                ::lseek(fd, size - n, SEEK_SET) >= 0 &&
                ::read(fd, buf.data(), n) == static_cast<ssize_t>(n) &&
                buf == contents[i].substr(kFileBytes - n);
      if (fd >= 0) ::close(fd);
      if (!ok) {
        std::fprintf(stderr, "kvfs demo: %s did not load back intact\n", paths[i].c_str());
        return false;
      }
    }
    std::printf("loaded block suffixes of all %d files %s, bit-exact (%.2f s)\n", kFiles, when,
                absl::ToDoubleSeconds(absl::Now() - t));
    return true;
  };
  bool ok = load_all("back");
  std::printf("$ %s umount %s\n", SelfPath().c_str(), mnt.c_str());
  if (RunShell(SelfPath() + " umount " + mnt) != 0) return 1;
  // The old daemon exits right after the unmount; wait for it to let go of
  // the node lock (a mount meanwhile is refused as "already in use").
  bool remounted = false;
  for (int attempt = 0; ok && attempt < 50 && !remounted; ++attempt) {
    ::usleep(100 * 1000);
    remounted = RunShell(mount_cmd + " 2>/dev/null") == 0;
  }
  if (remounted) {
    std::printf("remounted\n");
    ok = load_all("after the remount");
    // What an operator sees: space per directory from the index, and the
    // mount's own counters.
    for (const std::string& tool : {SelfPath() + " du -h -d 1 " + mnt, SelfPath() + " stat " + mnt}) {
      std::printf("$ %s\n", tool.c_str());
      RunShell(tool);
    }
    RunShell(SelfPath() + " umount " + mnt);
  }
  std::printf("the backing directory holds extents and a journal, not one file per block:\n");
  RunShell("find " + backing + " -type f | sed 's|" + dir + "/||' | sort");
  return ok ? 0 : 1;
}

}  // namespace kvfs
