#define FUSE_USE_VERSION 312
#include "kvfs/fuse_server.h"

#include <fuse_lowlevel.h>
#include <csignal>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "kvfs/control_files.h"
#include "kvfs/errors.h"
#include "kvfs/mount_table.h"
#include "kvfs/posix_file.h"
#include "kvfs/temp_names.h"
#include "kvfs/usage.h"

namespace kvfs {
namespace {

// What fi->fh points at.
struct Handle {
  std::unique_ptr<FileReader> reader;        // a committed file opened to read
  std::shared_ptr<InflightFile> inflight;    // a file being written
  std::vector<std::pair<std::string, Attr>> entries;  // an open directory
  uint64_t control_ino = 0;     // a .kvfs file: which
  std::string control_request;  // .kvfs/evict, .kvfs/du: what was written
  std::optional<std::string> control_answer;  // and, once read, the answer
  off_t control_answer_at = 0;                // the offset of its first byte
};

struct ControlFile {
  const char* name;
  uint64_t ino;
  bool request_answer;  // written, then read; otherwise read-only
};
constexpr ControlFile kControlFiles[] = {
    {kEvictFileName, kEvictFileIno, true},
    {kDuFileName, kDuFileIno, true},
    {kMetricsFileName, kMetricsFileIno, false},
};

const ControlFile* FindControlFile(uint64_t ino) {
  for (const ControlFile& f : kControlFiles) {
    if (f.ino == ino) return &f;
  }
  return nullptr;
}

bool IsControlIno(uint64_t ino) { return ino == kControlDirIno || FindControlFile(ino); }

// .kvfs in the root is the control directory; nothing else may take the name.
bool IsReservedName(uint64_t parent, const char* name) {
  return parent == FUSE_ROOT_ID && std::strcmp(name, kControlDirName) == 0;
}

Attr ControlAttr(uint64_t ino) {
  Attr a;
  a.ino = ino;
  a.is_dir = ino == kControlDirIno;
  const ControlFile* f = FindControlFile(ino);
  a.mode = a.is_dir ? 0500 : f && !f->request_answer ? 0444 : 0600;
  a.mtime_ns = a.ctime_ns = a.atime_ns = absl::GetCurrentTimeNanos();
  return a;
}

FuseServer& Server(fuse_req_t req) {
  return *static_cast<FuseServer*>(fuse_req_userdata(req));
}
Handle* HandleOf(fuse_file_info* fi) { return reinterpret_cast<Handle*>(fi->fh); }

void ReplyStatus(fuse_req_t req, const absl::Status& s) { fuse_reply_err(req, ErrnoOf(s)); }

struct timespec ToTimespec(int64_t ns) {
  return {static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
}

struct stat ToStat(const Attr& a) {
  struct stat st = {};
  st.st_ino = a.ino;
  st.st_mode = (a.is_dir ? S_IFDIR : S_IFREG) | (a.mode & 07777);
  st.st_nlink = a.is_dir ? 2 : 1;
  st.st_uid = ::getuid();
  st.st_gid = ::getgid();
  st.st_size = static_cast<off_t>(a.size);
  st.st_blksize = 1 << 20;
  st.st_blocks = static_cast<blkcnt_t>((a.stored_bytes + 511) / 512);
  st.st_atim = ToTimespec(a.atime_ns);
  st.st_mtim = ToTimespec(a.mtime_ns);
  st.st_ctim = ToTimespec(a.ctime_ns);
  return st;
}

// Two inodes of one file are the same version (the same record).
bool SameVersion(const Inode& a, const Inode& b) {
  return a.extent_id == b.extent_id && a.record_offset == b.record_offset;
}

Attr InflightAttr(uint64_t ino, const InflightFile& f) {
  Attr a;
  a.ino = ino;
  a.mode = 0644;
  a.size = f.writer->size();
  a.stored_bytes = a.size;
  a.mtime_ns = a.ctime_ns = a.atime_ns = absl::GetCurrentTimeNanos();
  return a;
}

void ReplyEntry(fuse_req_t req, const Attr& a, bool changing) {
  const MountOptions& o = Server(req).options();
  fuse_entry_param e = {};
  e.ino = a.ino;
  e.attr = ToStat(a);
  // Files being written change size and may vanish: never cache them.
  e.attr_timeout = changing ? 0 : o.attr_timeout;
  e.entry_timeout = changing ? 0 : o.entry_timeout;
  fuse_reply_entry(req, &e);
}

// ---------------------------------------------------------------- ops

void OpInit(void* userdata, fuse_conn_info* conn) {
  const MountOptions& options = static_cast<FuseServer*>(userdata)->options();
  conn->max_write = 1 << 20;
  // The kernel keeps the smaller of this and the readahead Mount() has set
  // through sysfs by now: a smaller value here would quietly undo it.
  conn->max_readahead = static_cast<unsigned>(options.readahead_bytes);
  // Readahead READs are background requests. As many of them as worker
  // threads leave opens and lookups queued behind READs, all the more as a
  // READ of a cold window (cold_reads.h) holds its thread for the window's
  // whole read. On the H100 machine, with 16 cold readers, an open took
  // 42 ms with 256 allowed on 64 threads (buffered reads); with cold
  // windows, 2-7 ms with 64 on 64 and 0.14-0.19 ms with 64 on 96. So a third
  // of the threads stay free of them.
  conn->max_background = std::clamp(options.threads * 2 / 3, 1u, 64u);
  conn->congestion_threshold = std::max(1u, conn->max_background * 3 / 4);
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;  // files are written once
  // A committed file never changes, and kvfs itself invalidates what does
  // (names, O_TRUNC rewrites), so the kernel need not drop a file's pages
  // whenever the mtime it hears differs: an inflight file's mtime moves at
  // every lookup, and the lookup at rename threw the file's cached pages
  // away (2 ms per 32 MiB on the client's thread, before direct_io writes).
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  FuseServer& s = Server(req);
  if (IsReservedName(parent, name)) return ReplyEntry(req, ControlAttr(kControlDirIno), true);
  if (parent == kControlDirIno) {
    for (const ControlFile& f : kControlFiles) {
      if (std::strcmp(name, f.name) == 0) return ReplyEntry(req, ControlAttr(f.ino), true);
    }
    return (void)fuse_reply_err(req, ENOENT);
  }
  MountMetrics& m = s.metrics();
  const int64_t started = absl::GetCurrentTimeNanos();
  m.lookups.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(s.mu());
    auto it = s.inflight_names().find({parent, name});
    if (it != s.inflight_names().end()) {
      if (auto f = s.FindInflightLocked(it->second)) {
        m.lookup_hits.fetch_add(1, std::memory_order_relaxed);
        return ReplyEntry(req, InflightAttr(it->second, *f), true);
      }
    }
  }
  absl::StatusOr<Attr> a = s.engine().Lookup(parent, name);
  if (!a.ok()) {
    if (ErrnoOf(a.status()) != ENOENT) return ReplyStatus(req, a.status());
    m.lookup_misses.fetch_add(1, std::memory_order_relaxed);
    fuse_entry_param e = {};  // negative entry, cached briefly
    e.entry_timeout = s.options().negative_timeout;
    m.lookup_latency.Observe(absl::GetCurrentTimeNanos() - started);
    return (void)fuse_reply_entry(req, &e);
  }
  m.lookup_hits.fetch_add(1, std::memory_order_relaxed);
  if (!a->is_dir) s.engine().NoteAccess(a->ino, a->atime_ns);
  m.lookup_latency.Observe(absl::GetCurrentTimeNanos() - started);
  ReplyEntry(req, *a, false);
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  FuseServer& s = Server(req);
  if (IsControlIno(ino)) {
    struct stat st = ToStat(ControlAttr(ino));
    return (void)fuse_reply_attr(req, &st, 0);
  }

