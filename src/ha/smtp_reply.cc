#include "ha/smtp_reply.h"

#include <fmt/format.h>

namespace mailtwin::ha {

bool ReplyParser::Feed(std::string_view bytes) {
  if (!error_.empty()) return false;
  buf_.append(bytes);
  std::size_t start = 0;
  for (;;) {
    auto nl = buf_.find('\n', start);
    if (nl == std::string::npos) break;
    std::string_view line(buf_.data() + start, nl - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    start = nl + 1;
    if (!Line(line)) return false;
  }
  buf_.erase(0, start);
  if (buf_.size() > kMaxLine) {
    error_ = fmt::format("reply line longer than {} bytes", kMaxLine);
    return false;
  }
  return true;
}

bool ReplyParser::Line(std::string_view line) {
  if (line.size() > kMaxLine) {
    error_ = fmt::format("reply line longer than {} bytes", kMaxLine);
    return false;
  }
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (line.size() < 3 || !digit(line[0]) || !digit(line[1]) || !digit(line[2]) ||
      line[0] < '2' || line[0] > '5' || (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
    error_ = fmt::format("not an SMTP reply line: \"{}\"", line.substr(0, 80));
    return false;
  }
  int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  if (lines_ > 0 && code != code_) {
    error_ = fmt::format("reply code changed from {} to {} within one reply", code_, code);
    return false;
  }
  code_ = code;
  if (++lines_ > kMaxLines) {
    error_ = fmt::format("reply of more than {} lines", kMaxLines);
    return false;
  }
  if (line.size() > 3 && line[3] == '-') return true;
  done_.push_back(Reply{code, std::string(line.size() > 4 ? line.substr(4) : "")});
  lines_ = 0;
  return true;
}

std::optional<ReplyParser::Reply> ReplyParser::Next() {
  if (next_ >= done_.size()) return std::nullopt;
  Reply r = std::move(done_[next_++]);
  if (next_ == done_.size()) {
    done_.clear();
    next_ = 0;
  }
  return r;
}

}  // namespace mailtwin::ha
