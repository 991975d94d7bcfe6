// A file descriptor owned by one object, with full-length positioned I/O that
// retries short transfers and EINTR and reports failures as Status.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvfs {

class PosixFile {
 public:
  PosixFile() = default;
  PosixFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixFile();
  PosixFile(PosixFile&& o) noexcept;
  PosixFile& operator=(PosixFile&& o) noexcept;

  static absl::StatusOr<PosixFile> Open(const std::string& path, int flags,
                                        mode_t mode = 0644);

  // Reads exactly `len` bytes unless the file ends first; returns bytes read.
  absl::StatusOr<size_t> PreadUpTo(void* buf, size_t len, uint64_t off) const;
  // Reads exactly `len` bytes; a short file is a DataLoss error.
  absl::Status PreadFull(void* buf, size_t len, uint64_t off) const;
  absl::Status PwriteFull(absl::string_view data, uint64_t off) const;
  absl::Status WriteAll(absl::string_view data) const;  // at the file offset
  absl::StatusOr<uint64_t> Size() const;
  absl::Status DataSync() const;
  // Starts writeback of [off, off + len) without waiting for it to finish.
  void StartWriteback(uint64_t off, uint64_t len) const;
  absl::Status Close();

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  bool valid() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
  std::string path_;
};

// Whole-file helpers for small files (format file, lock file contents).
absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          size_t max_bytes = 1 << 20);
// Writes via a temporary file and rename, then fsyncs the directory.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view data);
absl::Status SyncDirectory(const std::string& dir);
// mkdir that tolerates an existing directory.
absl::Status EnsureDirectory(const std::string& dir, mode_t mode = 0755);
// mkdir -p.
absl::Status EnsureDirectories(const std::string& dir, mode_t mode = 0755);

}  // namespace kvfs
