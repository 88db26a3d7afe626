// Fuzzes the queue file layout parser (it reads files Postfix wrote, and the
// standby reads files a peer sent): the body it finds must lie inside the file.
// And the log_ident reader (the standby reads it from a peer's File frames):
// what it returns is bytes of the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "repl/queue_file.h"

using namespace mailtwin::repl;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  Layout l = ParseLayout(in, size);
  if (l.size != size || l.body_begin > l.body_end || l.body_end > size) std::abort();
  MutableBytes m{std::string(in.substr(0, l.body_begin)), std::string(in.substr(l.body_end))};
  auto h = ChunkHashes(l, m);
  auto r = ChangedRanges(l, {}, h);
  for (const auto& rg : r)
    if (rg.offset + rg.length > size) std::abort();
  std::string ident = LogIdentOf(in);
  if (!ident.empty() && in.find(ident) == std::string_view::npos) std::abort();
  return 0;
}
