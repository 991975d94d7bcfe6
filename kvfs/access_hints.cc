// Access hints: reads on one node reach the eviction order of the node that
// stored the file. Each node evicts only what it stored, by its own access
// times, and a block read only on other nodes would otherwise age there as
// if nobody used it. A node that reads another node's file journals a
// kAccess entry for it, at most once per file and access_hint_interval_ns;
// the owner applies it when it follows that journal, like any other entry.
//
// Hints are best effort. They change no namespace, are not synced, are
// carried into checkpoints only for an hour (journal_compaction.cc: an owner
// further behind loses older ones), and a failure to journal one (a full
// disk) is logged, never returned: recording access times must not fail
// eviction.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kvfs/engine.h"

namespace kvfs {

void Engine::JournalAccessHintsLocked(const std::vector<Inode>& hints, IndexBatch* batch) {
  if (hints.empty() || !journal_) return;  // no journal: an engine that never opened
  for (const Inode& n : hints) {
    absl::StatusOr<std::string> path = PathOfLocked(n.ino);
    if (!path.ok()) continue;  // gone meanwhile: nothing to hint
    JournalEntry e = NewEntryLocked(JournalOp::kAccess, 0, *std::move(path));
    e.time_ns = n.atime_ns;
    e.owner = n.owner;
    e.extent_id = n.extent_id;
    e.record_offset = n.record_offset;
    absl::StatusOr<JournalPosition> pos = journal_->Append(e);
    if (!pos.ok()) {
      if (!access_hint_failing_) {
        Log(absl::StrCat("journalling access hints for other nodes' files: ",
                         pos.status().message(), "; their owners see these reads late or not "
                         "at all"));
      }
      access_hint_failing_ = true;
      break;
    }
    access_hint_failing_ = false;
    meta_.next_seq = e.seq + 1;
    meta_.journal_number = pos->number;
    meta_.journal_offset = pos->offset;
    ++stats_.access_hints_sent;
  }
  batch->PutMeta(meta_);
}

absl::Status Engine::ApplyAccessHintLocked(const JournalEntry& e, IndexBatch* batch) {
  if (e.owner != backing_->layout().node_id) return absl::OkStatus();  // another's file
  absl::StatusOr<std::pair<uint64_t, std::string>> at = ResolveParentLocked(e.path, false);
  if (!at.ok()) return absl::OkStatus();  // gone since
  absl::StatusOr<std::optional<Inode>> file = index_->GetChild(at->first, at->second);
  if (!file.ok()) return file.status();
  // Only the version that was read: a newer one at that name was not.
  if (!*file || (*file)->is_dir || !(*file)->owner.empty() ||
      (*file)->extent_id != e.extent_id || (*file)->record_offset != e.record_offset) {
    return absl::OkStatus();
  }
  // A reader whose clock runs ahead cannot push a file past this node's now.
  const int64_t atime_ns = std::min(e.time_ns, Now());
  if (Index::AtimeBucket(atime_ns) <= Index::AtimeBucket((*file)->atime_ns)) {
    return absl::OkStatus();  // this node knows of an access as recent
  }
  PutAccessTime(**file, atime_ns, batch);
  ++stats_.access_hints_applied;
  return absl::OkStatus();
}

}  // namespace kvfs
