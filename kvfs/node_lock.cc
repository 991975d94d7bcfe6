#include "kvfs/node_lock.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "kvfs/backing_dir.h"
#include "kvfs/errors.h"

namespace kvfs {
namespace {

// A holder is watched this many heartbeat periods before its node is taken.
constexpr int64_t kWatchedBeats = 4;

// A zombie counts as gone: a daemon killed -9 stays one until reaped.
bool ProcessAlive(long pid) {
  if (pid == ::getpid()) return true;
  absl::StatusOr<std::string> stat = ReadSmallFile(absl::StrCat("/proc/", pid, "/stat"), 4096);
  if (!stat.ok()) return false;
  const size_t paren = stat->rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat->size()) return true;
  const char state = (*stat)[paren + 2];
  return state != 'Z' && state != 'X';
}

std::string NewToken() {
  std::random_device rd;
  return absl::StrFormat("%08x%08x", rd(), rd());
}

// The lock file's two lines; either may be missing (a new file, or one
// written before the heartbeat existed).
struct LockText {
  std::string holder;
  std::string beat;
};
LockText SplitLockText(absl::string_view text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  LockText t;
  if (!lines.empty()) t.holder = std::string(lines[0]);
  if (lines.size() > 1) t.beat = std::string(lines[1]);
  return t;
}

struct BeatLine {
  bool stopped = false;
  std::string token;
  std::string pid_namespace;
};
std::optional<BeatLine> ParseBeat(absl::string_view line) {
  if (line == "stopped") return BeatLine{true, "", ""};
  std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
  uint64_t count = 0;
  if (f.size() != 4 || f[0] != "heartbeat" || !absl::SimpleAtoi(f[1], &count)) {
    return std::nullopt;
  }
  return BeatLine{false, std::string(f[2]), std::string(f[3])};
}

absl::StatusOr<LockText> ReadLockText(const std::string& path) {
  absl::StatusOr<std::string> text = ReadSmallFile(path, 8192);
  if (!text.ok()) return text.status();
  return SplitLockText(*text);
}

// Watches a holder's heartbeat line for kWatchedBeats periods. Returns
// whether it moved (a live holder); a clean exit seen meanwhile is none.
bool HeartbeatMoves(const std::string& path, const std::string& first, int64_t heartbeat_ns) {
  const int64_t deadline = absl::GetCurrentTimeNanos() + kWatchedBeats * heartbeat_ns;
  while (absl::GetCurrentTimeNanos() < deadline) {
    std::this_thread::sleep_for(std::chrono::nanoseconds(heartbeat_ns / 4));
    absl::StatusOr<LockText> now = ReadLockText(path);
    if (!now.ok() || now->beat == first) continue;
    std::optional<BeatLine> beat = ParseBeat(now->beat);
    return !(beat && beat->stopped);
  }
  return false;
}

}  // namespace

bool FlockIsMachineLocal(const std::string& path) {
  struct statfs fs {};
  if (::statfs(path.c_str(), &fs) != 0) return false;
  switch (static_cast<uint64_t>(fs.f_type)) {
    case EXT4_SUPER_MAGIC:  // also ext2 and ext3
    case XFS_SUPER_MAGIC:
    case BTRFS_SUPER_MAGIC:
    case F2FS_SUPER_MAGIC:
    case TMPFS_MAGIC:
    case RAMFS_MAGIC:
    case OVERLAYFS_SUPER_MAGIC:
    case 0x2fc12fc1:  // ZFS
      return true;
    default:
      return false;
  }
}

std::string ThisHostName() {
  char host[HOST_NAME_MAX + 1] = {};
  ::gethostname(host, sizeof(host) - 1);
  return host;
}

