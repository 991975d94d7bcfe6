// Journal compaction: the journal records every change, so without it a node
// that stores a file a second keeps ~20 GB of journal a day that no capacity
// limit counts, and a node joining (or an index rebuild) reads all of it.
// A checkpoint (journal.h) replaces the journal files it covers with the
// namespace they led to:
//   - a kMkdir entry per directory, parents first;
//   - a kLive entry per file of this node's (other nodes' files are in their
//     own journals and checkpoints);
//   - the entries that still say something about another node's version
//     (this node's unlinks and renames of it), until its owner has retired
//     that version: the owner learns of them only from here;
//   - the latest access hint of each other node's version read here within
//     the last hour, so that an owner that was behind (down, say) when the
//     journal went still hears of those reads;
//   - the rmdirs of the last hour of directories not made again since, so
//     that a node that was behind removes them too (a checkpoint lists the
//     directories there are, not those that went).
// Unlinks, retirements, older rmdirs and versions since replaced leave
// nothing.
//
// Only the switch to a new journal file holds the engine's lock; the
// checkpoint is written from an index snapshot taken at that switch, while
// changes go on into the new file.
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kvfs/engine.h"
#include "kvfs/errors.h"

namespace kvfs {
namespace {

constexpr int64_t kCompactorTickNs = 1'000'000'000;
// After a failed compaction (a full disk, say), ticks to wait before the next
// try: each try starts a new journal file.
constexpr int kTicksAfterFailure = 60;
// Access hints and rmdirs older than this are not carried: the other nodes
// have most likely read them long since, and each checkpoint would carry
// every peer file ever read here.
constexpr int64_t kCarriedAgeNs = 3600'000'000'000;

}  // namespace

uint64_t Engine::UncoveredJournalBytes() {
  std::lock_guard lock(mu_);
  return uncovered_at_open_ + journal_->appended_bytes() - appended_at_checkpoint_;
}

absl::StatusOr<std::vector<JournalEntry>> Engine::CarriedEntries(uint64_t since,
                                                                 uint64_t covered) {
  const BackingLayout& layout = backing_->layout();
  const std::string& uuid = backing_->format().uuid;
  std::vector<JournalEntry> carried;
  // The latest hint of each version: (owner, extent, offset) -> entry.
  std::map<std::tuple<std::string, uint64_t, uint64_t>, JournalEntry> hints;
  // The latest rmdir of each path, and the order they came in.
  std::map<std::string, JournalEntry> rmdirs;
  const int64_t oldest = Now() - kCarriedAgeNs;
  auto consider = [&](const JournalEntry& e) {
    const bool peer_version =
        !e.owner.empty() && e.owner != layout.node_id && e.extent_id != 0;
    if ((e.op == JournalOp::kUnlink || e.op == JournalOp::kRename) && peer_version) {
      carried.push_back(e);
    } else if (e.op == JournalOp::kAccess && peer_version && e.time_ns >= oldest) {
      JournalEntry& latest = hints[{e.owner, e.extent_id, e.record_offset}];
      if (latest.time_ns <= e.time_ns) latest = e;
    } else if (e.op == JournalOp::kRmdir && e.time_ns >= oldest) {
      rmdirs[e.path] = e;  // entries come in journal order
    }
    return absl::OkStatus();
  };
  if (since != 0) {
    absl::StatusOr<JournalEntry> head = ScanCheckpointFile(layout, uuid, since, consider);
    if (!head.ok()) {  // runs beside everything else: a log line, not problems_
      Log(absl::StrCat("compacting the journal: ", head.status().message(),
                       "; the unlinks and access hints of other nodes' files it carried are "
                       "dropped"));
    }
  }
  absl::StatusOr<JournalFiles> files = ListJournalFiles(layout.JournalDir());
  if (!files.ok()) return files.status();
  for (uint64_t number : files->journals) {
    if (number <= since || number > covered) continue;
    absl::StatusOr<JournalFileScan> scan =
        ScanJournalFile(layout, uuid, number, 0,
                        [&](const JournalEntry& e, uint64_t) { return consider(e); });
    if (!scan.ok()) return scan.status();
  }
  for (auto& [version, hint] : hints) carried.push_back(std::move(hint));
  // Versions their owners have retired since: those owners' journals say so.
  std::erase_if(carried, [&](const JournalEntry& e) {
    return RecordIsRetired(PeerExtents(e.owner)->Get(e.extent_id), e.record_offset);
  });
  // Last, in the order they were made (children before their parents).
  const size_t first_rmdir = carried.size();
  for (auto& [path, e] : rmdirs) carried.push_back(std::move(e));
  std::sort(carried.begin() + first_rmdir, carried.end(),
            [](const JournalEntry& x, const JournalEntry& y) { return x.seq < y.seq; });
  return carried;
}

absl::Status Engine::CompactJournal() {
  std::lock_guard compacting(compact_mu_);
  const BackingLayout& layout = backing_->layout();
  const std::string& uuid = backing_->format().uuid;
  uint64_t covered = 0, since = 0, appended = 0;
  JournalEntry head;
  std::shared_ptr<const rocksdb::Snapshot> snapshot;
  {
    std::lock_guard lock(mu_);
    if (absl::Status s = CheckWritable(); !s.ok()) return s;
    covered = journal_->end().number;
    if (absl::Status s = journal_->Rotate(); !s.ok()) return s;
    // The index must never point into a file the checkpoint lets go.
    meta_.journal_number = journal_->end().number;
    meta_.journal_offset = journal_->end().offset;
    IndexBatch batch(index_.get());
    batch.PutMeta(meta_);
    if (absl::Status s = index_->Write(&batch); !s.ok()) return s;
    snapshot = index_->GetSnapshot();
    head.op = JournalOp::kCheckpoint;
    head.seq = meta_.next_seq - 1;
    head.time_ns = Now();
    head.ino = std::max<uint64_t>(meta_.next_ino, next_ino_);
    head.extent_id = meta_.max_extent_id;
    since = checkpoint_number_;
    appended = journal_->appended_bytes();
  }

  // Directories first, parents before children: their paths come from the
  // snapshot, as do the files'.
  struct Dir {
    uint64_t parent;
    std::string name;
    uint32_t mode;
    int64_t time_ns;
    uint64_t seq;
  };
  std::map<uint64_t, Dir> dirs;
  if (absl::Status s = index_->ForEachInode(
          [&](const Inode& n) {
            if (n.is_dir && n.ino != kRootIno) {
              dirs[n.ino] = {n.parent, n.name, n.mode, n.mtime_ns, n.seq};
            }
            return true;
          },
          snapshot.get());
      !s.ok()) {
    return s;
  }
  std::map<uint64_t, std::string> paths{{kRootIno, ""}};
  std::function<const std::string*(uint64_t, int)> path_of =
      [&](uint64_t ino, int depth) -> const std::string* {
    if (auto it = paths.find(ino); it != paths.end()) return &it->second;
    auto d = dirs.find(ino);
    if (d == dirs.end() || depth > 4096) return nullptr;  // detached (damage)
    const std::string* parent = path_of(d->second.parent, depth + 1);
    if (parent == nullptr) return nullptr;
    return &(paths[ino] = parent->empty() ? d->second.name
                                          : absl::StrCat(*parent, "/", d->second.name));
  };
  std::vector<std::pair<std::string, uint64_t>> dir_paths;
  for (const auto& [ino, d] : dirs) {
    if (const std::string* p = path_of(ino, 0)) dir_paths.emplace_back(*p, ino);
  }
  // A parent's path is a prefix of its children's, so it sorts first.
  std::sort(dir_paths.begin(), dir_paths.end());

  absl::StatusOr<std::vector<JournalEntry>> carried = CarriedEntries(since, covered);
  if (!carried.ok()) return carried.status();
  // A directory made again since its rmdir is listed above: no rmdir of it.
  std::set<std::string> live_dirs;
  for (const auto& [path, ino] : dir_paths) live_dirs.insert(path);
  std::erase_if(*carried, [&](const JournalEntry& e) {
    return e.op == JournalOp::kRmdir && live_dirs.count(e.path) > 0;
  });

  absl::StatusOr<std::unique_ptr<CheckpointWriter>> writer =
      CheckpointWriter::Create(layout, uuid, covered, head);
  if (!writer.ok()) return writer.status();
  uint64_t entries = 0;
  for (const auto& [path, ino] : dir_paths) {
    const Dir& d = dirs[ino];
    JournalEntry e;
    e.op = JournalOp::kMkdir;
    e.seq = d.seq;
    e.time_ns = d.time_ns;
    e.ino = ino;
    e.mode = d.mode;
    e.path = path;
    if (absl::Status s = (*writer)->Append(e); !s.ok()) return s;
    ++entries;
  }
  absl::Status appending;
  if (absl::Status s = index_->ForEachInode(
          [&](const Inode& n) {
            if (n.is_dir || !n.owner.empty()) return true;
            auto parent = paths.find(n.parent);
            if (parent == paths.end()) return true;  // detached (damage): fsck reports it
            JournalEntry e;
            e.op = JournalOp::kLive;
            e.seq = n.seq;
            e.time_ns = n.ctime_ns;
            e.ino = n.ino;
            e.mode = n.mode;
            e.path = parent->second.empty() ? n.name
                                            : absl::StrCat(parent->second, "/", n.name);
            e.extent_id = n.extent_id;
            e.record_offset = n.record_offset;
            e.payload_bytes = n.size;
            appending = (*writer)->Append(e);
            ++entries;
            return appending.ok();
          },
          snapshot.get());
      !s.ok()) {
    return s;
  }
  if (!appending.ok()) return appending;
  snapshot.reset();
  for (const JournalEntry& e : *carried) {
    if (absl::Status s = (*writer)->Append(e); !s.ok()) return s;
    ++entries;
  }
  CrashPoint("compact.before_rename");
  absl::StatusOr<uint64_t> bytes = (*writer)->Finish();
  if (!bytes.ok()) return bytes.status();
  CrashPoint("compact.before_remove");
  RemoveCoveredJournalFiles(covered);
  {
    std::lock_guard lock(mu_);
    checkpoint_number_ = covered;
    checkpoint_bytes_ = *bytes;
    uncovered_at_open_ = 0;
    appended_at_checkpoint_ = appended;
  }
  ++stats_.checkpoints;
  stats_.checkpoint_entries = entries;
  Log(absl::StrCat("journal compacted: checkpoint ", layout.CheckpointPath(covered), " (",
                   entries, " entries, ", *bytes, " bytes) replaces journal files up to ",
                   covered));
  return absl::OkStatus();
}

void Engine::RemoveCoveredJournalFiles(uint64_t number) {
  const BackingLayout& layout = backing_->layout();
  absl::StatusOr<JournalFiles> files = ListJournalFiles(layout.JournalDir());
  if (!files.ok()) return;
  // Oldest first: another node reading the journal from where it stopped
  // finds either its next file or this checkpoint.
  std::vector<std::string> doomed;
  for (uint64_t n : files->journals) {
    if (n <= number) doomed.push_back(layout.JournalPath(n));
  }
  for (uint64_t n : files->checkpoints) {
    if (n < number) doomed.push_back(layout.CheckpointPath(n));
  }
  for (uint64_t n : files->unfinished) {
    if (n <= number) doomed.push_back(layout.CheckpointTempPath(n));
  }
  for (const std::string& path : doomed) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      Log(absl::StrCat("removing ", path, " (covered by a checkpoint): ",
                       SysError("unlink").message()));
    }
  }
  (void)SyncDirectory(layout.JournalDir());
}

void Engine::StartCompactor() {
  if (options_.journal_compact_bytes == 0) return;
  compactor_.Start(std::chrono::nanoseconds(kCompactorTickNs), [this, wait_ticks = 0]() mutable {
    if (wait_ticks > 0) {
      --wait_ticks;
      return;
    }
    uint64_t threshold = 0;
    {
      std::lock_guard engine(mu_);
      threshold = std::max<uint64_t>(options_.journal_compact_bytes, 2 * checkpoint_bytes_);
    }
    if (UncoveredJournalBytes() < threshold) return;
    if (absl::Status s = CompactJournal(); !s.ok()) {
      Log(absl::StrCat("compacting the journal: ", s.message(), "; next try in ",
                       kTicksAfterFailure, " s"));
      wait_ticks = kTicksAfterFailure;
    }
  });
}

void Engine::StopCompactor() { compactor_.Stop(); }

}  // namespace kvfs
