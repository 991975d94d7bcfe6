#include "kvfs/format.h"

#include <climits>
#include <cerrno>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "kvfs/codec.h"
#include "kvfs/errors.h"

namespace kvfs {
namespace {

constexpr absl::string_view kBackingMagic = "kvfs-backing";
constexpr uint64_t kExtentMagic = 0x0031545845534656ULL;   // "VFSEXT1\0"
constexpr uint64_t kJournalMagic = 0x00314c4e4a534656ULL;  // "VFSJNL1\0"
constexpr uint32_t kRecordHeaderMagic = 0x4852564b;        // "KVRH"
constexpr uint32_t kTrailerMagic = 0x5452564b;             // "KVRT"
constexpr uint32_t kFooterMagic = 0x4652564b;              // "KVRF"
constexpr uint32_t kJournalEntryMagic = 0x454a564b;        // "KVJE"
constexpr uint32_t kMaxJournalBody = 3 * 8192;
constexpr size_t kFooterBytes = 32;

absl::Status Corrupt(absl::string_view where, absl::string_view what) {
  return absl::DataLossError(absl::StrCat(where, ": ", what));
}

// Appends MetaChecksum of everything encoded so far.
void SealWithChecksum(Encoder* e) { e->U64(MetaChecksum(e->data())); }

bool ChecksumMatches(absl::string_view block, size_t checksum_at) {
  Decoder d(block.substr(checksum_at));
  uint64_t stored;
  return d.U64(&stored) && stored == MetaChecksum(block.substr(0, checksum_at));
}

}  // namespace

// ---------------- backing format file ----------------

std::string EncodeBackingFormat(const BackingFormat& f) {
  return absl::StrCat(
      "# kvfs backing directory: extents, journals and node locks live under "
      "nodes/. Do not edit.\n",
      "magic=", kBackingMagic, "\n", "format=", f.version, "\n",
      "uuid=", f.uuid, "\n", "created=", f.created_unix, "\n");
}

absl::StatusOr<BackingFormat> DecodeBackingFormat(absl::string_view text,
                                                  absl::string_view file) {
  BackingFormat f;
  bool magic = false, version = false;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits('=', 1));
    if (kv.first == "magic") {
      magic = kv.second == kBackingMagic;
    } else if (kv.first == "format") {
      version = absl::SimpleAtoi(kv.second, &f.version);
    } else if (kv.first == "uuid") {
      f.uuid = std::string(kv.second);
    } else if (kv.first == "created") {
      (void)absl::SimpleAtoi(kv.second, &f.created_unix);
    }
  }
  if (!magic) {
    return absl::FailedPreconditionError(
        absl::StrCat(file, ": not a kvfs format file (no magic=",
                     kBackingMagic, " line)"));
  }
  if (!version) {
    return absl::FailedPreconditionError(
        absl::StrCat(file, ": no readable format= line"));
  }
  if (f.version != kFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        file, ": format version ", f.version, " is not supported (this kvfs reads version ",
        kFormatVersion, f.version > kFormatVersion ? "; upgrade kvfs" : "", ")"));
  }
  if (f.uuid.size() != 32 ||
      f.uuid.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return absl::FailedPreconditionError(
        absl::StrCat(file, ": malformed uuid= line"));
  }
  return f;
}

// ---------------- extent / journal file header ----------------

std::string EncodeFileHeader(const FileHeader& h) {
  Encoder e;
  e.U64(h.kind == FileKind::kExtent ? kExtentMagic : kJournalMagic);
  e.U32(h.version);
  e.U32(kFileHeaderBytes);
  e.Bytes(h.backing_uuid);
  e.Bytes(h.node_id);
  e.U64(h.number);
  e.I64(h.created_ns);
  SealWithChecksum(&e);
  e.PadTo(kFileHeaderBytes);
  return e.Release();
}

std::string EncodeNewFileHeader(FileKind kind, absl::string_view backing_uuid,
                                absl::string_view node_id, uint64_t number) {
  FileHeader h;
  h.kind = kind;
  h.backing_uuid = std::string(backing_uuid);
  h.node_id = std::string(node_id);
  h.number = number;
  h.created_ns = absl::GetCurrentTimeNanos();
  return EncodeFileHeader(h);
}

