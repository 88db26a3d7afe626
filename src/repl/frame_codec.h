// frame_codec.h - frames of the replication protocol (docs/protocol.md §2).
//
//   u32 payload_len | u8 type | u8 flags | u16 reserved | u64 seq | payload | u32 crc
//
// crc is CRC-32 (zlib) of everything from type through payload. FrameDecoder
// is incremental: feed bytes, then call Next() until it returns kNeedMore.
// It checks the length cap before buffering a payload, the checksum, the type,
// and every field of the payload (IDs, queue names, modes, sizes), so nothing
// that comes out of it can name a path outside the queue layout.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "repl/messages.h"

namespace mailtwin::repl {

inline constexpr std::size_t kFrameHeaderSize = 16;
inline constexpr std::size_t kFrameTrailerSize = 4;

// Appends one encoded frame to out.
void EncodeFrame(std::uint64_t seq, const Message& m, std::string& out);
std::string EncodeFrame(std::uint64_t seq, const Message& m);

// Decodes one payload (exposed for tests and the fuzzer).
// Returns an empty string on success, else what is wrong.
std::string DecodePayload(MsgType type, std::string_view payload, Message& out);

struct Frame {
  std::uint64_t seq = 0;
  Message msg;
};

class FrameDecoder {
 public:
  enum class Status { kFrame, kNeedMore, kError };

  void Feed(std::string_view bytes);
  // On kFrame fills frame; on kError fills error (and stays in error).
  Status Next(Frame& frame);
  const std::string& error() const { return error_; }
  std::size_t buffered() const { return buf_.size() - pos_; }

 private:
  std::string buf_;
  std::size_t pos_ = 0;
  std::string error_;
};

}  // namespace mailtwin::repl
