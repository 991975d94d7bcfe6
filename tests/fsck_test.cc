// `kvfs fsck` on deliberately damaged backing directories: the findings, the
// exit codes (0 clean, 1 corrected, 4 left, 8 operational), and that
// --repair followed by a second check is clean and loses no valid file.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include "gtest/gtest.h"
#include "kvfs/engine.h"
#include "tests/test_util.h"
#include "tests/tool_util.h"

namespace kvfs {
namespace {

using testing::MustOpen;
using testing::Pattern;
using testing::TempDir;
using testing::TestOptions;

using testing::Kvfs;
using testing::Shell;
using testing::ToolResult;

class Fsck : public ::testing::Test {
 protected:
  void SetUp() override {
    options_ = TestOptions(dir_);
    auto e = MustOpen(options_);
    ASSERT_NE(e, nullptr);
    for (int i = 0; i < 4; ++i) {
      const std::string path = "model_r0/ab/file" + std::to_string(i);
      files_[path] = Pattern(i, (i + 1) * 700000);
      ASSERT_TRUE(e->PutFile(path, files_[path]).ok());
    }
  }

  ToolResult Run(const std::string& extra = "") {
    return Kvfs("fsck " + options_.backing_dir + " --node-id " + options_.node_id +
                   " --index-dir " + options_.index_dir + " " + extra);
  }

  // Where `path`'s record lies.
  std::pair<std::string, uint64_t> Locate(const std::string& path) {
    auto e = MustOpen(options_);
    absl::StatusOr<Attr> a = e->Stat(path);
    EXPECT_TRUE(a.ok());
    absl::StatusOr<Inode> n = e->GetInode(a->ino);
    EXPECT_TRUE(n.ok());
    return {e->layout().ExtentPath(n->extent_id), n->record_offset};
  }

  // Every file in `files_` but `lost` reads back exactly; `lost` is gone.
  void ExpectFilesIntact(const std::string& lost = "") {
    auto e = MustOpen(options_);
    ASSERT_NE(e, nullptr);
    for (const auto& [path, data] : files_) {
      absl::StatusOr<std::string> got = e->GetFile(path);
      if (path == lost) {
        EXPECT_FALSE(got.ok()) << path;
        continue;
      }
      ASSERT_TRUE(got.ok()) << path << ": " << got.status();
      EXPECT_TRUE(*got == data) << path;
    }
  }

  // Damage found: 4; --repair: 1; then clean: 0.
  void ExpectRepaired(const std::string& kind, const std::string& flags = "") {
    ToolResult found = Run(flags);
    EXPECT_EQ(found.exit_code, 4) << found.output;
    EXPECT_NE(found.output.find("error: " + kind), std::string::npos) << found.output;
    ToolResult repaired = Run("--repair " + flags);
    EXPECT_EQ(repaired.exit_code, 1) << repaired.output;
    EXPECT_NE(repaired.output.find("repaired: "), std::string::npos) << repaired.output;
    ToolResult again = Run(flags);
    EXPECT_EQ(again.exit_code, 0) << again.output;
    EXPECT_EQ(again.output.find("error: "), std::string::npos) << again.output;
  }

