// `kvfs du`, `kvfs stat` and the metrics on a real mount: du agrees with
// `du --apparent-size`, and the counters move as a known sequence of
// operations says they must. The exposition is checked against the
// Prometheus text format by a parser written here.
#include <dirent.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "tests/mount_util.h"
#include "tests/test_util.h"
#include "tests/tool_util.h"

namespace kvfs {
namespace {

using testing::Pattern;
using testing::TempDir;

using testing::Kvfs;
using testing::Shell;
using testing::ToolResult;

void WriteFile(const std::string& path, const std::string& data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ASSERT_EQ(::close(fd), 0);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) out.emplace_back(e->d_name);
  ::closedir(d);
  return out;
}

// Parses the Prometheus text exposition format (version 0.0.4) strictly:
// every sample belongs to a family declared by # HELP and # TYPE lines,
// names and labels are well formed, values are numbers, counters carry no
// labels and are not negative, histograms have ascending `le` buckets that
// never decrease and end with +Inf, and +Inf equals _count. Returns
// sample -> value; what is wrong goes to `errors`.
std::map<std::string, double> ParsePrometheus(const std::string& text, std::string* errors) {
  static const std::regex kHelp(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$)");
  static const std::regex kType(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$)");
  static const std::regex kSample(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"\})? (\S+)$)");
  static const std::regex kLe(R"re(\{le="([^"]+)"\})re");
  static const std::regex kNumber(R"(^[-+]?([0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?|Inf)$)");
  auto fail = [&](const std::string& why, const std::string& line) {
    *errors += why + ": " + line + "\n";
  };
  std::map<std::string, double> samples;
  std::map<std::string, std::string> types;
  std::set<std::string> helped;
  std::string histogram;  // the histogram family being read
  double last_le = -1, last_bucket = -1;
  if (text.empty() || text.back() != '\n') fail("empty or no final newline", "");
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, kHelp)) {
      if (!helped.insert(m[1]).second) fail("second HELP", line);
      continue;
    }
    if (std::regex_match(line, m, kType)) {
      if (!helped.count(m[1])) fail("TYPE before HELP", line);
      if (!types.emplace(m[1], m[2]).second) fail("second TYPE", line);
      continue;
    }
    if (!std::regex_match(line, m, kSample)) {
      fail("malformed line", line);
      continue;
    }
    const std::string name = m[1], labels = m[2], value_text = m[3];
    if (!std::regex_match(value_text, kNumber)) {
      fail("bad value", line);
      continue;
    }
    const double value = value_text == "+Inf" ? INFINITY : std::stod(value_text);
    std::string family = name;
    for (const std::string suffix : {"_bucket", "_sum", "_count"}) {
      if (!types.count(family) && name.size() > suffix.size() &&
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
          types.count(name.substr(0, name.size() - suffix.size()))) {
        family = name.substr(0, name.size() - suffix.size());
      }
    }
    if (!types.count(family)) {
      fail("sample of an undeclared family", line);
      continue;
    }
    const std::string& type = types[family];
    if (type == "counter" && (!labels.empty() || value < 0)) fail("bad counter", line);
    if (type == "histogram") {
      if (family != histogram) {
        histogram = family;
        last_le = -1;
        last_bucket = -1;
      }
      if (name == family + "_bucket") {
        std::smatch le;
        if (!std::regex_match(labels, le, kLe)) {
          fail("bucket without le", line);
          continue;
        }
        const double bound = le[1] == "+Inf" ? INFINITY : std::stod(le[1]);
        if (bound <= last_le) fail("buckets out of order", line);
        if (value < last_bucket) fail("cumulative bucket decreased", line);
        last_le = bound;
        last_bucket = value;
      } else if (name == family + "_count") {
        if (last_le != INFINITY) fail("histogram without a +Inf bucket", line);
        if (value != last_bucket) fail("+Inf bucket differs from _count", line);
      }
    }
    if (!samples.emplace(name + labels, value).second) fail("duplicate sample", line);
  }
  return samples;
}

