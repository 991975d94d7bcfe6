// kill -9 at random points of a storing process: after every kill the engine
// reopens, every committed file is bit-exact and nothing uncommitted shows.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "kvfs/errors.h"
#include "tests/test_util.h"

extern char** environ;

namespace kvfs {
namespace {

using testing::Pattern;
using testing::TempDir;

struct Content {
  uint64_t seed;
  size_t size;
  bool operator==(const Content&) const = default;
};
using Model = std::map<std::string, Content>;  // committed files

struct Round {
  std::vector<std::string> lines;
  int status = 0;
};

// Runs the writer; kills it `kill_after_ms` after it is ready (or lets it
// kill itself when `hook` is given).
Round RunWriter(const std::string& backing, const std::string& index, uint64_t seed,
                int kill_after_ms, const std::vector<std::string>& hook) {
  int out[2];
  EXPECT_EQ(::pipe(out), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  std::vector<std::string> args = {KVFS_CRASH_WRITER, backing, index, std::to_string(seed)};
  args.insert(args.end(), hook.begin(), hook.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  EXPECT_EQ(posix_spawn(&pid, KVFS_CRASH_WRITER, &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);

  std::thread killer;
  std::string text;
  char buf[4096];
  bool ready = false;
  for (;;) {
    ssize_t n = ::read(out[0], buf, sizeof(buf));
    if (n <= 0) break;
    text.append(buf, n);
    if (!ready && text.find("READY\n") != std::string::npos) {
      ready = true;
      if (kill_after_ms >= 0) {
        killer = std::thread([pid, kill_after_ms] {
          std::this_thread::sleep_for(std::chrono::milliseconds(kill_after_ms));
          ::kill(pid, SIGKILL);
        });
      }
    }
  }
  ::close(out[0]);
  Round r;
  ::waitpid(pid, &r.status, 0);
  if (killer.joinable()) killer.join();
  for (absl::string_view l : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    r.lines.emplace_back(l);
  }
  return r;
}

// Does `path` hold `old` or `fresh` (or nothing)? Returns what it holds;
// nullopt when absent. Any other bytes fail the test.
std::optional<Content> Either(Engine& e, const std::string& path,
                              std::optional<Content> old, std::optional<Content> fresh) {
  absl::StatusOr<std::string> got = e.GetFile(path);
  if (!got.ok()) {
    EXPECT_EQ(ErrnoOf(got.status()), ENOENT) << path << ": " << got.status();
    return std::nullopt;
  }
  if (old && *got == Pattern(old->seed, old->size)) return old;
  if (fresh && *got == Pattern(fresh->seed, fresh->size)) return fresh;
  ADD_FAILURE() << path << " holds bytes of no committed version (" << got->size() << " bytes)";
  return std::nullopt;
}

TEST(Crash, KilledWriterLosesNothingCommitted) {
  TempDir dir;
  const std::string backing = dir.Sub("backing");
  const std::string index = dir.Sub("index");
  ::mkdir(backing.c_str(), 0755);
  const int kRounds = 60;
  const char* kPoints[] = {"commit.before_header", "commit.after_header",
                           "commit.after_journal", "evict.before_journal",
                           "reclaim.after_marker", "reclaim.before_index",
                           "drop.after_unlink"};
  constexpr int kPointCount = sizeof(kPoints) / sizeof(kPoints[0]);
  std::mt19937 rng(12345);
  Model model;
  int pending_rounds = 0, killed = 0;

  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::vector<std::string> hook;
    int kill_after = -1;
    if (round % 2 == 0) {
      kill_after = 5 + static_cast<int>(rng() % 120);
    } else {
      hook = {"hook", kPoints[(round / 2) % kPointCount], std::to_string(1 + rng() % 6)};
    }
    Round r = RunWriter(backing, index, 1000 + round, kill_after, hook);
    ASSERT_TRUE(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGKILL)
        << "writer did not die by SIGKILL; last line: "
        << (r.lines.empty() ? "" : r.lines.back());
    ++killed;

    // Apply completed operations; remember the one in flight.
    std::vector<std::string> pending;
    for (const std::string& line : r.lines) {
      std::vector<std::string> f = absl::StrSplit(line, ' ');
      ASSERT_NE(f[0], "F") << line;
      if (f[0] == "B") {
        pending = f;
      } else if (f[0] == "E") {
        ASSERT_FALSE(pending.empty());
        if (pending[1] == "U") {
          model.erase(pending[2]);
        } else {
          model[pending[2]] = {std::stoull(pending[3]), std::stoull(pending[4])};
          // The temp file (and any left over by a killed round) was renamed.
          if (pending[1] == "T") model.erase(pending[2] + "_7.tmp");
        }
        pending.clear();
      }
    }

    auto opened = Engine::Open([&] {
      EngineOptions o;
      o.backing_dir = backing;
      o.index_dir = index;
      o.node_id = "crash-node";
      o.extent_bytes = 4 << 20;
      o.log = [round](absl::string_view line) {  // KVFS_TEST_LOG=1 shows recovery
        if (std::getenv("KVFS_TEST_LOG")) {
          std::fprintf(stderr, "[round %d] %s\n", round, std::string(line).c_str());
        }
      };
      return o;
    }());
    ASSERT_TRUE(opened.ok()) << opened.status();
    Engine& e = **opened;
    EXPECT_TRUE(e.problems().empty()) << e.problems()[0];

    // The operation in flight may or may not have happened, never partly.
    if (!pending.empty()) {
      ++pending_rounds;
      const std::string& path = pending[2];
      std::optional<Content> old;
      if (auto it = model.find(path); it != model.end()) old = it->second;
      if (pending[1] == "U") {
        std::optional<Content> now = Either(e, path, old, std::nullopt);
        if (now) model[path] = *now; else model.erase(path);
      } else {
        Content fresh{std::stoull(pending[3]), std::stoull(pending[4])};
        std::optional<Content> now = Either(e, path, old, fresh);
        EXPECT_TRUE(now || !old) << path << " vanished";
        if (now) model[path] = *now; else model.erase(path);
        if (pending[1] == "T") {  // the temp file may have been committed
          const std::string tmp = path + "_7.tmp";
          std::optional<Content> old_tmp;
          if (auto it = model.find(tmp); it != model.end()) old_tmp = it->second;
          std::optional<Content> t = Either(e, tmp, old_tmp, fresh);
          // A temp file goes away only by being renamed to the final name.
          EXPECT_TRUE(t || !old_tmp || (now && *now == fresh)) << tmp << " vanished";
          if (t) {
            EXPECT_FALSE(now && *now == fresh && *t == fresh)
                << "both temp and final hold the new data";
            model[tmp] = *t;
          } else {
            model.erase(tmp);
          }
        }
      }
    }

    // Exactly the committed files, bit-exact.
    absl::StatusOr<std::vector<TreeEntry>> tree = e.ListTree();
    ASSERT_TRUE(tree.ok());
    size_t files = 0;
    for (const TreeEntry& t : *tree) {
      if (t.inode.is_dir) continue;
      ++files;
      auto it = model.find(t.path);
      ASSERT_NE(it, model.end()) << "uncommitted file visible: " << t.path;
      absl::StatusOr<std::string> got = e.GetFile(t.path);
      ASSERT_TRUE(got.ok()) << t.path << ": " << got.status();
      ASSERT_EQ(got->size(), it->second.size) << t.path;
      ASSERT_TRUE(*got == Pattern(it->second.seed, it->second.size)) << t.path;
    }
    if (files != model.size()) {
      for (const auto& [path, c] : model) {
        bool found = false;
        for (const TreeEntry& t : *tree) found |= t.path == path;
        EXPECT_TRUE(found) << "committed file missing: " << path;
      }
    }
    ASSERT_EQ(files, model.size());
  }
  std::printf("%d kills, %d with an operation in flight, %zu files at the end\n", killed,
              pending_rounds, model.size());
  EXPECT_GE(killed, 50);
  EXPECT_GT(pending_rounds, kRounds / 2);
}

}  // namespace
}  // namespace kvfs
