// Sizes and fractions as operators type them on a command line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"

namespace kvfs {

// "1048576", "512K", "64M", "1.5G", "2T" (binary units; a trailing "iB" or
// "B" is accepted).
inline std::optional<uint64_t> ParseSize(absl::string_view text) {
  std::string t = absl::AsciiStrToUpper(text);
  absl::string_view v = t;
  if (absl::EndsWith(v, "IB")) v.remove_suffix(2);
  else if (absl::EndsWith(v, "B")) v.remove_suffix(1);
  double scale = 1;
  if (!v.empty()) {
    switch (v.back()) {
      case 'K': scale = 1024.0; break;
      case 'M': scale = 1024.0 * 1024; break;
      case 'G': scale = 1024.0 * 1024 * 1024; break;
      case 'T': scale = 1024.0 * 1024 * 1024 * 1024; break;
      case 'P': scale = 1024.0 * 1024 * 1024 * 1024 * 1024; break;
      default: scale = 0; break;
    }
    if (scale != 0) v.remove_suffix(1); else scale = 1;
  }
  double number;
  if (v.empty() || !absl::SimpleAtod(v, &number) || number < 0 || number * scale > 1.8e19) {
    return std::nullopt;
  }
  return static_cast<uint64_t>(number * scale);
}

// "90" or "90%" -> 0.9; must lie in (0, 100].
inline std::optional<double> ParsePercent(absl::string_view text) {
  if (absl::EndsWith(text, "%")) text.remove_suffix(1);
  double p;
  if (!absl::SimpleAtod(text, &p) || p <= 0 || p > 100) return std::nullopt;
  return p / 100;
}

}  // namespace kvfs
