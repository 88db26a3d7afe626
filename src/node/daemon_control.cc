// daemon_control.cc - what `mailtwin` asks of the daemon over the control
// socket (ctl/control.h): status, inspect, promote, switchover, failback,
// pause, resume, events.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "node/daemon.h"
#include "node/status_json.h"

namespace mailtwin {

ctl::Json Daemon::Handle(const ctl::Json& req) {
  Busy b(*this);  // a command may block (promote)
  std::string cmd = req.value("cmd", "");
  if (cmd == "status") return Status();
  if (cmd == "promote") return Promote(req);
  if (cmd == "inspect")
    return InspectJson(req.value("id", ""), primary_ ? &primary_->model() : nullptr,
                       mirror_side_->mirror());
  if (cmd == "switchover" || cmd == "failback") {
    std::string reason = cmd == "failback" ? "mailtwin failback" : "mailtwin switchover";
    if (cmd == "failback") {
      if (cfg_.preferred.empty())
        return {{"ok", false}, {"error", "no [failover] preferred node is configured"}};
      bool here_preferred = cfg_.preferred == cfg_.node_name;
      if (roles_.primary() == here_preferred)
        return {{"ok", false},
                {"error", fmt::format("the preferred node {} is already the primary",
                                      cfg_.preferred)}};
    }
    if (roles_.primary()) return StartSwitchover(reason, cmd);
    return RequestSwitchover(reason, cmd);
  }
  if (cmd == "pause") return SetPaused(true);
  if (cmd == "resume") return SetPaused(false);
  if (cmd == "events") {
    ctl::Json list = ctl::Json::array();
    for (const auto& e : events_.Recent(req.value("n", 20))) list.push_back(e.ToJson());
    return {{"ok", true}, {"events", list}};
  }
  return ctl::Json{{"ok", false}, {"error", fmt::format("unknown command '{}'", cmd)}};
}

ctl::Json Daemon::Status() {
  ctl::Json j{{"ok", true},
              {"node", cfg_.node_name},
              {"cluster", cfg_.cluster},
              {"role", std::string(RoleName(roles_.role()))},
              {"epoch", roles_.epoch()},
              {"uptime_s", std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                         started_).count()},
              {"cpu_ms", CpuMs()},
              {"queue_directory", queue_dir_},
              {"mirror_directory", mirror_dir_}};
  HaSnapshot ha;
  ha.auto_failover = cfg_.auto_failover;
  ha.paused = roles_.state().paused;
  ha.epoch_confirmed = roles_.primary() && epoch_confirmed_;
  ha.postfix_running = postfix_->Running();
  ha.postfix_kept_stopped = postfix_->KeptStopped();
  ha.queue_writable = fs_probe_->writable();
  ha.queue_free_mb = fs_probe_->free_mb();
  ha.decision = last_decision_;
  ha.decided_at = last_decision_at_;
  ha.probe = cfg_.probe;
  ha.probes = probe_.probes();
  ha.probe_failures = probe_.failures();
  ha.probe_serial_failures = probe_.serial_failures();
  ha.probe_error = probe_.error();
  ha.last_probe_ms = probe_.last_ms();
  ha.primary_seen = primary_seen_;
  ha.handover_pending = handover_pending_;
  ha.primary = primary_.get();
  ha.ledger_ids = ledger_.size();
  ha.preferred = cfg_.preferred;
  ha.auto_failback = cfg_.auto_failback;
  ha.switching = switching_.has_value();
  ha.last_switch_pause_s = last_switch_pause_s_;
  ha.vip = VipJson();
  ha.recent_events = events_.Recent(5);
  j["ha"] = HaJson(ha);

  ctl::Json nodes = ctl::Json::array();
  nodes.push_back(NodeJson(cfg_.node_name, SelfStatus()));
  nodes.back()["self"] = true;
  if (peer_status_) {
    nodes.push_back(NodeJson(peer_status_node_, *peer_status_));
    nodes.back()["self"] = false;
    nodes.back()["age_s"] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - peer_status_at_).count();
  }
  j["nodes"] = nodes;
  j["dedup"] = DedupJson();
  if (relay_) j["relay"] = RelayJson(*relay_, cfg_);
  if (witness_) j["witness"] = WitnessJson();
  if (primary_) {
    j["replication"] = PrimaryReplicationJson(*primary_, cfg_);
    if (primary_->gate()) j["gate"] = GateJson(*primary_->gate(), cfg_);
  } else if (roles_.role() == NodeRole::kStandby) {
    j["replication"] = StandbyReplicationJson(*mirror_side_);
  }
  return j;
}

ctl::Json Daemon::Promote(const ctl::Json& req) {
  bool force = req.value("force", false);
  if (roles_.primary() && !promotion_failed_.empty())
    // The last take-over stopped before the mirror was live; the operator
    // fixed the cause: the take-over runs again (at the next epoch).
    return TakeOver("promote by the operator, again after: " + promotion_failed_);
  if (roles_.primary()) {
    if (epoch_confirmed_) return {{"ok", false}, {"error", "this node is already the primary"}};
    if (!force)
      return {{"ok", false},
              {"error", "this node is a primary waiting for its peer to confirm the epoch; "
                        "promote --force serves without it (only if the peer is certainly down)"}};
    FinishTakeOver();  // nothing to do unless a take-over was cut short
    if (!promotion_failed_.empty()) return {{"ok", false}, {"error", promotion_failed_}};
    auto next = roles_.NextEpoch();
    if (!next) return {{"ok", false}, {"error", "the epoch cannot grow any further"}};
    if (std::string err = roles_.Become(NodeRole::kPrimary, *next); !err.empty())
      return {{"ok", false}, {"error", err}};
    epoch_confirmed_ = true;
    unconfirmed_since_.reset();
    // The link introduces itself with the new epoch (its Hello carries it).
    primary_.reset();
    if (std::string err = StartPrimarySide(); !err.empty())
      spdlog::error("promote --force: replication could not start again: {}", err);
    Raise("promotion", "promote --force: serving without the peer's confirmation");
    asio::post(io_, [this] { Tick(); });
    return {{"ok", true}, {"epoch", roles_.epoch()}, {"steps", {"epoch confirmed by the operator"}}};
  }
  if (!force && last_decision_.condition != ha::Condition::kPrimaryLost)
    return {{"ok", false},
            {"error", fmt::format("the primary is not known to be down ({}); use promote --force "
                                  "only once it is certainly stopped (otherwise both deliver)",
                                  last_decision_.reason)}};
  if (witness_ && !force) {
    // The witness orders take-overs: the key first, then the take-over
    // (OnWitnessAnswer), or nothing if the primary still holds it.
    SendWitness(ha::WitnessRequest::kClaim,
                std::max(roles_.epoch(), wstate_.store_epoch) + 1, false, "promote by the operator");
    return {{"ok", true},
            {"epoch", roles_.epoch()},
            {"steps", {"claiming the witness's leader key: the take-over follows once etcd grants "
                       "it (see `mailtwin status`)"}}};
  }
  return TakeOver(force ? "promote --force by the operator" : "promote by the operator");
}

ctl::Json Daemon::SetPaused(bool paused) {
  if (std::string err = roles_.SetPaused(paused); !err.empty())
    return {{"ok", false}, {"error", err}};
  spdlog::warn("automatic actions {}", paused ? "paused (maintenance)" : "resumed");
  Raise(paused ? "paused" : "resumed",
        paused ? "the administrator paused automatic actions" : "automatic actions resumed");
  return {{"ok", true}, {"paused", paused}};
}

}  // namespace mailtwin
