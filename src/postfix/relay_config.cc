#include "postfix/relay_config.h"

#include <fmt/format.h>

#include "postfix/gate_config.h"

namespace mailtwin::postfix {

std::string RelaySmtpdService(const Config& cfg) { return cfg.relay_smtpd; }

std::vector<std::string> PublicServices(const Config& cfg, std::vector<std::string> services) {
  if (cfg.relay_listen.empty()) return services;
  for (auto& s : services)
    if (s == "smtp") s = RelaySmtpdService(cfg);
  return services;
}

std::vector<std::vector<std::string>> RelayCommands(const Config& cfg) {
  if (cfg.relay_listen.empty()) return {};
  std::string svc = RelaySmtpdService(cfg);
  return {
      // Postfix must leave port 25 to the relay: the public smtpd goes
      // (commented out, not deleted: `postconf -M# ` is undone by hand).
      {"-M#", "smtp/inet"},
      // Its replacement, on loopback: only this node's relay reaches it, and
      // every connection starts with the relay's PROXY header.
      {"-M", fmt::format("{}/inet={} inet n - n - - smtpd", svc, svc)},
      {"-P", fmt::format("{}/inet/smtpd_upstream_proxy_protocol=haproxy", svc)},
  };
}

RelayInspection InspectRelay(const Config& cfg) {
  RelayInspection r;
  MasterCf mc = ReadMasterCf(cfg.postfix_config_dir);
  if (!mc.error.empty()) {
    r.error = mc.error;
    return r;
  }
  std::string svc = RelaySmtpdService(cfg);
  for (const auto& [name, type, command] : mc.services) {
    if (type != "inet") continue;
    if (name == svc && command == "smtpd") r.smtpd = true;
    auto colon = name.rfind(':');
    std::string port = colon == std::string::npos ? name : name.substr(colon + 1);
    if ((port == "smtp" || port == "25") && (command == "smtpd" || command == "postscreen"))
      r.on_port_25.push_back(name);
  }
  std::string want = svc + "/inet/smtpd_upstream_proxy_protocol = haproxy";
  for (const auto& line : mc.overrides)
    if (line == want) r.proxy_protocol = true;
  return r;
}

void CheckRelay(const Config& cfg, const RelayInspection& r, ConfigErrors& out) {
  if (cfg.relay_listen.empty()) return;
  if (!r.error.empty()) {
    out.errors.push_back(r.error);
    return;
  }
  std::string fix = fmt::format("run `mailtwin postfix-config -c {} --apply`, then `postfix -c {} "
                                "reload`",
                                cfg.path, cfg.postfix_config_dir);
  std::string names;
  for (const auto& n : r.on_port_25) names += (names.empty() ? "" : ", ") + n;
  if (!names.empty())
    out.errors.push_back(fmt::format(
        "[relay] listen is {}, but Postfix in {} listens on port 25 itself (master.cf: {}): one "
        "of the two cannot bind it. {}",
        cfg.relay_listen, cfg.postfix_config_dir, names, fix));
  if (!r.smtpd)
    out.errors.push_back(fmt::format(
        "[relay] Postfix in {} has no smtpd service on {} for the relay to pass clients to: "
        "every client would be held, then closed. {}",
        cfg.postfix_config_dir, cfg.relay_smtpd, fix));
  else if (!r.proxy_protocol)
    out.errors.push_back(fmt::format(
        "[relay] the smtpd service {} of Postfix in {} does not read the PROXY protocol "
        "(smtpd_upstream_proxy_protocol = haproxy): it would take the relay's header for SMTP "
        "and see every client as 127.0.0.1. {}",
        cfg.relay_smtpd, cfg.postfix_config_dir, fix));
}

}  // namespace mailtwin::postfix
