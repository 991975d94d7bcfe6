// Sharing one backing directory between nodes. Each node writes only its own
// extents and journal; every node follows (tails) the others' journals into
// its own index, so their files appear in its namespace and are read straight
// from their extents. Nothing here writes another node's files.
//
// Every node ends up with the same namespace, whatever order it sees the
// changes in:
//   - Of two versions under one name, the one committed later stays (then
//     the one of the greater node id). A node's own commit or rename is
//     stamped later than the version it replaces, so it wins everywhere.
//   - Unlink and rename name the exact version they applied to; a newer
//     version stored meanwhile is left alone. A version removed before this
//     node saw its commit is remembered, so the late commit does not bring
//     it back.
//   - A node's own record that another node replaced or unlinked is retired
//     through the owner's own journal (kRetire), so its journal alone still
//     says which of its records are live; the owner reclaims the space after
//     the grace period, as always.
// Directories are created by whichever node needs them and removed by rmdir
// when empty; renames of whole directories by other nodes are not followed
// (the clients never rename directories) and are logged.
#include <fcntl.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "kvfs/engine.h"
#include "kvfs/errors.h"
#include "kvfs/journal.h"
#include "kvfs/posix_file.h"

namespace kvfs {
namespace {

// How long a network filesystem's directory listing may lag behind what is
// there (NFS's acdirmax is 60 s; sshfs caches 20 s).
constexpr int64_t kListingLagNs = 120'000'000'000;

// Whether a version committed at `time_a` by `node_a` replaces one committed
// at `time_b` by `node_b`: the same answer on every node.
bool Supersedes(int64_t time_a, absl::string_view node_a, int64_t time_b,
                absl::string_view node_b) {
  return time_a != time_b ? time_a > time_b : node_a > node_b;
}

// The size of the file at `path`, from a descriptor opened now: a network
// filesystem revalidates its cached attributes at open (close-to-open), where
// a stat() may answer from a cache up to a minute old.
absl::StatusOr<uint64_t> FreshSize(const std::string& path) {
  absl::StatusOr<PosixFile> file = PosixFile::Open(path, O_RDONLY);
  if (!file.ok()) return file.status();
  return file->Size();
}

std::pair<std::string, std::string> SplitLast(absl::string_view path) {
  const size_t slash = path.rfind('/');
  if (slash == absl::string_view::npos) return {"", std::string(path)};
  return {std::string(path.substr(0, slash)), std::string(path.substr(slash + 1))};
}

}  // namespace

ExtentStore* Engine::PeerExtents(const std::string& node) {
  std::lock_guard lock(peer_stores_mu_);
  std::unique_ptr<ExtentStore>& store = peer_stores_[node];
  if (!store) {
    store = std::make_unique<ExtentStore>(BackingLayout{backing_->layout().root, node},
                                          backing_->format().uuid, /*peer=*/true);
  }
  return store.get();
}

void Engine::SetPeerListener(std::function<void(const std::vector<NameChange>&)> fn) {
  std::lock_guard lock(peer_listener_mu_);
  peer_listener_ = std::move(fn);
}

void Engine::LogPeerProblemOnce(const std::string& key, absl::string_view line) {
  if (peer_problems_logged_.insert(key).second) Log(line);
}

absl::Status Engine::LoadPeerPositionsLocked() {
  absl::StatusOr<std::vector<std::pair<std::string, std::pair<uint64_t, uint64_t>>>> stored =
      index_->ListPeerPositions();
  if (!stored.ok()) return stored.status();
  std::lock_guard sync(peer_sync_mu_);  // uncontended: nothing follows yet
  peer_positions_.clear();
  for (const auto& [node, pos] : *stored) peer_positions_[node] = {pos.first, pos.second};
  return absl::OkStatus();
}

absl::Status Engine::SyncPeers() {
  std::lock_guard sync(peer_sync_mu_);
  const BackingLayout& layout = backing_->layout();
  absl::StatusOr<std::vector<std::string>> nodes = ListDirectory(layout.NodesDir());
  if (!nodes.ok()) return nodes.status();
  std::sort(nodes->begin(), nodes->end());
  std::vector<NameChange> changes;
  absl::Status status;
  // Nodes whose directory was removed (decommissioned): their files are gone.
  std::vector<std::string> removed;
  for (const auto& [node, pos] : peer_positions_) {
    if (!std::binary_search(nodes->begin(), nodes->end(), node)) removed.push_back(node);
  }
  for (const std::string& node : removed) {
    status.Update(ForgetPeer(node, "its directory was removed", &changes));
  }
  for (const std::string& node : *nodes) {
    if (!status.ok()) break;
    if (node == layout.node_id) continue;
    if (!ValidateNodeId(node).ok()) {
      LogPeerProblemOnce("name/" + node,
                         absl::StrCat("unexpected entry ", layout.NodesDir(), "/", node,
                                      " in the backing directory: not a node, ignored"));
      continue;
    }
    status = FollowPeer(node, &changes);
  }
  sync_extents_.clear();  // lets go of extents their owners may remove
  if (!changes.empty()) {
    std::lock_guard lock(peer_listener_mu_);
    if (peer_listener_) peer_listener_(changes);
  }
  return status;
}

absl::Status Engine::FollowPeer(const std::string& node, std::vector<NameChange>* changes) {
  const BackingLayout peer{backing_->layout().root, node};
  const std::string& uuid = backing_->format().uuid;
  absl::StatusOr<JournalFiles> files = ListJournalFiles(peer.JournalDir());
  const auto known = peer_positions_.find(node);
  const bool followed = known != peer_positions_.end() && known->second.number > 0;
  if (!files.ok()) {
    if (ErrnoOf(files.status()) != ENOENT) return files.status();
    // A node that has just created its directory, or one whose journal is gone.
    return followed ? ForgetPeer(node, "its journal was removed", changes)
                    : absl::OkStatus();
  }
  const std::vector<uint64_t>& journals = files->journals;
  const uint64_t checkpoint = files->checkpoints.empty() ? 0 : files->checkpoints.back();
  auto listed = [&](uint64_t number) {
    return std::binary_search(journals.begin(), journals.end(), number);
  };
  if (followed) {
    // Behind where this node stopped: the other node started afresh. But
    // this node may have gone past the listing, to a file a kNextFile entry
    // named, and a network filesystem's listing may lag by a minute: a file
    // this node reached that is missing and not listed counts only once the
    // listing has had that long to catch up.
    const JournalPosition at = known->second;
    const uint64_t newest = std::max(journals.empty() ? 0 : journals.back(), checkpoint);
    absl::StatusOr<uint64_t> size = FreshSize(peer.JournalPath(at.number));
    bool afresh = size.ok() && *size < at.offset;
    if (newest < at.number && !size.ok()) {
      const int64_t since = peer_behind_since_.try_emplace(node, Now()).first->second;
      afresh = Now() - since >= kListingLagNs;
      if (!afresh) return absl::OkStatus();
    }
    peer_behind_since_.erase(node);
    if (afresh) {
      if (absl::Status s = ForgetPeer(node, "its journal started afresh", changes); !s.ok()) {
        return s;
      }
    }
  }
  JournalPosition& pos = peer_positions_[node];
  // Whether its journal files from where this node stopped are all there.
  const bool journal_whole =
      pos.number == 0 ? !journals.empty() && journals.front() == 1 : listed(pos.number);
  if (checkpoint != 0 && checkpoint >= pos.number && (pos.number == 0 || !journal_whole)) {
    // The journal files from where this node stopped are gone (compacted),
    // or it starts: the checkpoint holds what they led to.
    absl::Status s = FollowPeerCheckpoint(node, checkpoint, changes);
    if (absl::IsUnavailable(s) || ErrnoOf(s) == ENOENT) {
      return absl::OkStatus();  // a record not readable yet, or a newer checkpoint: later
    }
    if (absl::IsDataLoss(s)) {
      LogPeerProblemOnce(peer.CheckpointPath(checkpoint),
                         absl::StrCat("node ", node, ": ", s.message(),
                                      journal_whole ? "; following its journal instead"
                                                    : "; what it holds is not followed"));
    } else if (!s.ok()) {
      return s;
    }
    // A damaged checkpoint over a journal still whole: that is read below.
    if (!absl::IsDataLoss(s) || !journal_whole) {
      pos = {checkpoint + 1, 0};
      std::lock_guard lock(mu_);
      IndexBatch batch(index_.get());
      batch.PutPeerPosition(node, pos.number, pos.offset);
      if (absl::Status w = index_->Write(&batch); !w.ok()) return w;
    }
  } else if (pos.number != 0 && !listed(pos.number) && !journals.empty() &&
             journals.back() > pos.number) {
    // Its file is gone and the checkpoint that covers it is not visible yet
    // (a network filesystem's listing may lag behind): later.
    return absl::OkStatus();
  }
  std::vector<uint64_t> numbers;  // the files to read, in order
  for (uint64_t number : journals) {
    if (number >= pos.number) numbers.push_back(number);
  }
  // Reached through a kNextFile entry, and not listed yet: read by name.
  if (pos.number != 0 && (journals.empty() || journals.back() < pos.number)) {
    numbers.push_back(pos.number);
  }
  for (size_t i = 0; i < numbers.size(); ++i) {
    const uint64_t number = numbers[i];
    bool continues = false;  // it ended with a kNextFile entry
    absl::Status applying;  // a failure of this node's, not of the journal
    absl::StatusOr<JournalFileScan> scan = ScanJournalFile(
        peer, uuid, number, number == pos.number ? pos.offset : 0,
        [&](const JournalEntry& e, uint64_t end) {
          if (e.op == JournalOp::kNextFile) continues = true;
          std::lock_guard lock(mu_);
          applying = CheckWritable();
          IndexBatch batch(index_.get());
          if (applying.ok()) applying = ApplyPeerEntryLocked(node, e, &batch, changes);
          // A record not readable yet: stop here, and try again next time.
          if (absl::IsUnavailable(applying)) return applying;
          if (applying.ok()) {
            batch.PutPeerPosition(node, number, end);
            meta_.next_ino = std::max<uint64_t>(meta_.next_ino, next_ino_);
            meta_.live_files = live_files_;
            batch.PutMeta(meta_);
            applying = index_->Write(&batch);
          }
          if (!applying.ok()) return applying;
          pos = {number, end};
          ++stats_.peer_entries;
          return absl::OkStatus();
        });
    if (absl::IsUnavailable(applying)) return absl::OkStatus();
    if (!applying.ok()) return applying;
    // Removed since it was listed (compacted), or not there yet: the
    // checkpoint or the file, next time.
    if (!scan.ok() && ErrnoOf(scan.status()) == ENOENT) return absl::OkStatus();
    if (continues && i + 1 == numbers.size()) numbers.push_back(number + 1);
    const bool last = i + 1 == numbers.size();
    if (!scan.ok() || scan->valid_end < scan->file_size) {
      // The last file may be mid-append (or just created, its header not yet
      // written): wait for the rest. An earlier one is finished: what it
      // holds after the damage is lost to this node.
      if (last) {
        absl::StatusOr<uint64_t> size = FreshSize(peer.JournalPath(number));
        if (!scan.ok() && size.ok() && *size >= kFileHeaderBytes) {
          // A whole header that does not fit: another format, or another
          // backing directory's file. Nothing of that node's is followed.
          LogPeerProblemOnce(peer.JournalPath(number),
                             absl::StrCat("journal ", peer.JournalPath(number), " of node ",
                                          node, ": ", scan.status().message(),
                                          "; that node's later changes are not followed"));
        }
        break;
      }
      LogPeerProblemOnce(
          peer.JournalPath(number),
          absl::StrCat("journal ", peer.JournalPath(number), " of node ", node, ": ",
                       scan.ok() ? scan->problem : scan.status().message(),
                       "; its later entries are skipped"));
    }
    if (!last) {
      // Finished: never read again.
      pos = {numbers[i + 1], 0};
      std::lock_guard lock(mu_);
      IndexBatch batch(index_.get());
      batch.PutPeerPosition(node, pos.number, pos.offset);
      if (absl::Status s = index_->Write(&batch); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status Engine::FollowPeerCheckpoint(const std::string& node, uint64_t number,
                                          std::vector<NameChange>* changes) {
  const BackingLayout peer{backing_->layout().root, node};
  // The inodes here that hold the files the checkpoint lists.
  std::vector<uint64_t> kept;
  uint64_t files = 0;
  // Applied last: the directories they name hold files the checkpoint no
  // longer lists until those are removed below.
  std::vector<JournalEntry> rmdirs;
  absl::StatusOr<JournalEntry> head = ScanCheckpointFile(
      peer, backing_->format().uuid, number, [&](const JournalEntry& e) {
        if (e.op == JournalOp::kRmdir) {
          rmdirs.push_back(e);
          return absl::OkStatus();
        }
        std::lock_guard lock(mu_);
        if (absl::Status s = CheckWritable(); !s.ok()) return s;
        IndexBatch batch(index_.get());
        uint64_t here = 0;
        absl::Status applied = e.op == JournalOp::kLive
                                   ? ImportCommitLocked(node, e, &batch, changes, &here)
                                   : ApplyPeerEntryLocked(node, e, &batch, changes);
        if (!applied.ok()) return applied;
        if (e.op == JournalOp::kLive) ++files;
        if (here != 0) kept.push_back(here);
        if (batch.empty()) return absl::OkStatus();  // most entries: known already
        meta_.next_ino = std::max<uint64_t>(meta_.next_ino, next_ino_);
        meta_.live_files = live_files_;
        batch.PutMeta(meta_);
        return index_->Write(&batch);
      });
  if (!head.ok()) return head.status();
  // Its files here that the checkpoint does not list (or lists under another
  // name) were removed or renamed by entries of the journal files it replaced.
  std::sort(kept.begin(), kept.end());
  std::vector<Inode> stale;
  if (absl::Status s = index_->ForEachInode([&](const Inode& n) {
        if (!n.is_dir && n.owner == node &&
            !std::binary_search(kept.begin(), kept.end(), n.ino)) {
          stale.push_back(n);
        }
        return true;
      });
      !s.ok()) {
    return s;
  }
  for (const Inode& n : stale) {
    std::lock_guard lock(mu_);
    if (absl::Status s = CheckWritable(); !s.ok()) return s;
    absl::StatusOr<std::optional<Inode>> there = index_->GetChild(n.parent, n.name);
    if (!there.ok()) return there.status();
    if (!*there || (*there)->ino != n.ino) continue;  // changed meanwhile
    IndexBatch batch(index_.get());
    if (absl::Status s = RemoveVersionLocked(**there, n.name, &batch, changes); !s.ok()) {
      return s;
    }
    meta_.live_files = live_files_;
    batch.PutMeta(meta_);
    if (absl::Status s = index_->Write(&batch); !s.ok()) return s;
  }
  for (const JournalEntry& e : rmdirs) {
    std::lock_guard lock(mu_);
    if (absl::Status s = CheckWritable(); !s.ok()) return s;
    IndexBatch batch(index_.get());
    if (absl::Status s = ApplyPeerEntryLocked(node, e, &batch, changes); !s.ok()) return s;
    if (batch.empty()) continue;
    if (absl::Status s = index_->Write(&batch); !s.ok()) return s;
  }
  ++stats_.peer_checkpoints;
  Log(absl::StrCat("node ", node, ": read its checkpoint ", peer.CheckpointPath(number), " (",
                   files, " files; ", stale.size(), " removed here)"));
  return absl::OkStatus();
}

absl::Status Engine::ApplyPeerEntryLocked(const std::string& node, const JournalEntry& e,
                                          IndexBatch* batch,
                                          std::vector<NameChange>* changes) {
  // The version the entry applied to, and whether `n` is it. Entries of
  // journals older than owners name no version: then the node's own file.
  const std::string owner = e.owner.empty() ? node : e.owner;
  auto is_the_version = [&](const Inode& n) {
    if (n.is_dir) return false;
    if (e.extent_id == 0) return OwnerOf(n) == node;
    return OwnerOf(n) == owner && n.extent_id == e.extent_id &&
           n.record_offset == e.record_offset;
  };
  auto find = [&](absl::string_view path) -> absl::StatusOr<std::optional<Inode>> {
    absl::StatusOr<std::pair<uint64_t, std::string>> at = ResolveParentLocked(path, false);
    if (!at.ok()) return std::optional<Inode>();
    return index_->GetChild(at->first, at->second);
  };
  switch (e.op) {
    case JournalOp::kCommit:
    case JournalOp::kLive:
      return ImportCommitLocked(node, e, batch, changes);
    case JournalOp::kCheckpoint:
    case JournalOp::kCheckpointEnd:
    case JournalOp::kNextFile:  // FollowPeer reads the next file
      return absl::OkStatus();
    case JournalOp::kAccess:
      return ApplyAccessHintLocked(e, batch);
    case JournalOp::kMkdir: {
      absl::StatusOr<uint64_t> dir = MakeDirsLocked(e.path, true, e.mode, e.time_ns, changes);
      if (!dir.ok()) {
        if (ErrnoOf(dir.status()) != ENOTDIR) return dir.status();
        return absl::OkStatus();  // a file in the way: this node's namespace differs
      }
      // Made again there: an older rmdir read later must leave it.
      absl::StatusOr<std::optional<Inode>> made = index_->GetInode(*dir);
      if (!made.ok()) return made.status();
      if (*made && (*made)->mtime_ns < e.time_ns) {
        Inode newer = **made;
        newer.mtime_ns = newer.ctime_ns = e.time_ns;
        batch->PutInode(newer);
      }
      return absl::OkStatus();
    }
    case JournalOp::kRmdir: {
      absl::StatusOr<std::optional<Inode>> dir = find(e.path);
      if (!dir.ok()) return dir.status();
      if (!*dir || !(*dir)->is_dir) return absl::OkStatus();
      // Made (here or by a later mkdir elsewhere) after this rmdir: kept.
      if ((*dir)->mtime_ns > e.time_ns) return absl::OkStatus();
      absl::StatusOr<bool> children = index_->HasChildren((*dir)->ino);
      if (!children.ok()) return children.status();
      if (*children) return absl::OkStatus();  // files this node has and that one had not
      batch->DeleteInode(**dir);
      changes->push_back({(*dir)->parent, (*dir)->name, (*dir)->ino});
      return absl::OkStatus();
    }
    case JournalOp::kUnlink:
    case JournalOp::kRetire: {
      if (e.op == JournalOp::kRetire) {
        // Its owner let the version go, after its commit, and none of its
        // later checkpoints lists it: no commit of it can come any more, so
        // a mark that kept it from coming back has done its work.
        batch->DeletePeerGone(node, e.extent_id, e.record_offset);
      }
      if (owner == node && e.extent_id != 0) {
        // The owner's own unlink or retire comes after its commit: a rename
        // mark is done with too.
        batch->DeletePeerRenamed(node, e.extent_id, e.record_offset);
      }
      absl::StatusOr<std::optional<Inode>> file = find(e.path);
      if (!file.ok()) return file.status();
      if (*file && is_the_version(**file)) {
        return RemoveVersionLocked(**file, e.path, batch, changes);
      }
      // An unlink of a version not (or no longer) here: if it is another
      // node's, keep its commit, should it come later, from bringing it back.
      if (e.op == JournalOp::kUnlink && e.extent_id != 0 &&
          owner != backing_->layout().node_id) {
        batch->PutPeerGone(owner, e.extent_id, e.record_offset);
      }
      return absl::OkStatus();
    }
    case JournalOp::kRename: {
      absl::StatusOr<std::optional<Inode>> src = find(e.path);
      if (!src.ok()) return src.status();
      // A file's version skipped or replaced here before: what the target
      // held goes anyway (a directory's rename names no version). Another
      // node's version may not have been read yet: a mark makes its commit,
      // when read, put it at the new name.
      auto mark_renamed = [&] {
        if (e.extent_id != 0 && owner != backing_->layout().node_id) {
          batch->PutPeerRenamed(owner, e.extent_id, e.record_offset, {e.path2, e.time_ns});
        }
      };
      if (!*src) {
        if (e.extent_id == 0) return absl::OkStatus();
        mark_renamed();
        return RemoveOlderVersionLocked(e.path2, e.time_ns, owner, batch, changes);
      }
      if ((*src)->is_dir) {
        LogPeerProblemOnce(absl::StrCat("rename/", node, "/", e.seq),
                           absl::StrCat("node ", node, " renamed directory '", e.path,
                                        "' to '", e.path2, "': not followed here"));
        return absl::OkStatus();
      }
      if (!is_the_version(**src)) {
        mark_renamed();
        return RemoveOlderVersionLocked(e.path2, e.time_ns, owner, batch, changes);
      }
      const auto [dir_path, new_name] = SplitLast(e.path2);
      absl::StatusOr<uint64_t> new_parent =
          dir_path.empty() ? absl::StatusOr<uint64_t>(kRootIno)
                           : MakeDirsLocked(dir_path, true, 0755, e.time_ns, changes);
      if (!new_parent.ok()) {
        return ErrnoOf(new_parent.status()) == ENOTDIR ? absl::OkStatus()
                                                       : new_parent.status();
      }
      absl::StatusOr<std::optional<Inode>> victim = index_->GetChild(*new_parent, new_name);
      if (!victim.ok()) return victim.status();
      if (*victim && (*victim)->is_dir) return absl::OkStatus();
      if (*victim && Supersedes((*victim)->ctime_ns, OwnerOf(**victim), e.time_ns, owner)) {
        // What is there is newer: the moved version is gone for good.
        return RemoveVersionLocked(**src, e.path, batch, changes);
      }
      if (*victim) {
        if (absl::Status s = RemoveVersionLocked(**victim, e.path2, batch, changes); !s.ok()) {
          return s;
        }
      }
      Inode moved = **src;
      moved.parent = *new_parent;
      moved.name = new_name;
      moved.ctime_ns = e.time_ns;
      batch->DeleteInode(**src);
      batch->PutInode(moved);
      changes->push_back({(*src)->parent, (*src)->name, (*src)->ino});
      changes->push_back({moved.parent, moved.name, 0});
      // Renamed by a node other than its owner: the owner's checkpoints may
      // still list it under the old name until the owner reads this rename.
      if (owner != node) mark_renamed();
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

absl::Status Engine::ImportCommitLocked(const std::string& node, const JournalEntry& e,
                                        IndexBatch* batch, std::vector<NameChange>* changes,
                                        uint64_t* here) {
  absl::StatusOr<bool> gone = index_->IsPeerGone(node, e.extent_id, e.record_offset);
  if (!gone.ok()) return gone.status();
  // Removed before this node saw it.
  if (*gone) return RemoveOlderVersionLocked(e.path, e.time_ns, node, batch, changes);
  absl::StatusOr<std::optional<PeerRename>> renamed =
      index_->GetPeerRenamed(node, e.extent_id, e.record_offset);
  if (!renamed.ok()) return renamed.status();
  // A commit always comes before a rename of its version; a checkpoint of
  // the owner's lists the version as of its last rename there (the entry's
  // time), which may be older than the rename seen here, or newer.
  if (*renamed && (*renamed)->path != e.path &&
      (e.op == JournalOp::kCommit || e.time_ns < (*renamed)->time_ns)) {
    // Renamed before this node saw it (by another node, or by this one before
    // its index was rebuilt), or before its owner's checkpoint was written:
    // it arrives under its new name, matched like a checkpoint's file, and
    // its old name loses what was older.
    if (absl::Status s = RemoveOlderVersionLocked(e.path, e.time_ns, node, batch, changes);
        !s.ok()) {
      return s;
    }
    JournalEntry moved = e;
    moved.op = JournalOp::kLive;
    moved.path = (*renamed)->path;
    moved.time_ns = std::max(e.time_ns, (*renamed)->time_ns);
    return ImportCommitLocked(node, moved, batch, changes, here);
  }
  auto is_this_version = [&](const Inode& n) {
    return !n.is_dir && OwnerOf(n) == node && n.extent_id == e.extent_id &&
           n.record_offset == e.record_offset;
  };
  {
    // Already here (a checkpoint lists every file, most of them known): done
    // without reading the record.
    absl::StatusOr<std::pair<uint64_t, std::string>> at = ResolveParentLocked(e.path, false);
    if (at.ok()) {
      absl::StatusOr<std::optional<Inode>> there = index_->GetChild(at->first, at->second);
      if (!there.ok()) return there.status();
      if (*there && is_this_version(**there)) {
        if (here) *here = (*there)->ino;
        return absl::OkStatus();
      }
    }
  }
  absl::StatusOr<std::shared_ptr<Extent>> extent = SyncExtent(node, e.extent_id);
  absl::StatusOr<ValidRecord> record =
      extent.ok() ? extents_->ReadRecord(**extent, e.record_offset)
                  : absl::StatusOr<ValidRecord>(extent.status());
  if (!record.ok() && !RecordIsRetired(extent, e.record_offset)) {
    // Not readable yet: the commit point is the journal entry, and a network
    // filesystem may show its bytes before the record's. Wait (this node's
    // position stays at the entry), but not forever.
    auto [since, added] = peer_waiting_since_.try_emplace(node, Now());
    if (Now() - since->second < options_.peer_record_wait_ns) {
      return absl::UnavailableError(record.status().message());
    }
    ++stats_.peer_unreadable;
    Log(absl::StrCat("node ", node, ": the record of '", e.path, "' (extent ", e.extent_id,
                     " offset ", e.record_offset, ") is still unreadable after ",
                     options_.peer_record_wait_ns / 1'000'000'000, " s (",
                     record.status().message(), "): skipped"));
  }
  peer_waiting_since_.erase(node);
  // A retired record (its extent removed, or a skip marker where its header
  // was): a later entry of that node's retires the file too.
  // A commit names its record by seq and path; a checkpoint's file (perhaps
  // renamed since) by inode.
  const bool named = e.op == JournalOp::kLive
                         ? record.ok() && record->header.ino == e.ino
                         : record.ok() && record->header.seq == e.seq &&
                               record->header.path == e.path;
  if (!named || record->header.payload_bytes != e.payload_bytes ||
      record->header.node_id != node) {
    return RemoveOlderVersionLocked(e.path, e.time_ns, node, batch, changes);
  }
  const auto [dir_path, name] = SplitLast(e.path);
  absl::StatusOr<uint64_t> parent =
      dir_path.empty() ? absl::StatusOr<uint64_t>(kRootIno)
                       : MakeDirsLocked(dir_path, true, 0755, e.time_ns, changes);
  if (!parent.ok()) {
    return ErrnoOf(parent.status()) == ENOTDIR ? absl::OkStatus() : parent.status();
  }
  absl::StatusOr<std::optional<Inode>> existing = index_->GetChild(*parent, name);
  if (!existing.ok()) return existing.status();
  if (*existing) {
    const Inode& old = **existing;
    if (old.is_dir) return absl::OkStatus();
    if (is_this_version(old)) return absl::OkStatus();  // already here
    if (!Supersedes(e.time_ns, node, old.ctime_ns, OwnerOf(old))) return absl::OkStatus();
    if (absl::Status s = RemoveVersionLocked(old, e.path, batch, changes); !s.ok()) return s;
  }
  Inode file;
  file.ino = next_ino_++;
  file.parent = *parent;
  file.name = name;
  file.mode = e.mode;
  file.mtime_ns = record->header.committed_ns;  // a live entry's time is its last rename
  file.ctime_ns = file.atime_ns = e.time_ns;
  file.seq = e.seq;
  file.size = record->header.payload_bytes;
  file.extent_id = e.extent_id;
  file.record_offset = e.record_offset;
  file.chunk_checksums = record->trailer.chunk_checksums;
  file.payload_checksum = record->trailer.payload_checksum;
  file.owner = node;
  batch->PutInode(file);
  if (here) *here = file.ino;
  live_files_.fetch_add(1, std::memory_order_relaxed);
  ++stats_.peer_files;
  changes->push_back({file.parent, file.name, 0});
  return absl::OkStatus();
}

bool Engine::RecordIsRetired(const absl::StatusOr<std::shared_ptr<Extent>>& extent,
                             uint64_t offset) {
  if (!extent.ok()) return ErrnoOf(extent.status()) == ENOENT;  // removed when it died
  std::string block(kBlockAlign, '\0');
  absl::StatusOr<size_t> n = (*extent)->file().PreadUpTo(block.data(), block.size(), offset);
  return n.ok() && *n == block.size() && DecodeSkipMarker(block, (*extent)->id(), offset).ok();
}

absl::StatusOr<std::shared_ptr<Extent>> Engine::SyncExtent(const std::string& node,
                                                          uint64_t id) {
  auto it = sync_extents_.find({node, id});
  if (it != sync_extents_.end()) return it->second;
  absl::StatusOr<std::shared_ptr<Extent>> extent = PeerExtents(node)->Get(id);
  if (extent.ok()) sync_extents_[{node, id}] = *extent;
  return extent;
}

absl::Status Engine::ForgetPeer(const std::string& node, absl::string_view why,
                                std::vector<NameChange>* changes) {
  std::lock_guard lock(mu_);
  if (absl::Status s = CheckWritable(); !s.ok()) return s;
  std::vector<Inode> theirs;
  if (absl::Status s = index_->ForEachInode([&](const Inode& n) {
        if (n.owner == node) theirs.push_back(n);
        return true;
      });
      !s.ok()) {
    return s;
  }
  IndexBatch batch(index_.get());
  for (const Inode& n : theirs) {
    RetireVersionLocked(n, &batch);
    changes->push_back({n.parent, n.name, n.ino});
  }
  batch.DeletePeer(node);
  meta_.live_files = live_files_;
  batch.PutMeta(meta_);
  if (absl::Status s = index_->Write(&batch); !s.ok()) return s;
  peer_positions_.erase(node);
  peer_waiting_since_.erase(node);
  peer_behind_since_.erase(node);
  if (theirs.empty()) return absl::OkStatus();
  Log(absl::StrCat("node ", node, ": ", why, "; its ", theirs.size(),
                   " files are gone from this node's namespace"));
  return absl::OkStatus();
}

absl::Status Engine::RemoveVersionLocked(const Inode& n, const std::string& path,
                                         IndexBatch* batch,
                                         std::vector<NameChange>* changes) {
  changes->push_back({n.parent, n.name, n.ino});
  if (!n.owner.empty()) {
    RetireVersionLocked(n, batch);  // only this node's view of it
    return absl::OkStatus();
  }
  // This node's record: its journal says it is retired, then its space is
  // reclaimed like any retired record's.
  ++stats_.peer_superseded;
  JournalEntry e = NewEntryLocked(JournalOp::kRetire, n.ino, path);
  e.extent_id = n.extent_id;
  e.record_offset = n.record_offset;
  return CommitEntryLocked(e, nullptr);
}

absl::Status Engine::RemoveOlderVersionLocked(absl::string_view path, int64_t time_ns,
                                              absl::string_view owner, IndexBatch* batch,
                                              std::vector<NameChange>* changes) {
  absl::StatusOr<std::pair<uint64_t, std::string>> at = ResolveParentLocked(path, false);
  if (!at.ok()) return absl::OkStatus();  // no such directory here: nothing older
  absl::StatusOr<std::optional<Inode>> older = index_->GetChild(at->first, at->second);
  if (!older.ok()) return older.status();
  if (*older && !(*older)->is_dir &&
      Supersedes(time_ns, owner, (*older)->ctime_ns, OwnerOf(**older))) {
    return RemoveVersionLocked(**older, std::string(path), batch, changes);
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Engine::MakeDirsLocked(absl::string_view path, bool including_last,
                                                uint32_t mode, int64_t time_ns,
                                                std::vector<NameChange>* changes) {
  std::vector<absl::string_view> parts = absl::StrSplit(path, '/', absl::SkipEmpty());
  if (!including_last && !parts.empty()) parts.pop_back();
  uint64_t dir = kRootIno;
  for (size_t i = 0; i < parts.size(); ++i) {
    absl::StatusOr<std::optional<Inode>> child = index_->GetChild(dir, parts[i]);
    if (!child.ok()) return child.status();
    if (*child) {
      if (!(*child)->is_dir) {
        return ErrnoError(ENOTDIR, absl::StrCat("'", parts[i], "' is not a directory"));
      }
      dir = (*child)->ino;
      continue;
    }
    absl::StatusOr<uint64_t> created =
        CreateDirLocked(dir, parts[i], i + 1 == parts.size() ? mode : 0755,
                        /*store_next_ino=*/true, time_ns);
    if (!created.ok()) return created.status();
    changes->push_back({dir, std::string(parts[i]), 0});
    dir = *created;
  }
  return dir;
}

void Engine::StartPeerFollower() {
  if (options_.peer_poll_ns <= 0) return;
  follower_.Start(std::chrono::nanoseconds(options_.peer_poll_ns), [this] {
    absl::Status s = SyncPeers();
    if (!s.ok()) {
      std::lock_guard sync(peer_sync_mu_);
      LogPeerProblemOnce(std::string(s.message()),
                         absl::StrCat("reading other nodes' journals: ", s.message()));
    }
  });
}

void Engine::StopPeerFollower() { follower_.Stop(); }

}  // namespace kvfs
