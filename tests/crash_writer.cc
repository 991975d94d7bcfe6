// Helper of crash_test: opens an engine and stores, replaces, unlinks and
// evicts files (returning their space at once) forever, announcing each operation on stdout before ("B ...") and
// after ("E") it, until it is killed. With "hook POINT N" it kills itself
// with SIGKILL the Nth time a commit reaches POINT.
//
// usage: kvfs_crash_writer BACKING INDEX SEED [hook POINT N]
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kvfs/engine.h"
#include "kvfs/errors.h"
#include "tests/test_util.h"

namespace {

void Say(const std::string& line) {
  std::string l = line + "\n";
  (void)!::write(1, l.data(), l.size());
}

[[noreturn]] void Die(absl::string_view what, const absl::Status& s) {
  Say(absl::StrCat("F ", what, ": ", s.ToString()));
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && argc != 7) {
    std::fprintf(stderr, "usage: %s BACKING INDEX SEED [hook POINT N]\n", argv[0]);
    return 2;
  }
  const uint64_t seed = std::strtoull(argv[3], nullptr, 10);
  kvfs::EngineOptions o;
  o.backing_dir = argv[1];
  o.index_dir = argv[2];
  o.node_id = "crash-node";
  o.extent_bytes = 4 << 20;
  o.block_cache_bytes = 4 << 20;
  o.log = [](absl::string_view) {};
  o.background_eviction = false;  // evictions happen where this program says
  o.reclaim_grace_ns = 0;         // and their space goes back at once
  int hits = 0;
  if (argc == 7) {
    std::string point = argv[5];
    int n = std::atoi(argv[6]);
    o.crash_hook = [point, n, &hits](absl::string_view at) {
      if (at == point && ++hits == n) ::raise(SIGKILL);
    };
  }
  absl::StatusOr<std::unique_ptr<kvfs::Engine>> opened = kvfs::Engine::Open(o);
  if (!opened.ok()) Die("open", opened.status());
  kvfs::Engine& e = **opened;
  Say("READY");

  std::mt19937_64 rng(seed);
  std::vector<std::string> mine;
  for (uint64_t i = 0;; ++i) {
    const std::string dir = absl::StrCat("d", rng() % 4);
    const std::string name = absl::StrCat("f", rng() % 25, ".bin");
    const uint64_t content = seed * 100000 + i;
    const size_t size = rng() % (512 << 10);
    const int kind = static_cast<int>(rng() % 10);
    absl::StatusOr<kvfs::Attr> parent = e.MkdirAll(dir);
    if (!parent.ok()) Die("mkdir", parent.status());
    if (kind == 0 && !mine.empty()) {
      const std::string victim = mine[rng() % mine.size()];
      const std::string vdir = victim.substr(0, victim.find('/'));
      Say(absl::StrCat("B U ", victim));
      absl::Status s = e.Unlink(e.Stat(vdir)->ino, victim.substr(victim.find('/') + 1));
      if (!s.ok() && kvfs::ErrnoOf(s) != ENOENT) Die("unlink", s);
      Say("E");
      continue;
    }
    if (kind == 1) {
      // Evict the least recently accessed file (a dry run names it first).
      kvfs::EvictRequest oldest;
      oldest.max_bytes = 1;
      oldest.dry_run = true;
      absl::StatusOr<std::vector<kvfs::EvictedFile>> next = e.Evict(oldest);
      if (!next.ok()) Die("evict (dry run)", next.status());
      if (next->empty()) continue;
      Say(absl::StrCat("B U ", (*next)[0].path));
      oldest.dry_run = false;
      absl::StatusOr<std::vector<kvfs::EvictedFile>> gone = e.Evict(oldest);
      if (!gone.ok()) Die("evict", gone.status());
      if (gone->size() != 1 || (*gone)[0].path != (*next)[0].path) {
        Die("evict", absl::InternalError("evicted another file than the dry run named"));
      }
      if (absl::Status s = e.ReclaimDue(); !s.ok()) Die("reclaim", s);
      Say("E");
      continue;
    }
    const bool via_tmp = kind >= 5;
    const std::string path = dir + "/" + name;
    Say(absl::StrCat("B ", via_tmp ? "T " : "P ", path, " ", content, " ", size));
    absl::StatusOr<std::unique_ptr<kvfs::FileWriter>> w = e.CreateWriter();
    if (!w.ok()) Die("create", w.status());
    const std::string data = kvfs::testing::Pattern(content, size);
    for (size_t off = 0; off < size; off += 128 << 10) {
      if (absl::Status s = (*w)->Write(off, absl::string_view(data).substr(off, 128 << 10));
          !s.ok()) {
        Die("write", s);
      }
    }
    const std::string commit_name = via_tmp ? name + "_7.tmp" : name;
    absl::StatusOr<kvfs::Attr> attr = e.Commit(**w, parent->ino, commit_name);
    if (!attr.ok()) Die("commit", attr.status());
    if (via_tmp) {
      if (absl::Status s = e.Rename(parent->ino, commit_name, parent->ino, name); !s.ok()) {
        Die("rename", s);
      }
    }
    mine.push_back(path);
    Say("E");
  }
}
