#include "connector/file_transfer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace kvfs::connector {
namespace {

absl::Status Errno(absl::string_view what, const std::string& path, int err) {
  return absl::Status(err == ENOENT ? absl::StatusCode::kNotFound : absl::StatusCode::kInternal,
                      absl::StrCat(what, " ", path, ": ", std::strerror(err), " (errno ", err,
                                   ")"));
}

absl::Status WriteAll(int fd, const uint8_t* data, uint64_t bytes, uint64_t offset,
                      const std::string& path) {
  while (bytes > 0) {
    const ssize_t n = pwrite(fd, data, bytes, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("write", path, errno);
    }
    data += n;
    bytes -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status ReadAll(int fd, uint8_t* data, uint64_t bytes, uint64_t offset,
                     const std::string& path) {
  while (bytes > 0) {
    const ssize_t n = pread(fd, data, bytes, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("read", path, errno);
    }
    if (n == 0)
      return absl::DataLossError(
          absl::StrCat("read ", path, ": file ended early at offset ", offset));
    data += n;
    bytes -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

// The chunks of a file: at most one slot's worth of whole blocks each.
struct Chunking {
  size_t blocks_per_chunk;
  size_t chunks;
  ChunkCopy chunk(const FileRequest& r, size_t i) const {
    const std::span<const int64_t> blocks = r.file_blocks();
    const size_t first = i * blocks_per_chunk;
    return ChunkCopy{r.group, blocks.subspan(first, std::min(blocks_per_chunk,
                                                             blocks.size() - first))};
  }
};

Chunking ChunksOf(const KvLayout& layout, const FileRequest& r, const CopyStream& stream) {
  const uint64_t block_bytes = layout.block_bytes(r.group);
  const size_t per_chunk = std::max<uint64_t>(1, stream.slot_bytes() / block_bytes);
  const size_t blocks = r.file_blocks().size();
  return Chunking{per_chunk, (blocks + per_chunk - 1) / per_chunk};
}

// Leaves no copy running into a slot the next file will reuse.
void DrainSlots(CopyStream& stream) {
  for (int s = 0; s < CopyStream::kSlots; ++s) stream.WaitSlot(s).IgnoreError();
}

}  // namespace

absl::Status MakeParentDirectories(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return absl::OkStatus();
  const std::string parent = path.substr(0, slash);
  struct stat st;
  if (stat(parent.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(parent, " exists and is not a directory"));
  }
  if (absl::Status s = MakeParentDirectories(parent); !s.ok()) return s;
  if (mkdir(parent.c_str(), 0777) != 0 && errno != EEXIST) return Errno("mkdir", parent, errno);
  return absl::OkStatus();
}

absl::StatusOr<StoreOutcome> StoreFile(const KvLayout& layout, const FileRequest& request,
                                       CopyStream& stream, StoreMarker* marker,
                                       uint32_t temp_id) {
  const std::string& path = request.path;
  struct stat st;
  if (stat(path.c_str(), &st) == 0) return StoreOutcome{0, true};
  if (absl::Status s = MakeParentDirectories(path); !s.ok()) return s;

  const std::string tmp = absl::StrCat(path, "_", temp_id, ".tmp");
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("create", tmp, errno);

  const Chunking chunks = ChunksOf(layout, request, stream);
  uint64_t offset = 0;
  absl::Status status = stream.WaitForMarker(marker);
  if (status.ok() && chunks.chunks > 0) status = stream.StartGather(chunks.chunk(request, 0), 0);
  for (size_t i = 0; status.ok() && i < chunks.chunks; ++i) {
    const int s = static_cast<int>(i % CopyStream::kSlots);
    status = stream.WaitSlot(s);
    if (!status.ok()) break;
    if (i + 1 < chunks.chunks) {
      status = stream.StartGather(chunks.chunk(request, i + 1), (s + 1) % CopyStream::kSlots);
      if (!status.ok()) break;
    }
    const uint64_t bytes = ChunkBytes(layout, chunks.chunk(request, i));
    status = WriteAll(fd, stream.slot(s), bytes, offset, tmp);
    offset += bytes;
  }
  if (!status.ok()) {
    DrainSlots(stream);
    close(fd);
    unlink(tmp.c_str());
    return status;
  }
  // Rename before close: on kvfs the data is complete and readable the moment
  // rename returns, and a closed, never-renamed temp file would be discarded.
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    close(fd);
    unlink(tmp.c_str());
    return Errno("rename onto", path, err);
  }
  if (close(fd) != 0) return Errno("close", path, errno);
  return StoreOutcome{offset, false};
}

absl::StatusOr<uint64_t> LoadFile(const KvLayout& layout, const FileRequest& request,
                                  CopyStream& stream) {
  const std::string& path = request.path;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open", path, errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return Errno("stat", path, err);
  }
  const uint64_t block_bytes = layout.block_bytes(request.group);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  const uint64_t needed = request.file_blocks().size() * block_bytes;
  if (size % block_bytes != 0 || size < needed) {
    close(fd);
    return absl::DataLossError(absl::StrCat(
        "load ", path, ": size ", size, " is ",
        size % block_bytes != 0 ? "not a whole number of " : "fewer than the needed ",
        size % block_bytes != 0 ? absl::StrCat(block_bytes, "-byte blocks")
                                : absl::StrCat(needed / block_bytes, " blocks of ", block_bytes,
                                               " bytes")));
  }

  const Chunking chunks = ChunksOf(layout, request, stream);
  uint64_t offset = size - needed;
  absl::Status status;
  for (size_t i = 0; status.ok() && i < chunks.chunks; ++i) {
    const int s = static_cast<int>(i % CopyStream::kSlots);
    if (i >= CopyStream::kSlots) {  // the slot's previous scatter must be done
      status = stream.WaitSlot(s);
      if (!status.ok()) break;
    }
    const ChunkCopy chunk = chunks.chunk(request, i);
    const uint64_t bytes = ChunkBytes(layout, chunk);
    status = ReadAll(fd, stream.slot(s), bytes, offset, path);
    if (!status.ok()) break;
    offset += bytes;
    status = stream.StartScatter(chunk, s);
  }
  // The blocks are in place only once every scatter is complete.
  for (int s = 0; s < CopyStream::kSlots; ++s) {
    const absl::Status w = stream.WaitSlot(s);
    if (status.ok()) status = w;
  }
  close(fd);
  if (!status.ok()) return status;
  return needed;
}

}  // namespace kvfs::connector
