// primary_probe.h - a standby's SMTP probes of its primary and their count
// of failures (the paper's rule: several consecutive failures, see
// ha/decide.h).
//
// The daemon calls Run at each tick while it is a standby: a new probe
// (ha::ProbeSmtp) starts every check_interval even while earlier ones still
// hang, so that a silently dead primary is judged after about probe_timeout
// + (fail_threshold - 1) x check_interval, not fail_threshold x
// probe_timeout. The count is ha::ProbeStreak's (failures, and serial
// failures for a primary whose link is alive). A success resets it, and so
// does a primary that (re)introduces itself on the link (Reset): failures
// count against one primary, from its arrival on.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <asio.hpp>

#include "common/config.h"
#include "ha/probe_streak.h"

namespace mailtwin {

class PrimaryProbe {
 public:
  PrimaryProbe(asio::io_context& io, const Config& cfg) : io_(io), cfg_(cfg) {}
  // Starts a probe (unless kMaxInFlight still hang). on_failure runs after a
  // counted failure (the daemon decides at once: it may be the last one
  // needed); a result that arrives while counts() is false (no longer a
  // standby) is dropped.
  void Run(std::function<bool()> counts, std::function<void()> on_failure);
  void Reset();

  int failures() const { return streak_.failures(); }
  int serial_failures() const { return streak_.serial_failures(); }
  const std::string& error() const { return streak_.error(); }
  std::uint64_t probes() const { return probes_; }
  double last_ms() const { return last_ms_; }

  // probe_timeout / check_interval probes hang at once against a dead host
  // (4 with the defaults); this only bounds a configuration where that is
  // large, since each probe holds a connection slot of the primary's smtpd.
  static constexpr std::size_t kMaxInFlight = 8;

 private:
  asio::io_context& io_;
  const Config& cfg_;
  ha::ProbeStreak streak_;
  std::uint64_t probes_ = 0;
  double last_ms_ = 0;
  std::shared_ptr<char> alive_ = std::make_shared<char>();
};

}  // namespace mailtwin
