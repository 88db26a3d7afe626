// smtp_stream.h - follows one SMTP session as it passes through the gate.
//
// The gate relays bytes unchanged in both directions. It only needs to know,
// for every complete server reply, which command it answers, so that it can
// hold back the reply to the end of a message ("." after DATA, or BDAT ...
// LAST) until the message is replicated. SmtpStream is that bookkeeping,
// as pure logic: no sockets, no clock.
//
// - Client side: command lines (PIPELINING: many per read), the DATA phase
//   (entered when the server answers 354 to DATA; ends at a line holding
//   only "."; like Postfix's smtpd, a bare LF also ends a line), and BDAT
//   chunks (RFC 3030: exactly N raw bytes follow "BDAT N [LAST]").
// - Server side: replies, one or many lines ("250-..." then "250 ..."), each
//   matched to the oldest command still waiting for one. The first reply is
//   the greeting. An unsolicited 421 (server shutting down) is allowed.
// - After "220" to STARTTLS the bytes are encrypted: the stream turns opaque
//   and nothing more is parsed (the gate then just relays).
// Limits: a command line, a reply line and a whole reply are capped
// (kMaxLine, kMaxReply); anything malformed is an error with a reason, after
// which the gate closes both connections (the client sees a 4xx from its
// Postfix: nothing is lost, the sender retries).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailtwin::gate {

// What a complete server reply answers.
enum class Answers {
  kGreeting,
  kCommand,     // anything else: EHLO, MAIL, RCPT, RSET, XFORWARD, ...
  kData,        // the DATA command (354 expected)
  kEndOfData,   // the "." that ends the DATA phase
  kBdat,        // a BDAT chunk that is not the last
  kBdatLast,    // BDAT ... LAST
  kStartTls,
  kQuit,
  kUnsolicited  // a 421 nobody asked for
};

struct Reply {
  std::string text;        // all its bytes, as received (CRLF included)
  int code = 0;            // 250
  Answers answers = Answers::kCommand;
  std::string queue_id;    // "queued as ID" in a 2xx reply that ends a message
  // True for a 2xx reply that ends a message: the message is queued.
  bool EndsMessage() const {
    return (answers == Answers::kEndOfData || answers == Answers::kBdatLast) && code >= 200 &&
           code < 300;
  }
};

// Sees what the client sends, as SmtpStream parses it (the gate's
// fingerprint of each message: gate/fingerprint.h).
class ClientObserver {
 public:
  virtual ~ClientObserver() = default;
  virtual void Command(std::string_view line) = 0;  // without its line end
  virtual void Data(std::string_view bytes) = 0;    // DATA phase bytes, the final "." included
};

class SmtpStream {
 public:
  static constexpr std::size_t kMaxLine = 64 * 1024;    // one command or reply line
  static constexpr std::size_t kMaxReply = 256 * 1024;  // one (multi-line) reply
  static constexpr std::uint64_t kMaxChunk = std::uint64_t{1} << 40;  // BDAT size

  // Bytes from the client (toward the server). Returns false on a protocol
  // error; error() says which. With eod_end, stops right after the line
  // that ends a DATA phase, if any, and stores how many bytes it took up to
  // there (else leaves *eod_end alone): the caller decides about the
  // message before passing those bytes on.
  bool FromClient(std::string_view bytes, std::size_t* eod_end = nullptr);
  void SetObserver(ClientObserver* o) { observer_ = o; }
  // Bytes from the server (toward the client). Complete replies are appended
  // to out in order; a partial one stays buffered. Returns false on error.
  bool FromServer(std::string_view bytes, std::vector<Reply>& out);

  bool opaque() const { return opaque_; }
  const std::string& error() const { return error_; }
  // Commands sent and not answered yet (the greeting counts as one).
  std::size_t outstanding() const { return expect_.size(); }
  bool in_data() const { return client_ == Client::kData; }
  // The next client byte starts a command line.
  bool at_command_start() const {
    return !opaque_ && client_ == Client::kCommand && cline_.empty();
  }
  // The client has ended a message (the "." or BDAT LAST went through) and
  // the server's reply to it has not come back yet: the message may be
  // committed already, so the session must not be cut now.
  bool awaiting_message_reply() const;

 private:
  enum class Client { kCommand, kAwaitData, kData, kChunk };
  // End-of-data matcher: where we are relative to the last line start.
  enum class Eod { kLineStart, kMid, kMidCr, kDot, kDotCr };

  // Moves bytes up to and including the next '\n' from bytes to partial;
  // once the line is whole, hands it over in line (else leaves line empty).
  bool TakeLine(std::string_view& bytes, std::string& partial, std::string& line,
                std::string_view what);
  bool ClientLine(std::string_view line);
  bool ServerLine(std::string_view line, std::vector<Reply>& out);
  bool Fail(std::string why);

  Client client_ = Client::kCommand;
  Eod eod_ = Eod::kLineStart;
  std::uint64_t chunk_left_ = 0;
  std::string cline_;  // partial client command line
  std::string sline_;  // partial server reply line
  Reply reply_;        // reply being assembled (text so far)
  bool in_reply_ = false;
  std::deque<Answers> expect_{Answers::kGreeting};
  bool opaque_ = false;
  std::string error_;
  ClientObserver* observer_ = nullptr;
};

// "250 2.0.0 Ok: queued as 4jbpr156tpz1bYhF" -> "4jbpr156tpz1bYhF" (also the
// BDAT form "... 1234 bytes queued as ID"); "" when there is none.
std::string QueuedAs(std::string_view reply_text);

// An XFORWARD command line (without its line end) with its IDENT attribute's
// value replaced by value: "XFORWARD NAME=a IDENT=[UNAVAILABLE] PROTO=ESMTP"
// -> "XFORWARD NAME=a IDENT=<value> PROTO=ESMTP" (the verb and attribute
// names in any case, as RFC-less XFORWARD allows). nullopt when line is not
// an XFORWARD command or has no IDENT attribute. The gate names each message
// this way before it is committed (docs/gate.md).
std::optional<std::string> WithXforwardIdent(std::string_view line, std::string_view value);

}  // namespace mailtwin::gate
