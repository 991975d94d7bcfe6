// Real FUSE mounts (two or three nodes) over one backing directory: what one
// stores the others read, replacements and removals reach the others'
// kernel caches, and all converge after a storm of changes and a kill -9,
// also with each node on its own sshfs view of the backing directory.
// Needs root and /dev/fuse; skipped with the reason otherwise.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "kvfs/posix_file.h"
#include "tests/mount_util.h"
#include "tests/sshfs_util.h"
#include "tests/test_util.h"
#include "tests/tool_util.h"

namespace kvfs {
namespace {

using testing::Kvfs;
using testing::Pattern;
using testing::SshfsView;
using testing::TempDir;
using testing::ToolResult;

// The llm-d store: mkdir -p, temp file, write, rename while open, close.
// `writer`: the temp name's number, one per writing thread.
bool Store(const std::string& path, const std::string& data, int writer = 7) {
  if (!EnsureDirectories(path.substr(0, path.rfind('/')), 0777).ok()) return false;
  const std::string tmp = path + "_" + std::to_string(writer) + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
  if (fd < 0) return false;
  bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) &&
            ::rename(tmp.c_str(), path.c_str()) == 0;
  ::close(fd);
  return ok;
}

// The whole file, or "<errno text>".
std::string Load(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return "<" + std::string(std::strerror(errno)) + ">";
  std::string out;
  char buf[1 << 16];
  for (ssize_t n; (n = ::read(fd, buf, sizeof(buf))) > 0;) out.append(buf, n);
  ::close(fd);
  return out;
}

// Waits up to 10 s (the other node follows every 0.1 s) for `done`.
bool Eventually(const std::function<bool()>& done) {
  for (int i = 0; i < 1000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

TEST(SharedMount, TwoNodesSeeEachOthersFilesAndChanges) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  Mount a(dir, {"--peer-poll", "0.1"}, "node-a");
  // b caches misses for an hour: only the invalidation a's new name
  // triggers can make it visible.
  Mount b(dir, {"--peer-poll", "0.1", "--negative-timeout", "3600"}, "node-b");
  ASSERT_TRUE(a.Start());
  ASSERT_TRUE(b.Start());

  // Stored through one node, loaded through the other.
  const std::string block = "model_r0/ab/cd_g0/abcd.bin";
  const std::string data = Pattern(1, 3 * 1024 * 1024 + 123);
  // b looks first: the miss must not stay cached once a stores the name.
  struct stat st;
  ASSERT_NE(::stat(b.Path(block).c_str(), &st), 0);
  ASSERT_TRUE(Store(a.Path(block), data));
  EXPECT_TRUE(Eventually([&] { return Load(b.Path(block)) == data; }));
  ASSERT_EQ(::stat(b.Path(block).c_str(), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(data.size()));

  // Stored again, later, through b: both read b's version, a despite
  // having the old one in its kernel caches (long attribute timeouts,
  // keep_cache).
  ASSERT_EQ(Load(a.Path(block)), data);
  const std::string second = Pattern(2, 1024 * 1024);
  ASSERT_TRUE(Store(b.Path(block), second));
  EXPECT_EQ(Load(b.Path(block)), second);
  EXPECT_TRUE(Eventually([&] { return Load(a.Path(block)) == second; }));

  // Removed through a: gone from b, whose kernel had it cached.
  ASSERT_EQ(Load(b.Path(block)), second);
  ASSERT_EQ(::unlink(a.Path(block).c_str()), 0);
  EXPECT_TRUE(Eventually([&] { return ::access(b.Path(block).c_str(), F_OK) != 0; }));

  // What each node stored survives both remounting.
  const std::string other = "model_r0/ef/01_g0/ef01.bin";
  ASSERT_TRUE(Store(b.Path(other), data));
  EXPECT_EQ(a.Stop(), 0);
  EXPECT_EQ(b.Stop(), 0);
  ASSERT_TRUE(a.Start());
  EXPECT_EQ(Load(a.Path(other)), data);
  EXPECT_NE(::access(a.Path(block).c_str(), F_OK), 0);
}

// The journal of a mount that rewrites the same names keeps to about
// --journal-compact; a node mounted later reads the checkpoint.
TEST(SharedMount, ACompactedJournalStaysSmallAndIsFollowedFromItsCheckpoint) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  Mount a(dir, {"--journal-compact", "1M"}, "node-a");
  ASSERT_TRUE(a.Start());
  // Long names make big journal entries: about 3 MiB in all.
  const std::string stem = "model_r0/" + std::string(180, 'k');
  constexpr int kNames = 50, kStores = 9000;
  for (int i = 0; i < kStores; ++i) {
    ASSERT_TRUE(Store(a.Path(stem + std::to_string(i % kNames)), "v" + std::to_string(i)))
        << i;
  }
  const std::string journal = a.backing() + "/nodes/node-a/journal";
  auto journal_bytes = [&] {
    uint64_t bytes = 0;
    for (const auto& f : std::filesystem::directory_iterator(journal)) bytes += f.file_size();
    return bytes;
  };
  auto has_checkpoint = [&] {
    for (const auto& f : std::filesystem::directory_iterator(journal)) {
      if (f.path().extension() == ".kvc") return true;
    }
    return false;
  };
  // At most 1 MiB not yet covered, the checkpoint of 50 files, file headers.
  ASSERT_TRUE(Eventually(
      [&] { return has_checkpoint() && journal_bytes() < (1u << 20) + (64u << 10); }))
      << journal_bytes() << " bytes of journal";
  Mount b(dir, {"--peer-poll", "0.1"}, "node-b");
  ASSERT_TRUE(b.Start());
  for (int n = 0; n < kNames; ++n) {
    const std::string expected = "v" + std::to_string(kStores - kNames + n);
    EXPECT_EQ(Load(b.Path(stem + std::to_string(n))), expected);
  }
  EXPECT_EQ(a.Stop(), 0);
  EXPECT_EQ(b.Stop(), 0);
  ASSERT_TRUE(a.Start());
  for (int n = 0; n < kNames; ++n) {
    EXPECT_EQ(Load(a.Path(stem + std::to_string(n))),
              "v" + std::to_string(kStores - kNames + n));
  }
}

// A block read only through node B stays in node A's cache: A, which stored
// it and alone evicts it, hears of B's reads.
TEST(SharedMount, ReadsOnAnotherNodeKeepAFileFromItsOwnersEviction) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  Mount a(dir, {"--peer-poll", "0.1", "--access-hints", "1"}, "node-a");
  Mount b(dir, {"--peer-poll", "0.1", "--access-hints", "1"}, "node-b");
  ASSERT_TRUE(a.Start());
  ASSERT_TRUE(b.Start());
  const std::string old_block = "model_r0/ab/cd_g0/old.bin";
  const std::string new_block = "model_r0/ab/cd_g0/new.bin";
  // Whole seconds apart: access times count seconds.
  ASSERT_TRUE(Store(a.Path(old_block), Pattern(1, 100000)));
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  ASSERT_TRUE(Store(a.Path(new_block), Pattern(2, 100000)));
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  // B reads the older block (B never looks the newer one up).
  ASSERT_TRUE(Eventually([&] { return Load(b.Path(old_block)) == Pattern(1, 100000); }));
  // A's eviction order: least recently accessed first.
  auto order = [&] {
    ToolResult r = Kvfs("evict " + a.Path("") + " --dry-run");
    const size_t old_at = r.output.find("old.bin"), new_at = r.output.find("new.bin");
    if (r.exit_code != 0 || old_at == std::string::npos || new_at == std::string::npos) {
      return "<" + r.output + ">";
    }
    return std::string(new_at < old_at ? "new, old" : "old, new");
  };
  std::string seen;
  for (int i = 0; i < 100 && seen != "new, old"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    seen = order();
  }
  EXPECT_EQ(seen, "new, old");
  // A read nothing of B's; B's lookup and open may fall in two seconds.
  ToolResult stat_a = Kvfs("stat " + a.Path(""));
  const size_t line = stat_a.output.find("access hints");
  int sent = -1, applied = -1;
  ASSERT_NE(line, std::string::npos) << stat_a.output;
  ASSERT_EQ(std::sscanf(stat_a.output.c_str() + line,
                        "access hints %d sent (reads of theirs), %d applied", &sent, &applied),
            2)
      << stat_a.output;
  EXPECT_EQ(sent, 0);
  EXPECT_GE(applied, 1);
  EXPECT_LE(applied, 2);
}

// Stored data names itself: a header with the seed and size of the Pattern
// that follows, so a reader can tell whole contents from torn or mixed ones.
std::string SelfChecking(uint64_t seed, size_t size) {
  return absl::StrFormat("%016x%016x", seed, size) + Pattern(seed, size);
}
bool IsSelfChecking(const std::string& data) {
  if (data.size() < 32) return false;
  uint64_t seed = 0, size = 0;
  if (!absl::SimpleHexAtoi(data.substr(0, 16), &seed) ||
      !absl::SimpleHexAtoi(data.substr(16, 16), &size)) {
    return false;
  }
  return data == SelfChecking(seed, size);
}

// Every file of a mount and a digest of its contents.
std::map<std::string, size_t> Snapshot(const std::string& root) {
  std::map<std::string, size_t> out;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    const std::string rel = std::filesystem::relative(it->path(), root).string();
    if (rel.rfind(".kvfs", 0) == 0) {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file()) out[rel] = std::hash<std::string>()(Load(it->path().string()));
  }
  return out;
}

