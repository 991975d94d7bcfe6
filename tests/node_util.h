// Helpers for tests of several nodes sharing one backing directory: each
// node an engine with its own index (and clock, if given), following the
// others only when the test calls SyncPeers.
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kvfs/engine.h"
#include "tests/test_util.h"

namespace kvfs::testing {

inline constexpr int64_t kSecond = 1'000'000'000;

// Node `id` of the backing directory in `dir`, with its own index, its own
// clock (if given), following the others only when the test says so.
inline EngineOptions NodeOptions(const TempDir& dir, const std::string& id,
                                 std::atomic<int64_t>* clock = nullptr) {
  EngineOptions o = TestOptions(dir);
  o.node_id = id;
  o.index_dir = dir.Sub("index-" + id);
  o.peer_poll_ns = 0;
  o.background_eviction = false;
  o.reclaim_grace_ns = 0;
  o.journal_compact_bytes = 0;  // compaction when the test calls it
  if (clock) o.clock = [clock] { return clock->load(); };
  return o;
}

// Node `id` closed, its index deleted, and opened again: the index is
// rebuilt from its own journal and extents, then the others' journals.
inline std::unique_ptr<Engine> Rebuilt(std::unique_ptr<Engine> e, const TempDir& dir,
                                       const std::string& id,
                                       std::atomic<int64_t>* clock = nullptr) {
  e.reset();
  EXPECT_TRUE(std::filesystem::remove_all(dir.Sub("index-" + id)) > 0);
  std::unique_ptr<Engine> reopened = MustOpen(NodeOptions(dir, id, clock));
  if (reopened) {
    EXPECT_TRUE(reopened->index_was_rebuilt());
    for (const std::string& p : reopened->problems()) ADD_FAILURE() << id << ": " << p;
  }
  return reopened;
}

// The paths of the files (or of the directories) in `e`'s namespace.
inline std::set<std::string> Paths(Engine& e, bool directories) {
  std::set<std::string> out;
  absl::StatusOr<std::vector<TreeEntry>> tree = e.ListTree();
  EXPECT_TRUE(tree.ok()) << tree.status();
  if (tree.ok()) {
    for (const TreeEntry& t : *tree) {
      if (t.inode.is_dir == directories) out.insert(t.path);
    }
  }
  return out;
}
inline std::set<std::string> Files(Engine& e) { return Paths(e, false); }
inline std::set<std::string> Dirs(Engine& e) { return Paths(e, true); }

inline std::string Read(Engine& e, const std::string& path) {
  absl::StatusOr<std::string> data = e.GetFile(path);
  return data.ok() ? *data : "<" + std::string(data.status().message()) + ">";
}

}  // namespace kvfs::testing
