#include "connector/staging_memory.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"

namespace kvfs::connector {

void MappedDeleter::operator()(uint8_t* p) const {
  if (p != nullptr) munmap(p, bytes);
}

absl::StatusOr<MappedBuffer> AllocatePrefaulted(uint64_t bytes, int numa_node) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return absl::ResourceExhaustedError(
        absl::StrCat("staging buffer: mmap of ", bytes, " bytes: ", std::strerror(errno)));
  MappedBuffer buffer(static_cast<uint8_t*>(p), MappedDeleter{bytes});
  if (numa_node >= 0 && numa_node < 64) {
    // MPOL_PREFERRED (1): the node when it has room, elsewhere otherwise.
    const unsigned long mask = 1UL << numa_node;
    if (syscall(SYS_mbind, p, bytes, 1, &mask, 64, 0) != 0) {
      // Placement is an optimisation; the buffer still works.
    }
  }
  // Touch every page now, not on the first transfer.
  const long page = sysconf(_SC_PAGESIZE);
  for (uint64_t off = 0; off < bytes; off += static_cast<uint64_t>(page))
    static_cast<volatile uint8_t*>(p)[off] = 0;
  return buffer;
}

int NumaNodeOfPciDevice(const std::string& pci_bus_id) {
  if (access("/sys/devices/system/node/node1", F_OK) != 0) return -1;  // one node
  std::string id = pci_bus_id;
  for (char& c : id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // cudaDeviceGetPCIBusId gives an 8-digit domain; sysfs uses 4.
  if (id.size() > 12 && id.compare(0, 4, "0000") == 0) id = id.substr(4);
  std::ifstream in("/sys/bus/pci/devices/" + id + "/numa_node");
  int node = -1;
  if (!(in >> node)) return -1;
  return node;
}

}  // namespace kvfs::connector
