// Starts writeback of the small ranges a commit writes (a record's trailer
// and header) on a thread of its own. sync_file_range(SYNC_FILE_RANGE_WRITE)
// does not wait for the disk to finish, but it can wait for room in the
// disk's queue or for the filesystem's journal, and a commit holds the locks
// every namespace operation of the mount needs.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "kvfs/extent_store.h"

namespace kvfs {

class WritebackKicker {
 public:
  WritebackKicker();
  // Starts what is still queued, then stops the thread.
  ~WritebackKicker();
  WritebackKicker(const WritebackKicker&) = delete;
  WritebackKicker& operator=(const WritebackKicker&) = delete;

  // Queues writeback of [offset, offset + length) of `extent`; never blocks
  // on I/O. The queue holds the extent open until its writeback has started.
  void Kick(std::shared_ptr<const Extent> extent, uint64_t offset, uint64_t length);

 private:
  struct Range {
    std::shared_ptr<const Extent> extent;
    uint64_t offset = 0;
    uint64_t length = 0;
  };
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Range> queue_;
  bool stop_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace kvfs