absl::StatusOr<FileHeader> DecodeFileHeader(absl::string_view block,
                                            absl::string_view file) {
  FileHeader h;
  Decoder d(block);
  uint64_t magic;
  uint32_t header_bytes;
  absl::string_view uuid, node;
  if (!d.U64(&magic)) return Corrupt(file, "shorter than a kvfs file header");
  if (magic == kExtentMagic) {
    h.kind = FileKind::kExtent;
  } else if (magic == kJournalMagic) {
    h.kind = FileKind::kJournal;
  } else {
    return Corrupt(file, "not a kvfs extent or journal (bad magic)");
  }
  if (!d.U32(&h.version) || !d.U32(&header_bytes)) {
    return Corrupt(file, "truncated file header");
  }
  if (h.version != kFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        file, ": format version ", h.version, " is not supported (this kvfs reads version ",
        kFormatVersion, ")"));
  }
  if (header_bytes != kFileHeaderBytes || !d.Bytes(&uuid, 64) ||
      !d.Bytes(&node, kMaxNodeIdBytes) || !d.U64(&h.number) ||
      !d.I64(&h.created_ns)) {
    return Corrupt(file, "malformed file header");
  }
  if (!ChecksumMatches(block, d.position())) {
    return Corrupt(file, "file header checksum mismatch");
  }
  h.backing_uuid = std::string(uuid);
  h.node_id = std::string(node);
  return h;
}

absl::StatusOr<FileHeader> DecodeExpectedFileHeader(absl::string_view block,
                                                    absl::string_view file, FileKind kind,
                                                    absl::string_view backing_uuid,
                                                    absl::string_view node_id, uint64_t number) {
  absl::StatusOr<FileHeader> h = DecodeFileHeader(block, file);
  if (!h.ok()) return h.status();
  if (h->kind != kind || h->backing_uuid != backing_uuid || h->node_id != node_id ||
      h->number != number) {
    return absl::DataLossError(absl::StrCat(
        file, ": header names another file (kind, backing uuid, node or number differ)"));
  }
  return h;
}

// ---------------- records ----------------

uint64_t TrailerBytes(uint64_t payload_bytes) {
  // magic + count, chunk table, XXH128, footer
  return 8 + 8 * ChunkCount(payload_bytes) + 16 + kFooterBytes;
}

uint64_t RecordHeader::trailer_bytes() const {
  return TrailerBytes(payload_bytes);
}

std::string EncodeRecordHeader(const RecordHeader& h) {
  Encoder e;
  e.U32(kRecordHeaderMagic);
  e.U16(kFormatVersion);
  e.U16(0);
  e.U32(kRecordHeaderBytes);
  e.U32(kChunkBytes);
  e.U64(h.seq);
  e.U64(h.ino);
  e.U64(h.payload_bytes);
  e.I64(h.created_ns);
  e.I64(h.committed_ns);
  e.U32(h.mode);
  e.U64(h.extent_id);
  e.U64(h.record_offset);
  e.U64(h.trailer_bytes());
  e.Bytes(h.node_id);
  e.Bytes(h.path);
  SealWithChecksum(&e);
  e.PadTo(kRecordHeaderBytes);
  return e.Release();
}

absl::StatusOr<RecordHeader> DecodeRecordHeader(absl::string_view block,
                                                uint64_t extent_id,
                                                uint64_t offset) {
  const std::string where =
      absl::StrCat("record at extent ", extent_id, " offset ", offset);
  Decoder d(block);
  uint32_t magic, header_bytes, chunk_bytes;
  uint16_t version, reserved;
  if (!d.U32(&magic) || magic != kRecordHeaderMagic) {
    return Corrupt(where, "no record header magic");
  }
  RecordHeader h;
  uint64_t trailer_bytes;
  absl::string_view node, path;
  if (!d.U16(&version) || !d.U16(&reserved) || !d.U32(&header_bytes) ||
      !d.U32(&chunk_bytes) || !d.U64(&h.seq) || !d.U64(&h.ino) ||
      !d.U64(&h.payload_bytes) || !d.I64(&h.created_ns) ||
      !d.I64(&h.committed_ns) || !d.U32(&h.mode) || !d.U64(&h.extent_id) ||
      !d.U64(&h.record_offset) || !d.U64(&trailer_bytes) ||
      !d.Bytes(&node, kMaxNodeIdBytes) || !d.Bytes(&path, kMaxPathBytes)) {
    return Corrupt(where, "malformed record header");
  }
  if (!ChecksumMatches(block, d.position())) {
    return Corrupt(where, "record header checksum mismatch");
  }
  if (version != kFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": record format version ", version, " is not supported"));
  }
  if (header_bytes != kRecordHeaderBytes || chunk_bytes != kChunkBytes) {
    return Corrupt(where, "unsupported record geometry");
  }
  if (h.extent_id != extent_id || h.record_offset != offset) {
    return Corrupt(where, absl::StrCat("header claims extent ", h.extent_id,
                                       " offset ", h.record_offset));
  }
  if (h.payload_bytes > (uint64_t{1} << 50) ||
      trailer_bytes != TrailerBytes(h.payload_bytes)) {
    return Corrupt(where, "implausible payload length");
  }
  h.node_id = std::string(node);
  h.path = std::string(path);
  return h;
}

