// primary_probe.h - a standby's count of failed SMTP probes of its primary
// (the paper's rule: several consecutive failures, see ha/decide.h).
//
// One probe at a time (ha::ProbeSmtp); the daemon starts the next at each
// tick while it is a standby. A success resets the count, and so does a
// primary that (re)introduces itself on the link: failures count against
// one primary, from its arrival on.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <asio.hpp>

#include "common/config.h"

namespace mailtwin {

class PrimaryProbe {
 public:
  PrimaryProbe(asio::io_context& io, const Config& cfg) : io_(io), cfg_(cfg) {}
  // Starts a probe unless one is running. on_failure runs after a failed one
  // (the daemon decides at once: it may be the last one needed); a result
  // that arrives while counts_() is false (no longer a standby) is dropped.
  void Run(std::function<bool()> counts, std::function<void()> on_failure);
  void Reset();

  int failures() const { return failures_; }
  const std::string& error() const { return error_; }
  std::uint64_t probes() const { return probes_; }
  double last_ms() const { return last_ms_; }

 private:
  asio::io_context& io_;
  const Config& cfg_;
  bool running_ = false;
  int failures_ = 0;
  std::string error_;
  std::uint64_t probes_ = 0;
  double last_ms_ = 0;
  std::shared_ptr<char> alive_ = std::make_shared<char>();
};

}  // namespace mailtwin
