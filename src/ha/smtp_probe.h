// smtp_probe.h - the standby's liveness check of the primary's SMTP service.
//
// One probe is a real SMTP dialogue, the way a client would see the server:
//   connect -> 220 banner -> EHLO -> 250 -> MAIL FROM:<> -> reply -> RSET -> QUIT
// MAIL FROM matters: with the gate on, Postfix's smtpd opens its proxy
// connection there, so a primary whose intake path is broken (mailtwind
// gone: every MAIL answered 4xx) fails the probe, although it greets and
// answers EHLO. A 2xx or 5xx to MAIL counts as alive (the server decides);
// a 4xx, a timeout, a refused connection or a malformed reply is a failure.
// Nothing is ever sent past MAIL FROM: no message, no recipient.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <asio.hpp>

#include "ha/smtp_reply.h"

namespace mailtwin::ha {

struct ProbeResult {
  bool ok = false;
  std::string error;  // why it failed, for the log and status
  std::chrono::microseconds elapsed{0};
};

// Runs one probe of host:port within timeout; done runs on io's thread.
void ProbeSmtp(asio::io_context& io, const std::string& address, const std::string& helo,
               std::chrono::milliseconds timeout, std::function<void(ProbeResult)> done);

}  // namespace mailtwin::ha
