#include "node/status_json.h"

#include <sys/resource.h>

#include "gate/gate.h"
#include "node/mirror_side.h"
#include "node/primary_side.h"
#include "relay/relay.h"

namespace mailtwin {

double CpuMs() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  auto ms = [](const timeval& tv) { return tv.tv_sec * 1000.0 + tv.tv_usec / 1000.0; };
  return ms(ru.ru_utime) + ms(ru.ru_stime);
}

ctl::Json HaJson(const HaSnapshot& s) {
  ctl::Json recent = ctl::Json::array();
  for (const auto& e : s.recent_events) recent.push_back(e.ToJson());
  ctl::Json actions = ctl::Json::array();
  for (auto a : s.decision.actions) actions.push_back(std::string(ha::ActionName(a)));
  const HandoverSink* sink = s.primary ? s.primary->sink() : nullptr;
  return {{"failover", s.auto_failover ? "auto" : "manual"},
          {"paused", s.paused},
          {"epoch_confirmed", s.epoch_confirmed},
          {"postfix_running", s.postfix_running},
          {"postfix_kept_stopped", s.postfix_kept_stopped},
          {"queue_writable", s.queue_writable},
          {"queue_free_mb", s.queue_free_mb},
          {"decision", s.decision.reason},
          {"decision_actions", actions},
          {"decided_unix",
           std::chrono::duration_cast<std::chrono::seconds>(s.decided_at.time_since_epoch())
               .count()},
          {"probe", s.probe},
          {"probes", s.probes},
          {"probe_failures", s.probe_failures},
          {"probe_serial_failures", s.probe_serial_failures},
          {"probe_error", s.probe_error},
          {"last_probe_ms", s.last_probe_ms},
          {"primary_seen", s.primary_seen},
          {"handover_pending", s.handover_pending},
          {"handover_received", sink ? ctl::Json{{"imported", sink->stats().imported},
                                                 {"queued", sink->stats().queued},
                                                 {"finished", sink->stats().finished},
                                                 {"resent", sink->stats().resent},
                                                 {"refused", sink->stats().refused}}
                                     : ctl::Json(nullptr)},
          {"ledger_ids", s.ledger_ids},
          {"preferred", s.preferred},
          {"failback", s.auto_failback ? "auto" : "manual"},
          {"switching", s.switching},
          {"last_handover_s", s.last_switch_pause_s.value_or(-1)},
          {"vip", s.vip},
          {"events", recent}};
}

ctl::Json NodeJson(const std::string& node, const repl::msg::NodeStatus& m) {
  using NS = repl::msg::NodeStatus;
  ctl::Json q = ctl::Json::object();
  for (Queue k : kAllQueues)
    q[std::string(QueueName(k))] = m.queues[static_cast<std::size_t>(k) - 1];
  return {{"node", node},
          {"role", m.role == repl::Role::kPrimary ? "primary" : "standby"},
          {"epoch", m.epoch},
          {"paused", (m.flags & NS::kPaused) != 0},
          {"postfix_running", (m.flags & NS::kPostfixRunning) != 0},
          {"epoch_confirmed", (m.flags & NS::kEpochConfirmed) != 0},
          {"vip_held", (m.flags & NS::kVipHeld) != 0},
          {"queue_writable", (m.flags & NS::kQueueWritable) != 0},
          {"queue_free_mb", m.queue_free_mb},
          {"queues", q},
          {"decision", m.decision}};
}

ctl::Json PrimaryReplicationJson(const PrimarySide& p, const Config& cfg) {
  const auto& ws = p.watcher().stats();
  const auto& link = p.link();
  const auto& lag = link.lag();
  return {{"side", "primary"},
          {"state", std::string(repl::PrimaryLink::StateName(link.state()))},
          {"peer", cfg.peer},
          {"peer_node", link.peer_node()},
          {"messages", p.model().size()},
          {"sent_seq", link.sent_seq()},
          {"acked_seq", link.acked_seq()},
          {"unacked_frames", link.sent_seq() - link.acked_seq()},
          {"pending_resend", link.pending_resend()},
          {"queued_bytes", link.queued_bytes()},
          {"files_sent", link.files_sent()},
          {"bytes_sent", link.bytes_sent()},
          {"lag_samples", lag.count()},
          {"lag_p50_ms", lag.Quantile(0.5)},
          {"lag_p99_ms", lag.Quantile(0.99)},
          {"ship_p50_ms", link.ship_lag().Quantile(0.5)},
          {"ship_p99_ms", link.ship_lag().Quantile(0.99)},
          // A finished delivery's done mark or removal, Postfix -> standby.
          {"done_lag_samples", link.done_lag().count()},
          {"done_lag_p50_ms", link.done_lag().Quantile(0.5)},
          {"done_lag_p99_ms", link.done_lag().Quantile(0.99)},
          {"done_read_p99_ms", link.done_read().Quantile(0.99)},
          {"done_ship_p99_ms", link.done_ship().Quantile(0.99)},
          {"last_catchup_s", link.last_catchup_seconds().value_or(-1)},
          {"last_error", link.last_error()},
          // After a failover, until the first standby acknowledges: the
          // gate answers at once rather than waiting for a replica.
          {"no_standby_since_takeover", p.awaiting_first_standby()},
          {"watcher",
           {{"events", ws.events},
            {"syncs", ws.syncs},
            {"overflows", ws.overflows},
            {"rescans", ws.rescans},
            {"read_races", ws.read_races}}}};
}

