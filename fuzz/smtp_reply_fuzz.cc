// Fuzzes the probe's SMTP reply parser: the bytes come from the server being
// probed (the peer). Invariants: no crash, buffers stay bounded, every reply
// has a code from 200 to 599, and after an error nothing more is accepted.
//
// Input: segments of [length byte][bytes], fed one Feed() call each.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ha/smtp_reply.h"

using mailtwin::ha::ReplyParser;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ReplyParser p;
  std::size_t i = 0;
  bool failed = false;
  while (i < size) {
    std::size_t n = std::min<std::size_t>(data[i], size - i - 1);
    std::string_view seg(reinterpret_cast<const char*>(data + i + 1), n);
    i += 1 + n;
    bool ok = p.Feed(seg);
    if (failed && ok) std::abort();  // an error is final
    if (!ok) {
      failed = true;
      if (p.error().empty()) std::abort();
    }
    while (auto r = p.Next()) {
      if (r->code < 200 || r->code > 599) std::abort();
      if (r->text.size() > ReplyParser::kMaxLine) std::abort();
    }
  }
  return 0;
}