  if (auto f = s.FindInflight(ino); f && !f->committed) {
    struct stat st = ToStat(InflightAttr(ino, *f));
    return (void)fuse_reply_attr(req, &st, 0);
  }
  absl::StatusOr<Attr> a = s.engine().GetAttr(ino);
  if (!a.ok() && ErrnoOf(a.status()) == ENOENT) {
    if (std::optional<Inode> n = s.OpenReaderInode(ino)) {
      // fstat of an open file whose name was replaced or unlinked since.
      Attr old;
      old.ino = n->ino;
      old.mode = n->mode;
      old.size = n->size;
      old.stored_bytes = n->record_bytes();
      old.mtime_ns = n->mtime_ns;
      old.ctime_ns = n->ctime_ns;
      old.atime_ns = n->atime_ns;
      struct stat st = ToStat(old);
      return (void)fuse_reply_attr(req, &st, 0);
    }
  }
  if (!a.ok()) return ReplyStatus(req, a.status());
  struct stat st = ToStat(*a);
  fuse_reply_attr(req, &st, s.options().attr_timeout);
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
               fuse_file_info*) {
  FuseServer& s = Server(req);
  if (IsControlIno(ino)) {
    struct stat st = ToStat(ControlAttr(ino));  // nothing to change (O_TRUNC, touch)
    return (void)fuse_reply_attr(req, &st, 0);
  }
  if (auto f = s.FindInflight(ino); f && !f->committed) {
    if (to_set & FUSE_SET_ATTR_SIZE) {
      if (absl::Status st = f->writer->Truncate(attr->st_size); !st.ok()) {
        return ReplyStatus(req, st);
      }
    }
    struct stat st = ToStat(InflightAttr(ino, *f));
    return (void)fuse_reply_attr(req, &st, 0);
  }
  absl::StatusOr<Attr> a = s.engine().GetAttr(ino);
  if (!a.ok()) return ReplyStatus(req, a.status());
  if ((to_set & FUSE_SET_ATTR_SIZE) && static_cast<uint64_t>(attr->st_size) != a->size) {
    return (void)fuse_reply_err(req, EPERM);  // committed files are immutable
  }
  if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)) {
    if (absl::Status st = s.engine().RecordAccess(ino); !st.ok()) return ReplyStatus(req, st);
    a = s.engine().GetAttr(ino);
    if (!a.ok()) return ReplyStatus(req, a.status());
  }
  struct stat st = ToStat(*a);
  fuse_reply_attr(req, &st, s.options().attr_timeout);
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  if (IsReservedName(parent, name)) return (void)fuse_reply_err(req, EEXIST);
  if (parent == kControlDirIno) return (void)fuse_reply_err(req, EPERM);
  absl::StatusOr<Attr> a = Server(req).engine().Mkdir(parent, name, mode);
  if (!a.ok()) return ReplyStatus(req, a.status());
  ReplyEntry(req, *a, false);
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  FuseServer& s = Server(req);
  if (IsReservedName(parent, name)) return (void)fuse_reply_err(req, EISDIR);
  if (parent == kControlDirIno) return (void)fuse_reply_err(req, EPERM);
  bool removed_rewrite = false;
  {
    std::lock_guard lock(s.mu());
    auto it = s.inflight_names().find({parent, name});
    if (it != s.inflight_names().end()) {
      uint64_t ino = it->second;
      auto f = s.FindInflightLocked(ino);
      f->unlinked = true;
      s.DetachInflightLocked(ino, *f);
      if (!f->new_version) return (void)fuse_reply_err(req, 0);
      removed_rewrite = true;  // an O_TRUNC rewrite: its committed version goes too
    }
  }
  absl::Status st = s.engine().Unlink(parent, name);
  if (removed_rewrite && ErrnoOf(st) == ENOENT) st = absl::OkStatus();  // evicted meanwhile
  ReplyStatus(req, st);
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (IsReservedName(parent, name) || parent == kControlDirIno) {
    return (void)fuse_reply_err(req, EPERM);
  }
  ReplyStatus(req, Server(req).engine().Rmdir(parent, name));
}

