// fingerprint.h - what makes two SMTP transactions the same message
// (docs/gate.md, "Duplicates after a failover").
//
// A sender whose 250 was lost with a dead primary sends the same message
// again, to the backup MX. The gate recognises that resend by a fingerprint
// of the transaction as Postfix's public smtpd hands it over:
//
//   SHA-256( "mailtwin-fp-1" | sender | sorted recipients | SHA-256(DATA) )
//
// each string length-prefixed, where DATA is the DATA phase's bytes as the
// gate relays them (dot-stuffed, CRLF, the final ".") minus the first
// header field when it is a Received: field: that one is written by the
// receiving node's own smtpd (its name, the time), so it differs between
// the lost copy and the resend; everything else comes from the sender.
//
// A false match would drop a message that is not a duplicate. It needs the
// same envelope sender, the same recipients and byte-identical content,
// the sender's own Received: line (its queue ID and time) and Message-ID
// included: a different message cannot have it, short of a SHA-256
// collision. BDAT chunks are not fingerprinted (Postfix's smtpd speaks DATA
// to its proxy filter even to a CHUNKING client).
//
// Pure logic over OpenSSL's EVP digest; no sockets, no clock.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gate/smtp_stream.h"

struct evp_md_ctx_st;

namespace mailtwin::gate {

using Digest = std::array<std::uint8_t, 32>;

std::string DigestHex(const Digest& d);
// A fresh gate token (common/queue_id.h, IsGateToken): "mt-" and 96 random
// bits from OpenSSL's generator.
std::string NewGateToken();
// 64 hex digits (either case) -> digest; false on anything else.
bool DigestFromHex(std::string_view hex, Digest& out);

class Fingerprinter : public ClientObserver {
 public:
  static constexpr std::size_t kMaxHeadLine = 64 * 1024;  // first header line looked at
  static constexpr std::size_t kMaxRecipients = 100000;

  Fingerprinter();
  ~Fingerprinter() override;
  Fingerprinter(const Fingerprinter&) = delete;
  Fingerprinter& operator=(const Fingerprinter&) = delete;

  // One client command line, without its CRLF: MAIL FROM starts a
  // transaction, RCPT TO adds a recipient, RSET forgets it, DATA starts the
  // content.
  void Command(std::string_view line) override;
  // Bytes of the DATA phase (the final "." line included).
  void Data(std::string_view bytes) override;
  // The transaction's fingerprint, at the end of its data.
  Digest Finish();

  const std::string& sender() const { return sender_; }
  std::size_t recipients() const { return rcpts_.size(); }

 private:
  enum class Head { kFirstLine, kLineStart, kSkipLine, kBody };
  void Reset();
  void BeginData();
  void Hash(std::string_view bytes);

  evp_md_ctx_st* ctx_ = nullptr;
  std::string sender_;
  std::vector<std::string> rcpts_;
  Head head_ = Head::kBody;
  std::string first_;  // the first line, until it is whole
  bool in_data_ = false;
};

}  // namespace mailtwin::gate
