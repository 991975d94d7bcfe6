#include "kvfs/fsck.h"

#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kvfs/backing_dir.h"
#include "kvfs/engine.h"
#include "kvfs/errors.h"
#include "kvfs/extent_store.h"
#include "kvfs/journal.h"
#include "kvfs/offline_index.h"
#include "kvfs/temp_names.h"

namespace kvfs {

uint64_t FsckReport::Count(FsckSeverity severity) const {
  return std::count_if(findings.begin(), findings.end(),
                       [&](const FsckFinding& f) { return f.severity == severity; });
}

namespace {

// Errors a rebuilt index corrects.
const std::set<std::string> kRebuildFixes = {"index-missing", "index-damaged",
                                             "index-ahead",   "bad-record",
                                             "index-mismatch", "extent-accounting",
                                             "missing-extent"};

struct RecordInfo {
  RecordHeader header;
  std::vector<uint64_t> chunk_checksums;
  bool referenced = false;
};

struct ScannedExtent {
  bool usable = false;  // its file header validates
  uint64_t size = 0;
  std::map<uint64_t, RecordInfo> records;  // by offset
};

// A file repair removes (orphan temp file, corrupt payload).
struct Removal {
  std::string path;
  uint64_t ino = 0;
  std::string why;
};

// One read-only pass over the node's files and index.
class Checker {
 public:
  Checker(const FsckOptions& options, const InspectedBacking& backing)
      : options_(options), backing_(backing), layout_(backing.layout),
        store_(backing.layout, backing.format.uuid) {}

  void Run() {
    CheckDirectories();
    CheckJournal();
    ScanExtents();
    CheckIndex();
  }

  FsckReport report;
  std::vector<Removal> removals;
  bool rebuild_needed = false;

 private:
  void Add(FsckSeverity severity, std::string kind, std::string message) {
    if (severity == FsckSeverity::kError && kRebuildFixes.count(kind)) rebuild_needed = true;
    report.findings.push_back({severity, std::move(kind), std::move(message)});
  }
  void Progress(const char* phase, uint64_t done_bytes, uint64_t total_bytes,
                uint64_t done_files, uint64_t total_files) {
    if (options_.progress) {
      options_.progress({phase, done_bytes, total_bytes, done_files, total_files});
    }
  }

  void CheckDirectories() {
    for (const auto& [dir, allowed] :
         std::vector<std::pair<std::string, std::set<std::string>>>{
             {layout_.root, {"kvfs-format", "nodes", "lost+found"}},
             {layout_.NodeDir(), {"lock", "extents", "journal"}}}) {
      absl::StatusOr<std::vector<std::string>> names = ListDirectory(dir);
      if (!names.ok()) {
        Add(FsckSeverity::kError, "unreadable", std::string(names.status().message()));
        continue;
      }
      for (const std::string& name : *names) {
        if (allowed.count(name) || absl::StartsWith(name, ".kvfs-format.")) continue;
        Add(FsckSeverity::kWarning, "stray-file",
            absl::StrCat(dir, "/", name, ": not kvfs's; left alone"));
      }
    }
    if (absl::StatusOr<std::vector<std::string>> nodes = ListDirectory(layout_.NodesDir());
        nodes.ok()) {
      for (const std::string& node : *nodes) {
        if (node == layout_.node_id) continue;
        Add(FsckSeverity::kInfo, "other-node",
            absl::StrCat("node '", node, "' also stores here (check it with --node-id ", node,
                         ")"));
      }
    }
  }

