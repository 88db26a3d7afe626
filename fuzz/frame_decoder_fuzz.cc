// Fuzzes the replication frame decoder: arbitrary bytes from a peer, fed in
// arbitrary pieces, must never crash, over-read, over-allocate, or yield a
// change message naming something outside the queue layout; and every frame
// it accepts must re-encode to the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/queue_id.h"
#include "repl/frame_codec.h"

using namespace mailtwin;
using namespace mailtwin::repl;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  // The first byte picks how the stream is cut into reads.
  std::size_t step = size ? (data[0] % 17) + 1 : 1;
  FrameDecoder d;
  Frame f;
  std::size_t fed = 0;
  while (fed < in.size()) {
    std::size_t n = std::min(step, in.size() - fed);
    d.Feed(in.substr(fed, n));
    fed += n;
    for (;;) {
      auto st = d.Next(f);
      if (st != FrameDecoder::Status::kFrame) break;
      const std::string& id = ChangeId(f.msg);
      if (IsChange(f.msg) && !IsValidQueueId(id)) std::abort();
      std::string again = EncodeFrame(f.seq, f.msg);
      FrameDecoder d2;
      d2.Feed(again);
      Frame g;
      if (d2.Next(g) != FrameDecoder::Status::kFrame || !(g.msg == f.msg) || g.seq != f.seq)
        std::abort();
    }
  }
  return 0;
}