// A file being written under a name that a rename just took loses it: its
// last close must not commit over the file renamed there.
void DisplaceWriterLocked(FuseServer& s, uint64_t parent, const char* name) {
  auto dst = s.inflight_names().find({parent, name});
  if (dst == s.inflight_names().end()) return;
  const uint64_t ino = dst->second;
  auto victim = s.FindInflightLocked(ino);
  victim->unlinked = true;
  s.DetachInflightLocked(ino, *victim);
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags) {
  FuseServer& s = Server(req);
  if (flags & RENAME_EXCHANGE) return (void)fuse_reply_err(req, EINVAL);
  if (IsReservedName(parent, name) || IsReservedName(newparent, newname) ||
      parent == kControlDirIno || newparent == kControlDirIno) {
    return (void)fuse_reply_err(req, EPERM);
  }
  const bool no_replace = flags & RENAME_NOREPLACE;
  std::unique_lock lock(s.mu());
  // A file being written becomes visible, complete, under the new name.
  auto src = s.inflight_names().find({parent, name});
  if (src == s.inflight_names().end()) {
    absl::Status st = s.engine().Rename(parent, name, newparent, newname, no_replace);
    if (st.ok()) DisplaceWriterLocked(s, newparent, newname);
    return ReplyStatus(req, st);
  }
  const uint64_t ino = src->second;
  auto file = s.FindInflightLocked(ino);
  if (no_replace && (s.inflight_names().count({newparent, newname}) ||
                     s.engine().Lookup(newparent, newname).ok())) {
    return (void)fuse_reply_err(req, EEXIST);
  }
  absl::StatusOr<Attr> a = s.engine().Commit(*file->writer, newparent, newname);
  s.CountStore(*file, a.ok());
  if (!a.ok()) return ReplyStatus(req, a.status());
  DisplaceWriterLocked(s, newparent, newname);
  file->committed = true;
  s.DetachInflightLocked(ino, *file);
  if (file->new_version) s.NewVersionCommittedLocked(ino);
  lock.unlock();
  if (file->new_version) s.ForgetCachedData(ino);  // before the rename returns
  fuse_reply_err(req, 0);
}

// Gives the open file description a handle on `file` and replies to the
// create or open request.
void ReplyOpenedForWriting(fuse_req_t req, uint64_t ino, std::shared_ptr<InflightFile> file,
                           fuse_file_info* fi, bool create) {
  auto* h = new Handle;
  h->inflight = file;
  fi->fh = reinterpret_cast<uint64_t>(h);
  // Written bytes go straight to the daemon, not also into the kernel's
  // cache of the mount: one copy less per byte stored (stores of 32 MiB
  // files on the H100 machine: 0.76-0.81x of a plain directory with the
  // cache, 0.85-0.95x without), and the data is not cached twice (mount and
  // extents). A later load fills the cache and keeps it.
  fi->direct_io = 1;
  // Nothing is cached to write back at close (see OpFlush): no FLUSH round
  // trip per store.
  fi->noflush = 1;
  if (create) {
    fuse_entry_param e = {};
    e.ino = ino;
    e.attr = ToStat(InflightAttr(ino, *file));
    fuse_reply_create(req, &e, fi);
  } else {
    fuse_reply_open(req, fi);
  }
}

// Opens (or creates) a file for writing under `parent`/`name`: a new writer,
// or a new version of the committed file `existing_ino` (O_TRUNC).
void StartWriting(fuse_req_t req, fuse_ino_t parent, const std::string& name,
                  uint64_t existing_ino, mode_t mode, fuse_file_info* fi, bool create) {
  FuseServer& s = Server(req);
  absl::StatusOr<std::unique_ptr<FileWriter>> w = s.engine().CreateWriter(mode, existing_ino);
  if (!w.ok()) return ReplyStatus(req, w.status());
  auto file = std::make_shared<InflightFile>();
  const uint64_t ino = (*w)->ino();
  file->writer = *std::move(w);
  file->parent = parent;
  file->name = name;
  file->opens = 1;
  file->started_ns = absl::GetCurrentTimeNanos();
  file->new_version = existing_ino != 0;
  s.metrics().creates.fetch_add(1, std::memory_order_relaxed);
  s.AddInflight(ino, file);
  ReplyOpenedForWriting(req, ino, file, fi, create);
}