  void CheckJournal() {
    absl::StatusOr<JournalFiles> files = ListJournalFiles(layout_.JournalDir());
    if (!files.ok()) {
      Add(FsckSeverity::kError, "unreadable", std::string(files.status().message()));
      return;
    }
    for (const std::string& f : files->foreign) {
      Add(FsckSeverity::kWarning, "stray-file",
          absl::StrCat(f, ": not a journal file name; left alone"));
    }
    for (uint64_t number : files->unfinished) {
      Add(FsckSeverity::kInfo, "unfinished-checkpoint",
          absl::StrCat(layout_.CheckpointTempPath(number),
                       ": a checkpoint being written, or one a crash cut short (the next "
                       "mount removes it)"));
    }
    // Only the newest checkpoint is used; older ones are left by a crash.
    if (!files->checkpoints.empty()) {
      const uint64_t number = files->checkpoints.back();
      ++report.totals.journal_files;
      absl::StatusOr<JournalEntry> head = ScanCheckpointFile(
          layout_, backing_.format.uuid, number, [&](const JournalEntry& e) {
            ++report.totals.journal_entries;
            max_journal_seq_ = std::max(max_journal_seq_, e.seq);
            return absl::OkStatus();
          });
      if (!head.ok()) {
        Add(FsckSeverity::kError, "checkpoint-damaged", std::string(head.status().message()));
      } else {
        max_journal_seq_ = std::max(max_journal_seq_, head->seq);
      }
    }
    for (uint64_t number : files->journals) {
      ++report.totals.journal_files;
      const std::string path = layout_.JournalPath(number);
      absl::StatusOr<JournalFileScan> scan = ScanJournalFile(
          layout_, backing_.format.uuid, number, kFileHeaderBytes,
          [&](const JournalEntry& e, uint64_t) {
            ++report.totals.journal_entries;
            max_journal_seq_ = std::max(max_journal_seq_, e.seq);
            return absl::OkStatus();
          });
      if (!scan.ok()) {
        Add(FsckSeverity::kError, "journal-damaged",
            absl::StrCat(path, ": ", scan.status().message()));
        continue;
      }
      journal_sizes_[number] = scan->file_size;
      if (scan->valid_end < scan->file_size) {
        if (scan->torn_tail) {
          Add(FsckSeverity::kInfo, "torn-journal-tail",
              absl::StrCat(path, ": the last ", scan->file_size - scan->valid_end,
                           " bytes are an entry a crash cut short (never committed)"));
        } else {
          Add(FsckSeverity::kError, "journal-damaged",
              absl::StrCat(path, ": ", scan->problem, " at offset ", scan->valid_end,
                           "; the entries after it are lost"));
        }
      }
    }
  }

  void ScanExtents() {
    absl::StatusOr<NumberedFiles> files = ListNumberedFiles(layout_.ExtentsDir(), ".kvx");
    if (!files.ok()) {
      Add(FsckSeverity::kError, "unreadable", std::string(files.status().message()));
      return;
    }
    for (const std::string& f : files->foreign) {
      Add(FsckSeverity::kWarning, "stray-file",
          absl::StrCat(f, ": not an extent file name; left alone"));
    }
    uint64_t total = 0;
    for (uint64_t id : files->numbers) {
      struct stat st;
      if (::stat(layout_.ExtentPath(id).c_str(), &st) == 0) total += st.st_size;
    }
    report.totals.extents = files->numbers.size();
    report.totals.extent_bytes = total;
    uint64_t done = 0, done_files = 0;
    for (uint64_t id : files->numbers) {
      ScannedExtent& scanned = extents_[id];
      const std::string path = layout_.ExtentPath(id);
      absl::StatusOr<std::shared_ptr<Extent>> extent = store_.Get(id);
      if (!extent.ok()) {
        // Reported as an error if a file points into it (CheckIndex).
        Add(FsckSeverity::kWarning, "foreign-extent",
            absl::StrCat(path, ": ", extent.status().message(), "; left alone"));
        continue;
      }
      absl::StatusOr<uint64_t> size = (*extent)->file().Size();
      if (!size.ok()) {
        Add(FsckSeverity::kError, "unreadable", std::string(size.status().message()));
        continue;
      }
      scanned.usable = true;
      scanned.size = *size;
      uint64_t offset = kFileHeaderBytes;
      std::string block(kBlockAlign, '\0');
      while (offset < *size) {
        Progress("extents", done + offset, total, done_files, files->numbers.size());
        absl::StatusOr<ValidRecord> record = store_.ReadRecord(**extent, offset);
        if (record.ok()) {
          ++report.totals.records;
          const uint64_t next = record->header.next_record_offset();
          scanned.records[offset] = {record->header, record->trailer.chunk_checksums, false};
          offset = next;
          continue;
        }
        absl::StatusOr<size_t> n = (*extent)->file().PreadUpTo(block.data(), block.size(), offset);
        absl::StatusOr<uint64_t> next = n.ok() ? DecodeSkipMarker(block, id, offset)
                                               : absl::StatusOr<uint64_t>(n.status());
        if (next.ok() && *next > offset) {
          offset = *next;  // an abandoned or reclaimed record: dead bytes
          continue;
        }
        // Unreadable bytes: find the next valid header or marker.
        const uint64_t start = offset;
        for (offset += kBlockAlign; offset < *size; offset += kBlockAlign) {
          absl::StatusOr<size_t> m =
              (*extent)->file().PreadUpTo(block.data(), block.size(), offset);
          if (!m.ok() || *m < block.size()) continue;
          if (DecodeRecordHeader(block, id, offset).ok() ||
              DecodeSkipMarker(block, id, offset).ok()) {
            break;
          }
        }
        offset = std::min(offset, *size);
        garbage_[id].push_back({start, offset, std::string(record.status().message())});
      }
      done += *size;
      ++done_files;
    }
    Progress("extents", done, total, done_files, files->numbers.size());
  }

