// mailtwin - the administrator's command line. Wiring only: the logic it
// drives lives in the library (config checks) or in mailtwind (control socket).
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "common/config.h"
#include "ctl/control.h"

namespace {

using mailtwin::ctl::Json;

std::string SocketFor(const std::string& config, const std::string& socket) {
  if (!socket.empty()) return socket;
  mailtwin::ConfigErrors errs;
  auto cfg = mailtwin::LoadConfig(config, errs);
  return cfg ? cfg->control_socket : "/run/mailtwin/control.sock";
}

int CheckConfig(const std::string& path) {
  mailtwin::ConfigErrors errs;
  auto cfg = mailtwin::LoadConfig(path, errs);
  if (cfg) mailtwin::CheckEnvironment(*cfg, errs);
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

void PrintStatus(const Json& s) {
  fmt::print("node      {} (cluster {})\n", s.value("node", "?"), s.value("cluster", "?"));
  fmt::print("role      {}   epoch {}\n", s.value("role", "?"), s.value("epoch", 0));
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
  } else {
    fmt::print("link      {} (primary {})\n", r.value("state", "?"), r.value("peer_node", ""));
    fmt::print("mirror    {} queue files, {} logs, applied seq {}\n", r.value("mirror_files", 0),
               r.value("mirror_logs", 0), r.value("applied_seq", 0));
  }
  std::string err = r.value("last_error", "");
  if (!err.empty()) fmt::print("last err  {}\n", err);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mailtwin: administer a mailtwin node"};
  app.require_subcommand(1);
  std::string config = "/etc/mailtwin/mailtwin.toml";
  std::string socket;
  app.add_option("-c,--config", config, "configuration file (to find the control socket)")
      ->capture_default_str();
  app.add_option("--socket", socket, "control socket path (overrides the config)");

  auto* check = app.add_subcommand("check-config", "validate a configuration file and explain "
                                                   "every problem");
  std::string check_path;
  check->add_option("file", check_path, "configuration file")->required();

  auto* status = app.add_subcommand("status", "show this node's role, link and lag");
  bool json = false;
  status->add_flag("--json", json, "print JSON");

  auto* promote = app.add_subcommand("promote", "make this standby the primary");
  bool force = false;
  promote->add_flag("--force", force,
                    "required: promote even though no automatic check has confirmed that the "
                    "primary is stopped");

  auto* inspect = app.add_subcommand("inspect", "show what this node knows of one queue ID");
  std::string inspect_id;
  inspect->add_option("id", inspect_id, "queue ID")->required();

  CLI11_PARSE(app, argc, argv);

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
