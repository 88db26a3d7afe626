// mailtwin - the administrator's command line. Wiring only: the logic it
// drives lives in the library (config checks) or in mailtwind (control socket).
#include <chrono>
#include <cstdio>
#include <thread>
#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/config.h"
#include "ctl/control.h"
#include "common/process.h"
#include "postfix/config_check.h"
#include "postfix/gate_config.h"
#include "postfix/relay_config.h"

namespace {

using mailtwin::ctl::Json;

std::string SocketFor(const std::string& config, const std::string& socket) {
  if (!socket.empty()) return socket;
  mailtwin::ConfigErrors errs;
  auto cfg = mailtwin::LoadConfig(config, errs);
  return cfg ? cfg->control_socket : "/run/mailtwin/control.sock";
}

int CheckConfig(const std::string& path) {
  // The same routine mailtwind runs at start: it refuses what this rejects.
  auto check = mailtwin::postfix::CheckConfigFile(path);
  const auto& errs = check.problems;
  const auto& cfg = check.config;
  for (const auto& w : errs.warnings) fmt::print("warning: {}\n", w);
  for (const auto& e : errs.errors) fmt::print("error: {}\n", e);
  if (!errs.ok()) {
    fmt::print("{}: {} error(s); mailtwind will not start with this file\n", path,
               errs.errors.size());
    return 1;
  }
  fmt::print("{}: OK (node {}, cluster {}, {})\n", path, cfg->node_name, cfg->cluster,
             cfg->role == mailtwin::NodeRole::kPrimary ? "primary" : "standby");
  return 0;
}

// Both nodes side by side: this node's own view, and what the peer last
// said of itself over the replication link (NodeStatus, once a second).
void PrintNodes(const Json& s) {
  const Json& nodes = s["nodes"];
  auto col = [&](auto&& cell) {
    std::string out;
    for (const auto& n : nodes) out += fmt::format("{:<34}", cell(n));
    return out.substr(0, out.find_last_not_of(' ') + 1);
  };
  auto queues = [](const Json& n) {
    const Json& q = n["queues"];
    std::uint64_t all = 0;
    std::string parts;
    for (const char* k : {"maildrop", "incoming", "active", "deferred", "hold", "corrupt"}) {
      std::uint64_t v = q.value(k, 0);
      all += v;
      if (v) parts += fmt::format("{}{} {}", parts.empty() ? "" : ", ", k, v);
    }
    return fmt::format("{}{}{}", all, parts.empty() ? "" : ": " + parts,
                       n.value("role", "") == "standby" ? " (mirror)" : "");
  };
  fmt::print("cluster   {}\n", s.value("cluster", "?"));
  fmt::print("          {}\n", col([](const Json& n) {
               return n.value("self", false)
                          ? n.value("node", "?") + " (this node)"
                          : fmt::format("{} (said {:.1f} s ago)", n.value("node", "?"),
                                        n.value("age_s", 0.0));
             }));
  fmt::print("role      {}\n", col([](const Json& n) {
               std::string r = fmt::format("{} at epoch {}", n.value("role", "?"), n.value("epoch", 0));
               if (n.value("role", "") == "primary" && !n.value("epoch_confirmed", false))
                 r += " (unconfirmed)";
               return r + (n.value("paused", false) ? ", PAUSED" : "");
             }));
  fmt::print("postfix   {}\n", col([](const Json& n) {
               return std::string(n.value("postfix_running", false) ? "running" : "stopped") +
                      (n.value("vip_held", false) ? ", holds the VIP" : "");
             }));
  fmt::print("queue     {}\n", col(queues));
  fmt::print("disk      {}\n", col([](const Json& n) {
               std::int64_t mb = n.value("queue_free_mb", std::int64_t{-1});
               std::string free = mb < 0 ? "free space unknown" : fmt::format("{} MB free", mb);
               return n.value("queue_writable", true) ? free : free + ", NOT WRITABLE";
             }));
  if (nodes.size() < 2)
    fmt::print("          (nothing heard from the peer on the replication link yet)\n");
}

// The witness: who holds the leader key, this node's lease, each endpoint.
void PrintWitness(const Json& w) {
  std::string holder = w.contains("holder") && w["holder"].is_string()
                           ? fmt::format("{} holds {} at epoch {}", w["holder"].get<std::string>(),
                                         w.value("leader_key", "?"), w.value("holder_epoch", 0))
                       : w.contains("holder") ? fmt::format("nobody holds {}", w.value("leader_key", "?"))
                                              : std::string("the leader key is not read yet");
  fmt::print("witness   {}{}\n", w.value("reachable", false) ? "" : "UNREACHABLE: ", holder);
  if (w.contains("lease_left_s") && w.value("lease_left_s", 0.0) <= 0)
    fmt::print("          this node's lease ran out here {:.1f} s ago (a primary serves on only "
               "while its standby follows)\n",
               -w.value("lease_left_s", 0.0));
  else if (w.contains("lease_left_s"))
    fmt::print("          this node's lease: {:.1f} s left here (fences in {:.1f} s unless renewed)\n",
               w.value("lease_left_s", 0.0), w.value("fence_in_s", 0.0));
  else if (w.contains("holder_ttl_s"))
    fmt::print("          the holder's lease: {:.0f} s left by etcd\n", w.value("holder_ttl_s", 0.0));
  if (!w.value("reachable", false) && !w.value("error", "").empty())
    fmt::print("          {}\n", w.value("error", ""));
  for (const auto& e : w.value("endpoints", Json::array()))
    fmt::print("          {} {}\n", e.value("url", "?"),
               e.value("age_s", -1.0) < 0 ? std::string("not asked yet")
               : e.value("ok", false)
                   ? fmt::format("healthy ({:.0f} ms, {:.1f} s ago)", e.value("ms", 0.0),
                                 e.value("age_s", 0.0))
                   : fmt::format("FAILED: {} ({:.1f} s ago)", e.value("error", ""),
                                 e.value("age_s", 0.0)));
}

void PrintStatus(const Json& s) {
  if (s.contains("nodes") && s["nodes"].is_array() && !s["nodes"].empty()) {
    PrintNodes(s);
  } else {
    fmt::print("node      {} (cluster {})\n", s.value("node", "?"), s.value("cluster", "?"));
    fmt::print("role      {}   epoch {}\n", s.value("role", "?"), s.value("epoch", 0));
  }
  if (s.contains("ha")) {
    const Json& h = s["ha"];
    std::string flags;
    if (h.value("paused", false)) flags += "  PAUSED";
    if (s.value("role", "") == "primary" && !h.value("epoch_confirmed", false))
      flags += "  EPOCH UNCONFIRMED (not serving)";
    fmt::print("failover  {}   postfix {}{}\n", h.value("failover", "?"),
               h.value("postfix_running", false) ? "running" : "stopped", flags);
    if (s.value("role", "") == "standby")
      fmt::print("probe     {}: {} failures in a row{}  (last {:.1f} ms)\n", h.value("probe", "?"),
                 h.value("probe_failures", 0),
                 h.value("probe_error", "").empty() ? "" : " - " + h.value("probe_error", ""),
                 h.value("last_probe_ms", 0.0));
    if (!h.value("queue_writable", true))
      fmt::print("QUEUE     the queue's filesystem cannot be written\n");
    fmt::print("decision  {}\n", h.value("decision", ""));
    if (s.contains("nodes"))
      for (const auto& n : s["nodes"])
        if (!n.value("self", true))
          fmt::print("          {} says: {}\n", n.value("node", "?"), n.value("decision", ""));
    if (h.contains("vip") && h["vip"].is_object()) {
      const Json& v = h["vip"];
      fmt::print("vip       {} on {}: {}{}\n", v.value("address", "?"), v.value("interface", "?"),
                 v.value("held", false) ? "held here" : "not here",
                 v.value("error", "").empty() ? "" : " - FAILED: " + v.value("error", ""));
    }
    if (s.contains("witness") && s["witness"].is_object()) PrintWitness(s["witness"]);
    if (h.value("handover_pending", 0) > 0)
      fmt::print("handover  {} queue files set aside at a step-down (docs/failover.md)\n",
                 h.value("handover_pending", 0));
    for (const auto& e : h.value("events", Json::array()))
      fmt::print("event     #{} {} (epoch {}): {}\n", e.value("seq", 0), e.value("kind", ""),
                 e.value("epoch", 0), e.value("reason", ""));
  }
  if (!s.contains("replication")) return;
  const Json& r = s["replication"];
  if (r.value("side", "") == "primary") {
    fmt::print("link      {} -> {} ({})\n", r.value("state", "?"), r.value("peer", "?"),
               r.value("peer_node", ""));
    fmt::print("queue     {} messages\n", r.value("messages", 0));
    fmt::print("lag       {} frames unacknowledged, {} waiting to be resent\n",
               r.value("unacked_frames", 0), r.value("pending_resend", 0));
    fmt::print("lag ms    p50 {:.2f}  p99 {:.2f}  ({} samples)\n", r.value("lag_p50_ms", 0.0),
               r.value("lag_p99_ms", 0.0), r.value("lag_samples", 0));
    fmt::print("done ms   p50 {:.2f}  p99 {:.2f}  ({} samples)\n", r.value("done_lag_p50_ms", 0.0),
               r.value("done_lag_p99_ms", 0.0), r.value("done_lag_samples", 0));
  } else {
    fmt::print("link      {} (primary {})\n", r.value("state", "?"), r.value("peer_node", ""));
    fmt::print("mirror    {} queue files, {} logs, applied seq {}\n", r.value("mirror_files", 0),
               r.value("mirror_logs", 0), r.value("applied_seq", 0));
  }
  if (s.contains("gate")) {
    const Json& g = s["gate"];
    fmt::print("gate      {} (sync_timeout {} ms): {} waiting, {} messages, p50 {:.2f} ms p99 {:.2f} ms\n",
               g.value("durability", "?"), g.value("sync_timeout_ms", 0), g.value("waiting", 0),
               g.value("messages", 0), g.value("hold_p50_ms", 0.0), g.value("hold_p99_ms", 0.0));
    fmt::print("protect   {} unprotected now (oldest {:.1f} s), {} since start, {} refused\n",
               g.value("unprotected", 0), g.value("oldest_unprotected_s", 0.0),
               g.value("unprotected_total", 0), g.value("refused", 0));
    if (g.value("durability", "") == "strict")
      fmt::print("hold      {} released from hold/ once the standby held them, {} refused (451)\n",
                 g.value("released", 0), g.value("refused", 0));
  }
  if (s.contains("dedup")) {
    const Json& d = s["dedup"];
    fmt::print("dedup     {} duplicates answered 250 and not queued again; {} inherited messages "
               "kept {} s; {} recent fingerprints\n",
               d.value("duplicates", 0), d.value("entries", 0), d.value("retention_s", 0),
               d.value("recent_fingerprints", 0));
  }
  std::string err = r.value("last_error", "");
  if (!err.empty()) fmt::print("last err  {}\n", err);
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Prints (or runs) the postconf commands that put the relay and the gate
// into Postfix (relay_only: the relay's part alone).
int PostfixConfig(const std::string& path, const std::vector<std::string>& services, bool apply,
                  bool relay_only) {
  mailtwin::ConfigErrors errs;
  auto cfg = mailtwin::LoadConfig(path, errs);
  if (!cfg) {
    for (const auto& e : errs.errors) fmt::print(stderr, "error: {}\n", e);
    return 1;
  }
  // The relay's part first: the gate then sits behind the relay's smtpd.
  auto cmds = mailtwin::postfix::RelayCommands(*cfg);
  if (!relay_only) {
    auto gate = mailtwin::postfix::GateCommands(
        *cfg, mailtwin::postfix::PublicServices(*cfg, services));
    cmds.insert(cmds.end(), gate.begin(), gate.end());
  }
  if (!apply) {
    fmt::print("# Postfix settings for the mailtwin relay and gate of node {} (durability {}).\n"
               "# Run them on this node, then: postfix -c {} reload\n"
               "# (or let `mailtwin postfix-config --apply` run them).\n",
               cfg->node_name, mailtwin::DurabilityName(cfg->durability),
               cfg->postfix_config_dir);
    for (const auto& c : cmds) {
      std::string line = "postconf -c " + ShellQuote(cfg->postfix_config_dir);
      for (const auto& a : c) line += " " + ShellQuote(a);
      fmt::print("{}\n", line);
    }
    return 0;
  }
  for (const auto& c : cmds) {
    std::vector<std::string> argv{"postconf", "-c", cfg->postfix_config_dir};
    argv.insert(argv.end(), c.begin(), c.end());
    auto r = mailtwin::RunCommand(argv);
    if (!r.ok()) {
      fmt::print(stderr, "mailtwin: postconf {} failed: {}\n", fmt::join(c, " "), r.output);
      return 1;
    }
  }
  fmt::print("applied {} settings to {}; run: postfix -c {} reload\n", cmds.size(),
             cfg->postfix_config_dir, cfg->postfix_config_dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mailtwin: administer a mailtwin node"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "mailtwin " MAILTWIN_VERSION);
  std::string config = "/etc/mailtwin/mailtwin.toml";
  std::string socket;
  app.add_option("-c,--config", config,
                 "this node's configuration file: status and the other commands find the "
                 "control socket there, postfix-config the Postfix instance and the gate")
      ->capture_default_str();
  app.add_option("--socket", socket, "control socket path (overrides the config)");

  auto* check = app.add_subcommand("check-config", "validate a configuration file and explain "
                                                   "every problem");
  std::string check_path;
  check->add_option("file", check_path, "configuration file")->required();

  auto* status = app.add_subcommand("status", "show this node's role, link and lag");
  bool json = false;
  status->add_flag("--json", json, "print JSON");

  auto* promote = app.add_subcommand("promote", "make this standby the primary (failover)");
  bool force = false;
  promote->add_flag("--force", force,
                    "promote even though the checks have not found the primary down (make sure "
                    "it is stopped: otherwise both deliver); on a primary waiting for its peer, "
                    "serve without the peer's confirmation");
  auto* switchover = app.add_subcommand(
      "switchover", "hand the primary role to the other node: intake stops, the standby gets "
                    "every change, roles swap (run it on either node)");
  auto* failback = app.add_subcommand(
      "failback", "switch the primary role back to the [failover] preferred node");
  auto* pause = app.add_subcommand("pause", "suspend automatic actions (maintenance)");
  auto* resume = app.add_subcommand("resume", "resume automatic actions");
  auto* events = app.add_subcommand("events", "list this node's recent events");
  int events_n = 20;
  events->add_option("-n", events_n, "how many")->capture_default_str();

  auto* inspect = app.add_subcommand("inspect", "show what this node knows of one queue ID");
  std::string inspect_id;
  inspect->add_option("id", inspect_id, "queue ID")->required();

  auto* pfc = app.add_subcommand("postfix-config",
                                 "print the postconf commands that route mail through the gate");
  std::vector<std::string> services{"smtp"};
  bool apply = false;
  pfc->add_option("--service", services, "master.cf inet services to gate (default: smtp)");
  pfc->add_flag("--apply", apply, "run the commands instead of printing them");
  bool relay_only = false;
  pfc->add_flag("--relay-only", relay_only,
                "only the relay's part ([relay] listen: Postfix leaves port 25 to mailtwind)");

  CLI11_PARSE(app, argc, argv);
  if (*pfc) return PostfixConfig(config, services, apply, relay_only);

  if (*check) return CheckConfig(check_path);
  std::string sock = SocketFor(config, socket);
  if (*status) {
    Json s = mailtwin::ctl::Call(sock, Json{{"cmd", "status"}});
    if (!s.value("ok", false)) {
      fmt::print(stderr, "mailtwin: {}\n", s.value("error", "failed"));
      return 1;
    }
    if (json) fmt::print("{}\n", s.dump(2));
    else PrintStatus(s);
    return 0;
  }
  if (*switchover || *failback) {
    std::string cmd = *switchover ? "switchover" : "failback";
    Json before = mailtwin::ctl::Call(sock, Json{{"cmd", "status"}});
    std::string role = before.value("role", "");
    Json r = mailtwin::ctl::Call(sock, Json{{"cmd", cmd}});
    if (!r.value("ok", false)) {
      fmt::print(stderr, "mailtwin: {} refused: {}\n", cmd, r.value("error", "?"));
      return 1;
    }
    // Wait for this node's role to flip (20 s at most: deliveries get 3 s,
    // intake 1 s, the standby 5 s to acknowledge and 5 s to take over).
    for (int i = 0; i < 400; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      Json s = mailtwin::ctl::Call(sock, Json{{"cmd", "status"}});
      if (s.value("role", role) != role) {
        fmt::print("{}: this node is {} now (epoch {})", cmd, s.value("role", "?"),
                   s.value("epoch", 0));
        // The node that handed its role over knows how long its intake
        // stood still (until the standby took over).
        double t = s.contains("ha") ? s["ha"].value("last_handover_s", -1.0) : -1.0;
        if (role == "primary" && t >= 0)
          fmt::print("; intake here stopped {:.3f} s before the standby took over", t);
        fmt::print("\n");
        return 0;
      }
    }
    fmt::print(stderr, "mailtwin: {}: the role did not move within 20 s; see `mailtwin status` and "
                       "the log\n", cmd);
    return 1;
  }
  if (*pause || *resume) {
    Json r = mailtwin::ctl::Call(sock, Json{{"cmd", *pause ? "pause" : "resume"}});
    if (!r.value("ok", false)) {
      fmt::print(stderr, "mailtwin: {}\n", r.value("error", "failed"));
      return 1;
    }
    fmt::print("automatic actions {}\n", *pause ? "paused" : "resumed");
    return 0;
  }
  if (*events) {
    Json r = mailtwin::ctl::Call(sock, Json{{"cmd", "events"}, {"n", events_n}});
    if (!r.value("ok", false)) {
      fmt::print(stderr, "mailtwin: {}\n", r.value("error", "failed"));
      return 1;
    }
    for (const auto& e : r["events"])
      fmt::print("#{} {} {} {} epoch {}: {}\n", e.value("seq", 0), e.value("time", 0),
                 e.value("kind", ""), e.value("role", ""), e.value("epoch", 0),
                 e.value("reason", ""));
    return 0;
  }
  if (*inspect) {
    Json r = mailtwin::ctl::Call(sock, Json{{"cmd", "inspect"}, {"id", inspect_id}});
    fmt::print("{}\n", r.dump(2));
    return r.value("ok", false) ? 0 : 1;
  }
  if (*promote) {
    Json r = mailtwin::ctl::Call(sock, Json{{"cmd", "promote"}, {"force", force}});
    for (const auto& st : r.value("steps", Json::array())) fmt::print("  {}\n", st.get<std::string>());
    if (!r.value("ok", false)) {
      fmt::print(stderr, "mailtwin: promote failed: {}\n", r.value("error", "?"));
      return 1;
    }
    fmt::print("promoted: this node is the primary now (epoch {})\n", r.value("epoch", 0));
    return 0;
  }
  return 0;
}