  void CheckIndex() {
    const std::string db_dir = IndexDir() + "/db";
    struct stat st;
    if (::stat(db_dir.c_str(), &st) != 0) {
      Add(FsckSeverity::kError, "index-missing",
          absl::StrCat("no index at ", db_dir, " (rebuilt from the journal and extents by "
                       "--repair or the next mount)"));
      return;
    }
    absl::StatusOr<OfflineIndex> offline =
        OpenOfflineIndex(layout_.root, layout_.node_id, IndexDir());
    if (!offline.ok()) {
      Add(FsckSeverity::kError, "index-damaged", std::string(offline.status().message()));
      return;
    }
    Index& index = *offline->index;
    const IndexMeta& meta = offline->meta;
    if (meta.journal_number != 0) {
      auto j = journal_sizes_.find(meta.journal_number);
      if (j == journal_sizes_.end() || j->second < meta.journal_offset) {
        Add(FsckSeverity::kError, "index-ahead",
            absl::StrCat("the index has applied journal ", meta.journal_number, " up to ",
                         meta.journal_offset, ", past what the journal holds"));
      }
    }
    // Two passes, so that files are checked as they stream by: directory
    // names first (children may sort before their parents), then files.
    absl::Status s = index.ForEachInode([&](const Inode& n) {
      if (n.is_dir) dirs_[n.ino] = {n.parent, n.name};
      return true;
    });
    std::map<uint64_t, uint64_t> live_by_extent;
    uint64_t checked = 0;
    if (s.ok()) {
      s = index.ForEachInode([&](const Inode& n) {
        if (n.is_dir || !n.owner.empty()) return true;  // other nodes check theirs
        Progress("index", 0, 0, ++checked, meta.has_live_files ? meta.live_files : 0);
        live_by_extent[n.extent_id] += n.record_bytes();
        CheckFile(n);
        return true;
      });
    }
    if (!s.ok()) {
      Add(FsckSeverity::kError, "index-damaged", std::string(s.message()));
      return;
    }
    report.totals.dirs = dirs_.empty() ? 0 : dirs_.size() - 1;  // not the root
    // Extent accounting: what the index says is live against what is.
    absl::StatusOr<std::vector<std::pair<uint64_t, ExtentState>>> states = index.ListExtents();
    if (!states.ok()) {
      Add(FsckSeverity::kError, "index-damaged", std::string(states.status().message()));
    } else {
      std::map<uint64_t, uint64_t> indexed;
      for (const auto& [id, state] : *states) indexed[id] = state.live_bytes;
      for (const auto& [id, live] : live_by_extent) indexed.try_emplace(id, 0);
      for (const auto& [id, live] : indexed) {
        const uint64_t actual = live_by_extent.count(id) ? live_by_extent[id] : 0;
        if (live != actual) {
          Add(FsckSeverity::kError, "extent-accounting",
              absl::StrCat("the index counts ", live, " live bytes in extent ", id,
                           "; its files hold ", actual));
        }
      }
    }
    VerifyData();
    Summarise(meta);
  }

  // One file of the index against its record.
  void CheckFile(const Inode& n) {
    ++report.totals.files;
    report.totals.logical_bytes += n.size;
    if (IsTempName(n.name)) {
      ++report.totals.orphan_temp_files;
      const std::string path = PathOf(n.parent, n.name);
      Add(FsckSeverity::kError, "orphan-temp-file",
          absl::StrCat("'", path, "' is a client's temp file that was never renamed"));
      removals.push_back({path, n.ino, "orphan temp file"});
    }
    auto extent = extents_.find(n.extent_id);
    if (extent == extents_.end() || !extent->second.usable) {
      Add(FsckSeverity::kError, "missing-extent",
          absl::StrCat("'", PathOf(n.parent, n.name), "': its extent ",
                       layout_.ExtentPath(n.extent_id),
                       extent == extents_.end() ? " is missing" : " is not kvfs's"));
      return;
    }
    auto record = extent->second.records.find(n.record_offset);
    if (record == extent->second.records.end()) {
      Add(FsckSeverity::kError, "bad-record",
          absl::StrCat("'", PathOf(n.parent, n.name), "': no valid record at ",
                       layout_.ExtentPath(n.extent_id), " offset ", n.record_offset,
                       GarbageNote(n.extent_id, n.record_offset)));
      return;
    }
    RecordInfo& r = record->second;
    r.referenced = true;
    ++report.totals.live_records;
    if (r.header.ino != n.ino || r.header.payload_bytes != n.size ||
        r.chunk_checksums != n.chunk_checksums) {
      Add(FsckSeverity::kError, "index-mismatch",
          absl::StrCat("'", PathOf(n.parent, n.name), "': the index's size or checksums "
                       "differ from its record at ", layout_.ExtentPath(n.extent_id),
                       " offset ", n.record_offset));
      return;
    }
    if (options_.verify_data) to_verify_.push_back({n.parent, n.name, n.extent_id, n.size, &r});
  }

