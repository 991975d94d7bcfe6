#include "tools/page_cache_folios.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "kvfs/errors.h"

namespace kvfs {
namespace {

constexpr size_t kPage = 4096;
constexpr uint64_t kPfnMask = (uint64_t{1} << 55) - 1;  // pagemap bits 0-54
constexpr uint64_t kPresent = uint64_t{1} << 63;
constexpr uint64_t kCompoundTail = uint64_t{1} << 16;  // kpageflags KPF_COMPOUND_TAIL
constexpr uint64_t kDirty = uint64_t{1} << 4;          // KPF_DIRTY
constexpr uint64_t kWriteback = uint64_t{1} << 8;      // KPF_WRITEBACK

}  // namespace

absl::StatusOr<FolioCensus> CountPageCacheFolios(const std::string& path) {
  if (sysconf(_SC_PAGESIZE) != static_cast<long>(kPage)) {
    return absl::UnimplementedError("page size is not 4 KiB");
  }
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("open ", path));
  absl::Cleanup close_fd = [fd] { ::close(fd); };
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError(errno, absl::StrCat("stat ", path));
  const size_t pages = (static_cast<size_t>(st.st_size) + kPage - 1) / kPage;
  FolioCensus census;
  if (pages == 0) return census;
  void* map = ::mmap(nullptr, pages * kPage, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return ErrnoError(errno, absl::StrCat("mmap ", path));
  absl::Cleanup unmap = [map, pages] { ::munmap(map, pages * kPage); };

  std::vector<unsigned char> resident(pages);
  if (::mincore(map, pages * kPage, resident.data()) != 0) {
    return ErrnoError(errno, absl::StrCat("mincore ", path));
  }
  const int pagemap = ::open("/proc/self/pagemap", O_RDONLY);
  const int kpageflags = ::open("/proc/kpageflags", O_RDONLY);
  absl::Cleanup close_proc = [pagemap, kpageflags] {
    if (pagemap >= 0) ::close(pagemap);
    if (kpageflags >= 0) ::close(kpageflags);
  };
  if (pagemap < 0 || kpageflags < 0) {
    return ErrnoError(errno, "opening /proc/self/pagemap and /proc/kpageflags (needs root)");
  }
  const auto* bytes = static_cast<const volatile unsigned char*>(map);
  const uintptr_t first_vpage = reinterpret_cast<uintptr_t>(map) / kPage;
  for (size_t i = 0; i < pages; ++i) {
    if (!(resident[i] & 1)) continue;
    (void)bytes[i * kPage];  // map the cached page, so that pagemap shows its frame
    uint64_t entry = 0, flags = 0;
    if (::pread(pagemap, &entry, sizeof entry, (first_vpage + i) * sizeof entry) !=
        sizeof entry) {
      return ErrnoError(errno, "reading /proc/self/pagemap");
    }
    const uint64_t pfn = entry & kPfnMask;
    if (!(entry & kPresent) || pfn == 0) {
      return absl::PermissionDeniedError("page frame numbers are hidden (needs CAP_SYS_ADMIN)");
    }
    if (::pread(kpageflags, &flags, sizeof flags, pfn * sizeof flags) != sizeof flags) {
      return ErrnoError(errno, "reading /proc/kpageflags");
    }
    ++census.resident_pages;
    if (flags & (kDirty | kWriteback)) ++census.unwritten_pages;
    // A folio's first page, or a page on its own; its other pages are tails.
    if (!(flags & kCompoundTail)) ++census.folios;
  }
  return census;
}

}  // namespace kvfs