// Opens a file being written once more.
bool OpenInflight(fuse_req_t req, uint64_t ino, fuse_file_info* fi, bool reply_create) {
  FuseServer& s = Server(req);
  std::shared_ptr<InflightFile> file = s.FindInflight(ino);
  if (!file) return false;
  {
    // Checked under the lock: the last release of its other descriptor may
    // commit it meanwhile, and then it is opened as the committed file it is.
    std::lock_guard lock(s.mu());
    if (file->committed) return false;
    if (fi->flags & O_TRUNC) {
      if (absl::Status st = file->writer->Truncate(0); !st.ok()) {
        ReplyStatus(req, st);
        return true;
      }
    }
    ++file->opens;
    file->closed_at_ns = 0;
  }
  ReplyOpenedForWriting(req, ino, file, fi, reply_create);
  return true;
}

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  FuseServer& s = Server(req);
  s.ReapTempFiles();
  if (std::strlen(name) > NAME_MAX) return (void)fuse_reply_err(req, ENAMETOOLONG);
  if (IsReservedName(parent, name)) return (void)fuse_reply_err(req, EISDIR);
  if (parent == kControlDirIno) return (void)fuse_reply_err(req, EPERM);
  if (auto f = s.FindInflight(parent, name)) {
    if (fi->flags & O_EXCL) return (void)fuse_reply_err(req, EEXIST);
    uint64_t ino = 0;
    {
      std::lock_guard lock(s.mu());
      auto it = s.inflight_names().find({parent, name});
      if (it != s.inflight_names().end()) ino = it->second;
    }
    // Committed or gone meanwhile: created or rewritten as any other name.
    if (ino != 0 && OpenInflight(req, ino, fi, true)) return;
  }
  absl::StatusOr<Attr> parent_attr = s.engine().GetAttr(parent);
  if (!parent_attr.ok()) return ReplyStatus(req, parent_attr.status());
  if (!parent_attr->is_dir) return (void)fuse_reply_err(req, ENOTDIR);
  uint64_t existing = 0;
  if (absl::StatusOr<Attr> a = s.engine().Lookup(parent, name); a.ok()) {
    if (fi->flags & O_EXCL) return (void)fuse_reply_err(req, EEXIST);
    if (a->is_dir) return (void)fuse_reply_err(req, EISDIR);
    existing = a->ino;
  } else if (ErrnoOf(a.status()) != ENOENT) {
    return ReplyStatus(req, a.status());
  }
  StartWriting(req, parent, name, existing, mode, fi, /*create=*/true);
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  FuseServer& s = Server(req);
  if (ino == kControlDirIno) return (void)fuse_reply_err(req, EISDIR);
  if (const ControlFile* control = FindControlFile(ino)) {
    const int mode = fi->flags & O_ACCMODE;
    if (control->request_answer ? mode != O_RDWR : mode != O_RDONLY) {
      return (void)fuse_reply_err(req, control->request_answer ? EINVAL : EACCES);
    }
    auto* h = new Handle;
    h->control_ino = ino;
    if (ino == kMetricsFileIno) h->control_answer = s.RenderMetrics();
    fi->fh = reinterpret_cast<uint64_t>(h);
    fi->direct_io = 1;  // the answer is made per descriptor, never cached
    return (void)fuse_reply_open(req, fi);
  }
  if (OpenInflight(req, ino, fi, false)) return;
  const uint64_t rewrites_before = s.RewritesCommitted();
  absl::StatusOr<Inode> inode = s.engine().GetInode(ino);
  if (!inode.ok()) return ReplyStatus(req, inode.status());
  if (inode->is_dir) return (void)fuse_reply_err(req, EISDIR);
  if ((fi->flags & O_ACCMODE) != O_RDONLY) {
    // Committed files are immutable; O_TRUNC starts a new version.
    if (!(fi->flags & O_TRUNC)) return (void)fuse_reply_err(req, EPERM);
    return StartWriting(req, inode->parent, inode->name, ino, inode->mode, fi, false);
  }
  absl::StatusOr<std::unique_ptr<FileReader>> r = s.engine().OpenReader(ino);
  if (!r.ok()) return ReplyStatus(req, r.status());
  s.engine().NoteAccess(ino, inode->atime_ns);
  s.metrics().opens.fetch_add(1, std::memory_order_relaxed);
  // Committed bytes never change, so the kernel keeps its cached pages
  // (unless the inode was rewritten in place: ReaderOpened).
  const FuseServer::PageCacheUse cache = s.ReaderOpened((*r)->inode(), rewrites_before);
  fi->keep_cache = cache == FuseServer::PageCacheUse::kKeep;
  fi->direct_io = cache == FuseServer::PageCacheUse::kBypass;
  auto* h = new Handle;
  h->reader = *std::move(r);
  fi->fh = reinterpret_cast<uint64_t>(h);
  fi->noflush = 1;
  fuse_reply_open(req, fi);
}

