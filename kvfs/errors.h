// Errors cross module boundaries as absl::Status; the FUSE edge turns them
// into errno. A status made here carries the exact errno as a payload so the
// mapping never has to guess from the canonical code.
#pragma once

#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace kvfs {

// A status with the canonical code that matches `err` and `err` attached.
absl::Status ErrnoError(int err, absl::string_view message);

// errno of `status`: the attached one, else derived from the canonical code.
// Returns 0 for an OK status.
int ErrnoOf(const absl::Status& status);

// "message: strerror(errno)" as an ErrnoError; for failed system calls.
absl::Status SysError(absl::string_view what);
absl::Status SysError(int err, absl::string_view what);

}  // namespace kvfs
