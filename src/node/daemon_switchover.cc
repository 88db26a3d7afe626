// daemon_switchover.cc - runs the switchover machine of node/switchover.h:
// gathers its facts every 2 ms, runs the action it returns.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "node/daemon.h"

namespace mailtwin {

namespace {
constexpr auto kPollEvery = std::chrono::milliseconds(2);
// Deliveries in flight are looked up in /proc at most this often.
constexpr auto kDeliveryScan = std::chrono::milliseconds(10);
}  // namespace

ctl::Json Daemon::RequestSwitchover(const std::string& reason, const std::string& kind) {
  auto& server = mirror_side_->server();
  if (!server.SendUp(repl::msg::SwitchoverRequest{reason}))
    return {{"ok", false},
            {"error", "this standby is not in sync with a primary: nothing to switch over from"}};
  spdlog::info("{}: asked primary {} to hand its role over", kind, server.peer_node());
  return {{"ok", true}, {"requested", true}, {"primary", server.peer_node()}};
}

ctl::Json Daemon::StartSwitchover(const std::string& reason, const std::string& kind) {
  std::string refusal = switchover::Refusal(roles_.primary() && epoch_confirmed_ && primary_,
                                            switching_.has_value(),
                                            primary_ && primary_->link_live());
  if (!refusal.empty()) return {{"ok", false}, {"error", refusal}};
  std::string standby = primary_->link().peer_node();
  spdlog::warn("{}: handing the role to {} ({}); deliveries stop first", kind, standby, reason);
  Switching sw;
  sw.reason = reason;
  sw.kind = kind;
  sw.sm = switchover::Begin(std::chrono::steady_clock::now());
  std::tie(sw.master, sw.qmgr) = postfix_->SuspendQueueManager();
  if (sw.master && !sw.qmgr)
    spdlog::warn("{}: no queue manager found under Postfix's master {}: deliveries in flight "
                 "are not waited for",
                 kind, sw.master);
  switching_ = std::move(sw);
  SwitchoverPoll();
  return {{"ok", true}, {"started", true}, {"standby", standby}};
}

void Daemon::SwitchoverPoll() {
  if (!switching_) return;
  auto& sw = *switching_;
  auto now = std::chrono::steady_clock::now();
  switchover::Facts f;
  f.link_live = primary_ && primary_->link_live();
  if (sw.sm.phase == switchover::Phase::kDeliveries && now - sw.scanned >= kDeliveryScan) {
    // Looked up afresh each time: an agent the master started for the
    // queue manager's last request is new.
    std::string err;
    sw.delivering = postfix_->DeliveriesInFlight(sw.master, err);
    if (!err.empty() && !sw.diag_warned) {
      sw.diag_warned = true;
      spdlog::warn("{}: cannot tell finished deliveries from running ones ({}): waiting for "
                   "every agent to let go of its queue file",
                   sw.kind, err);
    }
    sw.scanned = std::chrono::steady_clock::now();
  }
  f.delivering = sw.delivering;
  f.gate_drained = !primary_ || !primary_->gate() || primary_->gate()->drained();
  if (sw.sm.phase == switchover::Phase::kReplicate && primary_) {
    primary_->DrainWatcher();
    f.standby_holds_all = primary_->StandbyHoldsAll();
    f.sent = primary_->link().sent_seq();
    f.acked = primary_->link().acked_seq();
  }
  auto r = switchover::Step(sw.sm, f, now);
  sw.sm = r.state;
  switch (r.action) {
    case switchover::Action::kNone: break;
    case switchover::Action::kDrainGate:
      spdlog::info("{}: {}", sw.kind, r.reason);
      if (primary_ && primary_->gate()) primary_->gate()->Drain();
      break;
    case switchover::Action::kStopPostfix:
      spdlog::info("{}: {}", sw.kind, r.reason);
      StopPostfix(false);
      break;
    case switchover::Action::kSendSwitchover:
      // The standby holds every change: it takes over at the next epoch.
      primary_->link().SendControl(repl::msg::Switchover{roles_.epoch() + 1, sw.reason});
      spdlog::info("{}: {}; it takes over at epoch {}", sw.kind, r.reason, roles_.epoch() + 1);
      break;
    case switchover::Action::kStepDown: return SwitchoverDone();
    case switchover::Action::kAbort: return SwitchoverFailed(r.reason);
  }
  switch_timer_.expires_after(kPollEvery);
  switch_timer_.async_wait([this](asio::error_code ec) {
    if (!ec) SwitchoverPoll();
  });
}

void Daemon::SwitchoverDone() {
  // The standby took over (it ended our session): step down, as a follower.
  Switching done = std::move(*switching_);
  switching_.reset();
  auto now = std::chrono::steady_clock::now();
  double pause = std::chrono::duration<double>(now - done.sm.intake_t0).count();
  double total = std::chrono::duration<double>(now - done.sm.t0).count();
  last_switch_pause_s_ = pause;
  std::string peer = primary_ ? primary_->link().peer_node() : cfg_.peer;
  if (vip_held_) vip_linger_until_ = now + std::chrono::seconds(2);
  StepDown(roles_.epoch() + 1, fmt::format("{} to {}", done.kind, peer));
  handed_over_at_ = now;
  Raise(done.kind,
        fmt::format("{}: the role moved to {} at epoch {}; intake here paused {:.3f} s (from "
                    "the first stopped delivery {:.3f} s){}",
                    done.reason, peer, roles_.epoch(), pause, total,
                    done.sm.cut ? fmt::format("; {} deliveries or sessions were cut at a time "
                                              "limit and may arrive twice",
                                              done.sm.cut)
                                : ""),
        peer);
}

void Daemon::SwitchoverFailed(const std::string& why) {
  Switching sw = std::move(*switching_);
  switching_.reset();
  switchover_failed_at_ = std::chrono::steady_clock::now();
  spdlog::error("{} failed: {}; serving again", sw.kind, why);
  // Before kReplicate Postfix still runs, with its queue manager stopped.
  if (!sw.sm.postfix_stopped()) postfix_->ResumeQueueManager(sw.qmgr);
  if (primary_ && primary_->gate()) primary_->gate()->Resume();
  if (roles_.primary() && !postfix_->Running()) StartPostfix();
  Raise(sw.kind, fmt::format("{} FAILED: {}; this node serves again", sw.reason, why));
}

void Daemon::AbandonSwitchover(const std::string& why) {
  // A switchover cut short must not leave Postfix's queue manager stopped
  // (Postfix would accept mail and deliver none) nor the address lingering
  // on a node that no longer serves.
  if (switching_ && switching_->qmgr && postfix_ && !switching_->sm.postfix_stopped()) {
    postfix_->ResumeQueueManager(switching_->qmgr);
    spdlog::warn("switchover abandoned ({}): Postfix's queue manager continues", why);
  }
  switching_.reset();
  if (vip_ && !roles_.primary() && vip_linger_until_ != ha::Clock::time_point{})
    ReleaseVip(why);
}

}  // namespace mailtwin
