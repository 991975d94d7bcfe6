/* The connector's plain C ABI, for ctypes (any Python version) and other
 * languages. Every function is thread-safe. Functions that can fail return 0
 * on success and -1 on failure, with a message in the caller's err buffer.
 * See connector/README.md for the file layout and the request semantics. */
#ifndef KVFS_CONNECTOR_H_
#define KVFS_CONNECTOR_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KVC_ABI_VERSION 1

enum kvc_memory { KVC_MEMORY_HOST = 0, KVC_MEMORY_CUDA = 1 };
enum kvc_copy_path { KVC_COPY_AUTO = 0, KVC_COPY_DMA = 1, KVC_COPY_KERNEL = 2 };

typedef struct kvc_tensor {
  uint64_t base;         /* address of block 0 */
  uint64_t page_bytes;   /* bytes of one block of this tensor */
  uint64_t block_stride; /* bytes between consecutive blocks */
  uint64_t num_blocks;
  uint32_t group;        /* KV-cache group; tensors of a group in file order */
} kvc_tensor;

typedef struct kvc_config {
  uint32_t abi_version;  /* KVC_ABI_VERSION */
  uint32_t memory;       /* enum kvc_memory */
  uint32_t copy_path;    /* enum kvc_copy_path */
  int32_t device;        /* CUDA device ordinal */
  uint32_t threads;      /* I/O threads (0: 16) */
  uint32_t blocks_per_file;
  uint64_t chunk_bytes;  /* staging slot bytes (0: 4 MiB) */
  uint64_t max_queued_stores; /* 0: 4096 */
} kvc_config;

typedef struct kvc_request {
  const char* path;
  const int64_t* block_ids;
  uint32_t num_blocks;
  uint32_t head_offset;  /* the file holds block_ids[head_offset:] */
  uint32_t group;
} kvc_request;

typedef struct kvc_result {
  uint64_t job;
  int32_t success;       /* 1 or 0 */
  uint64_t bytes;
  double seconds;
} kvc_result;

typedef struct kvc_counters {
  uint64_t stores_written, stores_skipped, stores_dropped, stores_cancelled, store_failures;
  uint64_t loads_done, load_failures, bytes_written, bytes_read;
} kvc_counters;

typedef struct kvc_engine kvc_engine;

kvc_engine* kvc_create(const kvc_config* config, const kvc_tensor* tensors, size_t num_tensors,
                       char* err, size_t err_len);
void kvc_destroy(kvc_engine* engine);

/* compute_stream: a cudaStream_t as an integer (0: legacy default stream). */
int kvc_store_async(kvc_engine* engine, uint64_t job, const kvc_request* requests,
                    size_t num_requests, uint64_t compute_stream, char* err, size_t err_len);
int kvc_load_async(kvc_engine* engine, uint64_t job, const kvc_request* requests,
                   size_t num_requests, char* err, size_t err_len);
/* Copies up to max finished jobs into out; returns how many. Jobs that do not
 * fit stay for the next call. */
size_t kvc_get_finished(kvc_engine* engine, kvc_result* out, size_t max);
/* Cancels the jobs' queued stores and blocks until they are all finished. */
void kvc_wait(kvc_engine* engine, const uint64_t* jobs, size_t num_jobs);
/* How many leading paths exist. */
size_t kvc_lookup(kvc_engine* engine, const char* const* paths, size_t num_paths);
void kvc_get_counters(kvc_engine* engine, kvc_counters* out);

#ifdef __cplusplus
}
#endif

#endif /* KVFS_CONNECTOR_H_ */
