// Round trips and rejection of every on-disk structure.
#include <climits>
#include <string>

#include "gtest/gtest.h"
#include "kvfs/errors.h"
#include "kvfs/format.h"

namespace kvfs {
namespace {

RecordHeader SampleHeader(uint64_t payload) {
  RecordHeader h;
  h.seq = 42;
  h.ino = 7;
  h.payload_bytes = payload;
  h.created_ns = 1700000000000000000;
  h.committed_ns = 1700000000000000001;
  h.mode = 0644;
  h.extent_id = 3;
  h.record_offset = 8192;
  h.node_id = "node-a";
  h.path = "model_abc_r0/012/34_g0/0123456789abcdef.bin";
  return h;
}

TEST(RecordFormat, HeaderRoundTrip) {
  RecordHeader h = SampleHeader(5 * kChunkBytes + 17);
  std::string block = EncodeRecordHeader(h);
  ASSERT_EQ(block.size(), kRecordHeaderBytes);
  absl::StatusOr<RecordHeader> back = DecodeRecordHeader(block, 3, 8192);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->seq, h.seq);
  EXPECT_EQ(back->ino, h.ino);
  EXPECT_EQ(back->payload_bytes, h.payload_bytes);
  EXPECT_EQ(back->created_ns, h.created_ns);
  EXPECT_EQ(back->committed_ns, h.committed_ns);
  EXPECT_EQ(back->mode, h.mode);
  EXPECT_EQ(back->node_id, h.node_id);
  EXPECT_EQ(back->path, h.path);
  EXPECT_EQ(back->chunk_count(), 6u);
  EXPECT_EQ(back->next_record_offset() % kBlockAlign, 0u);
}

TEST(RecordFormat, HeaderRejectsWrongPlaceAndDamage) {
  std::string block = EncodeRecordHeader(SampleHeader(100));
  // A valid header image found at another offset or extent is not a record.
  EXPECT_FALSE(DecodeRecordHeader(block, 3, 12288).ok());
  EXPECT_FALSE(DecodeRecordHeader(block, 4, 8192).ok());
  for (size_t pos : {0ul, 5ul, 20ul, 60ul, 100ul}) {
    std::string bad = block;
    bad[pos] ^= 0x40;
    EXPECT_FALSE(DecodeRecordHeader(bad, 3, 8192).ok()) << "flip at " << pos;
  }
  EXPECT_FALSE(DecodeRecordHeader(std::string(kRecordHeaderBytes, '\0'), 3, 8192).ok());
  EXPECT_FALSE(DecodeRecordHeader(block.substr(0, 40), 3, 8192).ok());
}

TEST(RecordFormat, TrailerRoundTripAndDamage) {
  RecordHeader h = SampleHeader(3 * kChunkBytes);
  RecordTrailer t;
  t.chunk_checksums = {1, 2, 3};
  t.payload_checksum = {0x1111, 0x2222};
  std::string bytes = EncodeRecordTrailer(h, t);
  ASSERT_EQ(bytes.size(), h.trailer_bytes());
  absl::StatusOr<RecordTrailer> back = DecodeRecordTrailer(bytes, h);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->chunk_checksums, t.chunk_checksums);
  EXPECT_EQ(back->payload_checksum, t.payload_checksum);

  for (size_t pos = 0; pos < bytes.size(); pos += 7) {
    std::string bad = bytes;
    bad[pos] ^= 1;
    EXPECT_FALSE(DecodeRecordTrailer(bad, h).ok()) << "flip at " << pos;
  }
  EXPECT_FALSE(DecodeRecordTrailer(bytes.substr(0, bytes.size() - 1), h).ok());
  RecordHeader other = h;
  other.seq = 43;  // footer must repeat the header's seq
  EXPECT_FALSE(DecodeRecordTrailer(bytes, other).ok());
}

TEST(RecordFormat, EmptyPayload) {
  RecordHeader h = SampleHeader(0);
  EXPECT_EQ(h.chunk_count(), 0u);
  RecordTrailer t;
  std::string bytes = EncodeRecordTrailer(h, t);
  absl::StatusOr<RecordTrailer> back = DecodeRecordTrailer(bytes, h);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->chunk_checksums.empty());
}

TEST(SkipMarker, RoundTripAndPlace) {
  std::string block = EncodeSkipMarker(2, 4096, 65536);
  ASSERT_EQ(block.size(), kBlockAlign);
  absl::StatusOr<uint64_t> next = DecodeSkipMarker(block, 2, 4096);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(*next, 65536u);
  EXPECT_FALSE(DecodeSkipMarker(block, 2, 8192).ok());
  EXPECT_FALSE(DecodeSkipMarker(EncodeRecordHeader(SampleHeader(1)), 3, 8192).ok());
}