std::string ThisPidNamespace() {
  char buf[64] = {};
  const ssize_t n = ::readlink("/proc/self/ns/pid", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "-";
}

std::optional<NodeHolder> ParseNodeHolder(absl::string_view text) {
  text = text.substr(0, text.find('\n'));  // the heartbeat line follows
  text = absl::StripTrailingAsciiWhitespace(text);
  NodeHolder h;
  if (!absl::ConsumePrefix(&text, "pid ")) return std::nullopt;
  const size_t host_at = text.find(" on host ");
  if (host_at == absl::string_view::npos || !absl::SimpleAtoi(text.substr(0, host_at), &h.pid)) {
    return std::nullopt;
  }
  text.remove_prefix(host_at + std::strlen(" on host "));
  const size_t serving_at = text.find(", serving ");
  h.host = std::string(text.substr(0, serving_at));
  if (serving_at != absl::string_view::npos) {
    h.serving = std::string(text.substr(serving_at + std::strlen(", serving ")));
  }
  return h;
}

bool NodeIsLocked(const BackingLayout& layout, std::string* holder) {
  const int fd = ::open(layout.LockFile().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;  // never mounted
  bool locked = false;
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    locked = errno == EWOULDBLOCK;
  } else {
    ::flock(fd, LOCK_UN);
  }
  ::close(fd);
  if (locked && holder != nullptr) {
    absl::StatusOr<LockText> who = ReadLockText(layout.LockFile());
    *holder = who.ok() && !who->holder.empty() ? who->holder : "another process";
  }
  return locked;
}

std::optional<NodeHolder> FindLocalHolderServing(const std::string& root,
                                                 const std::string& mountpoint) {
  absl::StatusOr<std::vector<std::string>> nodes =
      ListDirectory(BackingLayout{root, ""}.NodesDir());
  if (!nodes.ok()) return std::nullopt;
  const std::string host = ThisHostName();
  for (const std::string& node : *nodes) {
    absl::StatusOr<std::string> text = ReadSmallFile(BackingLayout{root, node}.LockFile(), 8192);
    if (!text.ok()) continue;
    std::optional<NodeHolder> h = ParseNodeHolder(*text);
    if (h && h->host == host && h->serving == mountpoint) return h;
  }
  return std::nullopt;
}

int64_t NodeLock::SettleFor(const std::string& path, int64_t heartbeat_ns) {
  if (heartbeat_ns <= 0 || FlockIsMachineLocal(path)) return 0;
  return std::min<int64_t>(heartbeat_ns / 10, 1'000'000'000);
}

absl::StatusOr<std::unique_ptr<NodeLock>> NodeLock::Acquire(const BackingLayout& layout,
                                                            int64_t heartbeat_ns,
                                                            int64_t settle_ns,
                                                            std::string* note) {
  const std::string path = layout.LockFile();
  absl::StatusOr<PosixFile> file = PosixFile::Open(path, O_RDWR | O_CREAT, 0644);
  if (!file.ok()) return file.status();
  auto in_use = [&](const std::string& holder, absl::string_view why) {
    return ErrnoError(EBUSY, absl::StrCat(
        "node '", layout.node_id, "' of backing directory ", layout.root,
        " is already in use (", holder.empty() ? "another process" : holder,
        "; lock file ", path, why, "): stop that process or choose another node id"));
  };
  if (::flock(file->fd(), LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err != EWOULDBLOCK) return SysError(err, absl::StrCat("lock ", path));
    absl::StatusOr<LockText> who = ReadLockText(path);
    return in_use(who.ok() ? who->holder : "", "");
  }
  // The flock is ours. Where the filesystem does not share flocks between
  // its clients, that proves nothing: the heartbeat line says more.
  absl::StatusOr<LockText> last = ReadLockText(path);
  std::optional<BeatLine> beat = last.ok() ? ParseBeat(last->beat) : std::nullopt;
  std::optional<NodeHolder> holder = last.ok() ? ParseNodeHolder(last->holder) : std::nullopt;
  if (heartbeat_ns > 0 && beat && !beat->stopped && holder) {
    const bool same_host =
        holder->host == ThisHostName() && beat->pid_namespace == ThisPidNamespace();
    if (!same_host || ProcessAlive(holder->pid)) {
      bool moves = HeartbeatMoves(path, last->beat, heartbeat_ns);
      std::string who = last->holder;
      if (!moves) {
        // Once more, right before this process writes its line: the watch
        // samples only every quarter period, and a process that wrote its
        // line meanwhile is settling, sure to see this one's in time.
        absl::StatusOr<LockText> again = ReadLockText(path);
        if (again.ok() && again->beat != last->beat) {
          std::optional<BeatLine> b = ParseBeat(again->beat);
          moves = !(b && b->stopped);
          who = again->holder;
        }
      }
      if (moves) {
        return in_use(who, ", whose heartbeat moves: this filesystem does not share flock "
                           "locks between its clients");
      }
      if (note != nullptr) {
        *note = absl::StrCat(
            "node '", layout.node_id, "' was held by ", last->holder,
            ", whose lock file's heartbeat has not moved for ",
            kWatchedBeats * heartbeat_ns / 1'000'000'000,
            " s and that did not stop cleanly: taking the node over");
      }
    }
  }
  std::unique_ptr<NodeLock> lock(new NodeLock(*std::move(file), NewToken()));
  {
    std::lock_guard guard(lock->mu_);
    if (absl::Status s = lock->WriteLocked(false); !s.ok()) return s;
  }
  if (heartbeat_ns > 0 && settle_ns > 0) {
    // Another process that found the node free before this line was written
    // writes its own within the settle time; the later line wins the file.
    std::this_thread::sleep_for(std::chrono::nanoseconds(settle_ns));
    absl::StatusOr<LockText> now = ReadLockText(path);
    std::optional<BeatLine> mine = now.ok() ? ParseBeat(now->beat) : std::nullopt;
    if (!mine || mine->stopped || mine->token != lock->token_) {
      std::lock_guard guard(lock->mu_);
      lock->lost_ = true;  // the file may be another process's: leave it
      if (!now.ok()) return now.status();
      return in_use(now->holder,
                    ", which took the node at the same moment: this filesystem does not "
                    "share flock locks between its clients");
    }
  }
  if (heartbeat_ns > 0) {
    lock->heartbeat_.Start(std::chrono::nanoseconds(heartbeat_ns),
                           [l = lock.get()] { l->Beat(); });
  }
  return lock;
}

NodeLock::~NodeLock() {
  heartbeat_.Stop();
  std::lock_guard guard(mu_);
  if (!lost_) (void)WriteLocked(true);
}

absl::Status NodeLock::NoteServing(const std::string& mountpoint) {
  std::lock_guard guard(mu_);
  serving_ = mountpoint;
  return WriteLocked(false);
}

void NodeLock::OnLost(std::function<void(const std::string&)> fn) {
  std::lock_guard guard(mu_);
  on_lost_ = std::move(fn);
}

// Written over the old text and then cut to length, so that a reader never
// meets an empty file; synced, so that other clients of a network
// filesystem see each beat.
absl::Status NodeLock::WriteLocked(bool stopped) {
  std::string text = absl::StrCat("pid ", ::getpid(), " on host ", ThisHostName());
  if (!serving_.empty()) absl::StrAppend(&text, ", serving ", serving_);
  if (stopped) {
    text += "\nstopped\n";
  } else {
    absl::StrAppendFormat(&text, "\nheartbeat %020u %s %s\n", beats_, token_, ThisPidNamespace());
  }
  if (absl::Status s = file_.PwriteFull(text, 0); !s.ok()) return s;
  if (::ftruncate(file_.fd(), static_cast<off_t>(text.size())) != 0) {
    return SysError(absl::StrCat("truncate ", file_.path()));
  }
  return file_.DataSync();
}

void NodeLock::Beat() {
  std::lock_guard guard(mu_);
  if (lost_) return;
  // Read afresh (a network filesystem revalidates at open): another
  // process's line here means it took the node too.
  absl::StatusOr<LockText> now = ReadLockText(file_.path());
  std::optional<BeatLine> beat = now.ok() ? ParseBeat(now->beat) : std::nullopt;
  if (beat && (beat->stopped || beat->token != token_)) {
    lost_ = true;
    if (on_lost_) {
      on_lost_(absl::StrCat("the node lock was lost: ", now->holder,
                            " wrote its own line into the lock file ", file_.path(),
                            " (two processes started for this node within one heartbeat "
                            "period, on a filesystem that does not share flock locks)"));
    }
    return;
  }
  ++beats_;
  (void)WriteLocked(false);  // a failed beat is retried at the next
}

}  // namespace kvfs