// The answer to a control file's request.
std::string RunControlRequest(Engine& engine, uint64_t ino, const std::string& text) {
  auto error = [](const absl::Status& s) { return absl::StrCat("error: ", s.message(), "\n"); };
  if (ino == kDuFileIno) {
    absl::StatusOr<UsageRequest> request = ParseUsageRequest(text);
    if (!request.ok()) return error(request.status());
    absl::StatusOr<std::vector<DirUsage>> usage =
        engine.Usage(request->path, request->max_depth);
    return usage.ok() ? FormatUsageAnswer(*usage) : error(usage.status());
  }
  absl::StatusOr<EvictRequest> request = ParseEvictRequest(text);
  if (!request.ok()) return error(request.status());
  absl::StatusOr<std::vector<EvictedFile>> files = engine.Evict(*request);
  return files.ok() ? FormatEvictAnswer(*request, *files) : error(files.status());
}

// .kvfs files: the first read runs the request written before it (or reads
// the snapshot made at open).
void ReadControl(fuse_req_t req, Handle* h, size_t size, off_t off) {
  if (!h->control_answer) {
    h->control_answer = RunControlRequest(Server(req).engine(), h->control_ino,
                                          h->control_request);
    h->control_answer_at = off;  // the request's write moved the file offset here
  }
  const std::string& a = *h->control_answer;
  const size_t from = std::min<size_t>(
      static_cast<size_t>(std::max<off_t>(off - h->control_answer_at, 0)), a.size());
  fuse_reply_buf(req, a.data() + from, std::min(size, a.size() - from));
}

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Handle* h = HandleOf(fi);
  if (h->control_ino != 0) return ReadControl(req, h, size, off);
  MountMetrics& m = Server(req).metrics();
  const int64_t started = absl::GetCurrentTimeNanos();
  thread_local std::string buf;
  buf.resize(size);
  absl::StatusOr<size_t> n = h->reader ? h->reader->Read(off, size, buf.data())
                                       : h->inflight->writer->Read(off, size, buf.data());
  if (!n.ok()) {
    m.io_errors.fetch_add(1, std::memory_order_relaxed);
    return ReplyStatus(req, n.status());
  }
  m.bytes_read.fetch_add(*n, std::memory_order_relaxed);
  if (h->reader) m.load_latency.Observe(absl::GetCurrentTimeNanos() - started);
  fuse_reply_buf(req, buf.data(), *n);
}

void OpWrite(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off,
             fuse_file_info* fi) {
  Handle* h = HandleOf(fi);
  if (h->control_ino != 0) {
    if (ino == kMetricsFileIno || h->control_answer ||
        h->control_request.size() + size > (64 << 10)) {
      return (void)fuse_reply_err(req, EINVAL);
    }
    (void)off;  // a request is written in one piece or appended
    h->control_request.append(data, size);
    return (void)fuse_reply_write(req, size);
  }
  if (!h->inflight || h->inflight->committed) {
    return (void)fuse_reply_err(req, h->inflight ? EPERM : EBADF);
  }
  absl::Status st = h->inflight->writer->Write(off, absl::string_view(data, size));
  MountMetrics& m = Server(req).metrics();
  if (!st.ok()) {
    m.io_errors.fetch_add(1, std::memory_order_relaxed);
    return ReplyStatus(req, st);
  }
  m.bytes_written.fetch_add(size, std::memory_order_relaxed);
  fuse_reply_write(req, size);
}

// Commits a file that is committed at its last close (any name but the
// clients' temp names, which wait for their rename): config.json and its
// O_TRUNC rewrites. A failed commit leaves no file, and is logged: it can
// no longer reach close(). Call with s.mu() held.
void CommitAtCloseLocked(FuseServer& s, uint64_t ino, InflightFile& f, bool* forget_cached) {
  absl::StatusOr<Attr> a = s.engine().Commit(*f.writer, f.parent, f.name);
  s.CountStore(f, a.ok());
  if (!a.ok()) {
    s.engine().Log(absl::StrCat("commit of '", f.name, "' at close failed: ",
                                a.status().message()));
    f.unlinked = true;
  } else {
    f.committed = true;
    *forget_cached = f.new_version;
    if (f.new_version) s.NewVersionCommittedLocked(ino);
  }
  s.DetachInflightLocked(ino, f);
}