  // `name` below directory `parent`, as a path from the root.
  std::string PathOf(uint64_t parent, const std::string& name) const {
    std::string path = name;
    uint64_t at = parent;
    for (int depth = 0; at != kRootIno && depth < 4096; ++depth) {
      auto d = dirs_.find(at);
      if (d == dirs_.end()) return absl::StrCat("?/", path);
      path = absl::StrCat(d->second.second, "/", path);
      at = d->second.first;
    }
    return path;
  }

  void VerifyData() {
    uint64_t total = 0, done = 0, files = 0;
    for (const Pending& p : to_verify_) total += p.size;
    for (const Pending& p : to_verify_) {
      Progress("data", done, total, files, to_verify_.size());
      absl::StatusOr<std::shared_ptr<Extent>> extent = store_.Get(p.extent_id);
      absl::Status s = extent.ok()
                           ? store_.VerifyPayload(**extent, {p.record->header,
                                                             {p.record->chunk_checksums, {}}})
                           : extent.status();
      if (!s.ok()) {
        const std::string path = PathOf(p.parent, p.name);
        Add(FsckSeverity::kError, "corrupt-data", absl::StrCat("'", path, "': ", s.message()));
        removals.push_back({path, p.record->header.ino, "payload fails its checksums"});
      }
      done += p.size;
      report.totals.verified_bytes += p.size;
      ++files;
    }
    if (!to_verify_.empty()) Progress("data", done, total, files, to_verify_.size());
  }

  void Summarise(const IndexMeta& meta) {
    uint64_t roll_forward = 0;
    for (auto& [id, scanned] : extents_) {
      if (!scanned.usable) continue;
      uint64_t live = 0;
      for (const auto& [offset, r] : scanned.records) {
        const uint64_t bytes = AlignUp(r.header.record_bytes());
        if (r.referenced) {
          live += bytes;
        } else if (r.header.seq >= meta.next_seq) {
          ++roll_forward;
        } else {
          ++report.totals.unreferenced_records;
          report.totals.unreferenced_bytes += bytes;
        }
      }
      const uint64_t used = AlignUp(scanned.size);
      const uint64_t kept = kFileHeaderBytes + live;
      report.totals.dead_bytes += used > kept ? used - kept : 0;
    }
    if (roll_forward > 0) {
      Add(FsckSeverity::kInfo, "roll-forward",
          absl::StrCat(roll_forward, " committed records are not in the index yet; the next "
                       "mount completes them"));
    }
    if (report.totals.unreferenced_records > 0) {
      Add(FsckSeverity::kInfo, "unreferenced-records",
          absl::StrCat(report.totals.unreferenced_records, " records (",
                       report.totals.unreferenced_bytes, " bytes) belong to no file: "
                       "replaced, unlinked or evicted, waiting for their space to be reclaimed"));
    }
    uint64_t garbage = 0;
    for (const auto& [id, regions] : garbage_) {
      for (const Garbage& g : regions) garbage += g.end - g.start;
    }
    if (garbage > 0) {
      Add(FsckSeverity::kInfo, "unreadable-space",
          absl::StrCat(garbage, " bytes in ", garbage_.size(), " extents hold no valid record "
                       "(torn writes, damage); counted as dead space"));
    }
  }

  std::string GarbageNote(uint64_t extent_id, uint64_t offset) const {
    auto it = garbage_.find(extent_id);
    if (it != garbage_.end()) {
      for (const Garbage& g : it->second) {
        if (offset >= g.start && offset < g.end) return absl::StrCat(" (", g.why, ")");
      }
    }
    auto e = extents_.find(extent_id);
    if (e != extents_.end() && offset >= e->second.size) {
      return absl::StrCat(" (the extent ends at ", e->second.size, ")");
    }
    return " (inside another record)";
  }

