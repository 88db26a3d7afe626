// daemon_tick.cc - the daemon's HA loop: every check_interval it observes,
// ha::Decide decides, Apply acts (node/daemon.h). Also the service address,
// which follows the decision.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/systemd.h"
#include "node/daemon.h"

namespace mailtwin {

void Daemon::ScheduleTick() {
  tick_timer_.expires_after(cfg_.check_interval);
  tick_timer_.async_wait([this](asio::error_code ec) {
    if (!ec) Tick();
  });
}

void Daemon::Tick() {
  auto now = std::chrono::steady_clock::now();
  ledger_.Flush();
  if (dedup_.dirty())
    if (std::string err = dedup_.Save(); !err.empty()) spdlog::error("dedup: {}", err);
  if (!dedup_.empty() && now - dedup_expired_at_ >= std::chrono::seconds(60)) {
    dedup_expired_at_ = now;
    if (std::string err = dedup_.Expire(gate::WallSeconds()); !err.empty())
      spdlog::error("dedup: {}", err);
  }
  fs_probe_->Sample(now);
  // Time this loop spent in its own blocking work (starting Postfix, a
  // promotion) is not a stall of the node.
  stalled_ = std::chrono::duration_cast<Millis>(now - last_tick_) - cfg_.check_interval - busy_;
  last_tick_ = now;
  busy_ = Millis(0);
  if (Probing())
    probe_.Run([this] { return Probing(); },
               // Decide at once rather than at the next tick: it may be the
               // failure that makes the threshold.
               [this] { Evaluate(std::chrono::steady_clock::now()); });
  Evaluate(now);
  // Postfix stopped by anyone (mailtwind, `postfix stop` by hand, a crash)
  // stays stopped until mailtwind itself starts it.
  if (cfg_.manage_postfix && !postfix_->Running()) postfix_->KeepStopped();
  WatchSilence(now);
  NotifyIfReady();
  SyncRelay();
  SyncVip(now);
  SendStatus(now);
  stalled_ = Millis(0);  // a stall is seen by this tick's decision only
  RaiseIfUnprotected();
  ScheduleTick();
}

bool Daemon::FencedByStall() const {
  return roles_.primary() && fenced_by_stall_ && !epoch_confirmed_;
}

bool Daemon::Probing() const { return roles_.role() == NodeRole::kStandby || FencedByStall(); }

void Daemon::WatchSilence(ha::Clock::time_point now) {
  // A standby decides at the very moment the link's silence reaches
  // peer_timeout, not at the next tick: that tick could be check_interval
  // later, all of it added to a silent death's failover.
  if (roles_.role() != NodeRole::kStandby) return;
  auto last = mirror_side_->server().last_rx();
  if (!last) return;
  auto due = *last + cfg_.peer_timeout;
  if (due <= now || due >= now + cfg_.check_interval) return;
  silence_timer_.expires_at(due);
  silence_timer_.async_wait([this](asio::error_code ec) {
    if (!ec && roles_.role() == NodeRole::kStandby) Evaluate(std::chrono::steady_clock::now());
  });
}

void Daemon::RaiseIfUnprotected() {
  // Mail answered 250 without a replica for a while: told once per period.
  const gate::Gate* gate = primary_ ? primary_->gate() : nullptr;
  std::size_t unprotected = gate ? gate->unprotected() : 0;
  double oldest = gate ? gate->oldest_unprotected_s().value_or(0) : 0;
  if (unprotected > 0 && oldest >= 5.0) {
    if (degraded_told_) return;
    degraded_told_ = true;
    Raise("replication-degraded",
          fmt::format("{} messages answered 250 have had no replica for {:.0f} s or more "
                      "(durability {}): if this node dies now they are lost",
                      unprotected, oldest, DurabilityName(cfg_.durability)));
  } else if (unprotected == 0) {
    degraded_told_ = false;
  }
}

ha::Observations Daemon::Observe(ha::Clock::time_point now) {
  ha::Observations o;
  o.role = roles_.role();
  o.epoch = roles_.epoch();
  o.paused = roles_.state().paused;
  o.postfix_running = postfix_->Running();
  o.epoch_confirmed = epoch_confirmed_;
  o.stalled = stalled_;
  o.fenced_by_stall = FencedByStall();
  if (unconfirmed_since_)
    o.unconfirmed_for = std::chrono::duration_cast<Millis>(now - *unconfirmed_since_);
  o.postfix_start_failures = postfix_start_failures_;
  o.promotion_failed = promotion_failed_;
  o.queue_writable = fs_probe_->writable();
  o.queue_free_mb = fs_probe_->free_mb();
  if (!o.queue_writable || o.queue_free_mb < ha_.min_free_mb) {
    if (!queue_trouble_since_) queue_trouble_since_ = now;
    o.queue_trouble_for = std::chrono::duration_cast<Millis>(now - *queue_trouble_since_);
  } else {
    queue_trouble_since_.reset();
  }
  if (switchover_failed_at_)
    o.since_switchover_failed = std::chrono::duration_cast<Millis>(now - *switchover_failed_at_);
  // The peer's word on its own disk counts while fresh (it says it once a
  // second).
  if (peer_status_ && now - peer_status_at_ < std::chrono::seconds(5)) {
    using NS = repl::msg::NodeStatus;
    o.peer_queue_ok = (peer_status_->flags & NS::kQueueWritable) &&
                      (peer_status_->queue_free_mb < 0 ||
                       static_cast<double>(peer_status_->queue_free_mb) >= ha_.min_free_mb);
  }
  if (primary_) {
    const auto& link = primary_->link();
    auto st = link.state();
    o.link_live = st == repl::PrimaryLink::State::kLive;
    // A standby that is exchanging its manifest or catching up is reachable
    // (its heartbeats keep the link open): a catch-up of 100 000 messages
    // takes ~17 s and is no "standby-lost".
    bool syncing = st == repl::PrimaryLink::State::kManifest ||
                   st == repl::PrimaryLink::State::kCatchup;
    if (auto d = link.down_since(); d && !syncing)
      o.link_down_for = std::chrono::duration_cast<Millis>(now - *d);
    if (auto l = link.live_since()) o.link_live_for = std::chrono::duration_cast<Millis>(now - *l);
    o.caught_up = o.link_live && link.sent_seq() == link.acked_seq() && !link.pending_resend();
    o.peer_node = link.peer_node();
  }
  o.self_node = cfg_.node_name;
  o.switching = switching_.has_value();
  o.primary_seen = primary_seen_;
  const auto& server = mirror_side_->server();
  o.link_up = server.connected();
  o.last_from_primary = server.last_rx();
  o.probe_failures = probe_.failures();
  o.probe_serial_failures = probe_.serial_failures();
  o.probe_error = probe_.error();
  if (handed_over_at_) {
    if (o.role != NodeRole::kStandby || o.link_up)
      handed_over_at_.reset();  // the new primary connected (or this node serves again)
    else
      o.since_handed_over = std::chrono::duration_cast<Millis>(now - *handed_over_at_);
  }
  return o;
}

void Daemon::Evaluate(ha::Clock::time_point now) {
  ha::Decision d = ha::Decide(Observe(now), ha_, now);
  if (witness_) d = Witness(std::move(d), now);
  Apply(d, now);
}

void Daemon::Apply(const ha::Decision& d, ha::Clock::time_point now) {
  if (d.reason != last_decision_.reason || !d.actions.empty()) {
    std::string acts;
    for (auto a : d.actions) acts += fmt::format("{}{}", acts.empty() ? "" : ",", ha::ActionName(a));
    spdlog::info("decide: {}{}", d.reason, acts.empty() ? "" : " -> " + acts);
    last_decision_at_ = std::chrono::system_clock::now();
    systemd::NotifyStatus(fmt::format("{} at epoch {}: {}", RoleName(roles_.role()),
                                      roles_.epoch(), d.reason));
  }
  last_decision_ = d;
  TellConditions(d);
  for (auto a : d.actions) {
    switch (a) {
      case ha::Action::kStartPostfix: StartPostfix(); break;
      case ha::Action::kStopPostfix: StopPostfix(false); break;
      case ha::Action::kFence:
        ReleaseVip("fencing");
        StopPostfix(true);
        fenced_by_stall_ = epoch_confirmed_ && stalled_ >= ha_.lease();
        if (fenced_by_stall_) probe_.Reset();  // its failures count from the fence on
        epoch_confirmed_ = false;
        unconfirmed_since_ = now;
        Raise("fencing", d.reason);
        // Meet the peer again: its Hello confirms our epoch or deposes us.
        if (primary_) primary_->link().Reconnect("re-confirming the epoch after fencing");
        break;
      case ha::Action::kReconfirm:
        epoch_confirmed_ = true;
        fenced_by_stall_ = false;
        unconfirmed_since_.reset();
        Raise("unfenced", d.reason);
        asio::post(io_, [this] {
          Evaluate(std::chrono::steady_clock::now());
          SyncVip(std::chrono::steady_clock::now());
        });
        break;
      case ha::Action::kPromote: TakeOver(d.reason); break;
      case ha::Action::kFailback: StartSwitchover(d.reason, "failback"); break;
      case ha::Action::kSwitchover: StartSwitchover(d.reason, "switchover"); break;
    }
  }
}

void Daemon::TellConditions(const ha::Decision& d) {
  // Each condition is told once while it lasts, and is over when its own
  // test says so (not merely when another decision comes).
  auto over = [this](ha::Condition c) {
    switch (c) {
      case ha::Condition::kPrimaryLost:
        return roles_.role() == NodeRole::kStandby && mirror_side_->server().connected();
      case ha::Condition::kStandbyLost: return primary_ && primary_->link_live();
      default: return true;
    }
  };
  for (auto c : {ha::Condition::kPrimaryLost, ha::Condition::kStandbyLost,
                 ha::Condition::kQueueTrouble}) {
    bool& told = told_[static_cast<int>(c)];
    if (d.condition == c) {
      if (!told) Raise(std::string(ha::ConditionName(c)), d.reason);
      told = true;
    } else if (over(c)) {
      told = false;
    }
  }
}

void Daemon::Raise(const std::string& kind, const std::string& reason, const std::string& peer) {
  ha::Event e;
  e.kind = kind;
  e.node = cfg_.node_name;
  e.role = std::string(RoleName(roles_.role()));
  e.epoch = roles_.epoch();
  std::string link_peer = primary_ ? primary_->link().peer_node() : "";
  e.peer = !peer.empty() ? peer : !link_peer.empty() ? link_peer : cfg_.peer;
  e.reason = reason;
  notifier_->Post(events_.Append(std::move(e)));
}

// ---- the service address ------------------------------------------------

void Daemon::SyncVip(ha::Clock::time_point now) {
  if (!vip_) return;
  bool want = roles_.primary() && epoch_confirmed_;
  // Looked at each time: someone (a network manager, an operator) may have
  // taken it away, or a crash left it behind.
  vip_held_ = vip_->Present();
  if (want == vip_held_) {
    if (want) vip_->Tick(now);
    vip_error_.clear();
    return;
  }
  if (!want) {
    if (now < vip_linger_until_) return;
    return ReleaseVip(vip_linger_until_ != ha::Clock::time_point{}
                          ? "the new primary has announced it"
                          : "this node is not a serving primary");
  }
  vip_linger_until_ = {};
  if (std::string err = vip_->Acquire(); !err.empty()) {
    if (err != vip_error_) {
      vip_error_ = err;
      spdlog::error("vip: cannot take {}: {}", vip_->address().text, err);
      Raise("vip-trouble", fmt::format("the primary cannot take the virtual address {}: {}; "
                                       "clients of that address cannot reach the mail service",
                                       vip_->address().text, err));
    }
    return;
  }
  vip_held_ = true;
  vip_error_.clear();
  spdlog::warn("vip: {} taken on {} and announced ({})", vip_->address().text,
               vip_->interface(),
               vip_->address().family == AF_INET6 ? "unsolicited neighbour advertisement"
                                                  : "gratuitous ARP");
}

void Daemon::ReleaseVip(const std::string& why) {
  if (!vip_ || !vip_->Present()) {
    vip_held_ = false;
    return;
  }
  if (std::string err = vip_->Release(); !err.empty()) {
    spdlog::error("vip: cannot give up {}: {} ({}); remove it by hand: ip addr del {} dev {}",
                  vip_->address().text, err, why, vip_->address().text, vip_->interface());
    return;
  }
  vip_held_ = false;
  vip_linger_until_ = {};
  spdlog::warn("vip: {} given up ({})", vip_->address().text, why);
}

ctl::Json Daemon::VipJson() const {
  if (!vip_) return nullptr;
  return {{"address", vip_->address().text},
          {"interface", vip_->interface()},
          {"held", vip_held_},
          {"error", vip_error_}};
}

}  // namespace mailtwin
