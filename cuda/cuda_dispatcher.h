// One thread that issues the copy streams' CUDA calls (kernel launches,
// DMA batches, stream waits, completion callbacks) in the order they are
// posted. I/O threads then never enter the CUDA driver on the request path:
// with dozens of them contending for the driver's locks, a submitting
// caller's cudaEventRecord waited up to 26 ms behind them (64 threads on the
// H100, docs/performance.md).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace kvfs::connector {

class CudaDispatcher {
 public:
  explicit CudaDispatcher(int device);
  ~CudaDispatcher();  // runs what is posted, then joins
  CudaDispatcher(const CudaDispatcher&) = delete;
  CudaDispatcher& operator=(const CudaDispatcher&) = delete;

  void Post(std::function<void()> work);

 private:
  void Loop(int device);

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace kvfs::connector