ctl::Json GateJson(const gate::Gate& g, const Config& cfg) {
  const auto& gs = g.stats();
  const auto& hold = g.hold_ms();
  return {{"durability", std::string(DurabilityName(cfg.durability))},
          {"listen", cfg.gate_listen},
          {"sync_timeout_ms", cfg.sync_timeout.count()},
          {"sessions", gs.sessions},
          {"active_sessions", gs.active_sessions},
          {"messages", gs.messages},
          {"waiting", g.waiting()},
          {"replicated", gs.replicated},
          {"gone_before_replica", gs.gone},
          {"unprotected", g.unprotected()},
          {"unprotected_ids", g.unprotected_ids(64)},
          {"unprotected_total", gs.unprotected_total},
          {"oldest_unprotected_s", g.oldest_unprotected_s().value_or(0)},
          {"refused", gs.refused},
          {"released", gs.released},
          {"abandoned", gs.abandoned},
          {"errors", gs.errors},
          {"duplicates", gs.duplicates},
          {"hold_samples", hold.count()},
          {"hold_p50_ms", hold.Quantile(0.5)},
          {"hold_p99_ms", hold.Quantile(0.99)}};
}

ctl::Json StandbyReplicationJson(const MirrorSide& side) {
  const auto& mirror = side.mirror();
  const auto& server = side.server();
  const auto& ms = mirror.stats();
  return {{"side", "standby"},
          {"state", std::string(repl::StandbyServer::StateName(server.state()))},
          {"peer_node", server.peer_node()},
          {"applied_seq", server.applied_seq()},
          {"mirror_files", mirror.files().size()},
          {"mirror_logs", mirror.logs().size()},
          {"applied", ms.applied},
          {"commits", ms.commits},
          {"fsyncs", ms.fsyncs},
          {"syncfs", ms.syncfs},
          {"recycled_inodes", ms.recycled},
          {"commit_ms_avg", ms.commits ? mirror.commit_latency().sum() / ms.commits : 0.0},
          {"commit_ms_max", ms.commit_ms_max},
          {"commit_p50_ms", mirror.commit_latency().Quantile(0.5)},
          {"commit_p99_ms", mirror.commit_latency().Quantile(0.99)},
          {"batch_p50_ms", server.batch_latency().Quantile(0.5)},
          {"batch_p99_ms", server.batch_latency().Quantile(0.99)},
          {"last_error", server.last_error()}};
}

ctl::Json InspectJson(const std::string& id, const repl::QueueModel* model,
                      const repl::Mirror& mirror) {
  ctl::Json j{{"ok", true}, {"id", id}};
  auto logs_json = [](auto&& get) {
    ctl::Json out = ctl::Json::object();
    for (LogKind k : kAllLogKinds) get(k, out);
    return out;
  };
  if (model) {
    const repl::MessageState* st = model->Find(id);
    if (!st) {
      j["primary"] = nullptr;
    } else {
      j["primary"] = {{"queue", std::string(QueueName(st->file.queue))},
                      {"path", st->file.relpath},
                      {"size", st->file.layout.size},
                      {"mode", st->file.mode},
                      {"mtime_ns", st->file.mtime_ns},
                      {"digest", st->file.digest},
                      {"logs", logs_json([&](LogKind k, ctl::Json& out) {
                         const auto& l = st->logs[static_cast<int>(k) - 1];
                         if (l)
                           out[std::string(LogKindName(k))] = {{"path", l->relpath},
                                                               {"size", l->size}};
                       })}};
    }
  }
  auto it = mirror.files().find(id);
  j["mirror"] = it == mirror.files().end()
                    ? ctl::Json(nullptr)
                    : ctl::Json{{"queue", std::string(QueueName(it->second.queue))},
                                {"size", it->second.size},
                                {"mode", it->second.mode},
                                {"mtime_ns", it->second.mtime_ns}};
  j["mirror_logs"] = logs_json([&](LogKind k, ctl::Json& out) {
    auto lit = mirror.logs().find({k, id});
    if (lit != mirror.logs().end()) out[std::string(LogKindName(k))] = {{"size", lit->second.size}};
  });
  return j;
}

ctl::Json RelayJson(const relay::Relay& r, const Config& cfg) {
  const auto& s = r.stats();
  return {{"route", relay::RouteName(r.route())},
          {"listen", cfg.relay_listen},
          {"sessions", s.sessions},
          {"active", s.active},
          {"held", s.held},
          {"held_total", s.held_total},
          {"hold_expired", s.hold_expired},
          {"handed_back", s.handed_back},
          {"held_max_s", s.held_max_s},
          {"to_local", s.to_local},
          {"to_peer", s.to_peer},
          {"from_peer", s.from_peer},
          {"rejected", s.rejected}};
}

}  // namespace mailtwin
