// Fuzzes the gate's SMTP session tracker. Both directions come from peers
// (the front smtpd relays what a remote client sends; the after-filter's
// replies quote client input), so any byte sequence must be handled: no
// crash, no unbounded buffer, replies that are exactly the server's bytes in
// order, and a "queued as" ID only when it is a valid queue ID.
//
// Input: segments of [direction+length byte][bytes]: the top bit picks the
// server (1) or the client (0), the low 7 bits the segment length.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/queue_id.h"
#include "gate/smtp_stream.h"

using namespace mailtwin;
using namespace mailtwin::gate;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  SmtpStream s;
  std::string server_bytes, replied;
  std::vector<Reply> out;
  std::size_t i = 0;
  bool ok = true;
  while (i < size && ok) {
    bool server = data[i] & 0x80;
    std::size_t n = std::min<std::size_t>(data[i] & 0x7f, size - i - 1);
    std::string_view seg(reinterpret_cast<const char*>(data + i + 1), n);
    i += 1 + n;
    if (server) {
      server_bytes.append(seg);
      out.clear();
      ok = s.FromServer(seg, out);
      for (const Reply& r : out) {
        if (r.text.empty() || r.text.back() != '\n') std::abort();
        if (r.text.size() > SmtpStream::kMaxReply) std::abort();
        if (r.code < 0 || r.code > 999) std::abort();
        if (!r.queue_id.empty() && (!r.EndsMessage() || !IsValidQueueId(r.queue_id))) std::abort();
        replied += r.text;
      }
    } else {
      ok = s.FromClient(seg);
    }
    if (!ok && s.error().empty()) std::abort();
  }
  // Replies are the server's bytes, in order, without gaps.
  if (server_bytes.compare(0, replied.size(), replied) != 0) std::abort();
  return 0;
}
