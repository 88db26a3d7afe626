// daemon_witness.cc - the etcd witness in the daemon's loop (ha/witness.h,
// docs/failover.md "The witness"): every decision of ha::Decide passes
// through ha::StepWitness, which may hold back a start or a take-over, add a
// fence, and name the request to send; answers come back from etcd's client
// (node/etcd_client.h) on this loop and are folded in by ha::AbsorbWitness.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/epoch.h"
#include "node/daemon.h"

namespace mailtwin {

ha::Decision Daemon::Witness(ha::Decision d, ha::Clock::time_point now) {
  ha::WitnessFacts f;
  f.role = roles_.role();
  f.epoch = roles_.epoch();
  f.self = cfg_.node_name;
  f.postfix_running = postfix_->Running();
  f.epoch_confirmed = epoch_confirmed_;
  if (primary_) {
    // The standby takes over only after peer_timeout of silence: heard
    // within half of that, it cannot be taking over (ha::HaConfig::lease).
    // So is a link just started that was never live yet (a switchover's new
    // primary, whose standby is the old primary stepping down to follow
    // it): for half of peer_timeout from the primary side's start.
    const auto& link = primary_->link();
    auto rx = link.last_rx();
    f.link_live = (rx && now - *rx < ha_.lease()) ||
                  (!link.ever_live() && now - primary_started_ < ha_.lease());
  }
  f.decided = std::move(d);
  auto step = ha::StepWitness(wstate_, f, wcfg_, now);
  wstate_ = step.state;
  witness_summary_ = step.summary;
  if (step.request != ha::WitnessRequest::kNone)
    SendWitness(step.request, step.claim_epoch, step.claim_exact, step.decision.reason);

  if (step.step_down_to && roles_.primary()) {
    std::uint64_t e = *step.step_down_to;
    if (!EpochBelievable(roles_.epoch(), e)) {
      if (e != refused_epoch_) {
        refused_epoch_ = e;
        Raise("epoch-refused", fmt::format("the witness claims epoch {}, beyond what this node "
                                           "(epoch {}) can believe: check the etcd keys {}",
                                           e, roles_.epoch(), cfg_.WitnessKey("")));
      }
    } else {
      asio::post(io_, [this, e, why = step.decision.reason] {
        if (roles_.primary() && e > roles_.epoch()) StepDown(e, why);
      });
    }
  }

  // Told once while it lasts; "witness-back" when it answers again.
  if (wstate_.unreachable_since && now - *wstate_.unreachable_since >= wcfg_.lost_after) {
    if (!witness_lost_told_) {
      witness_lost_told_ = true;
      Raise("witness-lost",
            fmt::format("the witness (etcd at {}) does not answer: {}. {}", 
                        fmt::join(cfg_.witness_endpoints, ", "), wstate_.error,
                        roles_.primary()
                            ? "A primary serves on only while its standby follows, and fences "
                              "itself if it loses the standby too"
                            : "No failover decision is taken without it"));
    }
  } else if (!wstate_.unreachable_since && wstate_.last_ok && witness_lost_told_) {
    witness_lost_told_ = false;
    Raise("witness-back", "the witness (etcd) answers again: " + witness_summary_);
  }
  return step.decision;
}

void Daemon::SendWitness(ha::WitnessRequest r, std::uint64_t epoch, bool exact,
                         std::string reason) {
  if (!witness_) return;
  if (r != ha::WitnessRequest::kRelease) {
    wstate_.in_flight = r;
    wstate_.last_sent = std::chrono::steady_clock::now();
  }
  witness_->Submit(r, wstate_.lease_id, epoch, exact,
                   [this, reason = std::move(reason)](const ha::WitnessAnswer& a) {
                     OnWitnessAnswer(a, reason);
                   });
}

void Daemon::OnWitnessAnswer(const ha::WitnessAnswer& a, const std::string& reason) {
  auto now = std::chrono::steady_clock::now();
  bool held = ha::LeaseHeld(wstate_, wcfg_, now);
  wstate_ = ha::AbsorbWitness(wstate_, a, cfg_.node_name, now);
  if (!a.ok) {
    if (a.error != witness_error_logged_)
      spdlog::warn("witness: {} failed: {}", ha::WitnessRequestName(a.request), a.error);
    witness_error_logged_ = a.error;
    return;
  }
  if (!witness_error_logged_.empty()) spdlog::info("witness: etcd answers again");
  witness_error_logged_.clear();
  bool now_held = ha::LeaseHeld(wstate_, wcfg_, now);
  if (held && !now_held)
    spdlog::warn("witness: this node no longer holds the leader key ({})",
                 wstate_.key && wstate_.key->exists
                     ? fmt::format("{} holds it at epoch {}", wstate_.key->holder,
                                   wstate_.key->epoch)
                     : std::string("nobody holds it"));
  if (a.request != ha::WitnessRequest::kClaim) return;
  if (!a.claimed) {
    if (a.key && a.key->exists)
      spdlog::info("witness: the leader key is {}'s at epoch {}: not claimed", a.key->holder,
                   a.key->epoch);
    Evaluate(now);  // a newer epoch in the store: step down now
    return;
  }
  spdlog::warn("witness: this node holds the leader key {} at epoch {} (lease {:x}, {} s)",
               cfg_.WitnessKey("leader"), a.epoch, a.lease_id, a.ttl.count() / 1000);
  if (roles_.role() == NodeRole::kStandby) {
    // The store ordered this take-over: its epoch is the new one.
    TakeOver(fmt::format("{}; the witness's leader key acquired at epoch {}", reason, a.epoch),
             std::nullopt, a.epoch);
    return;
  }
  Evaluate(now);  // a primary waiting for its lease serves now
}

void Daemon::ReleaseWitness() {
  if (!witness_ || !wstate_.lease_id) return;
  SendWitness(ha::WitnessRequest::kRelease, 0, false, "step-down");
  wstate_.lease_id = 0;
  wstate_.valid_until.reset();
}

ctl::Json Daemon::WitnessJson() const {
  if (!witness_) return nullptr;
  auto now = std::chrono::steady_clock::now();
  ctl::Json eps = ctl::Json::array();
  for (const auto& h : witness_->Health())
    eps.push_back({{"url", h.url}, {"ok", h.ok}, {"error", h.error}, {"ms", h.ms},
                   {"age_s", h.age_s}});
  ctl::Json j{{"endpoints", eps},
              {"leader_key", cfg_.WitnessKey("leader")},
              {"ttl_s", cfg_.witness_ttl.count() / 1000},
              {"reachable", wstate_.last_ok && !wstate_.unreachable_since},
              {"error", wstate_.error},
              {"summary", witness_summary_},
              {"store_epoch", wstate_.store_epoch},
              {"lease_held", ha::LeaseHeld(wstate_, wcfg_, now)}};
  if (wstate_.unreachable_since)
    j["unreachable_s"] = std::chrono::duration<double>(now - *wstate_.unreachable_since).count();
  // This node's lease: how long it certainly holds here, and when it fences.
  if (wstate_.lease_id && wstate_.valid_until) {
    j["lease_left_s"] = std::chrono::duration<double>(*wstate_.valid_until - now).count();
    j["fence_in_s"] =
        std::chrono::duration<double>(*wstate_.valid_until - wcfg_.fence_margin - now).count();
  }
  if (wstate_.key && wstate_.key_read_at) {
    const auto& k = *wstate_.key;
    j["holder"] = k.exists ? ctl::Json(k.holder) : ctl::Json(nullptr);
    j["holder_epoch"] = k.epoch;
    if (k.ttl_left) j["holder_ttl_s"] = k.ttl_left->count() / 1000.0;
    j["read_age_s"] = std::chrono::duration<double>(now - *wstate_.key_read_at).count();
  }
  return j;
}

}  // namespace mailtwin
