#include "kvfs/posix_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "kvfs/errors.h"

namespace kvfs {

PosixFile::~PosixFile() {
  if (fd_ >= 0) ::close(fd_);
}

PosixFile::PosixFile(PosixFile&& o) noexcept
    : fd_(o.fd_), path_(std::move(o.path_)) {
  o.fd_ = -1;
}

PosixFile& PosixFile::operator=(PosixFile&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    path_ = std::move(o.path_);
    o.fd_ = -1;
  }
  return *this;
}

absl::StatusOr<PosixFile> PosixFile::Open(const std::string& path, int flags,
                                          mode_t mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return SysError(absl::StrCat("open ", path));
  return PosixFile(fd, path);
}

absl::StatusOr<size_t> PosixFile::PreadUpTo(void* buf, size_t len,
                                            uint64_t off) const {
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd_, static_cast<char*>(buf) + done, len - done,
                        static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return SysError(absl::StrCat("read ", path_, " at ", off + done));
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

absl::Status PosixFile::PreadFull(void* buf, size_t len, uint64_t off) const {
  absl::StatusOr<size_t> n = PreadUpTo(buf, len, off);
  if (!n.ok()) return n.status();
  if (*n != len) {
    return ErrnoError(EIO, absl::StrCat(path_, ": ends at ", off + *n,
                                        ", expected data up to ", off + len));
  }
  return absl::OkStatus();
}

absl::Status PosixFile::PwriteFull(absl::string_view data, uint64_t off) const {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done,
                         static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return SysError(absl::StrCat("write ", path_, " at ", off + done));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status PosixFile::WriteAll(absl::string_view data) const {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return SysError(absl::StrCat("write ", path_));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> PosixFile::Size() const {
  struct stat st;
  if (::fstat(fd_, &st) != 0) return SysError(absl::StrCat("stat ", path_));
  return static_cast<uint64_t>(st.st_size);
}

void PosixFile::StartWriteback(uint64_t off, uint64_t len) const {
  // Best effort: where the filesystem cannot, pages go back at the usual time.
  (void)::sync_file_range(fd_, static_cast<off_t>(off), static_cast<off_t>(len),
                          SYNC_FILE_RANGE_WRITE);
}

absl::Status PosixFile::DataSync() const {
  if (::fdatasync(fd_) != 0) return SysError(absl::StrCat("fdatasync ", path_));
  return absl::OkStatus();
}

absl::Status PosixFile::Close() {
  if (fd_ < 0) return absl::OkStatus();
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) return SysError(absl::StrCat("close ", path_));
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          size_t max_bytes) {
  absl::StatusOr<PosixFile> f = PosixFile::Open(path, O_RDONLY);
  if (!f.ok()) return f.status();
  std::string out(max_bytes, '\0');
  absl::StatusOr<size_t> n = f->PreadUpTo(out.data(), max_bytes, 0);
  if (!n.ok()) return n.status();
  out.resize(*n);
  return out;
}

absl::Status SyncDirectory(const std::string& dir) {
  absl::StatusOr<PosixFile> d = PosixFile::Open(dir, O_RDONLY | O_DIRECTORY);
  if (!d.ok()) return d.status();
  if (::fsync(d->fd()) != 0) return SysError(absl::StrCat("fsync ", dir));
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view data) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  {
    absl::StatusOr<PosixFile> f =
        PosixFile::Open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (!f.ok()) return f.status();
    absl::Status s = f->WriteAll(data);
    if (s.ok() && ::fsync(f->fd()) != 0) s = SysError(absl::StrCat("fsync ", tmp));
    if (!s.ok()) {
      ::unlink(tmp.c_str());
      return s;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status s = SysError(absl::StrCat("rename ", tmp, " to ", path));
    ::unlink(tmp.c_str());
    return s;
  }
  std::string dir = path.substr(0, path.find_last_of('/'));
  return SyncDirectory(dir.empty() ? "/" : dir);
}

absl::Status EnsureDirectory(const std::string& dir, mode_t mode) {
  if (::mkdir(dir.c_str(), mode) == 0 || errno == EEXIST) {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) return SysError(absl::StrCat("stat ", dir));
    if (!S_ISDIR(st.st_mode)) {
      return ErrnoError(ENOTDIR, absl::StrCat(dir, " exists and is not a directory"));
    }
    return absl::OkStatus();
  }
  return SysError(absl::StrCat("mkdir ", dir));
}

absl::Status EnsureDirectories(const std::string& dir, mode_t mode) {
  for (size_t pos = dir.find('/', 1); pos != std::string::npos;
       pos = dir.find('/', pos + 1)) {
    if (absl::Status s = EnsureDirectory(dir.substr(0, pos), mode); !s.ok()) return s;
  }
  return EnsureDirectory(dir, mode);
}

}  // namespace kvfs