// What a storm of changes saw.
struct StormCounts {
  int stores = 0, failed = 0, torn = 0, interrupted = 0;
};

// Three threads per node store, replace, unlink and read the same 60 names
// for `run`. Halfway, node `victim` is killed with SIGKILL and comes back
// with its index deleted.
StormCounts Storm(const std::vector<std::unique_ptr<Mount>>& nodes, size_t victim,
                  std::chrono::milliseconds run) {
  std::vector<std::string> names;
  for (int i = 0; i < 60; ++i) {
    names.push_back(absl::StrFormat("model_r0/%03x/%02x_g0/%040x.bin", i % 7, i % 5, i));
  }
  std::atomic<bool> stop{false}, down{false};
  std::atomic<int> torn{0}, failed{0}, stores{0}, interrupted{0};
  auto worker = [&](size_t node, uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (uint64_t op = 0; !stop; ++op) {
      const std::string path = nodes[node]->Path(names[rng() % names.size()]);
      const unsigned r = rng() % 100;
      // The victim's operations may fail while it is down, or if they began then.
      const bool excused_before = node == victim && down;
      auto excused = [&] { return excused_before || (node == victim && down); };
      if (r < 45) {
        const bool ok = Store(path, SelfChecking(seed << 32 | op, 1 + rng() % 200000),
                              static_cast<int>(seed));
        if (ok) ++stores;
        if (!ok && !excused()) ++failed;
      } else if (r < 55) {
        if (::unlink(path.c_str()) != 0 && errno != ENOENT && !excused()) ++failed;
      } else {
        // Whole reads only: an open file replaced here or elsewhere stays
        // readable for --reclaim-grace, then reads fail (EIO), and the
        // victim's reads fail while it is down.
        const int fd = ::open(path.c_str(), O_RDONLY);
        if (fd < 0) continue;
        std::string data;
        char buf[1 << 16];
        ssize_t n;
        while ((n = ::read(fd, buf, sizeof(buf))) > 0) data.append(buf, n);
        ::close(fd);
        if (n < 0) {
          ++interrupted;
        } else if (!IsSelfChecking(data)) {
          ++torn;
        }
      }
    }
  };
  std::vector<std::thread> threads;
  for (size_t n = 0; n < nodes.size(); ++n) {
    for (int t = 0; t < 3; ++t) threads.emplace_back(worker, n, 1 + n * 10 + t);
  }
  std::this_thread::sleep_for(run / 2);
  down = true;
  nodes[victim]->Kill9();
  nodes[victim]->Detach();
  EXPECT_GT(std::filesystem::remove_all(nodes[victim]->index()), 0u);
  EXPECT_TRUE(nodes[victim]->Start());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  down = false;
  std::this_thread::sleep_for(run / 2);
  stop = true;
  for (std::thread& t : threads) t.join();
  std::printf("%d stores, %d reads interrupted\n", stores.load(), interrupted.load());
  return {stores.load(), failed.load(), torn.load(), interrupted.load()};
}

