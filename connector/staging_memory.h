// Staging buffers: anonymous memory, placed on a NUMA node when asked and
// pre-faulted at allocation so that no page fault lands on the request path.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"

namespace kvfs::connector {

struct MappedDeleter {
  uint64_t bytes = 0;
  void operator()(uint8_t* p) const;
};
using MappedBuffer = std::unique_ptr<uint8_t, MappedDeleter>;

// numa_node < 0: wherever the kernel puts it.
absl::StatusOr<MappedBuffer> AllocatePrefaulted(uint64_t bytes, int numa_node);

// The NUMA node of a PCI device ("0000:17:00.0"), or -1 when the machine has
// one node or the kernel does not say.
int NumaNodeOfPciDevice(const std::string& pci_bus_id);

}  // namespace kvfs::connector
