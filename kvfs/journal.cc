#include "kvfs/journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <ctime>

#include "absl/strings/str_cat.h"
#include "kvfs/errors.h"

namespace kvfs {

absl::StatusOr<JournalFileScan> ScanJournalFile(
    const BackingLayout& layout, const std::string& backing_uuid,
    uint64_t number, uint64_t from,
    const std::function<absl::Status(const JournalEntry&, uint64_t end)>& fn) {
  const std::string path = layout.JournalPath(number);
  absl::StatusOr<PosixFile> file = PosixFile::Open(path, O_RDONLY);
  if (!file.ok()) return file.status();
  absl::StatusOr<uint64_t> size = file->Size();
  if (!size.ok()) return size.status();

  std::string header(kFileHeaderBytes, '\0');
  absl::StatusOr<size_t> n = file->PreadUpTo(header.data(), header.size(), 0);
  if (!n.ok()) return n.status();
  absl::StatusOr<FileHeader> h = DecodeFileHeader(header.substr(0, *n), path);
  if (!h.ok()) return h.status();
  if (h->kind != FileKind::kJournal || h->backing_uuid != backing_uuid ||
      h->node_id != layout.node_id || h->number != number) {
    return absl::DataLossError(absl::StrCat(
        path, ": header names another file (kind, backing uuid, node or number differ)"));
  }

  JournalFileScan scan;
  scan.file_size = *size;
  scan.valid_end = std::max<uint64_t>(from, kFileHeaderBytes);
  if (scan.valid_end >= *size) return scan;
  // Journal files are bounded (rotation), so one read of the rest is fine.
  std::string bytes(*size - scan.valid_end, '\0');
  if (absl::Status s = file->PreadFull(bytes.data(), bytes.size(), scan.valid_end);
      !s.ok()) {
    return s;
  }
  absl::string_view rest = bytes;
  while (!rest.empty()) {
    size_t consumed = 0;
    absl::StatusOr<JournalEntry> entry = DecodeJournalEntry(rest, &consumed);
    if (!entry.ok()) {
      scan.problem = absl::StrCat(path, " offset ", scan.valid_end, ": ",
                                  entry.status().message());
      scan.torn_tail = entry.status().code() == absl::StatusCode::kOutOfRange;
      break;
    }
    if (absl::Status s = fn(*entry, scan.valid_end + consumed); !s.ok()) return s;
    scan.valid_end += consumed;
    rest.remove_prefix(consumed);
  }
  return scan;
}

absl::StatusOr<std::unique_ptr<JournalWriter>> JournalWriter::Open(
    const BackingLayout& layout, std::string backing_uuid, uint64_t number,
    uint64_t offset, uint64_t max_file_bytes) {
  std::unique_ptr<JournalWriter> w(
      new JournalWriter(layout, std::move(backing_uuid), max_file_bytes));
  if (offset == 0) {
    if (absl::Status s = w->StartFile(number); !s.ok()) return s;
    return w;
  }
  absl::StatusOr<PosixFile> f = PosixFile::Open(layout.JournalPath(number), O_WRONLY);
  if (!f.ok()) return f.status();
  w->file_ = *std::move(f);
  w->number_ = number;
  w->offset_ = offset;
  return w;
}

absl::Status JournalWriter::StartFile(uint64_t number) {
  const std::string path = layout_.JournalPath(number);
  absl::StatusOr<PosixFile> f = PosixFile::Open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (!f.ok()) return f.status();
  if (absl::Status s = f->PwriteFull(
          EncodeNewFileHeader(FileKind::kJournal, uuid_, layout_.node_id, number), 0);
      !s.ok()) {
    ::unlink(path.c_str());
    return s;
  }
  if (absl::Status s = SyncDirectory(layout_.JournalDir()); !s.ok()) return s;
  file_ = *std::move(f);
  number_ = number;
  offset_ = kFileHeaderBytes;
  return absl::OkStatus();
}

absl::StatusOr<JournalPosition> JournalWriter::Append(const JournalEntry& entry) {
  if (offset_ >= max_file_bytes_) {
    if (absl::Status s = StartFile(number_ + 1); !s.ok()) return s;
  }
  const std::string bytes = EncodeJournalEntry(entry);
  if (absl::Status s = file_.PwriteFull(bytes, offset_); !s.ok()) {
    // Cut a partial entry off so later appends never follow a torn one.
    (void)::ftruncate(file_.fd(), static_cast<off_t>(offset_));
    return s;
  }
  offset_ += bytes.size();
  return end();
}

}  // namespace kvfs
