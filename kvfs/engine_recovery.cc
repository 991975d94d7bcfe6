// Opening an engine: the index (rebuilt when missing, damaged or foreign),
// replay of journal entries the index has not seen, and recovery of extent
// tails (sealing torn ones, completing commits whose journal entry was lost).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "kvfs/engine.h"
#include "kvfs/errors.h"
#include "kvfs/node_lock.h"

namespace kvfs {
namespace {

// Threads reading streams' next windows ahead: one per reader of a busy node.
constexpr int kColdReadThreads = 16;

constexpr absl::string_view kIndexMarker = "kvfs-index";

bool DirectoryIsEmpty(const std::string& dir) {
  absl::StatusOr<std::vector<std::string>> names = ListDirectory(dir);
  return names.ok() && names->empty();
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

std::string DefaultNodeId() {
  const std::string host = ThisHostName();
  std::string id;
  for (char c : host) {
    id.push_back(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                         c == '.'
                     ? c
                     : '-');
  }
  if (id.empty() || id[0] == '.') id = "node" + id;
  return id.substr(0, kMaxNodeIdBytes);
}

std::string DefaultIndexDir(const std::string& backing_dir, const std::string& node_id) {
  char resolved[PATH_MAX];
  std::string backing =
      ::realpath(backing_dir.c_str(), resolved) != nullptr ? resolved : backing_dir;
  std::string base;
  if (const char* dir = std::getenv("KVFS_STATE_DIR"); dir && *dir) {
    base = dir;
  } else if (::geteuid() == 0) {
    base = "/var/lib/kvfs";
  } else if (const char* state = std::getenv("XDG_STATE_HOME"); state && *state) {
    base = absl::StrCat(state, "/kvfs");
  } else {
    const char* home = std::getenv("HOME");
    base = absl::StrCat(home ? home : "/tmp", "/.local/state/kvfs");
  }
  return absl::StrFormat("%s/index-%s-%016x", base, node_id, MetaChecksum(backing));
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(EngineOptions options) {
  if (options.node_id.empty()) options.node_id = DefaultNodeId();
  if (options.index_dir.empty()) {
    options.index_dir = DefaultIndexDir(options.backing_dir, options.node_id);
  }
  if (options.extent_bytes < 16 * kBlockAlign) {
    return ErrnoError(EINVAL, "extent size must be at least 64 KiB");
  }
  std::unique_ptr<Engine> engine(new Engine(options));
  std::string lock_note;
  absl::StatusOr<std::unique_ptr<BackingDir>> backing = BackingDir::Open(
      options.backing_dir, options.node_id, options.node_heartbeat_ns, &lock_note);
  if (!backing.ok()) return backing.status();
  engine->backing_ = *std::move(backing);
  if (!lock_note.empty()) engine->Log(lock_note);
  // Another process of this node got in (see node_lock.h): stop writing.
  engine->backing_->node_lock().OnLost([e = engine.get()](const std::string& why) {
    std::lock_guard lock(e->mu_);
    e->FailLocked(why);
    e->Log(why);
  });
  if (absl::Status s = engine->InitExtentTarget(); !s.ok()) return s;
  if (engine->options_.cold_window_bytes > 0) {
    engine->cold_pool_ = std::make_shared<ColdReadPool>(
        AlignUp(engine->options_.cold_window_bytes, kChunkBytes),
        engine->options_.cold_buffer_bytes, kColdReadThreads);
  }
  engine->extents_ = std::make_unique<ExtentStore>(engine->backing_->layout(),
                                                   engine->backing_->format().uuid);
  std::unique_lock lock(engine->mu_);
  if (absl::Status s = engine->OpenIndex(); !s.ok()) return s;
  engine->next_ino_ = engine->meta_.next_ino;  // before replay allocates any
  // Replay and recovery count from the stored figure.
  const bool files_counted = engine->meta_.has_live_files;
  engine->live_files_ = engine->meta_.live_files;
  if (absl::Status s = engine->ReplayJournal(); !s.ok()) return s;
  if (absl::Status s = engine->RecoverExtents(); !s.ok()) return s;
  engine->meta_.next_ino = std::max<uint64_t>(engine->meta_.next_ino, engine->next_ino_);
  engine->next_ino_ = engine->meta_.next_ino;
  if (engine->index_rebuilt_) {
    if (absl::Status s = engine->QueueUnreferencedSpaceLocked(); !s.ok()) return s;
  }
  if (absl::Status s = engine->index_->ForEachReclaim(INT64_MAX, [&](const ReclaimEntry& r) {
        if (engine->reclaim_queue_.insert(r).second) {
          ++engine->queued_reclaims_[r.extent_id];
          engine->queued_bytes_ += r.punchable();
        }
        return true;
      });
      !s.ok()) {
    return s;
  }
  engine->RecomputeUsageLocked();
  if (!files_counted) {
    // An index from before the count was kept. Every file has exactly one
    // access-time entry: count those (keys only), once; the next commit
    // stores the figure.
    uint64_t files = 0;
    if (absl::Status s = engine->index_->ForEachByAtime([&](int64_t, uint64_t) {
          ++files;
          return true;
        });
        !s.ok()) {
      return s;
    }
    engine->live_files_ = files;
    engine->meta_.live_files = files;
    IndexBatch batch(engine->index_.get());
    batch.PutMeta(engine->meta_);
    if (absl::Status s = engine->index_->Write(&batch); !s.ok()) return s;
  }
  if (absl::Status s = engine->InitCapacity(); !s.ok()) return s;
  if (absl::Status s = engine->LoadPeerPositionsLocked(); !s.ok()) return s;
  if (options.write_behind && !options.sync_commits) {
    engine->writeback_kicker_ = std::make_unique<WritebackKicker>();
  }
  engine->StartEvictor();
  lock.unlock();
  // Other nodes' files are there from the start (the first mount of a
  // node, or a rebuilt index, reads their whole journals).
  if (absl::Status s = engine->SyncPeers(); !s.ok()) {
    engine->Log(absl::StrCat("reading other nodes' journals: ", s.message()));
  }
  engine->StartPeerFollower();
  engine->StartCompactor();
  return engine;
}

absl::Status Engine::OpenIndex() {
  index_dir_ = options_.index_dir;
  const std::string marker = index_dir_ + "/" + std::string(kIndexMarker);
  if (absl::Status s = EnsureDirectories(index_dir_); !s.ok()) return s;
  if (!Exists(marker)) {
    if (!DirectoryIsEmpty(index_dir_)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "index directory ", index_dir_, " is not empty and holds no ", kIndexMarker,
          " file: refusing to put an index among other data"));
    }
    if (absl::Status s = WriteFileAtomically(
            marker, "kvfs index directory: derived from the backing directory's "
                    "journal and extents; safe to delete while unmounted\n");
        !s.ok()) {
      return s;
    }
  }
  // One process per index directory, so a rebuild never pulls an index out
  // from under another kvfs (say, two backing directories given one index).
  absl::StatusOr<PosixFile> lock = PosixFile::Open(marker, O_RDONLY);
  if (!lock.ok()) return lock.status();
  if (::flock(lock->fd(), LOCK_EX | LOCK_NB) != 0) {
    return ErrnoError(EBUSY, absl::StrCat("index directory ", index_dir_,
                                          " is in use by another kvfs process"));
  }
  index_lock_ = *std::move(lock);
  const std::string db_dir = index_dir_ + "/db";
  const IndexOptions index_options{options_.block_cache_bytes, options_.sync_commits};
  const BackingLayout& layout = backing_->layout();
  const std::string& uuid = backing_->format().uuid;

  std::optional<IndexMeta> meta;
  absl::StatusOr<std::unique_ptr<Index>> index = Index::Open(db_dir, index_options);
  if (index.ok()) {
    absl::StatusOr<std::optional<IndexMeta>> m = (*index)->GetMeta();
    if (!m.ok()) {
      index = m.status();
    } else {
      meta = *m;
    }
  }
  std::string rebuild_reason;
  if (!index.ok() && index.status().code() != absl::StatusCode::kDataLoss) {
    return index.status();  // not damage (permissions, I/O): fix, not rebuild
  }
  if (!index.ok()) {
    rebuild_reason = absl::StrCat("index ", db_dir, " is damaged (",
                                  index.status().message(), ")");
  } else if (meta && (meta->backing_uuid != uuid || meta->node_id != layout.node_id)) {
    rebuild_reason = absl::StrCat("index ", db_dir, " belongs to another backing "
                                  "directory or node");
  } else if (meta && meta->journal_number != 0) {
    // The index must never be ahead of the journal it was built from.
    struct stat st;
    const std::string journal = layout.JournalPath(meta->journal_number);
    if (::stat(journal.c_str(), &st) != 0 ||
        static_cast<uint64_t>(st.st_size) < meta->journal_offset) {
      rebuild_reason = absl::StrCat("index ", db_dir, " is ahead of journal ", journal);
    }
  }
  if (!rebuild_reason.empty()) {
    Problem(absl::StrCat(rebuild_reason, ": rebuilding it from the journal and extents"));
    index = absl::UnknownError("");  // closes the old database before destroying it
    if (absl::Status s = Index::Destroy(db_dir); !s.ok()) return s;
    index = Index::Open(db_dir, index_options);
    if (!index.ok()) return index.status();
    meta.reset();
  }
  index_ = *std::move(index);
  if (meta) {
    meta_ = *meta;
    return absl::OkStatus();
  }
  // A new index: the root directory and metadata. With journals or extents
  // present this is a rebuild; replay fills it.
  absl::StatusOr<NumberedFiles> journals = ListNumberedFiles(layout.JournalDir(), ".kvj");
  absl::StatusOr<NumberedFiles> extents = ListNumberedFiles(layout.ExtentsDir(), ".kvx");
  index_rebuilt_ = (journals.ok() && !journals->numbers.empty()) ||
                   (extents.ok() && !extents->numbers.empty());
  meta_ = IndexMeta{};
  meta_.backing_uuid = uuid;
  meta_.node_id = layout.node_id;
  Inode root;
  root.ino = kRootIno;
  root.parent = 0;  // stored apart from every directory's children
  root.is_dir = true;
  root.mode = 0755;
  root.mtime_ns = root.ctime_ns = root.atime_ns = absl::GetCurrentTimeNanos();
  IndexBatch batch(index_.get());
  batch.PutInode(root);
  batch.PutMeta(meta_);
  return index_->Write(&batch);
}

void Engine::CountUnreadableRecordLocked(const JournalEntry& e, IndexBatch* batch) {
  ExtentState es = extent_states_[e.extent_id];
  es.committed_end = std::max(es.committed_end,
                              AlignUp(e.record_offset + kRecordHeaderBytes + e.payload_bytes +
                                      TrailerBytes(e.payload_bytes)));
  PutExtentLocked(e.extent_id, es, batch);
}

absl::Status Engine::ReplayCheckpointLocked(uint64_t number,
                                           ReplayGhosts* ghosts) {
  const BackingLayout& layout = backing_->layout();
  uint64_t applied = 0;
  absl::StatusOr<JournalEntry> head = ScanCheckpointFile(
      layout, backing_->format().uuid, number, [&](const JournalEntry& e) {
        // Its directories are its mkdirs; its rmdirs are for other nodes.
        if (e.op == JournalOp::kRmdir) return absl::OkStatus();
        IndexBatch batch(index_.get());
        std::optional<ValidRecord> record;
        if (e.op == JournalOp::kLive) {
          meta_.max_extent_id = std::max(meta_.max_extent_id, e.extent_id);
          absl::StatusOr<std::shared_ptr<Extent>> extent = extents_->Get(e.extent_id);
          absl::StatusOr<ValidRecord> r =
              extent.ok() ? extents_->ReadRecord(**extent, e.record_offset)
                          : absl::StatusOr<ValidRecord>(extent.status());
          if (r.ok() && (r->header.ino != e.ino || r->header.payload_bytes != e.payload_bytes)) {
            r = absl::DataLossError("the record there is another file's");
          }
          if (!r.ok()) {
            // Retired after the checkpoint (then a later entry says so), or lost.
            ghosts->Add(e.ino, e.path, absl::StrCat(
                "checkpoint ", layout.CheckpointPath(number), ": file '", e.path,
                "' points at an unreadable record: ", r.status().message(),
                "; file dropped"));
            if (extent.ok()) CountUnreadableRecordLocked(e, &batch);
            return index_->Write(&batch, /*disable_wal=*/true);
          }
          record = *std::move(r);
        }
        if (absl::Status s = ApplyLocked(e, record ? &*record : nullptr,
                                         /*replaying=*/true, &batch);
            !s.ok()) {
          return s;
        }
        ++applied;
        return index_->Write(&batch, /*disable_wal=*/true);
      });
  if (!head.ok()) return head.status();
  meta_.next_seq = std::max(meta_.next_seq, head->seq + 1);
  RaiseNextIno(head->ino);
  meta_.next_ino = std::max<uint64_t>(meta_.next_ino, next_ino_);
  meta_.max_extent_id = std::max(meta_.max_extent_id, head->extent_id);
  meta_.journal_number = number + 1;
  meta_.journal_offset = 0;
  meta_.live_files = live_files_;
  rebuilt_from_seq_ = head->seq;
  IndexBatch batch(index_.get());
  batch.PutMeta(meta_);
  if (absl::Status s = index_->Write(&batch, /*disable_wal=*/true); !s.ok()) return s;
  Log(absl::StrCat("rebuilding from checkpoint ", layout.CheckpointPath(number), ": ",
                   applied, " entries"));
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Engine::HighestJournalIno() {
  const BackingLayout& layout = backing_->layout();
  absl::StatusOr<JournalFiles> files = ListJournalFiles(layout.JournalDir());
  if (!files.ok()) return files.status();
  uint64_t highest = 0;
  for (uint64_t number : files->journals) {
    // A damaged file counts up to its damage, as replay reads it.
    (void)ScanJournalFile(layout, backing_->format().uuid, number, kFileHeaderBytes,
                          [&](const JournalEntry& e, uint64_t) {
                            highest = std::max(highest, e.ino);
                            return absl::OkStatus();
                          });
  }
  return highest;
}

absl::Status Engine::ReplayJournal() {
  const BackingLayout& layout = backing_->layout();
  const std::string& uuid = backing_->format().uuid;
  absl::StatusOr<JournalFiles> files = ListJournalFiles(layout.JournalDir());
  if (!files.ok()) return files.status();
  for (const std::string& f : files->foreign) {
    Problem(absl::StrCat("unexpected file ", f, " in the journal directory: ignored"));
  }
  // With other nodes, this node's files may sit in directories that only
  // their journals create: replay recreates those without alarm.
  replay_shared_ = false;
  replay_dirs_recreated_ = 0;
  replay_ino_ceiling_known_ = false;
  if (absl::StatusOr<std::vector<std::string>> nodes = ListDirectory(layout.NodesDir());
      nodes.ok()) {
    for (const std::string& node : *nodes) {
      if (node != layout.node_id && ValidateNodeId(node).ok()) replay_shared_ = true;
    }
  }
  // Replay adjusts extent accounting, so it starts from the indexed state.
  absl::StatusOr<std::vector<std::pair<uint64_t, ExtentState>>> indexed = index_->ListExtents();
  if (!indexed.ok()) return indexed.status();
  extent_states_.clear();
  for (const auto& [id, state] : *indexed) extent_states_[id] = state;
  uint64_t replayed = 0;
  uint64_t append_number = 0, append_offset = 0;
  // Commits whose record is gone: evicted or replaced later, then reclaimed
  // (a rebuild replays the whole journal). Each keeps its path here until
  // the entry that retired it; one never retired is real damage.
  ReplayGhosts ghosts;
  // A new index starts from the newest whole checkpoint, if there is one:
  // the journal files it covers may be gone.
  uint64_t base = 0;
  if (meta_.journal_number == 0) {
    for (auto c = files->checkpoints.rbegin(); c != files->checkpoints.rend(); ++c) {
      absl::Status s = ReplayCheckpointLocked(*c, &ghosts);
      if (s.ok()) {
        base = *c;
        break;
      }
      if (s.code() != absl::StatusCode::kDataLoss) return s;
      Problem(absl::StrCat(s.message(), "; trying an older checkpoint or the journal"));
    }
  }
  // What a retired entry's commit would have replaced is retired too.
  auto retire_at = [&](absl::string_view path, IndexBatch* batch) -> absl::Status {
    absl::StatusOr<std::pair<uint64_t, std::string>> at = ResolveParentLocked(path, false);
    if (!at.ok()) return absl::OkStatus();
    absl::StatusOr<std::optional<Inode>> there = index_->GetChild(at->first, at->second);
    if (!there.ok()) return there.status();
    if (*there && !(*there)->is_dir) RetireVersionLocked(**there, batch);
    return absl::OkStatus();
  };
  for (uint64_t number : files->journals) {
    if (number < meta_.journal_number || number <= base) continue;  // applied already
    const uint64_t from = number == meta_.journal_number ? meta_.journal_offset : 0;
    absl::StatusOr<JournalFileScan> scan = ScanJournalFile(
        layout, uuid, number, from, [&](const JournalEntry& e, uint64_t end) {
          IndexBatch batch(index_.get());
          if (e.seq >= meta_.next_seq) {
            std::optional<ValidRecord> record;
            bool usable = true;
            if (e.op == JournalOp::kCommit) {
              // Also an extent since removed: its id is never used again.
              meta_.max_extent_id = std::max(meta_.max_extent_id, e.extent_id);
              absl::StatusOr<std::shared_ptr<Extent>> extent = extents_->Get(e.extent_id);
              absl::StatusOr<ValidRecord> r =
                  extent.ok() ? extents_->ReadRecord(**extent, e.record_offset)
                              : absl::StatusOr<ValidRecord>(extent.status());
              if (r.ok() && (r->header.seq != e.seq || r->header.path != e.path ||
                             r->header.payload_bytes != e.payload_bytes)) {
                r = absl::DataLossError("the record there is another file's");
              }
              if (r.ok()) {
                record = *std::move(r);
                ghosts.ForgetAt(e.path);  // the version it replaces is retired
              } else {
                usable = false;
                if (absl::Status st = retire_at(e.path, &batch); !st.ok()) return st;
                ghosts.Add(e.ino, e.path, absl::StrCat(
                    "journal ", layout.JournalPath(number), ": commit of '", e.path,
                    "' (seq ", e.seq, ") points at an unreadable record: ",
                    r.status().message(), "; file dropped"));
                if (extent.ok()) CountUnreadableRecordLocked(e, &batch);
              }
            } else if (const ReplayGhosts::Ghost* g = ghosts.Find(e.ino);
                       g != nullptr &&
                       (((e.op == JournalOp::kUnlink || e.op == JournalOp::kRename) &&
                         g->path == e.path) ||
                        e.op == JournalOp::kRetire)) {
              usable = false;  // the retirement of a file whose record is gone
              if (e.op == JournalOp::kRename) {
                if (absl::Status st = retire_at(e.path2, &batch); !st.ok()) return st;
                ghosts.Move(e.ino, e.path2);
              } else {
                ghosts.Erase(e.ino);
              }
            } else if (e.op == JournalOp::kRename) {
              ghosts.ForgetAt(e.path2);
            }
            if (usable) {
              if (absl::Status s = ApplyLocked(e, record ? &*record : nullptr,
                                               /*replaying=*/true, &batch);
                  !s.ok()) {
                return s;
              }
            }
            meta_.next_seq = e.seq + 1;
            ++replayed;
          }
          meta_.journal_number = number;
          meta_.journal_offset = end;
          meta_.next_ino = std::max<uint64_t>(meta_.next_ino, next_ino_);
          meta_.live_files = live_files_;
          batch.PutMeta(meta_);
          return index_->Write(&batch, /*disable_wal=*/index_rebuilt_);
        });
    if (!scan.ok()) {
      Problem(absl::StrCat("journal file ", layout.JournalPath(number), ": ",
                           scan.status().message(), "; ignored, nothing deleted"));
      append_number = number;
      append_offset = 0;  // never append to it
      continue;
    }
    append_number = number;
    append_offset = scan->valid_end;
    if (scan->valid_end < scan->file_size) {
      // A torn last entry is what a crash mid-append leaves; anything else
      // is damage. Either way the next entry goes to a new file.
      std::string note = absl::StrCat(scan->problem, " (", scan->file_size - scan->valid_end,
                                      " bytes after the last valid entry are ignored)");
      // A torn tail stays torn in a file that is no longer the last one.
      if (scan->torn_tail) {
        Log(absl::StrCat("journal tail: ", note));
      } else {
        Problem(absl::StrCat("journal damaged: ", note));
      }
      append_offset = 0;
    }
  }
  for (const auto& [ino, ghost] : ghosts.all()) Problem(ghost.why);
  if (replay_dirs_recreated_ > 0) {
    Log(absl::StrCat("replay recreated ", replay_dirs_recreated_,
                     " directories that other nodes' journals create"));
  }
  if (index_rebuilt_) {
    if (absl::Status s = index_->Flush(); !s.ok()) return s;
  }
  if (replayed > 0) {
    Log(absl::StrCat("replayed ", replayed, " journal entries into the index",
                     index_rebuilt_ ? " (rebuild)" : ""));
  }
  // Numbers only grow: never append to a file a checkpoint covers.
  const uint64_t newest_checkpoint =
      files->checkpoints.empty() ? 0 : files->checkpoints.back();
  if (append_number < newest_checkpoint) {
    append_number = newest_checkpoint;
    append_offset = 0;
  }
  absl::StatusOr<std::unique_ptr<JournalWriter>> writer =
      append_number == 0
          ? JournalWriter::Open(layout, uuid, 1, 0, options_.journal_file_bytes)
      : append_offset == 0
          ? JournalWriter::Open(layout, uuid, append_number + 1, 0,
                                options_.journal_file_bytes)
          : JournalWriter::Open(layout, uuid, append_number, append_offset,
                                options_.journal_file_bytes);
  if (!writer.ok()) return writer.status();
  journal_ = *std::move(writer);
  // A compaction a crash interrupted: finish removing what it covers.
  for (uint64_t n : files->unfinished) {
    ::unlink(layout.CheckpointTempPath(n).c_str());  // nothing else writes them
  }
  const bool covered_left =
      files->checkpoints.size() > 1 ||
      (!files->journals.empty() && files->journals.front() <= newest_checkpoint);
  if (newest_checkpoint != 0 && covered_left) {
    // Only a whole checkpoint lets what it covers go.
    absl::StatusOr<JournalEntry> whole = ScanCheckpointFile(
        layout, uuid, newest_checkpoint, [](const JournalEntry&) { return absl::OkStatus(); });
    if (whole.ok()) {
      RemoveCoveredJournalFiles(newest_checkpoint);
    } else {
      Problem(absl::StrCat(whole.status().message(), "; the journal files it covers are kept"));
    }
  }
  // What the compactor counts from.
  checkpoint_number_ = newest_checkpoint;
  struct stat st;
  if (newest_checkpoint != 0 &&
      ::stat(layout.CheckpointPath(newest_checkpoint).c_str(), &st) == 0) {
    checkpoint_bytes_ = static_cast<uint64_t>(st.st_size);
  }
  uncovered_at_open_ = 0;
  for (uint64_t number : files->journals) {
    if (number > newest_checkpoint && ::stat(layout.JournalPath(number).c_str(), &st) == 0) {
      uncovered_at_open_ += static_cast<uint64_t>(st.st_size);
    }
  }
  return absl::OkStatus();
}

absl::Status Engine::RecoverExtents() {
  const BackingLayout& layout = backing_->layout();
  absl::StatusOr<NumberedFiles> files = ListNumberedFiles(layout.ExtentsDir(), ".kvx");
  if (!files.ok()) return files.status();
  for (const std::string& f : files->foreign) {
    Problem(absl::StrCat("unexpected file ", f, " in the extent directory: ignored"));
  }
  // Only kvfs's own entries belong in the root and the node directory.
  for (const auto& [dir, allowed] : std::vector<std::pair<std::string, std::set<std::string>>>{
           {layout.root, {"kvfs-format", "nodes", "lost+found"}},
           {layout.NodeDir(), {"lock", "extents", "journal"}}}) {
    absl::StatusOr<std::vector<std::string>> names = ListDirectory(dir);
    if (!names.ok()) return names.status();
    for (const std::string& name : *names) {
      if (allowed.count(name) || absl::StartsWith(name, ".kvfs-format.")) continue;
      Problem(absl::StrCat("unexpected entry ", dir, "/", name,
                           " in the backing directory: ignored"));
    }
  }
  const std::set<uint64_t> on_disk(files->numbers.begin(), files->numbers.end());
  uint64_t max_id = std::max(meta_.max_extent_id, on_disk.empty() ? 0 : *on_disk.rbegin());
  IndexBatch forget(index_.get());
  for (auto it = extent_states_.begin(); it != extent_states_.end();) {
    const auto& [id, state] = *it;
    max_id = std::max(max_id, id);
    if (!on_disk.count(id) && state.live_bytes > 0) {
      Problem(absl::StrCat("extent ", layout.ExtentPath(id), " is missing: reads of the ",
                           state.live_bytes, " bytes of files in it will fail"));
    }
    if (!on_disk.count(id) && state.live_bytes == 0) {
      // Removed once dead (eviction.cc); a crash lost the index update.
      forget.DeleteExtent(id);
      it = extent_states_.erase(it);
      continue;
    }
    ++it;
  }
  if (absl::Status s = index_->Write(&forget); !s.ok()) return s;

  struct Candidate {
    uint64_t extent_id;
    ValidRecord record;
  };
  std::vector<Candidate> roll_forward;
  std::set<uint64_t> unusable;
  std::map<uint64_t, uint64_t> file_sizes;
  // Extents shorter than their committed records (cut off by damage), and
  // how many of their current files reach past the end.
  std::map<uint64_t, uint64_t> short_extents;  // id -> size
  for (uint64_t id : on_disk) {
    struct stat st;
    if (::stat(layout.ExtentPath(id).c_str(), &st) == 0 &&
        AlignUp(static_cast<uint64_t>(st.st_size)) < extent_states_[id].committed_end) {
      short_extents[id] = static_cast<uint64_t>(st.st_size);
    }
  }
  std::map<uint64_t, uint64_t> files_cut_off;
  if (!short_extents.empty()) {  // rare: worth a scan of the index
    if (absl::Status s = index_->ForEachInode([&](const Inode& n) {
          auto it = short_extents.find(n.extent_id);
          if (!n.is_dir && it != short_extents.end() &&
              n.record_offset + n.record_bytes() > AlignUp(it->second)) {
            ++files_cut_off[n.extent_id];
          }
          return true;
        });
        !s.ok()) {
      return s;
    }
  }
  for (uint64_t id : on_disk) {
    ExtentState& state = extent_states_[id];  // new to the index: empty state
    struct stat st;
    if (auto short_it = short_extents.find(id); short_it != short_extents.end()) {
      const std::string what = absl::StrCat(
          "extent ", layout.ExtentPath(id), " is ", short_it->second,
          " bytes, shorter than its committed records (", state.committed_end, ")");
      if (files_cut_off[id] > 0) {
        Problem(absl::StrCat(what, ": reads of the ", files_cut_off[id],
                             " files cut off fail with EIO"));
      } else {
        // Only retired records were cut off (a repair dropped the files).
        Log(absl::StrCat(what, "; no file reaches past its end: sealed there"));
        state.committed_end = AlignUp(short_it->second);
      }
      state.sealed = true;
    }
    if (state.sealed) continue;
    if (state.live_bytes == 0 && ::stat(layout.ExtentPath(id).c_str(), &st) == 0 &&
        static_cast<uint64_t>(st.st_size) < kFileHeaderBytes) {
      // Killed between creating the file and writing its header.
      if (absl::Status s = extents_->FinishCreation(id); !s.ok()) return s;
      Log(absl::StrCat("extent ", layout.ExtentPath(id), " was left half-created by a "
                       "crash; its header is written now"));
    }
    absl::StatusOr<TailScan> scan = extents_->ScanTail(id, state.committed_end);
    if (!scan.ok()) {
      Problem(absl::StrCat("extent file ", layout.ExtentPath(id), ": ",
                           scan.status().message(), "; ignored, nothing deleted"));
      unusable.insert(id);
      continue;
    }
    file_sizes[id] = scan->file_size;
    for (ValidRecord& r : scan->records) {
      if (r.header.seq >= meta_.next_seq) {
        roll_forward.push_back({id, std::move(r)});
      } else if (r.header.seq <= rebuilt_from_seq_) {
        // Retired before the checkpoint the rebuild started from: dead.
      } else {
        Problem(absl::StrCat("extent ", layout.ExtentPath(id), " offset ",
                             r.header.record_offset, ": record of '", r.header.path,
                             "' (seq ", r.header.seq, ") is not in the journal; its bytes "
                             "count as dead"));
      }
    }
    state.committed_end = std::max(state.committed_end, scan->valid_end);
    if (scan->file_size > scan->valid_end) {
      // A writer was killed mid-file (or the tail is damaged): nothing after
      // this point is ever appended to or trusted.
      state.sealed = true;
      ++stats_.torn_tails;
      Log(absl::StrCat("extent ", layout.ExtentPath(id), ": sealed at offset ",
                       scan->valid_end, "; the ", scan->file_size - scan->valid_end,
                       " bytes after it belong to no committed file (",
                       scan->problem, ")"));
    }
  }

  // Commits whose header was written but whose journal entry was not: they
  // were complete, so finish them, in their original order.
  std::sort(roll_forward.begin(), roll_forward.end(),
            [](const Candidate& a, const Candidate& b) {
              return a.record.header.seq < b.record.header.seq;
            });
  for (Candidate& c : roll_forward) {
    const RecordHeader& h = c.record.header;
    absl::StatusOr<std::shared_ptr<Extent>> extent = extents_->Get(c.extent_id);
    absl::Status verified =
        extent.ok() ? extents_->VerifyPayload(**extent, c.record) : extent.status();
    if (!verified.ok()) {
      Problem(absl::StrCat("uncommitted record of '", h.path, "' in extent ",
                           c.extent_id, " fails verification (", verified.message(),
                           "); dropped"));
      continue;
    }
    if (absl::Status s = CommitEntryLocked(CommitEntryFor(h), &c.record, /*replaying=*/true);
        !s.ok()) {
      return s;
    }
    ++stats_.rolled_forward;
    Log(absl::StrCat("completed the interrupted commit of '", h.path, "' (seq ", h.seq, ")"));
  }

  // Dead bytes follow from the rest: whatever of the used part of an extent
  // is not live. Recomputing them here also heals counts a crash left stale.
  IndexBatch batch(index_.get());
  for (auto& [id, state] : extent_states_) {
    if (!on_disk.count(id) || unusable.count(id)) continue;
    auto size_it = file_sizes.find(id);
    uint64_t used_end = state.committed_end;
    if (state.sealed && size_it != file_sizes.end()) {
      used_end = std::max(used_end, AlignUp(size_it->second));
    }
    state.sealed = state.sealed || state.committed_end >= extent_target_bytes_;
    const uint64_t used = used_end > kFileHeaderBytes ? used_end - kFileHeaderBytes : 0;
    state.dead_bytes = used > state.live_bytes ? used - state.live_bytes : 0;
    state.reclaimed_bytes = std::min(state.reclaimed_bytes, state.dead_bytes);
    batch.PutExtent(id, state);
  }
  if (absl::Status s = index_->Write(&batch); !s.ok()) return s;

  pool_ = std::make_unique<ExtentPool>(
      extent_target_bytes_, max_id + 1,
      [this](uint64_t id) { return extents_->Create(id); });
  for (const auto& [id, state] : extent_states_) {
    if (state.sealed || !on_disk.count(id) || unusable.count(id)) continue;
    absl::StatusOr<std::shared_ptr<Extent>> extent = extents_->Get(id);
    if (!extent.ok()) continue;
    pool_->AddIdle({*std::move(extent), std::max(state.committed_end, kFileHeaderBytes)});
  }
  return absl::OkStatus();
}

}  // namespace kvfs