// The checker above must be able to fail: each of these breaks one rule.
TEST(OperatorTools, PrometheusCheckRejectsBrokenExpositions) {
  const std::string ok =
      "# HELP a_total A.\n# TYPE a_total counter\na_total 3\n"
      "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
      "h_sum 0.5\nh_count 2\n";
  std::string errors;
  std::map<std::string, double> samples = ParsePrometheus(ok, &errors);
  EXPECT_EQ(errors, "");
  EXPECT_EQ(samples["a_total"], 3);
  for (const std::string& bad : {
           std::string("a_total 3\n"),                                     // undeclared
           std::string("# HELP a A.\n# TYPE a counter\na 1 2\n"),          // malformed
           std::string("# HELP a A.\n# TYPE a gauge\na x\n"),              // not a number
           std::string("# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\n"
                       "h_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n"),  // decreasing
           std::string("# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\n"
                       "h_sum 0\nh_count 2\n"),                           // +Inf != count
           std::string("# HELP a A.\n# TYPE a gauge\na 1"),                 // no newline
       }) {
    errors.clear();
    ParsePrometheus(bad, &errors);
    EXPECT_NE(errors, "") << bad;
  }
}

TEST(OperatorTools, EveryCommandHasHelpAndVersionNamesTheFormat) {
  ToolResult help = Kvfs("--help");
  EXPECT_EQ(help.exit_code, 0);
  for (const char* command : {"mount", "umount", "evict", "stat", "du", "fsck", "bench", "demo"}) {
    EXPECT_NE(help.output.find(std::string("  ") + command + " "), std::string::npos)
        << command << " missing from:\n" << help.output;
    ToolResult own = Kvfs(std::string(command) + " --help");
    EXPECT_EQ(own.exit_code, 0) << command;
    EXPECT_EQ(own.output.rfind(std::string("usage: kvfs ") + command, 0), 0u)
        << command << ":\n" << own.output;
  }
  ToolResult version = Kvfs("--version");
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.output.find("backing format 1"), std::string::npos) << version.output;
  EXPECT_NE(Kvfs("no-such-command").exit_code, 0);
}

// kvfs bench refuses what it cannot run before it mounts or writes anything.
TEST(OperatorTools, BenchRefusesBadOptions) {
  TempDir dir;
  ToolResult no_dir = Kvfs("bench");
  EXPECT_EQ(no_dir.exit_code, 2);
  EXPECT_NE(no_dir.output.find("--dir is required"), std::string::npos) << no_dir.output;
  for (const char* size : {"lots", "1000000T"}) {
    ToolResult r = Kvfs("bench --dir " + dir.Sub("b") + " --touch-memory " + size);
    EXPECT_EQ(r.exit_code, 2) << size;
    EXPECT_NE(r.output.find("--touch-memory must be a size up to the free memory"),
              std::string::npos)
        << r.output;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("b"))) << "nothing made before the refusal";
}

TEST(OperatorTools, DuAgreesWithDuApparentSize) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  Mount m(dir);
  ASSERT_TRUE(m.Start());
  uint64_t total = 0;
  std::map<std::string, uint64_t> per_model;
  for (const char* model : {"llama_r0", "llama_r1", "qwen_r0"}) {
    for (int h = 0; h < 3; ++h) {
      const std::string d = std::string(model) + "/h" + std::to_string(h);
      ASSERT_EQ(std::system(("mkdir -p " + m.Path(d)).c_str()), 0);
      for (int f = 0; f < 4; ++f) {
        const size_t size = 1000 + 37000 * (h + 1) * (f + 1);
        WriteFile(m.Path(d + "/f" + std::to_string(f)), Pattern(h * 10 + f, size));
        total += size;
        per_model[model] += size;
      }
    }
  }
  ToolResult du = Shell("du -s --apparent-size -B1 " + m.Path(""));
  ASSERT_EQ(du.exit_code, 0) << du.output;
  ToolResult kdu = Kvfs("du -s " + m.Path(""));
  ASSERT_EQ(kdu.exit_code, 0) << kdu.output;
  EXPECT_EQ(std::stoull(du.output), total);
  EXPECT_EQ(std::stoull(kdu.output), total) << kdu.output;
  EXPECT_NE(kdu.output.find("\t36\t"), std::string::npos) << "36 files: " << kdu.output;

  // Per directory, one level down, as du prints it.
  ToolResult kdu1 = Kvfs("du -d 1 " + m.Path(""));
  ASSERT_EQ(kdu1.exit_code, 0) << kdu1.output;
  for (const auto& [model, bytes] : per_model) {
    ToolResult one = Shell("du -s --apparent-size -B1 " + m.Path(model));
    EXPECT_EQ(std::stoull(one.output), bytes);
    EXPECT_NE(kdu1.output.find(std::to_string(bytes) + "\t"), std::string::npos) << kdu1.output;
    EXPECT_NE(kdu1.output.find(m.Path(model) + "\n"), std::string::npos) << kdu1.output;
  }
  // A subdirectory on the mount, and the backing directory (the live index,
  // read-only) give the same figures.
  ToolResult sub = Kvfs("du -s " + m.Path("llama_r1"));
  EXPECT_EQ(std::stoull(sub.output), per_model["llama_r1"]) << sub.output;
  ToolResult backing = Kvfs("du -s --json " + m.backing() + " --node-id mount-test --index-dir " +
                            dir.Sub("index"));
  ASSERT_EQ(backing.exit_code, 0) << backing.output;
  EXPECT_NE(backing.output.find("\"logical_bytes\": " + std::to_string(total)),
            std::string::npos) << backing.output;
  EXPECT_NE(backing.output.find("\"files\": 36"), std::string::npos) << backing.output;
  EXPECT_NE(Kvfs("du " + dir.path()).exit_code, 0);  // neither a mount nor a backing dir
}

