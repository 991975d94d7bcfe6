// The node lock where flock does not reach (node_lock.h): a live holder's
// heartbeat keeps a second process of its node out, a stale one is taken
// over, a holder crashed on this host at once, a holder that finds another
// process's line in the file stops writing, and of two processes that find
// the node free at once, the one whose line was overwritten refuses.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "kvfs/backing_dir.h"
#include "kvfs/errors.h"
#include "kvfs/node_lock.h"
#include "tests/node_util.h"
#include "tests/sshfs_util.h"
#include "tests/test_util.h"

namespace kvfs {
namespace {

using testing::MustOpen;
using testing::NodeOptions;
using testing::TempDir;

constexpr int64_t kBeatNs = 200'000'000;  // 0.2 s: a holder is watched 0.8 s

std::string LockPath(const EngineOptions& o) {
  return o.backing_dir + "/nodes/" + o.node_id + "/lock";
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteLock(const std::string& path, const std::string& holder, uint64_t beat,
               const std::string& token, const std::string& pid_namespace) {
  std::ofstream(path, std::ios::trunc)
      << holder << "\n" << absl::StrFormat("heartbeat %020u %s %s\n", beat, token, pid_namespace);
}

// Options of node "n" with a short heartbeat, logging into `log`.
struct Node {
  explicit Node(const TempDir& dir, const std::string& index = "index-n") {
    o = NodeOptions(dir, "n");
    o.index_dir = dir.Sub(index);
    o.node_heartbeat_ns = kBeatNs;
    o.log = [this](absl::string_view line) {
      std::lock_guard lock(mu);
      log += std::string(line) + "\n";
    };
  }
  std::string Log() {
    std::lock_guard lock(mu);
    return log;
  }
  EngineOptions o;
  std::mutex mu;
  std::string log;
};

// The node's directory and lock file exist once it was opened once.
void OpenOnce(Node& n) {
  auto e = MustOpen(n.o);
  ASSERT_TRUE(e);
  e.reset();
  EXPECT_EQ(Slurp(LockPath(n.o)).substr(Slurp(LockPath(n.o)).find('\n') + 1), "stopped\n")
      << "a clean exit says so";
}

double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

TEST(NodeLock, ALiveHolderElsewhereKeepsItsNode) {
  TempDir dir;
  Node n(dir);
  OpenOnce(n);
  // A process on another machine holds the node: its flock does not reach
  // here, its heartbeat does.
  std::atomic<bool> stop{false};
  WriteLock(LockPath(n.o), "pid 4242 on host other-machine, serving /mnt/kv", 0, "feedc0de",
            "pid:[1]");
  std::thread holder([&] {
    for (uint64_t beat = 1; !stop; ++beat) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      WriteLock(LockPath(n.o), "pid 4242 on host other-machine, serving /mnt/kv", beat,
                "feedc0de", "pid:[1]");
    }
  });
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(n.o);
  stop = true;
  holder.join();
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(ErrnoOf(e.status()), EBUSY);
  const std::string message(e.status().message());
  EXPECT_NE(message.find("already in use (pid 4242 on host other-machine, serving /mnt/kv"),
            std::string::npos) << message;
  EXPECT_NE(message.find("heartbeat moves"), std::string::npos) << message;
  EXPECT_NE(message.find("choose another node id"), std::string::npos) << message;
}

TEST(NodeLock, AHolderWhoseHeartbeatStoodStillIsTakenOver) {
  TempDir dir;
  Node n(dir);
  OpenOnce(n);
  WriteLock(LockPath(n.o), "pid 4242 on host other-machine", 17, "feedc0de", "pid:[1]");
  const auto start = std::chrono::steady_clock::now();
  auto e = MustOpen(n.o);
  ASSERT_TRUE(e);
  EXPECT_GE(SecondsSince(start), 4 * kBeatNs / 1e9) << "watched four periods first";
  EXPECT_NE(n.Log().find("was held by pid 4242 on host other-machine, whose lock file's "
                         "heartbeat has not moved"),
            std::string::npos) << n.Log();
  // The file is this process's now, and beats.
  const std::string mine = Slurp(LockPath(n.o));
  EXPECT_EQ(mine.rfind(absl::StrCat("pid ", ::getpid(), " on host "), 0), 0u) << mine;
  std::this_thread::sleep_for(std::chrono::nanoseconds(3 * kBeatNs));
  EXPECT_NE(Slurp(LockPath(n.o)), mine);
  EXPECT_TRUE(e->PutFile("f", "x").ok());
}

TEST(NodeLock, AHolderThatDiedOnThisHostIsTakenAtOnce) {
  TempDir dir;
  Node n(dir);
  n.o.node_heartbeat_ns = 5'000'000'000;  // a watch would take 20 s
  OpenOnce(n);
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);  // that pid is free now
  WriteLock(LockPath(n.o), absl::StrCat("pid ", child, " on host ", ThisHostName()), 3,
            "feedc0de", ThisPidNamespace());
  const auto start = std::chrono::steady_clock::now();
  auto e = MustOpen(n.o);
  ASSERT_TRUE(e);
  EXPECT_LT(SecondsSince(start), 4.0);
  EXPECT_EQ(n.Log().find("taking the node over"), std::string::npos) << n.Log();
}

TEST(NodeLock, AHolderThatFindsAnotherProcessesLineStopsWriting) {
  TempDir dir;
  Node n(dir);
  auto e = MustOpen(n.o);
  ASSERT_TRUE(e);
  ASSERT_TRUE(e->PutFile("before", "x").ok());
  EXPECT_FALSE(e->read_only());
  // A second process took the node too (both started within one period).
  WriteLock(LockPath(n.o), "pid 4242 on host other-machine", 0, "feedc0de", "pid:[1]");
  absl::Status s;
  for (int i = 0; i < 100 && s.ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    s = e->PutFile("after" + std::to_string(i), "y").status();
  }
  EXPECT_EQ(ErrnoOf(s), EIO) << s;
  EXPECT_NE(s.message().find("the node lock was lost: pid 4242 on host other-machine"),
            std::string::npos) << s.message();
  EXPECT_NE(n.Log().find("the node lock was lost"), std::string::npos) << n.Log();
  EXPECT_TRUE(e->read_only());
  EXPECT_TRUE(e->Stat("before").ok()) << "reads go on";
  // The other process's line stays: this one neither beats nor marks it stopped.
  e.reset();
  EXPECT_NE(Slurp(LockPath(n.o)).find("feedc0de"), std::string::npos);
}

// Overwrites the lock file at `path` with another process's line as soon as
// this process's own line (a heartbeat, not "stopped") is in it: what a
// second process that found the node free at the same moment does.
std::thread OverwriteOnceWritten(const std::string& path) {
  return std::thread([path] {
    const std::string mine = absl::StrCat("pid ", ::getpid(), " on host ");
    for (int i = 0; i < 10'000; ++i) {
      const std::string text = Slurp(path);
      if (text.rfind(mine, 0) == 0 && text.find("\nheartbeat ") != std::string::npos) {
        WriteLock(path, "pid 4242 on host other-machine", 0, "feedc0de", "pid:[1]");
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
}

TEST(NodeLock, OfTwoProcessesThatFindTheNodeFreeTheOneOverwrittenRefuses) {
  TempDir dir;
  Node n(dir);
  OpenOnce(n);
  const BackingLayout layout{n.o.backing_dir, n.o.node_id};
  ASSERT_EQ(layout.LockFile(), LockPath(n.o));
  constexpr int64_t kSettleNs = 500'000'000;
  std::thread other = OverwriteOnceWritten(layout.LockFile());
  absl::StatusOr<std::unique_ptr<NodeLock>> lost =
      NodeLock::Acquire(layout, kBeatNs, kSettleNs, nullptr);
  other.join();
  ASSERT_FALSE(lost.ok()) << "both processes got in";
  EXPECT_EQ(ErrnoOf(lost.status()), EBUSY);
  const std::string message(lost.status().message());
  EXPECT_NE(message.find("already in use (pid 4242 on host other-machine"), std::string::npos)
      << message;
  EXPECT_NE(message.find("took the node at the same moment"), std::string::npos) << message;
  EXPECT_NE(Slurp(layout.LockFile()).find("feedc0de"), std::string::npos)
      << "the loser leaves the winner's line";
  // Alone, a process settles and gets in: here after watching the other
  // line stand still, then settling.
  std::string note;
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<NodeLock>> won =
      NodeLock::Acquire(layout, kBeatNs, kSettleNs, &note);
  ASSERT_TRUE(won.ok()) << won.status();
  EXPECT_GE(SecondsSince(start), (4 * kBeatNs + kSettleNs) / 1e9);
  EXPECT_NE(note.find("taking the node over"), std::string::npos) << note;
  const std::string text = Slurp(layout.LockFile());
  EXPECT_EQ(text.rfind(absl::StrCat("pid ", ::getpid(), " on host "), 0), 0u) << text;
}

TEST(NodeLock, OnlyFilesystemsWhoseFlockReachesEveryClientSkipTheSettle) {
  TempDir dir;
  if (FlockIsMachineLocal(dir.path())) {
    EXPECT_EQ(NodeLock::SettleFor(dir.path(), 5'000'000'000), 0);
  }
  EXPECT_EQ(NodeLock::SettleFor(dir.path(), 0), 0) << "no heartbeat, no settle";
  EXPECT_FALSE(FlockIsMachineLocal(dir.Sub("missing"))) << "unknown: settle";
  EXPECT_EQ(NodeLock::SettleFor(dir.Sub("missing"), 5'000'000'000), 500'000'000);
  EXPECT_EQ(NodeLock::SettleFor(dir.Sub("missing"), 60'000'000'000), 1'000'000'000);
}

// Two views of one directory over sshfs, as two machines would have: flock
// on one does not reach the other, and before the heartbeat the second
// process of the node got in; before the read-back, two processes that
// found the node free at the same moment both did.
TEST(NodeLock, TheSameNodeThroughTwoSshfsViewsIsRefused) {
  if (std::string why = testing::SshfsView::SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  const std::string remote = testing::SshfsView::Remote(dir);
  testing::SshfsView view(dir, remote, "sshfs");
  ASSERT_TRUE(view.Start());
  Node first(dir, "index-first");
  first.o.backing_dir = remote + "/backing";
  Node second(dir, "index-second");
  second.o.backing_dir = view.Path("backing");
  // A watch of 4 s, ended by the first's beats (0.2 s) when it refuses: an
  // open that did not watch stays well below, even on a loaded machine.
  second.o.node_heartbeat_ns = 1'000'000'000;
  auto a = MustOpen(first.o);
  ASSERT_TRUE(a);
  absl::StatusOr<std::unique_ptr<Engine>> b = Engine::Open(second.o);
  ASSERT_FALSE(b.ok()) << "the node's second process got in";
  EXPECT_EQ(ErrnoOf(b.status()), EBUSY);
  EXPECT_NE(b.status().message().find("heartbeat moves"), std::string::npos)
      << b.status().message();
  // Once the first stops cleanly, the node opens through the view at once.
  a.reset();
  const auto start = std::chrono::steady_clock::now();
  auto c = MustOpen(second.o);
  ASSERT_TRUE(c);
  EXPECT_LT(SecondsSince(start), 4 * second.o.node_heartbeat_ns / 1e9);
  EXPECT_FALSE(FlockIsMachineLocal(view.Path("backing")));
  c.reset();
  // A process that finds the node free through sshfs settles before it
  // writes anything: one that found it free at the same moment and wrote
  // its line after this one's wins, and this one refuses.
  second.o.node_heartbeat_ns = 5'000'000'000;  // the default: settles 0.5 s
  std::thread other = OverwriteOnceWritten(LockPath(first.o));
  absl::StatusOr<std::unique_ptr<Engine>> d = Engine::Open(second.o);
  other.join();
  ASSERT_FALSE(d.ok()) << "both processes got in";
  EXPECT_EQ(ErrnoOf(d.status()), EBUSY);
  EXPECT_NE(d.status().message().find("took the node at the same moment"), std::string::npos)
      << d.status().message();
  EXPECT_NE(Slurp(LockPath(first.o)).find("feedc0de"), std::string::npos);
}

}  // namespace
}  // namespace kvfs
