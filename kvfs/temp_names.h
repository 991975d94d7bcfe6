// The KV-cache clients' temporary file names: llm-d's "<final>_<digits>.tmp"
// and vLLM's O_DIRECT probe ".o_direct_probe_<random>.tmp". Such files are
// renamed onto their final name or thrown away; they are never cached data.
#pragma once

#include "absl/strings/string_view.h"

namespace kvfs {

bool IsTempName(absl::string_view name);

}  // namespace kvfs