// Nothing to do at flush: it comes at every close(), also of a dup'ed
// descriptor whose file stays open (a shell's `echo x > f` opens f, dup2()s
// it onto stdout and closes the original before writing), so it is no place
// to commit. Files kvfs opens for reading or writing set noflush, so only
// the control files are flushed.
void OpFlush(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

void OpRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  FuseServer& s = Server(req);
  std::unique_ptr<Handle> h(HandleOf(fi));
  // Readers of a version since rewritten in place (O_TRUNC) may have put
  // old bytes into the kernel's cache of the inode: drop them as the last goes.
  const bool stale_readers_gone = h->reader && s.ReaderClosed(h->reader->ino());
  bool forget_cached = false;
  if (std::shared_ptr<InflightFile> f = h->inflight) {
    std::lock_guard lock(s.mu());
    if (--f->opens == 0) {
      if (f->committed || f->unlinked) {
        s.DetachInflightLocked(ino, *f);
      } else if (IsTempName(f->name)) {
        // vLLM closes its temp file before renaming it: keep it a while.
        f->closed_at_ns = absl::GetCurrentTimeNanos();
      } else {
        // A regular file (config.json) is committed at its last close.
        CommitAtCloseLocked(s, ino, *f, &forget_cached);
      }
    }
  }
  if (forget_cached) s.ForgetCachedData(ino);
  fuse_reply_err(req, 0);
  if (stale_readers_gone) s.ForgetCachedData(ino);
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  FuseServer& s = Server(req);
  auto h = std::make_unique<Handle>();
  if (ino == kControlDirIno) {
    for (const ControlFile& f : kControlFiles) h->entries.emplace_back(f.name, ControlAttr(f.ino));
    fi->fh = reinterpret_cast<uint64_t>(h.release());
    return (void)fuse_reply_open(req, fi);
  }
  absl::Status st = s.engine().ReadDir(ino, "", [&](absl::string_view name, const Attr& a) {
    h->entries.emplace_back(std::string(name), a);
    return true;
  });
  if (!st.ok()) return ReplyStatus(req, st);
  {
    std::lock_guard lock(s.mu());
    for (const auto& [key, child] : s.inflight_names()) {
      if (key.first != ino) continue;
      Attr a;
      a.ino = child;
      h->entries.emplace_back(key.second, a);
    }
  }
  fi->fh = reinterpret_cast<uint64_t>(h.release());
  fuse_reply_open(req, fi);
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Handle* h = HandleOf(fi);
  std::string buf(size, '\0');
  size_t used = 0;
  // Offsets: 0 ".", 1 "..", then entries; each entry's offset is the next one's.
  for (size_t i = static_cast<size_t>(off); i < h->entries.size() + 2; ++i) {
    struct stat st = {};
    const char* name;
    if (i == 0) {
      name = ".";
      st.st_ino = ino;
      st.st_mode = S_IFDIR;
    } else if (i == 1) {
      name = "..";
      st.st_ino = FUSE_ROOT_ID;
      st.st_mode = S_IFDIR;
    } else {
      const auto& [n, a] = h->entries[i - 2];
      name = n.c_str();
      st.st_ino = a.ino;
      st.st_mode = a.is_dir ? S_IFDIR : S_IFREG;
    }
    size_t need = fuse_add_direntry(req, buf.data() + used, size - used, name, &st, i + 1);
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  delete HandleOf(fi);
  fuse_reply_err(req, 0);
}

// The cache's own size and use: what df shows and what a client's
// free-space check sees (the limit: capacity, lowered to keep the backing
// filesystem's free-space floor).
void OpStatfs(fuse_req_t req, fuse_ino_t) {
  Engine& e = Server(req).engine();
  struct statvfs st;
  if (::statvfs(e.layout().root.c_str(), &st) != 0) return (void)fuse_reply_err(req, errno);
  const CapacityStatus c = e.Capacity();
  constexpr uint64_t kBlock = 4096;
  st.f_bsize = st.f_frsize = kBlock;
  st.f_blocks = c.limit / kBlock;
  st.f_bfree = st.f_bavail = c.limit > c.used ? (c.limit - c.used) / kBlock : 0;
  st.f_namemax = NAME_MAX;
  fuse_reply_statfs(req, &st);
}

const fuse_lowlevel_ops kOps = [] {
  fuse_lowlevel_ops ops = {};
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.getattr = OpGetattr;
  ops.setattr = OpSetattr;
  ops.mkdir = OpMkdir;
  ops.unlink = OpUnlink;
  ops.rmdir = OpRmdir;
  ops.rename = OpRename;
  ops.create = OpCreate;
  ops.open = OpOpen;
  ops.read = OpRead;
  ops.write = OpWrite;
  ops.flush = OpFlush;
  ops.release = OpRelease;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.releasedir = OpReleasedir;
  ops.statfs = OpStatfs;
  return ops;
}();

}  // namespace

// ---------------------------------------------------------------- server

FuseServer::~FuseServer() {
  if (session_ != nullptr) {
    if (signals_set_) fuse_remove_signal_handlers(session_);
    // Unmounted first, a notification still in flight fails at once instead
    // of waiting for the kernel; then no new one starts.
    fuse_session_unmount(session_);
    engine_.SetEvictionListener(nullptr);
    engine_.SetPeerListener(nullptr);
    fuse_session_destroy(session_);
  }
}

std::shared_ptr<InflightFile> FuseServer::FindInflight(uint64_t ino) {
  std::lock_guard lock(mu_);
  return FindInflightLocked(ino);
}

std::shared_ptr<InflightFile> FuseServer::FindInflightLocked(uint64_t ino) {
  auto it = by_ino_.find(ino);
  return it == by_ino_.end() ? nullptr : it->second;
}

std::shared_ptr<InflightFile> FuseServer::FindInflight(uint64_t parent,
                                                       const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = by_name_.find({parent, name});
  if (it == by_name_.end()) return nullptr;
  auto f = by_ino_.find(it->second);
  return f == by_ino_.end() ? nullptr : f->second;
}

