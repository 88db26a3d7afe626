#include "gate/smtp_stream.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <utility>

#include <fmt/format.h>

#include "common/queue_id.h"

namespace mailtwin::gate {
namespace {

std::string UpperVerb(std::string_view line) {
  std::size_t end = line.find_first_of(" \t");
  std::string v(line.substr(0, end));
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::toupper(c); });
  return v;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

}  // namespace

bool SmtpStream::awaiting_message_reply() const {
  for (Answers a : expect_)
    if (a == Answers::kEndOfData || a == Answers::kBdatLast) return true;
  return false;
}

std::string QueuedAs(std::string_view text) {
  static constexpr std::string_view kKey = "queued as ";
  std::size_t at = text.rfind(kKey);
  if (at == std::string_view::npos) return {};
  std::string_view rest = text.substr(at + kKey.size());
  std::size_t n = 0;
  while (n < rest.size() && std::isalnum(static_cast<unsigned char>(rest[n]))) ++n;
  std::string id(rest.substr(0, n));
  return IsValidQueueId(id) ? id : std::string{};
}

std::optional<std::string> WithXforwardIdent(std::string_view line, std::string_view value) {
  if (UpperVerb(line) != "XFORWARD") return std::nullopt;
  // Attributes are NAME=value, separated by spaces; values are xtext (no
  // spaces).
  std::size_t pos = line.find_first_of(" \t");
  while (pos != std::string_view::npos && pos < line.size()) {
    std::size_t begin = line.find_first_not_of(" \t", pos);
    if (begin == std::string_view::npos) break;
    std::size_t end = line.find_first_of(" \t", begin);
    if (end == std::string_view::npos) end = line.size();
    std::string_view attr = line.substr(begin, end - begin);
    if (attr.size() >= 6 && UpperVerb(attr.substr(0, 6)) == "IDENT=") {
      std::string out(line.substr(0, begin + 6));
      out += value;
      out += line.substr(end);
      return out;
    }
    pos = end;
  }
  return std::nullopt;
}

bool SmtpStream::Fail(std::string why) {
  if (error_.empty()) error_ = std::move(why);
  return false;
}

bool SmtpStream::TakeLine(std::string_view& bytes, std::string& partial, std::string& line,
                          std::string_view what) {
  std::size_t nl = bytes.find('\n');
  std::string_view part = bytes.substr(0, nl == std::string_view::npos ? bytes.size() : nl + 1);
  if (partial.size() + part.size() > kMaxLine)
    return Fail(fmt::format("{} longer than {} bytes", what, kMaxLine));
  partial.append(part);
  bytes.remove_prefix(part.size());
  if (nl != std::string_view::npos) line = std::exchange(partial, {});
  return true;
}

bool SmtpStream::FromClient(std::string_view bytes, std::size_t* eod_end) {
  if (!error_.empty()) return false;
  const std::size_t total = bytes.size();
  while (!bytes.empty() && !opaque_) {
    switch (client_) {
      case Client::kChunk: {
        auto n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_left_, bytes.size()));
        chunk_left_ -= n;
        bytes.remove_prefix(n);
        if (chunk_left_ == 0) client_ = Client::kCommand;
        break;
      }
      case Client::kData: {
        // Scan for a line holding only "." (CRLF or bare LF line ends, as
        // Postfix's smtpd accepts both); dot-stuffed lines pass as data.
        std::size_t i = 0;
        bool end = false;
        for (; i < bytes.size() && !end; ++i) {
          char c = bytes[i];
          switch (eod_) {
            case Eod::kLineStart:
              eod_ = c == '.' ? Eod::kDot : c == '\r' ? Eod::kMidCr : c == '\n' ? Eod::kLineStart : Eod::kMid;
              break;
            case Eod::kMid:
              eod_ = c == '\r' ? Eod::kMidCr : c == '\n' ? Eod::kLineStart : Eod::kMid;
              break;
            case Eod::kMidCr:
              eod_ = c == '\n' ? Eod::kLineStart : c == '\r' ? Eod::kMidCr : Eod::kMid;
              break;
            case Eod::kDot:
              if (c == '\n') end = true;
              else eod_ = c == '\r' ? Eod::kDotCr : Eod::kMid;
              break;
            case Eod::kDotCr:
              if (c == '\n') end = true;
              else eod_ = c == '\r' ? Eod::kMidCr : Eod::kMid;
              break;
          }
        }
        if (observer_) observer_->Data(bytes.substr(0, i));
        bytes.remove_prefix(i);
        if (end) {
          expect_.push_back(Answers::kEndOfData);
          client_ = Client::kCommand;
          if (eod_end) {
            *eod_end = total - bytes.size();
            return true;
          }
        }
        break;
      }
      case Client::kCommand:
      case Client::kAwaitData: {
        std::string line;
        if (!TakeLine(bytes, cline_, line, "client command line")) return false;
        if (!line.empty() && !ClientLine(Trim(line))) return false;
        break;
      }
    }
  }
  return true;
}

