#include "kvfs/checksum.h"

#include <algorithm>

#include <xxhash.h>

// Debian's libxxhash exports runtime-dispatched XXH3 (SSE2, AVX2, AVX-512:
// about 3x faster than the baseline build on AVX2 machines; same values).
#if defined(__x86_64__)
#include <xxh_x86dispatch.h>
#define KVFS_XXH(name) name##_dispatch
#else
#define KVFS_XXH(name) name
#endif

namespace kvfs {
namespace {
constexpr uint64_t kMetaSeed = 0x6b7666734d455441ULL;  // "kvfsMETA"
}

uint64_t ChunkChecksum(absl::string_view data) {
  return KVFS_XXH(XXH3_64bits)(data.data(), data.size());
}

Hash128 PayloadChecksum(absl::string_view data) {
  XXH128_hash_t h = KVFS_XXH(XXH3_128bits)(data.data(), data.size());
  return {h.low64, h.high64};
}

uint64_t MetaChecksum(absl::string_view data) {
  return KVFS_XXH(XXH3_64bits_withSeed)(data.data(), data.size(), kMetaSeed);
}

ChunkHasher::ChunkHasher() : state_(XXH3_createState()) { Reset(); }
ChunkHasher::~ChunkHasher() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }
void ChunkHasher::Reset() { XXH3_64bits_reset(static_cast<XXH3_state_t*>(state_)); }
void ChunkHasher::Update(absl::string_view data) {
  KVFS_XXH(XXH3_64bits_update)(static_cast<XXH3_state_t*>(state_), data.data(), data.size());
}
uint64_t ChunkHasher::Digest() const {
  return XXH3_64bits_digest(static_cast<XXH3_state_t*>(state_));
}

struct PayloadHasher::State {
  XXH3_state_t* chunk = XXH3_createState();
  XXH3_state_t* whole = XXH3_createState();
};

PayloadHasher::PayloadHasher() : state_(new State) {
  XXH3_64bits_reset(state_->chunk);
  XXH3_128bits_reset(state_->whole);
}

void PayloadHasher::Reset() {
  XXH3_64bits_reset(state_->chunk);
  XXH3_128bits_reset(state_->whole);
  bytes_ = 0;
  chunk_fill_ = 0;
  chunks_.clear();
}

PayloadHasher::~PayloadHasher() {
  XXH3_freeState(state_->chunk);
  XXH3_freeState(state_->whole);
  delete state_;
}

void PayloadHasher::Update(absl::string_view data) {
  KVFS_XXH(XXH3_128bits_update)(state_->whole, data.data(), data.size());
  bytes_ += data.size();
  while (!data.empty()) {
    size_t take = std::min<uint64_t>(data.size(), kChunkBytes - chunk_fill_);
    KVFS_XXH(XXH3_64bits_update)(state_->chunk, data.data(), take);
    chunk_fill_ += take;
    data.remove_prefix(take);
    if (chunk_fill_ == kChunkBytes) {
      chunks_.push_back(XXH3_64bits_digest(state_->chunk));
      XXH3_64bits_reset(state_->chunk);
      chunk_fill_ = 0;
    }
  }
}

void PayloadHasher::Finish(std::vector<uint64_t>* chunk_checksums,
                           Hash128* payload) {
  if (chunk_fill_ > 0) {
    chunks_.push_back(XXH3_64bits_digest(state_->chunk));
    chunk_fill_ = 0;
  }
  XXH128_hash_t h = XXH3_128bits_digest(state_->whole);
  *payload = {h.low64, h.high64};
  *chunk_checksums = std::move(chunks_);
  chunks_.clear();
}

}  // namespace kvfs
