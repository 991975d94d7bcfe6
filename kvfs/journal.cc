#include "kvfs/journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <optional>

#include "absl/strings/strip.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kvfs/errors.h"

namespace kvfs {

namespace {

// Opens `path` and checks that its file header names journal `number` of
// this node and backing directory (checkpoints carry the same header).
absl::StatusOr<PosixFile> OpenJournalFile(const BackingLayout& layout,
                                          const std::string& backing_uuid,
                                          const std::string& path, uint64_t number) {
  absl::StatusOr<PosixFile> file = PosixFile::Open(path, O_RDONLY);
  if (!file.ok()) return file.status();
  std::string header(kFileHeaderBytes, '\0');
  absl::StatusOr<size_t> n = file->PreadUpTo(header.data(), header.size(), 0);
  if (!n.ok()) return n.status();
  absl::StatusOr<FileHeader> h = DecodeExpectedFileHeader(
      header.substr(0, *n), path, FileKind::kJournal, backing_uuid, layout.node_id, number);
  if (!h.ok()) return h.status();
  return file;
}

// Decodes entries of `file` from `from` to its end, reading a window at a
// time (checkpoints can be large).
absl::StatusOr<JournalFileScan> ScanEntries(
    const PosixFile& file, uint64_t from,
    const std::function<absl::Status(const JournalEntry&, uint64_t end)>& fn) {
  constexpr uint64_t kWindow = 8 << 20;
  absl::StatusOr<uint64_t> size = file.Size();
  if (!size.ok()) return size.status();
  JournalFileScan scan;
  scan.file_size = *size;
  scan.valid_end = std::max<uint64_t>(from, kFileHeaderBytes);
  std::string window;
  uint64_t window_at = scan.valid_end;  // file offset of window[0]
  while (scan.valid_end < *size) {
    absl::string_view rest = absl::string_view(window).substr(scan.valid_end - window_at);
    size_t consumed = 0;
    absl::StatusOr<JournalEntry> entry = DecodeJournalEntry(rest, &consumed);
    const bool more_in_file = window_at + window.size() < *size;
    if (!entry.ok() && entry.status().code() == absl::StatusCode::kOutOfRange &&
        more_in_file) {
      // The entry runs past the window: read the next one from it on.
      window_at = scan.valid_end;
      window.assign(std::min<uint64_t>(std::max<uint64_t>(kWindow, 2 * rest.size() + 64),
                                       *size - window_at),
                    '\0');
      if (absl::Status s = file.PreadFull(window.data(), window.size(), window_at); !s.ok()) {
        return s;
      }
      continue;
    }
    if (!entry.ok()) {
      scan.problem = absl::StrCat(file.path(), " offset ", scan.valid_end, ": ",
                                  entry.status().message());
      scan.torn_tail = entry.status().code() == absl::StatusCode::kOutOfRange;
      break;
    }
    if (absl::Status s = fn(*entry, scan.valid_end + consumed); !s.ok()) return s;
    scan.valid_end += consumed;
  }
  return scan;
}

}  // namespace

absl::StatusOr<JournalFileScan> ScanJournalFile(
    const BackingLayout& layout, const std::string& backing_uuid,
    uint64_t number, uint64_t from,
    const std::function<absl::Status(const JournalEntry&, uint64_t end)>& fn) {
  absl::StatusOr<PosixFile> file =
      OpenJournalFile(layout, backing_uuid, layout.JournalPath(number), number);
  if (!file.ok()) return file.status();
  return ScanEntries(*file, from, fn);
}

absl::StatusOr<JournalFiles> ListJournalFiles(const std::string& dir) {
  absl::StatusOr<NumberedFiles> listed = ListNumberedFiles(dir, ".kvj");
  if (!listed.ok()) return listed.status();
  JournalFiles out;
  out.journals = std::move(listed->numbers);
  for (const std::string& path : listed->foreign) {
    absl::string_view stem = absl::string_view(path).substr(dir.size() + 1);
    std::vector<uint64_t>* kind = nullptr;
    if (absl::ConsumeSuffix(&stem, ".kvc.tmp")) {
      kind = &out.unfinished;
    } else if (absl::ConsumeSuffix(&stem, ".kvc")) {
      kind = &out.checkpoints;
    }
    uint64_t n = 0;
    if (kind != nullptr && stem.size() == 10 &&
        stem.find_first_not_of("0123456789") == absl::string_view::npos &&
        absl::SimpleAtoi(stem, &n) && n > 0) {
      kind->push_back(n);
    } else {
      out.foreign.push_back(path);
    }
  }
  std::sort(out.checkpoints.begin(), out.checkpoints.end());
  std::sort(out.unfinished.begin(), out.unfinished.end());
  return out;
}

absl::StatusOr<JournalEntry> ScanCheckpointFile(
    const BackingLayout& layout, const std::string& backing_uuid, uint64_t number,
    const std::function<absl::Status(const JournalEntry&)>& fn) {
  const std::string path = layout.CheckpointPath(number);
  absl::StatusOr<PosixFile> file = OpenJournalFile(layout, backing_uuid, path, number);
  if (!file.ok()) return file.status();
  // First pass: the whole file must be there before any of it is used.
  std::optional<JournalEntry> head;
  uint64_t between = 0;
  bool ended = false;
  std::string problem;
  absl::StatusOr<JournalFileScan> scan =
      ScanEntries(*file, kFileHeaderBytes, [&](const JournalEntry& e, uint64_t) {
        if (!head) {
          if (e.op != JournalOp::kCheckpoint) problem = "does not start with its head entry";
          head = e;
        } else if (ended) {
          problem = "has entries after its end entry";
        } else if (e.op == JournalOp::kCheckpointEnd) {
          ended = true;
          if (e.payload_bytes != between) {
            problem = absl::StrCat("end entry counts ", e.payload_bytes, " entries, found ",
                                   between);
          }
        } else {
          ++between;
        }
        return problem.empty() ? absl::OkStatus() : absl::DataLossError(problem);
      });
  if (!scan.ok()) {
    return absl::DataLossError(absl::StrCat("checkpoint ", path, " ", scan.status().message()));
  }
  if (!scan->problem.empty()) {
    return absl::DataLossError(absl::StrCat("checkpoint ", scan->problem));
  }
  if (!head || !ended) {
    return absl::DataLossError(absl::StrCat("checkpoint ", path, " is incomplete"));
  }
  // Second pass: the entries between head and end.
  absl::StatusOr<JournalFileScan> applied =
      ScanEntries(*file, kFileHeaderBytes, [&](const JournalEntry& e, uint64_t) {
        if (e.op == JournalOp::kCheckpoint || e.op == JournalOp::kCheckpointEnd) {
          return absl::OkStatus();
        }
        return fn(e);
      });
  if (!applied.ok()) return applied.status();
  return *head;
}

absl::StatusOr<std::unique_ptr<CheckpointWriter>> CheckpointWriter::Create(
    const BackingLayout& layout, const std::string& backing_uuid, uint64_t number,
    const JournalEntry& head) {
  std::unique_ptr<CheckpointWriter> w(new CheckpointWriter(layout, number));
  const std::string path = layout.CheckpointTempPath(number);
  ::unlink(path.c_str());  // one a crash left
  absl::StatusOr<PosixFile> f = PosixFile::Open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (!f.ok()) return f.status();
  w->file_ = *std::move(f);
  w->buffer_ = EncodeNewFileHeader(FileKind::kJournal, backing_uuid, layout.node_id, number);
  w->buffer_ += EncodeJournalEntry(head);
  return w;
}

CheckpointWriter::~CheckpointWriter() {
  if (!finished_ && file_.valid()) {
    ::unlink(layout_.CheckpointTempPath(number_).c_str());
  }
}

absl::Status CheckpointWriter::FlushBuffer() {
  if (absl::Status s = file_.PwriteFull(buffer_, offset_); !s.ok()) return s;
  offset_ += buffer_.size();
  buffer_.clear();
  return absl::OkStatus();
}

absl::Status CheckpointWriter::Append(const JournalEntry& entry) {
  buffer_ += EncodeJournalEntry(entry);
  ++entries_;
  return buffer_.size() >= (1 << 20) ? FlushBuffer() : absl::OkStatus();
}

absl::StatusOr<uint64_t> CheckpointWriter::Finish() {
  JournalEntry end;
  end.op = JournalOp::kCheckpointEnd;
  end.payload_bytes = entries_;
  buffer_ += EncodeJournalEntry(end);
  if (absl::Status s = FlushBuffer(); !s.ok()) return s;
  if (absl::Status s = file_.DataSync(); !s.ok()) return s;
  const std::string tmp = layout_.CheckpointTempPath(number_);
  if (::rename(tmp.c_str(), layout_.CheckpointPath(number_).c_str()) != 0) {
    return SysError(absl::StrCat("renaming ", tmp, " into place"));
  }
  finished_ = true;
  if (absl::Status s = SyncDirectory(layout_.JournalDir()); !s.ok()) return s;
  return offset_;
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
  if (file_.valid()) {
    // Tells nodes following this journal where it goes on (format.h). Only
    // a hint: without it they find the new file in the directory's listing.
    JournalEntry next;
    next.op = JournalOp::kNextFile;
    const std::string bytes = EncodeJournalEntry(next);
    if (file_.PwriteFull(bytes, offset_).ok()) {
      appended_bytes_ += bytes.size();
    } else {
      (void)::ftruncate(file_.fd(), static_cast<off_t>(offset_));
    }
  }
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
  appended_bytes_ += bytes.size();
  return end();
}

}  // namespace kvfs