std::string EncodeRecordTrailer(const RecordHeader& h, const RecordTrailer& t) {
  Encoder e;
  e.U32(kTrailerMagic);
  e.U32(static_cast<uint32_t>(t.chunk_checksums.size()));
  for (uint64_t c : t.chunk_checksums) e.U64(c);
  e.U64(t.payload_checksum.low);
  e.U64(t.payload_checksum.high);
  // footer
  e.U64(h.seq);
  e.U64(h.record_bytes());
  e.U64(MetaChecksum(e.data()));
  e.U32(kFooterMagic);
  e.U32(0);
  return e.Release();
}

absl::StatusOr<RecordTrailer> DecodeRecordTrailer(absl::string_view bytes,
                                                  const RecordHeader& h) {
  const std::string where = absl::StrCat("record at extent ", h.extent_id,
                                         " offset ", h.record_offset);
  if (bytes.size() < h.trailer_bytes()) {
    return Corrupt(where, "trailer truncated");
  }
  bytes = bytes.substr(0, h.trailer_bytes());
  Decoder d(bytes);
  uint32_t magic, count;
  if (!d.U32(&magic) || magic != kTrailerMagic || !d.U32(&count) ||
      count != h.chunk_count()) {
    return Corrupt(where, "bad trailer");
  }
  RecordTrailer t;
  t.chunk_checksums.resize(count);
  for (uint32_t i = 0; i < count; ++i) d.U64(&t.chunk_checksums[i]);
  uint64_t seq = 0, record_bytes = 0, stored_checksum = 0;
  d.U64(&t.payload_checksum.low);
  d.U64(&t.payload_checksum.high);
  d.U64(&seq);
  d.U64(&record_bytes);
  size_t checksum_at = d.position();
  d.U64(&stored_checksum);  // compared by ChecksumMatches below
  uint32_t footer_magic = 0, pad = 1;
  if (!d.U32(&footer_magic) || footer_magic != kFooterMagic || !d.U32(&pad) || pad != 0) {
    return Corrupt(where, "bad footer magic");
  }
  if (!ChecksumMatches(bytes, checksum_at)) {
    return Corrupt(where, "trailer checksum mismatch");
  }
  if (seq != h.seq || record_bytes != h.record_bytes()) {
    return Corrupt(where, "footer does not match header");
  }
  return t;
}

// ---------------- skip markers ----------------

namespace {
constexpr uint32_t kSkipMagic = 0x4b53564b;  // "KVSK"
}

std::string EncodeSkipMarker(uint64_t extent_id, uint64_t offset,
                             uint64_t next_offset) {
  Encoder e;
  e.U32(kSkipMagic);
  e.U32(kFormatVersion);
  e.U64(extent_id);
  e.U64(offset);
  e.U64(next_offset);
  SealWithChecksum(&e);
  e.PadTo(kBlockAlign);
  return e.Release();
}

absl::StatusOr<uint64_t> DecodeSkipMarker(absl::string_view block,
                                          uint64_t extent_id, uint64_t offset) {
  Decoder d(block);
  uint32_t magic, version;
  uint64_t id, at, next;
  if (!d.U32(&magic) || magic != kSkipMagic || !d.U32(&version) ||
      version != kFormatVersion || !d.U64(&id) || !d.U64(&at) || !d.U64(&next) ||
      !ChecksumMatches(block, d.position()) || id != extent_id || at != offset ||
      next <= offset || next % kBlockAlign != 0) {
    return Corrupt(absl::StrCat("extent ", extent_id, " offset ", offset),
                   "no valid skip marker");
  }
  return next;
}

// ---------------- journal ----------------