  std::string IndexDir() const {
    return options_.index_dir.empty() ? DefaultIndexDir(layout_.root, layout_.node_id)
                                      : options_.index_dir;
  }

  struct Garbage {
    uint64_t start, end;
    std::string why;
  };
  struct Pending {  // a file whose data --verify-data reads
    uint64_t parent;
    std::string name;
    uint64_t extent_id, size;
    RecordInfo* record;
  };
  const FsckOptions& options_;
  const InspectedBacking& backing_;
  const BackingLayout& layout_;
  ExtentStore store_;
  std::map<uint64_t, ScannedExtent> extents_;
  std::map<uint64_t, std::vector<Garbage>> garbage_;
  std::map<uint64_t, uint64_t> journal_sizes_;
  std::vector<Pending> to_verify_;
  std::map<uint64_t, std::pair<uint64_t, std::string>> dirs_;  // ino -> (parent, name)
  uint64_t max_journal_seq_ = 0;
};

// Rebuilds the index if needed and removes the files the check condemned,
// through the engine (so every change is journalled like any other).
absl::Status Repair(const FsckOptions& options, const Checker& check,
                    std::vector<std::string>* repairs) {
  const std::string node_id = options.node_id.empty() ? DefaultNodeId() : options.node_id;
  const std::string index_dir = options.index_dir.empty()
                                    ? DefaultIndexDir(options.backing_dir, node_id)
                                    : options.index_dir;
  if (check.rebuild_needed) {
    struct stat st;
    if (::stat((index_dir + "/db").c_str(), &st) == 0) {
      if (absl::Status s = Index::Destroy(index_dir + "/db"); !s.ok()) return s;
    }
    repairs->push_back(absl::StrCat("rebuilt the index ", index_dir,
                                    " from the journal and extents"));
  }
  EngineOptions eo;
  eo.backing_dir = options.backing_dir;
  eo.node_id = node_id;
  eo.index_dir = index_dir;
  eo.background_eviction = false;
  eo.log = [&](absl::string_view line) {
    if (options.log) options.log(std::string(line));
  };
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(eo);
  if (!engine.ok()) return engine.status();
  for (const std::string& p : (*engine)->problems()) repairs->push_back("rebuild: " + p);
  for (const Removal& r : check.removals) {
    const size_t slash = r.path.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "" : r.path.substr(0, slash);
    const std::string name = slash == std::string::npos ? r.path : r.path.substr(slash + 1);
    absl::StatusOr<Attr> file = (*engine)->Stat(r.path);
    absl::StatusOr<Attr> parent = (*engine)->Stat(dir);
    if (!file.ok() || !parent.ok() || file->ino != r.ino) continue;  // gone with the rebuild
    if (absl::Status s = (*engine)->Unlink(parent->ino, name); !s.ok()) return s;
    repairs->push_back(absl::StrCat("removed '", r.path, "' (", r.why, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<FsckReport> RunFsck(const FsckOptions& options) {
  const std::string node_id = options.node_id.empty() ? DefaultNodeId() : options.node_id;
  absl::StatusOr<InspectedBacking> backing = InspectBackingDir(options.backing_dir, node_id);
  if (!backing.ok()) return backing.status();
  struct stat st;
  if (::stat(backing->layout.NodeDir().c_str(), &st) != 0) {
    return ErrnoError(ENOENT, absl::StrCat("node '", node_id, "' has never stored anything in ",
                                           backing->layout.root, " (no ",
                                           backing->layout.NodeDir(), "); give --node-id"));
  }
  std::string holder;
  const bool live = NodeIsLocked(backing->layout, &holder);
  if (live && options.repair) {
    return absl::FailedPreconditionError(absl::StrCat(
        "node '", node_id, "' is mounted (", holder, "): refusing to repair under a live "
        "mount; unmount it first (checking without --repair is allowed)"));
  }
  auto first = std::make_unique<Checker>(options, *backing);
  first->Run();
  first->report.live_mount = live;
  if (!options.repair || first->report.Count(FsckSeverity::kError) == 0) {
    first->report.exit_code = first->report.Count(FsckSeverity::kError) > 0 ? 4 : 0;
    return std::move(first->report);
  }
  std::vector<std::string> repairs;
  if (absl::Status s = Repair(options, *first, &repairs); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("repair failed: ", s.message()));
  }
  Checker again(options, *backing);
  again.Run();
  again.report.repairs = std::move(repairs);
  again.report.exit_code = again.report.Count(FsckSeverity::kError) > 0 ? 4 : 1;
  return std::move(again.report);
}

}  // namespace kvfs
