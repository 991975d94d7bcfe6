// Integrity checksums: XXH3-64 per 1 MiB chunk (every read of at most 1 MiB
// can be verified on its own) and XXH128 over the whole payload.
#pragma once

#include <cstdint>
#include "absl/strings/string_view.h"
#include <vector>

namespace kvfs {

inline constexpr uint64_t kChunkBytes = 1 << 20;

struct Hash128 {
  uint64_t low = 0;
  uint64_t high = 0;
  bool operator==(const Hash128&) const = default;
};

uint64_t ChunkChecksum(absl::string_view data);
Hash128 PayloadChecksum(absl::string_view data);
// XXH3-64 of metadata (headers, journal entries); seeded apart from chunks.
uint64_t MetaChecksum(absl::string_view data);

inline uint64_t ChunkCount(uint64_t payload_bytes) {
  return (payload_bytes + kChunkBytes - 1) / kChunkBytes;
}

// XXH3-64 of a chunk fed in pieces; equals ChunkChecksum of their
// concatenation. Lets a read hash each piece while it is still in cache.
class ChunkHasher {
 public:
  ChunkHasher();
  ~ChunkHasher();
  ChunkHasher(const ChunkHasher&) = delete;
  ChunkHasher& operator=(const ChunkHasher&) = delete;
  void Reset();
  void Update(absl::string_view data);
  uint64_t Digest() const;

 private:
  void* state_;  // XXH3_state_t
};

// Incremental checksums of a payload fed in order: the per-chunk table and
// the whole-payload XXH128 in one pass.
class PayloadHasher {
 public:
  PayloadHasher();
  ~PayloadHasher();
  PayloadHasher(const PayloadHasher&) = delete;
  PayloadHasher& operator=(const PayloadHasher&) = delete;

  void Update(absl::string_view data);
  void Reset();
  // Ends the payload and returns the chunk table and XXH128.
  void Finish(std::vector<uint64_t>* chunk_checksums, Hash128* payload);
  uint64_t bytes() const { return bytes_; }

 private:
  struct State;
  State* state_;
  uint64_t bytes_ = 0;
  uint64_t chunk_fill_ = 0;
  std::vector<uint64_t> chunks_;
};

}  // namespace kvfs
