#include "kvfs/backing_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "kvfs/errors.h"

namespace kvfs {
namespace {

constexpr int kNumberDigits = 10;

std::string NumberedName(uint64_t n, absl::string_view ext) {
  return absl::StrFormat("%010u%s", n, ext);
}

std::string NewUuid() {
  std::random_device rd;
  std::mt19937_64 gen((static_cast<uint64_t>(rd()) << 32) ^ rd() ^
                      static_cast<uint64_t>(::time(nullptr)));
  return absl::StrFormat("%016x%016x", gen(), gen());
}

// Creates the format file of a new backing directory. link() makes the
// publication exclusive: two nodes initialising at once agree on one uuid.
absl::StatusOr<BackingFormat> InitializeFormat(const BackingLayout& layout) {
  BackingFormat format;
  format.uuid = NewUuid();
  format.created_unix = ::time(nullptr);
  const std::string tmp =
      absl::StrCat(layout.root, "/.kvfs-format.", ::getpid(), ".", format.uuid);
  {
    absl::StatusOr<PosixFile> f =
        PosixFile::Open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (!f.ok()) return f.status();
    absl::Status s = f->WriteAll(EncodeBackingFormat(format));
    if (s.ok() && ::fsync(f->fd()) != 0) s = SysError(absl::StrCat("fsync ", tmp));
    if (!s.ok()) {
      ::unlink(tmp.c_str());
      return s;
    }
  }
  int rc = ::link(tmp.c_str(), layout.FormatFile().c_str());
  int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0 && err != EEXIST) {
    return SysError(err, absl::StrCat("create ", layout.FormatFile()));
  }
  if (absl::Status s = SyncDirectory(layout.root); !s.ok()) return s;
  if (rc != 0) {  // another node won the race: use its format file
    absl::StatusOr<std::string> text = ReadSmallFile(layout.FormatFile());
    if (!text.ok()) return text.status();
    return DecodeBackingFormat(*text, layout.FormatFile());
  }
  return format;
}

absl::StatusOr<BackingFormat> OpenOrInitializeFormat(const BackingLayout& layout) {
  absl::StatusOr<std::string> text = ReadSmallFile(layout.FormatFile(), 64 << 10);
  if (text.ok()) return DecodeBackingFormat(*text, layout.FormatFile());
  if (ErrnoOf(text.status()) != ENOENT) return text.status();

  absl::StatusOr<std::vector<std::string>> names = ListDirectory(layout.root);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    if (name == "lost+found" || absl::StartsWith(name, ".kvfs-format.")) continue;
    return absl::FailedPreconditionError(absl::StrCat(
        layout.root, " is not empty and has no kvfs-format file (found '", name,
        "'): refusing to use a directory that holds other data; give kvfs an "
        "empty directory or an existing kvfs backing directory"));
  }
  return InitializeFormat(layout);
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ListDirectory(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return SysError(absl::StrCat("open directory ", dir));
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    absl::string_view name = e->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  ::closedir(d);
  return names;
}

std::string BackingLayout::ExtentPath(uint64_t id) const {
  return ExtentsDir() + "/" + NumberedName(id, ".kvx");
}

std::string BackingLayout::JournalPath(uint64_t number) const {
  return JournalDir() + "/" + NumberedName(number, ".kvj");
}

std::string BackingLayout::CheckpointPath(uint64_t number) const {
  return JournalDir() + "/" + NumberedName(number, ".kvc");
}

std::string BackingLayout::CheckpointTempPath(uint64_t number) const {
  return JournalDir() + "/" + NumberedName(number, ".kvc.tmp");
}

absl::StatusOr<NumberedFiles> ListNumberedFiles(const std::string& dir,
                                                absl::string_view extension) {
  absl::StatusOr<std::vector<std::string>> names = ListDirectory(dir);
  if (!names.ok()) return names.status();
  NumberedFiles out;
  for (const std::string& name : *names) {
    absl::string_view stem = name;
    uint64_t n = 0;
    if (absl::ConsumeSuffix(&stem, extension) && stem.size() == kNumberDigits &&
        stem.find_first_not_of("0123456789") == absl::string_view::npos &&
        absl::SimpleAtoi(stem, &n) && n > 0) {
      out.numbers.push_back(n);
    } else {
      out.foreign.push_back(dir + "/" + name);
    }
  }
  std::sort(out.numbers.begin(), out.numbers.end());
  std::sort(out.foreign.begin(), out.foreign.end());
  return out;
}

absl::StatusOr<InspectedBacking> InspectBackingDir(const std::string& root,
                                                   const std::string& node_id) {
  if (absl::Status s = ValidateNodeId(node_id); !s.ok()) return s;
  char resolved[PATH_MAX];
  if (::realpath(root.c_str(), resolved) == nullptr) {
    return SysError(absl::StrCat("backing directory ", root));
  }
  InspectedBacking out;
  out.layout = BackingLayout{resolved, node_id};
  absl::StatusOr<std::string> text = ReadSmallFile(out.layout.FormatFile(), 64 << 10);
  if (!text.ok()) {
    if (ErrnoOf(text.status()) == ENOENT) {
      return ErrnoError(ENOENT, absl::StrCat(root, " is not a kvfs backing directory (no ",
                                             out.layout.FormatFile(), ")"));
    }
    return text.status();
  }
  absl::StatusOr<BackingFormat> format = DecodeBackingFormat(*text, out.layout.FormatFile());
  if (!format.ok()) return format.status();
  out.format = *std::move(format);
  return out;
}

absl::Status BackingDir::NoteServing(const std::string& mountpoint) {
  return lock_->NoteServing(mountpoint);
}

bool BackingDir::CanPunchHoles() const {
  // The holder line is far shorter than 1 MiB: nothing of the file changes.
  const int mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
  return ::fallocate(lock_->file().fd(), mode, 1 << 20, 4096) == 0 ||
         (errno != EOPNOTSUPP && errno != ENOSYS);
}

absl::StatusOr<std::unique_ptr<BackingDir>> BackingDir::Open(
    const std::string& root, const std::string& node_id, int64_t heartbeat_ns,
    std::string* note) {
  if (absl::Status s = ValidateNodeId(node_id); !s.ok()) return s;
  char resolved[PATH_MAX];
  if (::realpath(root.c_str(), resolved) == nullptr) {
    return SysError(absl::StrCat("backing directory ", root));
  }
  struct stat st;
  if (::stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode)) {
    return ErrnoError(ENOTDIR, absl::StrCat("backing directory ", root,
                                            " is not a directory"));
  }
  BackingLayout layout{resolved, node_id};
  absl::StatusOr<BackingFormat> format = OpenOrInitializeFormat(layout);
  if (!format.ok()) return format.status();
  for (const std::string& dir : {layout.NodesDir(), layout.NodeDir(),
                                 layout.ExtentsDir(), layout.JournalDir()}) {
    if (absl::Status s = EnsureDirectory(dir); !s.ok()) return s;
  }
  absl::StatusOr<std::unique_ptr<NodeLock>> lock = NodeLock::Acquire(
      layout, heartbeat_ns, NodeLock::SettleFor(layout.NodeDir(), heartbeat_ns), note);
  if (!lock.ok()) return lock.status();
  return std::unique_ptr<BackingDir>(
      new BackingDir(std::move(layout), *std::move(format), *std::move(lock)));
}

}  // namespace kvfs