JournalEntry CommitEntryFor(const RecordHeader& h) {
  JournalEntry e;
  e.seq = h.seq;
  e.op = JournalOp::kCommit;
  e.time_ns = h.committed_ns;
  e.ino = h.ino;
  e.mode = h.mode;
  e.path = h.path;
  e.extent_id = h.extent_id;
  e.record_offset = h.record_offset;
  e.payload_bytes = h.payload_bytes;
  return e;
}

std::string EncodeJournalEntry(const JournalEntry& e) {
  Encoder body;
  body.U64(e.seq);
  body.U8(static_cast<uint8_t>(e.op));
  body.I64(e.time_ns);
  body.U64(e.ino);
  body.U32(e.mode);
  body.Bytes(e.path);
  body.Bytes(e.path2);
  body.U64(e.extent_id);
  body.U64(e.record_offset);
  body.U64(e.payload_bytes);
  body.Bytes(e.owner);
  Encoder out;
  out.U32(kJournalEntryMagic);
  out.U32(static_cast<uint32_t>(body.size()));
  out.Raw(body.data());
  out.U64(MetaChecksum(out.data()));
  return out.Release();
}

absl::StatusOr<JournalEntry> DecodeJournalEntry(absl::string_view bytes,
                                                size_t* consumed) {
  Decoder d(bytes);
  uint32_t magic, body_len;
  if (!d.U32(&magic) || !d.U32(&body_len)) {
    return absl::OutOfRangeError("journal ends inside an entry header");
  }
  if (magic != kJournalEntryMagic || body_len > kMaxJournalBody) {
    return absl::DataLossError("not a journal entry");
  }
  absl::string_view body;
  uint64_t checksum;
  if (!d.Raw(body_len, &body) || !d.U64(&checksum)) {
    return absl::OutOfRangeError("journal ends inside an entry");
  }
  if (checksum != MetaChecksum(bytes.substr(0, 8 + body_len))) {
    return absl::DataLossError("journal entry checksum mismatch");
  }
  JournalEntry e;
  Decoder b(body);
  uint8_t op;
  absl::string_view path, path2;
  if (!b.U64(&e.seq) || !b.U8(&op) || !b.I64(&e.time_ns) || !b.U64(&e.ino) ||
      !b.U32(&e.mode) || !b.Bytes(&path, kMaxPathBytes) ||
      !b.Bytes(&path2, kMaxPathBytes) || !b.U64(&e.extent_id) ||
      !b.U64(&e.record_offset) || !b.U64(&e.payload_bytes) || op < 1 ||
      op > static_cast<uint8_t>(JournalOp::kNextFile)) {
    return absl::DataLossError("malformed journal entry");
  }
  // Entries written before versions had owners end here.
  absl::string_view owner;
  if (b.remaining() > 0 && (!b.Bytes(&owner, kMaxNodeIdBytes) ||
                            (!owner.empty() && !ValidateNodeId(owner).ok()))) {
    return absl::DataLossError("malformed journal entry");
  }
  e.owner = std::string(owner);
  e.op = static_cast<JournalOp>(op);
  e.path = std::string(path);
  e.path2 = std::string(path2);
  *consumed = d.position();
  return e;
}

// ---------------- names ----------------

absl::Status ValidatePath(absl::string_view path) {
  if (path.size() > kMaxPathBytes) {
    return ErrnoError(ENAMETOOLONG,
                      absl::StrCat("path longer than ", kMaxPathBytes, " bytes"));
  }
  if (path.empty()) return ErrnoError(EINVAL, "empty path");
  for (absl::string_view c : absl::StrSplit(path, '/')) {
    if (c.empty() || c == "." || c == "..") {
      return ErrnoError(EINVAL, absl::StrCat("bad path component in '", path, "'"));
    }
    if (c.size() > NAME_MAX) {
      return ErrnoError(ENAMETOOLONG, absl::StrCat("name longer than ", NAME_MAX,
                                                   " bytes in '", path, "'"));
    }
    if (c.find('\0') != absl::string_view::npos) {
      return ErrnoError(EINVAL, "NUL in path");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateNodeId(absl::string_view node_id) {
  if (node_id.empty() || node_id.size() > kMaxNodeIdBytes ||
      node_id.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
          absl::string_view::npos ||
      node_id[0] == '.') {
    return ErrnoError(EINVAL,
                      absl::StrCat("node id '", node_id,
                                   "' must be 1-64 characters of [A-Za-z0-9._-] "
                                   "not starting with '.'"));
  }
  return absl::OkStatus();
}

}  // namespace kvfs
