#include "kvfs/extent_store.h"

#include <fcntl.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "kvfs/errors.h"

namespace kvfs {

const PosixFile* Extent::DirectFile() const {
  std::call_once(direct_once_, [this] {
    // Reopened through /proc: the same file even if its name went meanwhile.
    const std::string self = absl::StrCat("/proc/self/fd/", file_.fd());
    const int fd = ::open(self.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (fd >= 0) direct_file_ = PosixFile(fd, file_.path());
  });
  return direct_file_.valid() ? &direct_file_ : nullptr;
}

void ExtentStore::Forget(uint64_t id) {
  std::unique_lock lock(mu_);
  open_.erase(id);
}

absl::StatusOr<std::shared_ptr<Extent>> ExtentStore::Get(uint64_t id) {
  if (peer_) return OpenExisting(id);
  {
    std::shared_lock lock(mu_);
    auto it = open_.find(id);
    if (it != open_.end()) return it->second;
  }
  absl::StatusOr<std::shared_ptr<Extent>> extent = OpenExisting(id);
  if (!extent.ok()) return extent.status();
  std::unique_lock lock(mu_);
  auto [it, inserted] = open_.emplace(id, *extent);
  return it->second;
}

absl::StatusOr<std::shared_ptr<Extent>> ExtentStore::OpenExisting(uint64_t id) {
  const std::string path = layout_.ExtentPath(id);
  absl::StatusOr<PosixFile> file = PosixFile::Open(path, peer_ ? O_RDONLY : O_RDWR);
  if (!file.ok()) return file.status();
  std::string header(kFileHeaderBytes, '\0');
  absl::StatusOr<size_t> n = file->PreadUpTo(header.data(), header.size(), 0);
  if (!n.ok()) return n.status();
  absl::StatusOr<FileHeader> h = DecodeExpectedFileHeader(
      header.substr(0, *n), path, FileKind::kExtent, uuid_, layout_.node_id, id);
  if (!h.ok()) return h.status();
  return std::make_shared<Extent>(id, *std::move(file));
}


absl::Status ExtentStore::FinishCreation(uint64_t id) {
  const std::string path = layout_.ExtentPath(id);
  absl::StatusOr<PosixFile> file = PosixFile::Open(path, O_RDWR);
  if (!file.ok()) return file.status();
  absl::StatusOr<uint64_t> size = file->Size();
  if (!size.ok()) return size.status();
  if (*size >= kFileHeaderBytes) {
    return absl::FailedPreconditionError(absl::StrCat(path, " is not a torn creation"));
  }
  return file->PwriteFull(EncodeNewFileHeader(FileKind::kExtent, uuid_, layout_.node_id, id), 0);
}

absl::StatusOr<std::shared_ptr<Extent>> ExtentStore::Create(uint64_t id) {
  const std::string path = layout_.ExtentPath(id);
  absl::StatusOr<PosixFile> file =
      PosixFile::Open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
  if (!file.ok()) return file.status();
  absl::Status s = file->PwriteFull(EncodeNewFileHeader(FileKind::kExtent, uuid_, layout_.node_id, id), 0);
  if (s.ok()) file->StartWriteback(0, kFileHeaderBytes);  // one page a GiB: never left dirty
  if (s.ok()) s = SyncDirectory(layout_.ExtentsDir());
  if (!s.ok()) {
    ::unlink(path.c_str());
    return s;
  }
  auto extent = std::make_shared<Extent>(id, *std::move(file));
  std::unique_lock lock(mu_);
  open_[id] = extent;
  return extent;
}

absl::StatusOr<ValidRecord> ExtentStore::ReadRecord(const Extent& extent,
                                                    uint64_t offset) {
  std::string block(kRecordHeaderBytes, '\0');
  absl::StatusOr<size_t> n = extent.file().PreadUpTo(block.data(), block.size(), offset);
  if (!n.ok()) return n.status();
  if (*n < block.size()) {
    return absl::DataLossError(absl::StrCat("extent ", extent.id(), " ends at ",
                                            offset + *n, " inside a record header"));
  }
  absl::StatusOr<RecordHeader> header = DecodeRecordHeader(block, extent.id(), offset);
  if (!header.ok()) return header.status();
  std::string trailer(header->trailer_bytes(), '\0');
  n = extent.file().PreadUpTo(trailer.data(), trailer.size(), header->trailer_offset());
  if (!n.ok()) return n.status();
  absl::StatusOr<RecordTrailer> t = DecodeRecordTrailer(trailer.substr(0, *n), *header);
  if (!t.ok()) return t.status();
  return ValidRecord{*std::move(header), *std::move(t)};
}

absl::Status ExtentStore::VerifyPayload(const Extent& extent,
                                        const ValidRecord& record) {
  std::string buf;
  const RecordHeader& h = record.header;
  for (uint64_t i = 0; i < h.chunk_count(); ++i) {
    uint64_t off = i * kChunkBytes;
    buf.resize(std::min<uint64_t>(kChunkBytes, h.payload_bytes - off));
    if (absl::Status s = extent.file().PreadFull(buf.data(), buf.size(),
                                                 h.payload_offset() + off);
        !s.ok()) {
      return s;
    }
    if (ChunkChecksum(buf) != record.trailer.chunk_checksums[i]) {
      return absl::DataLossError(absl::StrCat(
          "record at extent ", extent.id(), " offset ", h.record_offset,
          " ('", h.path, "'): chunk ", i, " checksum mismatch"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<TailScan> ExtentStore::ScanTail(uint64_t id, uint64_t from) {
  absl::StatusOr<std::shared_ptr<Extent>> extent = Get(id);
  if (!extent.ok()) return extent.status();
  absl::StatusOr<uint64_t> size = (*extent)->file().Size();
  if (!size.ok()) return size.status();
  TailScan scan;
  scan.file_size = *size;
  uint64_t offset = std::max<uint64_t>(from, kFileHeaderBytes);
  while (offset < *size) {
    absl::StatusOr<ValidRecord> record = ReadRecord(**extent, offset);
    if (!record.ok()) {
      std::string block(kBlockAlign, '\0');
      absl::StatusOr<size_t> n = (*extent)->file().PreadUpTo(block.data(), block.size(), offset);
      absl::StatusOr<uint64_t> next =
          n.ok() ? DecodeSkipMarker(block, id, offset) : n.status();
      if (next.ok()) {
        scan.skipped_bytes += *next - offset;
        offset = *next;
        continue;
      }
      scan.problem = std::string(record.status().message());
      break;
    }
    offset = record->header.next_record_offset();
    scan.records.push_back(*std::move(record));
  }
  // The next record would start here; bytes at or past it (up to file_size)
  // belong to no valid record.
  scan.valid_end = offset;
  return scan;
}

}  // namespace kvfs