  static void FlipByte(const std::string& file, uint64_t offset) {
    const int fd = ::open(file.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    char c;
    ASSERT_EQ(::pread(fd, &c, 1, offset), 1);
    c ^= 0x5a;
    ASSERT_EQ(::pwrite(fd, &c, 1, offset), 1);
    ::close(fd);
  }

  TempDir dir_;
  EngineOptions options_;
  std::map<std::string, std::string> files_;
};

TEST_F(Fsck, HealthyDirectoryIsClean) {
  ToolResult r = Run("--verify-data");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("4 files"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("clean"), std::string::npos) << r.output;
  ToolResult json = Run("--json");
  EXPECT_EQ(json.exit_code, 0);
  EXPECT_NE(json.output.find("\"exit_code\": 0"), std::string::npos) << json.output;
  EXPECT_NE(json.output.find("\"files\": 4"), std::string::npos) << json.output;
  EXPECT_NE(json.output.find("\"errors\": 0"), std::string::npos) << json.output;
}

// A progress line on stderr only when stderr is a terminal.
TEST_F(Fsck, ProgressOnlyOnATerminal) {
  ToolResult piped = Run("--verify-data");
  EXPECT_EQ(piped.output.find('\r'), std::string::npos) << piped.output;
  if (std::system("command -v script > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "no 'script' (util-linux) to give fsck a terminal";
  }
  // script(1) runs fsck on a pseudo-terminal; stdout is thrown away, so
  // what comes back is what fsck drew on stderr.
  ToolResult tty = Shell("script -qec '" + std::string(KVFS_BINARY) +
                           " fsck " + options_.backing_dir + " --node-id " + options_.node_id +
                           " --index-dir " + options_.index_dir +
                           " --verify-data > /dev/null' /dev/null");
  EXPECT_NE(tty.output.find('\r'), std::string::npos) << tty.output;
  EXPECT_NE(tty.output.find("files"), std::string::npos) << tty.output;
  EXPECT_NE(tty.output.find("/s"), std::string::npos) << "a rate: " << tty.output;
}

TEST_F(Fsck, FlippedPayloadByteIsFoundByVerifyDataAndRemovedByRepair) {
  auto [extent, offset] = Locate("model_r0/ab/file2");
  FlipByte(extent, offset + kRecordHeaderBytes + 1234567);
  // Headers and trailers are intact: only reading the data finds it.
  EXPECT_EQ(Run().exit_code, 0);
  ToolResult r = Run("--verify-data");
  EXPECT_NE(r.output.find("model_r0/ab/file2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("chunk 1 checksum mismatch"), std::string::npos) << r.output;
  ExpectRepaired("corrupt-data", "--verify-data");
  ExpectFilesIntact("model_r0/ab/file2");
}

TEST_F(Fsck, FlippedHeaderByteIsRepairedByARebuild) {
  auto [extent, offset] = Locate("model_r0/ab/file1");
  FlipByte(extent, offset + 40);
  ToolResult r = Run();
  EXPECT_NE(r.output.find("'model_r0/ab/file1': no valid record"), std::string::npos)
      << r.output;
  ExpectRepaired("bad-record");
  ExpectFilesIntact("model_r0/ab/file1");
}

TEST_F(Fsck, TruncatedExtentLosesOnlyTheFilesCutOff) {
  auto [extent, offset] = Locate("model_r0/ab/file3");
  ASSERT_EQ(::truncate(extent.c_str(), static_cast<off_t>(offset + kRecordHeaderBytes + 100)), 0);
  ExpectRepaired("bad-record");
  ExpectFilesIntact("model_r0/ab/file3");
  // Once no file reaches past the cut, opening no longer reports damage.
  auto e = MustOpen(options_);
  for (const std::string& p : e->problems()) {
    EXPECT_EQ(p.find("shorter than its committed records"), std::string::npos) << p;
  }
}

TEST_F(Fsck, DeletedIndexIsRebuilt) {
  std::filesystem::remove_all(options_.index_dir + "/db");
  ToolResult r = Run();
  EXPECT_NE(r.output.find("no index at"), std::string::npos) << r.output;
  ExpectRepaired("index-missing");
  ExpectFilesIntact();
}

TEST_F(Fsck, StrayAndForeignFilesAreReportedAndLeftAlone) {
  const std::string readme = options_.backing_dir + "/README";
  const std::string notes = options_.backing_dir + "/nodes/test-node/extents/notes.txt";
  const std::string fake = options_.backing_dir + "/nodes/test-node/extents/0000000099.kvx";
  for (const std::string& f : {readme, notes, fake}) {
    FILE* out = std::fopen(f.c_str(), "w");
    ASSERT_NE(out, nullptr);
    std::fputs("not kvfs data, but someone's\n", out);
    std::fclose(out);
  }
  ToolResult r = Run("--repair");
  EXPECT_EQ(r.exit_code, 0) << r.output;  // warnings are not errors
  EXPECT_NE(r.output.find("warning: stray-file: " + readme), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("warning: stray-file: " + notes), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("warning: foreign-extent: " + fake), std::string::npos) << r.output;
  for (const std::string& f : {readme, notes, fake}) {
    EXPECT_TRUE(std::filesystem::exists(f)) << f;
  }
  ExpectFilesIntact();
}

TEST_F(Fsck, OrphanTempFileIsRemoved) {
  {
    auto e = MustOpen(options_);
    ASSERT_TRUE(e->PutFile("model_r0/ab/file0.bin_12345.tmp", "half a store").ok());
  }
  ToolResult r = Run();
  EXPECT_NE(r.output.find("'model_r0/ab/file0.bin_12345.tmp' is a client's temp file"),
            std::string::npos) << r.output;
  ExpectRepaired("orphan-temp-file");
  auto e = MustOpen(options_);
  EXPECT_FALSE(e->Stat("model_r0/ab/file0.bin_12345.tmp").ok());
  e.reset();
  ExpectFilesIntact();
}

TEST_F(Fsck, RefusesToRepairALiveNodeButChecksIt) {
  auto live = MustOpen(options_);  // holds the node lock, as a mount does
  ASSERT_NE(live, nullptr);
  ToolResult repair = Run("--repair");
  EXPECT_EQ(repair.exit_code, 8) << repair.output;
  EXPECT_NE(repair.output.find("refusing to repair"), std::string::npos) << repair.output;
  ToolResult check = Run();
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find("checked read-only"), std::string::npos) << check.output;
}

TEST(FsckErrors, NotABackingDirectoryIsAnOperationalError) {
  TempDir dir;
  ToolResult r = Kvfs("fsck " + dir.path() + " --node-id n");
  EXPECT_EQ(r.exit_code, 8) << r.output;
  EXPECT_NE(r.output.find("not a kvfs backing directory"), std::string::npos) << r.output;
  EXPECT_EQ(Kvfs("fsck").exit_code, 8);
  EXPECT_EQ(Kvfs("fsck " + dir.path() + " --bogus").exit_code, 8);
}

}  // namespace
}  // namespace kvfs
