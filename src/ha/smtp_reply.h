// smtp_reply.h - SMTP replies from a server we probe: pure, peer input.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailtwin::ha {

// Splits a server's bytes into complete SMTP replies (RFC 5321 4.2): lines
// "ddd-text" continue, "ddd text" (or "ddd") ends a reply. Peer input: every
// line and reply is capped, and anything malformed is an error.
class ReplyParser {
 public:
  static constexpr std::size_t kMaxLine = 4096;
  static constexpr std::size_t kMaxLines = 128;
  struct Reply {
    int code = 0;
    std::string text;  // the last line's text
  };
  // Appends bytes; returns false (and error() says why) on malformed input.
  bool Feed(std::string_view bytes);
  // The next complete reply, if any.
  std::optional<Reply> Next();
  const std::string& error() const { return error_; }

 private:
  bool Line(std::string_view line);
  std::string buf_;
  std::vector<Reply> done_;
  std::size_t next_ = 0;
  int code_ = 0;
  std::size_t lines_ = 0;
  std::string error_;
};

}  // namespace mailtwin::ha
