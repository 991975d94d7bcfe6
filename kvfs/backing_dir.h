// The backing directory: its layout, its format file, and the per-node lock
// that keeps a second process of the same node out.
//
//   BACKING/kvfs-format                 format version and backing uuid
//   BACKING/nodes/<node>/lock           flock and heartbeat of the node's live process (node_lock.h)
//   BACKING/nodes/<node>/extents/NNNNNNNNNN.kvx   append-only extents
//   BACKING/nodes/<node>/journal/NNNNNNNNNN.kvj   append-only namespace journal
//   BACKING/nodes/<node>/journal/NNNNNNNNNN.kvc   checkpoint: the namespace as
//                                                 of journal file NNNNNNNNNN
//
// A node writes only below its own nodes/<node>/ directory, so several nodes
// can share one backing directory without ever writing the same file.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kvfs/format.h"
#include "kvfs/node_lock.h"
#include "kvfs/posix_file.h"

namespace kvfs {

struct BackingLayout {
  std::string root;  // absolute, no trailing '/'
  std::string node_id;

  std::string FormatFile() const { return root + "/kvfs-format"; }
  std::string NodesDir() const { return root + "/nodes"; }
  std::string NodeDir() const { return NodesDir() + "/" + node_id; }
  std::string LockFile() const { return NodeDir() + "/lock"; }
  std::string ExtentsDir() const { return NodeDir() + "/extents"; }
  std::string JournalDir() const { return NodeDir() + "/journal"; }
  std::string ExtentPath(uint64_t id) const;
  std::string JournalPath(uint64_t number) const;
  std::string CheckpointPath(uint64_t number) const;
  // Where a checkpoint is written before it is renamed into place.
  std::string CheckpointTempPath(uint64_t number) const;
};

// Names in `dir`, without "." and "..".
absl::StatusOr<std::vector<std::string>> ListDirectory(const std::string& dir);

// Numbered files of one kind in a directory, sorted; names that do not fit
// the pattern are reported in `foreign` (and otherwise left alone).
struct NumberedFiles {
  std::vector<uint64_t> numbers;
  std::vector<std::string> foreign;
};
absl::StatusOr<NumberedFiles> ListNumberedFiles(const std::string& dir,
                                                absl::string_view extension);

// A backing directory as the offline tools see it: its layout for `node_id`
// and its format file, read without initialising, creating or locking anything.
struct InspectedBacking {
  BackingLayout layout;
  BackingFormat format;
};
absl::StatusOr<InspectedBacking> InspectBackingDir(const std::string& root,
                                                   const std::string& node_id);
class BackingDir {
 public:
  // Opens `root` for `node_id`: initialises an empty directory, checks the
  // format file of an existing one, refuses a non-empty directory that is not
  // kvfs's, and takes the node lock (refusing if a live process holds it;
  // see node_lock.h for `heartbeat_ns` and `note`).
  static absl::StatusOr<std::unique_ptr<BackingDir>> Open(
      const std::string& root, const std::string& node_id, int64_t heartbeat_ns = 0,
      std::string* note = nullptr);

  const BackingLayout& layout() const { return layout_; }
  const BackingFormat& format() const { return format_; }
  // Adds to the lock file the mount point this process serves, so that
  // `kvfs umount` can wait for it and a refused mount can say where it is.
  absl::Status NoteServing(const std::string& mountpoint);
  NodeLock& node_lock() { return *lock_; }
  // Whether the backing filesystem can punch holes into files (sshfs and
  // NFS before 4.2 cannot): asked of the lock file, past its end.
  bool CanPunchHoles() const;

 private:
  BackingDir(BackingLayout layout, BackingFormat format, std::unique_ptr<NodeLock> lock)
      : layout_(std::move(layout)), format_(std::move(format)), lock_(std::move(lock)) {}

  BackingLayout layout_;
  BackingFormat format_;
  std::unique_ptr<NodeLock> lock_;
};

}  // namespace kvfs
