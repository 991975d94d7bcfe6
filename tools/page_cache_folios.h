// How the kernel holds a cached file: the number and size of the page-cache
// folios behind its resident pages. A FUSE mount's page cache uses 4 KiB
// folios on kernels before FUSE's large-folio support, ext4's up to 2 MiB;
// copying out of 4 KiB folios is what keeps warm loads through a mount below
// warm loads from the plain directory, and `kvfs bench` prints both.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"

namespace kvfs {

struct FolioCensus {
  size_t resident_pages = 0;  // 4 KiB pages of the file in the page cache
  size_t folios = 0;          // the folios holding them
  size_t unwritten_pages = 0; // of the resident pages: dirty, or being written back
  double AverageKiB() const { return folios ? 4.0 * resident_pages / folios : 0; }
};

// Counts the folios behind `path`'s resident pages, without reading any page
// that is not resident. Needs CAP_SYS_ADMIN (/proc/kpageflags, and page frame
// numbers in /proc/self/pagemap).
absl::StatusOr<FolioCensus> CountPageCacheFolios(const std::string& path);

}  // namespace kvfs