void FuseServer::AddInflight(uint64_t ino, std::shared_ptr<InflightFile> file) {
  std::lock_guard lock(mu_);
  auto key = std::make_pair(file->parent, file->name);
  // A second writer of the same name (a duplicate store) replaces the first
  // in the namespace; the first keeps writing into its own record.
  if (auto old = by_name_.find(key); old != by_name_.end()) {
    if (auto f = by_ino_.find(old->second); f != by_ino_.end()) {
      f->second->unlinked = true;
      auto victim = f->second;
      DetachInflightLocked(old->second, *victim);
    }
  }
  by_name_[key] = ino;
  by_ino_[ino] = std::move(file);
}

void FuseServer::DetachInflightLocked(uint64_t ino, InflightFile& file) {
  auto it = by_name_.find({file.parent, file.name});
  if (it != by_name_.end() && it->second == ino) by_name_.erase(it);
  if (file.opens == 0) by_ino_.erase(ino);  // the writer is abandoned if uncommitted
}

FuseServer::PageCacheUse FuseServer::ReaderOpened(const Inode& inode, uint64_t rewrites_before) {
  std::lock_guard lock(mu_);
  OpenReaders& r = open_readers_[inode.ino];
  // Rewrites commit under mu_: if none did since the open began, `inode` is
  // the current version. If one did, it may be old: read past the cache.
  const bool maybe_old = rewrites_.load(std::memory_order_relaxed) != rewrites_before;
  if (r.opens++ == 0) {
    r.version = inode;
    if (maybe_old) return PageCacheUse::kBypass;
  } else if (maybe_old || r.rewritten || !SameVersion(r.version, inode)) {
    return PageCacheUse::kBypass;
  }
  return forgetting_.contains(inode.ino) ? PageCacheUse::kDrop : PageCacheUse::kKeep;
}

bool FuseServer::ReaderClosed(uint64_t ino) {
  std::lock_guard lock(mu_);
  auto it = open_readers_.find(ino);
  if (it == open_readers_.end() || --it->second.opens > 0) return false;
  const bool rewritten = it->second.rewritten;
  open_readers_.erase(it);
  if (rewritten) ++forgetting_[ino];
  return rewritten;
}

std::optional<Inode> FuseServer::OpenReaderInode(uint64_t ino) {
  std::lock_guard lock(mu_);
  auto it = open_readers_.find(ino);
  if (it == open_readers_.end()) return std::nullopt;
  return it->second.version;
}

void FuseServer::ReapTempFiles() {
  const int64_t cutoff =
      absl::GetCurrentTimeNanos() - int64_t{options_.temp_grace_seconds} * 1000000000;
  std::lock_guard lock(mu_);
  std::vector<uint64_t> expired;
  for (const auto& [ino, f] : by_ino_) {
    if (f->opens == 0 && !f->committed && f->closed_at_ns != 0 && f->closed_at_ns < cutoff) {
      expired.push_back(ino);
    }
  }
  for (uint64_t ino : expired) {
    auto f = by_ino_[ino];
    f->unlinked = true;
    DetachInflightLocked(ino, *f);
  }
  metrics_.temp_files_reclaimed.fetch_add(expired.size(), std::memory_order_relaxed);
}

void FuseServer::NewVersionCommittedLocked(uint64_t ino) {
  if (auto it = open_readers_.find(ino); it != open_readers_.end()) it->second.rewritten = true;
  ++forgetting_[ino];
  rewrites_.fetch_add(1, std::memory_order_release);
}

void FuseServer::ForgetCachedData(uint64_t ino) {
  // Fails harmlessly when the kernel has nothing of the inode cached.
  (void)fuse_lowlevel_notify_inval_inode(session_, ino, 0, 0);
  std::lock_guard lock(mu_);
  if (auto it = forgetting_.find(ino); it != forgetting_.end() && --it->second == 0) {
    forgetting_.erase(it);
  }
}