TEST(JournalFormat, RoundTripEveryOp) {
  for (JournalOp op : {JournalOp::kMkdir, JournalOp::kCommit, JournalOp::kRename,
                       JournalOp::kUnlink, JournalOp::kRmdir, JournalOp::kRetire,
                       JournalOp::kLive, JournalOp::kCheckpoint, JournalOp::kCheckpointEnd,
                       JournalOp::kAccess, JournalOp::kNextFile}) {
    JournalEntry e;
    e.seq = 99;
    e.op = op;
    e.time_ns = 123;
    e.ino = 5;
    e.mode = 0755;
    e.path = "a/b";
    e.path2 = "a/c";
    e.extent_id = 1;
    e.record_offset = 4096;
    e.payload_bytes = 77;
    e.owner = "node-b";
    std::string bytes = EncodeJournalEntry(e) + "trailing";
    size_t consumed = 0;
    absl::StatusOr<JournalEntry> back = DecodeJournalEntry(bytes, &consumed);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(consumed, bytes.size() - 8);
    EXPECT_EQ(back->op, op);
    EXPECT_EQ(back->seq, 99u);
    EXPECT_EQ(back->path, "a/b");
    EXPECT_EQ(back->path2, "a/c");
    EXPECT_EQ(back->payload_bytes, 77u);
    EXPECT_EQ(back->owner, "node-b");
  }
  // An op this format does not know: damage, not an entry to guess at.
  JournalEntry unknown;
  unknown.op = static_cast<JournalOp>(static_cast<uint8_t>(JournalOp::kNextFile) + 1);
  size_t consumed = 0;
  EXPECT_FALSE(DecodeJournalEntry(EncodeJournalEntry(unknown), &consumed).ok());
}

TEST(JournalFormat, TornAndDamagedEntries) {
  JournalEntry e;
  e.seq = 1;
  e.path = "x";
  std::string bytes = EncodeJournalEntry(e);
  size_t consumed = 0;
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    absl::StatusOr<JournalEntry> torn = DecodeJournalEntry(bytes.substr(0, cut), &consumed);
    EXPECT_EQ(torn.status().code(), absl::StatusCode::kOutOfRange) << "cut at " << cut;
  }
  for (size_t pos = 0; pos < bytes.size(); ++pos) {
    std::string bad = bytes;
    bad[pos] ^= 0x10;
    EXPECT_FALSE(DecodeJournalEntry(bad, &consumed).ok()) << "flip at " << pos;
  }
}

TEST(FileHeader, RoundTripAndRejects) {
  FileHeader h;
  h.kind = FileKind::kJournal;
  h.backing_uuid = std::string(32, 'a');
  h.node_id = "n1";
  h.number = 12;
  std::string block = EncodeFileHeader(h);
  absl::StatusOr<FileHeader> back = DecodeFileHeader(block, "f");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->kind, FileKind::kJournal);
  EXPECT_EQ(back->number, 12u);
  EXPECT_EQ(back->node_id, "n1");
  absl::StatusOr<FileHeader> garbage = DecodeFileHeader("hello world", "some/file");
  ASSERT_FALSE(garbage.ok());
  EXPECT_NE(garbage.status().message().find("some/file"), absl::string_view::npos);
}

TEST(BackingFormat, RoundTripAndVersionCheck) {
  BackingFormat f;
  f.uuid = "0123456789abcdef0123456789abcdef";
  f.created_unix = 5;
  absl::StatusOr<BackingFormat> back = DecodeBackingFormat(EncodeBackingFormat(f), "F");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->uuid, f.uuid);

  f.version = kFormatVersion + 1;
  absl::StatusOr<BackingFormat> newer = DecodeBackingFormat(EncodeBackingFormat(f), "/b/kvfs-format");
  ASSERT_FALSE(newer.ok());
  EXPECT_NE(newer.status().message().find("/b/kvfs-format"), absl::string_view::npos);
  EXPECT_NE(newer.status().message().find("upgrade"), absl::string_view::npos);
  EXPECT_FALSE(DecodeBackingFormat("just some text\n", "F").ok());
}

TEST(Names, PathValidation) {
  EXPECT_TRUE(ValidatePath("a/b/c.bin").ok());
  EXPECT_EQ(ErrnoOf(ValidatePath(std::string(NAME_MAX + 1, 'x'))), ENAMETOOLONG);
  EXPECT_TRUE(ValidatePath(std::string(NAME_MAX, 'x')).ok());
  EXPECT_EQ(ErrnoOf(ValidatePath(std::string(kMaxPathBytes + 1, 'x'))), ENAMETOOLONG);
  EXPECT_EQ(ErrnoOf(ValidatePath("a//b")), EINVAL);
  EXPECT_EQ(ErrnoOf(ValidatePath("a/../b")), EINVAL);
  EXPECT_TRUE(ValidateNodeId("gpu-node-01.rack2").ok());
  EXPECT_FALSE(ValidateNodeId("").ok());
  EXPECT_FALSE(ValidateNodeId("a/b").ok());
  EXPECT_FALSE(ValidateNodeId(std::string(65, 'a')).ok());
}

}  // namespace
}  // namespace kvfs
