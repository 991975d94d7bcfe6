#include "cuda/cuda_dispatcher.h"

#include <cuda_runtime_api.h>

#include <utility>

namespace kvfs::connector {

CudaDispatcher::CudaDispatcher(int device) : thread_([this, device] { Loop(device); }) {}

CudaDispatcher::~CudaDispatcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void CudaDispatcher::Post(std::function<void()> work) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(work));
  }
  cv_.notify_one();
}

void CudaDispatcher::Loop(int device) {
  cudaSetDevice(device);  // a failure shows up in the first call posted
  std::deque<std::function<void()>> batch;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left
      batch.swap(queue_);
    }
    for (std::function<void()>& work : batch) work();
    batch.clear();
  }
}

}  // namespace kvfs::connector