void FuseServer::CountStore(const InflightFile& file, bool ok) {
  if (!ok) {
    metrics_.store_failures.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  metrics_.stores.fetch_add(1, std::memory_order_relaxed);
  metrics_.store_latency.Observe(absl::GetCurrentTimeNanos() - file.started_ns);
}

std::string FuseServer::RenderMetrics() {
  return RenderPrometheus(metrics_, engine_.stats(), engine_.Capacity(), engine_.LiveFiles(),
                          engine_.read_only(), absl::GetCurrentTimeNanos());
}

namespace {

// A FUSE mount's readahead starts at the block layer's default (128 KiB),
// and INIT's max_readahead can only lower it, so one sequential reader
// would keep a single 128 KiB READ in flight. Raise it through sysfs before
// INIT is answered; the device number comes from mountinfo, since stat() of
// the mount point would wait for this very daemon. Without it the mount
// works, only slower: say so and go on.
absl::Status RaiseReadahead(const std::string& mountpoint, unsigned kib) {
  std::string device;
  for (const KvfsMount& m : ReadKvfsMounts()) {
    if (m.mountpoint == mountpoint) device = m.device;  // the last match is the newest mount
  }
  if (device.empty()) return absl::NotFoundError("the mount is not in /proc/self/mountinfo");
  const std::string knob = absl::StrCat("/sys/class/bdi/", device, "/read_ahead_kb");
  FILE* ra = std::fopen(knob.c_str(), "w");
  if (ra == nullptr) return SysError(knob);
  const bool written = std::fprintf(ra, "%u\n", kib) > 0;
  if (std::fclose(ra) != 0 || !written) return SysError(knob);
  return absl::OkStatus();
}

}  // namespace

absl::Status FuseServer::Mount(const std::string& mountpoint) {
  // A metrics file that cannot be written is a wrong option: said now, not
  // every interval in the log.
  if (!options_.metrics_file.empty()) {
    if (absl::Status s = WriteFileAtomically(options_.metrics_file, RenderMetrics()); !s.ok()) {
      return ErrnoError(ErrnoOf(s) != 0 ? ErrnoOf(s) : EIO,
                        absl::StrCat("cannot write the metrics file: ", s.message()));
    }
  }
  std::vector<std::string> args = {
      "kvfs", "-o", absl::StrCat("fsname=kvfs:", engine_.layout().root, ",subtype=kvfs")};
  if (options_.allow_other) {
    args.push_back("-o");
    args.push_back("allow_other");
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  // Resolved before mounting: afterwards the path leads into this daemon.
  char resolved[PATH_MAX];
  const std::string serving = ::realpath(mountpoint.c_str(), resolved) ? resolved : "";
  session_ = fuse_session_new(&fargs, &kOps, sizeof(kOps), this);
  if (session_ == nullptr) return absl::InternalError("fuse_session_new failed");
  if (fuse_set_signal_handlers(session_) != 0) {
    return absl::InternalError("could not install signal handlers");
  }
  signals_set_ = true;
  if (fuse_session_mount(session_, mountpoint.c_str()) != 0) {
    fuse_remove_signal_handlers(session_);
    signals_set_ = false;
    fuse_session_destroy(session_);
    session_ = nullptr;
    return ErrnoError(EIO, absl::StrCat("cannot mount on ", mountpoint,
                                        " (is it an existing directory, and is /dev/fuse "
                                        "usable by this user?)"));
  }
  if (!serving.empty()) {
    if (absl::Status s = engine_.NoteServing(serving); !s.ok()) {
      engine_.Log(absl::StrCat("could not note the mount point in the node's lock file (",
                               s.message(), "); kvfs umount will not wait for this daemon"));
    }
  }
  const unsigned readahead_kib = static_cast<unsigned>(options_.readahead_bytes >> 10);
  if (absl::Status s = RaiseReadahead(serving, readahead_kib); !s.ok()) {
    engine_.Log(absl::StrCat("could not set the mount's readahead to ", readahead_kib,
                             " KiB (", s.message(), "); sequential reads will be slower"));
  }
  // Evicted names vanish from the kernel's caches at once (the engine calls
  // this outside its locks; a name the kernel never cached is no error).
  engine_.SetEvictionListener([session = session_](const std::vector<EvictedFile>& files) {
    for (const EvictedFile& f : files) {
      (void)fuse_lowlevel_notify_delete(session, f.parent, f.ino, f.name.data(),
                                        f.name.size());
    }
  });
  // Names other nodes added, replaced or removed: a cached negative or
  // stale entry would hide the change until it timed out.
  engine_.SetPeerListener([session = session_](const std::vector<NameChange>& changes) {
    for (const NameChange& c : changes) {
      if (c.old_ino != 0) {
        (void)fuse_lowlevel_notify_delete(session, c.parent, c.old_ino, c.name.data(),
                                          c.name.size());
      } else {
        (void)fuse_lowlevel_notify_inval_entry(session, c.parent, c.name.data(),
                                               c.name.size());
      }
    }
  });
  return absl::OkStatus();
}

void FuseServer::MetricsFileLoop() {
  std::unique_lock lock(metrics_file_mu_);
  bool failing = false;  // the log hears when writing starts and stops failing
  while (true) {
    lock.unlock();
    absl::Status s = WriteFileAtomically(options_.metrics_file, RenderMetrics());
    if (!s.ok() && !failing) {
      engine_.Log(absl::StrCat("writing the metrics file: ", s.message(),
                               " (said once, until it works again)"));
    } else if (s.ok() && failing) {
      engine_.Log(absl::StrCat("writing the metrics file ", options_.metrics_file,
                               " works again"));
    }
    failing = !s.ok();
    lock.lock();
    if (metrics_file_stop_) return;  // the last snapshot is written
    metrics_file_cv_.wait_for(lock, std::chrono::seconds(options_.metrics_interval_seconds),
                              [&] { return metrics_file_stop_; });
  }
}

absl::Status FuseServer::Serve() {
  std::thread metrics_writer;
  if (!options_.metrics_file.empty()) {
    metrics_writer = std::thread([this] { MetricsFileLoop(); });
  }
  fuse_loop_config* config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(config, options_.threads);
  fuse_loop_cfg_set_idle_threads(config, options_.threads);
  fuse_loop_cfg_set_clone_fd(config, options_.clone_fd ? 1 : 0);
  int rc = fuse_session_loop_mt(session_, config);
  fuse_loop_cfg_destroy(config);
  if (metrics_writer.joinable()) {
    {
      std::lock_guard lock(metrics_file_mu_);
      metrics_file_stop_ = true;
    }
    metrics_file_cv_.notify_all();
    metrics_writer.join();
  }
  if (rc != 0 && rc != SIGTERM && rc != SIGINT) {
    return ErrnoError(EIO, absl::StrCat("FUSE session ended with error ", rc));
  }
  return absl::OkStatus();
}

}  // namespace kvfs