TEST(OperatorTools, StatAndMetricsCountAKnownSequence) {
  if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  const std::string prom = dir.Sub("kvfs.prom");
  Mount m(dir, {"--metrics-file", prom, "--metrics-interval", "1"});
  ASSERT_TRUE(m.Start());
  const std::string metrics = m.Path(".kvfs/metrics");
  // Hidden from the root's listing, listed in its own directory.
  for (const std::string& n : Names(m.Path(""))) EXPECT_NE(n, ".kvfs");
  std::vector<std::string> control = Names(m.Path(".kvfs"));
  EXPECT_NE(std::find(control.begin(), control.end(), "metrics"), control.end());
  EXPECT_EQ(::open(metrics.c_str(), O_WRONLY), -1);  // read-only
  EXPECT_EQ(errno, EACCES);

  std::string errors;
  std::map<std::string, double> before = ParsePrometheus(ReadFile(metrics), &errors);
  ASSERT_EQ(errors, "");
  EXPECT_EQ(before["kvfs_files"], 0);

  // Three files written and closed (vLLM's config files), one the llm-d way
  // (temp file, rename while open), one read back, one missing name probed.
  ASSERT_EQ(::mkdir(m.Path("m_r0").c_str(), 0755), 0);
  uint64_t written = 0;
  for (int i = 0; i < 3; ++i) {
    const std::string data = Pattern(i, 300000 + i);
    WriteFile(m.Path("m_r0/f" + std::to_string(i)), data);
    written += data.size();
  }
  {
    const std::string data = Pattern(9, 2 << 20);
    const int fd = ::open(m.Path("m_r0/blk_123.tmp").c_str(), O_WRONLY | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    ASSERT_EQ(::rename(m.Path("m_r0/blk_123.tmp").c_str(), m.Path("m_r0/blk").c_str()), 0);
    ASSERT_EQ(::close(fd), 0);
    written += data.size();
  }
  {
    // The writer's pages are still cached: drop them, so the read is served
    // (and counted) by the daemon.
    const int fd = ::open(m.Path("m_r0/blk").c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    ::close(fd);
  }
  EXPECT_EQ(ReadFile(m.Path("m_r0/blk")), Pattern(9, 2 << 20));
  struct stat st;
  EXPECT_NE(::stat(m.Path("m_r0/missing").c_str(), &st), 0);
  // A temp file closed and never renamed is reclaimed after the grace
  // period (the mount uses --temp-grace 1); the next create reaps it.
  WriteFile(m.Path("m_r0/orphan_5.tmp"), "x");
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  WriteFile(m.Path("m_r0/f3"), "y");
  written += 1;
  // Evict one file by hand.
  ToolResult evict = Kvfs("evict " + m.Path("") + " --prefix m_r0/f0");
  ASSERT_EQ(evict.exit_code, 0) << evict.output;

  std::map<std::string, double> after = ParsePrometheus(ReadFile(metrics), &errors);
  ASSERT_EQ(errors, "");
  auto delta = [&](const std::string& name) { return after[name] - before[name]; };
  EXPECT_EQ(delta("kvfs_stores_total"), 5);  // f0-f3 and blk
  EXPECT_EQ(delta("kvfs_written_bytes_total"), static_cast<double>(written + 1));  // + "x"
  EXPECT_EQ(after["kvfs_files"], 4);  // f0 evicted
  EXPECT_GE(delta("kvfs_read_bytes_total"), 2 << 20);
  EXPECT_GE(delta("kvfs_opens_total"), 1);
  EXPECT_GE(delta("kvfs_lookup_misses_total"), 1);
  EXPECT_GE(delta("kvfs_lookup_hits_total"), 1);
  EXPECT_EQ(delta("kvfs_lookups_total"),
            delta("kvfs_lookup_hits_total") + delta("kvfs_lookup_misses_total"));
  EXPECT_EQ(delta("kvfs_evicted_files_total"), 1);
  EXPECT_EQ(delta("kvfs_evicted_bytes_total"), 300000);
  EXPECT_EQ(delta("kvfs_temp_files_reclaimed_total"), 1);
  EXPECT_EQ(delta("kvfs_store_latency_seconds_count"), 5);
  EXPECT_GE(delta("kvfs_load_latency_seconds_count"), 1);
  EXPECT_EQ(after["kvfs_checksum_errors_total"], 0);
  EXPECT_GT(after["kvfs_used_bytes"], static_cast<double>(written - 300000));
  EXPECT_GT(after["kvfs_uptime_seconds"], before["kvfs_uptime_seconds"]);
  // Eviction keeps room for twice what was stored in the last grace period
  // (10 s; the writes were seconds ago).
  EXPECT_GE(after["kvfs_write_room_bytes"], 2.0 * static_cast<double>(written));
  EXPECT_EQ(after["kvfs_space_waits_total"], 0);

  // kvfs stat shows the same figures.
  ToolResult stat = Kvfs("stat " + m.Path(""));
  ASSERT_EQ(stat.exit_code, 0) << stat.output;
  EXPECT_NE(stat.output.find("files             4\n"), std::string::npos) << stat.output;
  EXPECT_NE(stat.output.find("evictions         1 files"), std::string::npos) << stat.output;
  EXPECT_NE(stat.output.find("0 writes waited for room, 0 refused\n"), std::string::npos)
      << stat.output;
  ToolResult json = Kvfs("stat --json " + m.Path(""));
  ASSERT_EQ(json.exit_code, 0) << json.output;
  EXPECT_NE(json.output.find("\"kvfs_files\": 4"), std::string::npos) << json.output;
  EXPECT_NE(Kvfs("stat " + dir.path()).exit_code, 0);  // not a mount: a clear failure
  // --watch redraws in place (home + clear) and shows rates from the second
  // frame on, until it is stopped.
  ToolResult watch = Shell("timeout 2.6 " + std::string(KVFS_BINARY) + " stat --watch 1 " +
                           m.Path(""));
  EXPECT_EQ(watch.exit_code, 124) << "runs until stopped: " << watch.output;
  size_t frames = 0;
  for (size_t at = 0; (at = watch.output.find("\033[H\033[2J", at)) != std::string::npos; ++at) {
    ++frames;
  }
  EXPECT_GE(frames, 2u) << watch.output;
  EXPECT_NE(watch.output.find("/s)"), std::string::npos) << "rates: " << watch.output;

  // The metrics file for node_exporter: written within a few seconds, and
  // a complete exposition (never half-written: it is renamed into place).
  bool seen = false;
  for (int i = 0; i < 50 && !seen; ++i) {
    std::map<std::string, double> file = ParsePrometheus(ReadFile(prom), &errors);
    ASSERT_EQ(errors, "");
    seen = file["kvfs_stores_total"] == after["kvfs_stores_total"];
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(seen) << ReadFile(prom);
}

}  // namespace
}  // namespace kvfs