// No read saw torn contents, no operation failed but the victim's while it
// was down, and at least `stores` stores went through.
void ExpectStormHeld(const StormCounts& counts, int stores) {
  EXPECT_EQ(counts.torn, 0);
  EXPECT_EQ(counts.failed, 0);
  EXPECT_GT(counts.stores, stores);
}

// Every node shows the same files and bytes within `limit`; then each stops
// and its part of the backing directory checks clean.
void ExpectConvergedAndClean(const std::vector<std::unique_ptr<Mount>>& nodes,
                             std::chrono::seconds limit) {
  std::vector<std::map<std::string, size_t>> seen(nodes.size());
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (bool same = false; !same && std::chrono::steady_clock::now() < deadline;) {
    for (size_t n = 0; n < nodes.size(); ++n) seen[n] = Snapshot(nodes[n]->Path(""));
    same = std::all_of(seen.begin(), seen.end(), [&](const auto& s) { return s == seen[0]; });
    if (!same) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_FALSE(seen[0].empty());
  for (size_t n = 1; n < nodes.size(); ++n) {
    std::string differ;
    std::map<std::string, size_t> both = seen[0];
    both.insert(seen[n].begin(), seen[n].end());
    for (const auto& [name, unused] : both) {
      auto here = seen[n].find(name), there = seen[0].find(name);
      if (here == seen[n].end() || there == seen[0].end() || here->second != there->second) {
        absl::StrAppend(&differ, "\n  ", name, here == seen[n].end() ? ": only on "
                                                 : there == seen[0].end() ? ": not on "
                                                                          : ": differs from ",
                        nodes[0]->node());
      }
    }
    EXPECT_TRUE(differ.empty()) << nodes[n]->node() << " against " << nodes[0]->node()
                                << differ;
  }
  for (const std::unique_ptr<Mount>& node : nodes) {
    EXPECT_EQ(node->Stop(), 0);
    ToolResult fsck = Kvfs("fsck " + node->backing() + " --node-id " + node->node() +
                           " --index-dir " + node->index());
    EXPECT_EQ(fsck.exit_code, 0) << fsck.output;
  }
}

// Options that make a storm meet compaction, reclaim and access hints often.
const std::vector<std::string> kStormOptions = {"--peer-poll", "0.1", "--journal-compact", "1M",
                                                "--access-hints", "1", "--reclaim-grace", "1"};

// Three nodes store, replace, unlink and read the same 60 names at once,
// each compacting its journal every MiB; one is killed with SIGKILL halfway
// and comes back with its index lost. Every read sees whole contents, and
// in the end the three show the same files and bytes, and every node's part
// of the backing directory checks clean.
TEST(SharedMount, ThreeNodesConvergeAfterAStormAndAKill9) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  std::vector<std::unique_ptr<Mount>> nodes;
  for (const std::string id : {"node-a", "node-b", "node-c"}) {
    nodes.push_back(std::make_unique<Mount>(dir, kStormOptions, id));
    ASSERT_TRUE(nodes.back()->Start()) << id;
  }
  const StormCounts counts = Storm(nodes, 1, std::chrono::seconds(12));
  ExpectStormHeld(counts, 1000);
  ExpectConvergedAndClean(nodes, std::chrono::seconds(10));
}