bool SmtpStream::ClientLine(std::string_view line) {
  if (observer_) observer_->Command(line);
  std::string verb = UpperVerb(line);
  if (verb == "DATA") {
    expect_.push_back(Answers::kData);
    client_ = Client::kAwaitData;
  } else if (verb == "BDAT") {
    // "BDAT" SP chunk-size [ SP end-marker ]   (RFC 3030 section 2)
    std::string_view rest = line.substr(4);
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    std::uint64_t size = 0;
    auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), size);
    if (ec != std::errc{} || p == rest.data() || size > kMaxChunk)
      return Fail(fmt::format("malformed BDAT command: '{}'", line.substr(0, 80)));
    std::string_view tail(p, rest.data() + rest.size() - p);
    while (!tail.empty() && tail.front() == ' ') tail.remove_prefix(1);
    std::string marker = UpperVerb(tail);
    bool last = marker == "LAST";
    if (!last && !marker.empty())
      return Fail(fmt::format("malformed BDAT command: '{}'", line.substr(0, 80)));
    expect_.push_back(last ? Answers::kBdatLast : Answers::kBdat);
    chunk_left_ = size;
    if (size > 0) client_ = Client::kChunk;
  } else if (verb == "STARTTLS") {
    expect_.push_back(Answers::kStartTls);
  } else if (verb == "QUIT") {
    expect_.push_back(Answers::kQuit);
  } else {
    expect_.push_back(Answers::kCommand);
  }
  return true;
}

bool SmtpStream::FromServer(std::string_view bytes, std::vector<Reply>& out) {
  if (!error_.empty()) return false;
  while (!bytes.empty()) {
    if (opaque_) return true;
    std::string line;
    if (!TakeLine(bytes, sline_, line, "server reply line")) return false;
    if (!line.empty() && !ServerLine(line, out)) return false;
  }
  return true;
}

bool SmtpStream::ServerLine(std::string_view raw, std::vector<Reply>& out) {
  std::string_view line = Trim(raw);
  // Reply-line = Reply-code [ SP / "-" text ]  (RFC 5321 section 4.2)
  if (line.size() < 3 || !std::isdigit(static_cast<unsigned char>(line[0])) ||
      !std::isdigit(static_cast<unsigned char>(line[1])) ||
      !std::isdigit(static_cast<unsigned char>(line[2])) ||
      (line.size() > 3 && line[3] != ' ' && line[3] != '-'))
    return Fail(fmt::format("malformed server reply line: '{}'", line.substr(0, 80)));
  int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  if (in_reply_ && code != reply_.code)
    return Fail(fmt::format("reply code changed within a multi-line reply: {} then {}",
                            reply_.code, code));
  if (!in_reply_) {
    reply_ = Reply{};
    reply_.code = code;
    in_reply_ = true;
  }
  if (reply_.text.size() + raw.size() > kMaxReply)
    return Fail(fmt::format("server reply longer than {} bytes", kMaxReply));
  reply_.text.append(raw);
  if (line.size() > 3 && line[3] == '-') return true;  // more lines follow
  in_reply_ = false;

  if (expect_.empty()) {
    if (code != 421) return Fail(fmt::format("server reply {} to no command", code));
    reply_.answers = Answers::kUnsolicited;
  } else {
    reply_.answers = expect_.front();
    expect_.pop_front();
  }
  switch (reply_.answers) {
    case Answers::kData:
      if (client_ == Client::kAwaitData) {
        client_ = code == 354 ? Client::kData : Client::kCommand;
        eod_ = Eod::kLineStart;
      }
      break;
    case Answers::kStartTls:
      if (code == 220) opaque_ = true;
      break;
    default:
      break;
  }
  if (reply_.EndsMessage()) reply_.queue_id = QueuedAs(reply_.text);
  out.push_back(std::move(reply_));
  reply_ = Reply{};
  return true;
}

}  // namespace mailtwin::gate