// The same storm with each node on its own sshfs view of one directory, as
// two machines sharing a network filesystem: each node reads the other's
// journals, extents and listings through its own client caches. (A follower
// that lagged behind the other node's reclaim grace here once kept versions
// whose records were gone.)
TEST(SharedMount, TwoNodesOverANetworkFilesystemConvergeAfterAStormAndAKill9) {
  if (std::string why = SshfsView::SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  const std::string remote = SshfsView::Remote(dir);
  SshfsView view_a(dir, remote, "sshfs-a"), view_b(dir, remote, "sshfs-b");
  ASSERT_TRUE(view_a.Start() && view_b.Start());
  std::vector<std::unique_ptr<Mount>> nodes;
  nodes.push_back(
      std::make_unique<Mount>(dir, kStormOptions, "node-a", view_a.Path("backing")));
  nodes.push_back(
      std::make_unique<Mount>(dir, kStormOptions, "node-b", view_b.Path("backing")));
  for (const std::unique_ptr<Mount>& node : nodes) ASSERT_TRUE(node->Start()) << node->node();
  const StormCounts counts = Storm(nodes, 1, std::chrono::seconds(12));
  ExpectStormHeld(counts, 500);
  // sshfs caches a directory's listing for up to 20 s: a follower sees a
  // compacted journal's checkpoint that much later.
  ExpectConvergedAndClean(nodes, std::chrono::seconds(60));
}

TEST(SharedMount, BadPeerPollJournalCompactionOrAccessHintsAreRefusedClearly) {
  TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--peer-poll -1", "bad --peer-poll"},
      {"--peer-poll soon", "bad --peer-poll"},
      {"--peer-poll 100000", "bad --peer-poll"},
      {"--journal-compact 5", "--journal-compact must be 0 or a size of at least 1M"},
      {"--journal-compact lots", "--journal-compact must be 0 or a size of at least 1M"},
      {"--access-hints 0.5", "bad --access-hints '0.5': 0, or seconds between 1 and 86400"},
      {"--access-hints often", "bad --access-hints"},
  };
  for (const auto& [option, message] : cases) {
    const std::string cmd = std::string(KVFS_BINARY) + " mount " + dir.Sub("b") + " " +
                            dir.Sub("m") + " " + option + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof(buf), p)) > 0;) out.append(buf, n);
    const int status = ::pclose(p);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << option;
    EXPECT_NE(out.find(message), std::string::npos) << option << ": " << out;
  }
}

}  // namespace
}  // namespace kvfs
