#include "postfix/gate_config.h"

#include <charconv>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "common/process.h"

namespace mailtwin::postfix {

const char* const kStrictHold = "check_client_access,static:HOLD";

AfterFilterService AfterFilterOf(const Config& cfg) {
  const std::string& af = cfg.gate_after_filter;
  if (af.rfind("unix:", 0) == 0) {
    std::string path = af.substr(5);
    return {path.substr(path.rfind('/') + 1), "unix"};
  }
  return {af, "inet"};
}

std::vector<std::vector<std::string>> GateCommands(const Config& cfg,
                                                   const std::vector<std::string>& services) {
  std::vector<std::vector<std::string>> cmds;
  auto [af, type] = AfterFilterOf(cfg);
  // The after-filter: a second smtpd on loopback that only the gate talks
  // to. It trusts the gate (the public smtpd already applied the site's
  // restrictions), takes the real client's name and address from XFORWARD,
  // and must not loop back into the gate.
  // (A unix service listens on $queue_directory/private/NAME.)
  cmds.push_back({"-M", type == "unix" ? fmt::format("{}/unix={} unix - - n - - smtpd", af, af)
                                       : fmt::format("{}/inet={} inet n - n - - smtpd", af, af)});
  for (const char* kv : {"smtpd_proxy_filter=", "smtpd_authorized_xforward_hosts=127.0.0.0/8",
                         "smtpd_client_restrictions=", "smtpd_helo_restrictions=",
                         "smtpd_sender_restrictions=", "smtpd_relay_restrictions=",
                         "smtpd_recipient_restrictions=permit_mynetworks,reject",
                         "smtpd_end_of_data_restrictions=",
                         "mynetworks=127.0.0.0/8", "smtpd_milters=",
                         "receive_override_options=no_unknown_recipient_checks",
                         "syslog_name=postfix/afterfilter"})
    cmds.push_back({"-P", fmt::format("{}/{}/{}", af, type, kv)});
  // strict: every message goes to hold/, which qmgr never reads, until the
  // gate releases it (docs/gate.md, "Strict mode").
  cmds.push_back({"-P", fmt::format("{}/{}/smtpd_data_restrictions={}", af, type,
                                    cfg.durability == Durability::kStrict ? kStrictHold : "")});
  // The public services hand every message to the gate.
  for (const auto& s : services)
    cmds.push_back({"-P", fmt::format("{}/inet/smtpd_proxy_filter={}", s, cfg.gate_listen)});
  return cmds;
}

std::optional<Millis> ParsePostfixTime(std::string_view v, char default_unit) {
  long long n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || n < 0) return std::nullopt;
  std::string_view unit(p, static_cast<std::size_t>(v.data() + v.size() - p));
  char u = unit.empty() ? default_unit : unit.size() == 1 ? unit[0] : '?';
  switch (u) {
    case 's': return Millis(n * 1000);
    case 'm': return Millis(n * 60000);
    case 'h': return Millis(n * 3600000);
    case 'd': return Millis(n * 86400000);
    case 'w': return Millis(n * 604800000);
  }
  return std::nullopt;
}

MasterCf ReadMasterCf(const std::string& config_dir) {
  MasterCf out;
  CommandResult m = RunCommand({"postconf", "-c", config_dir, "-M"});
  CommandResult p = RunCommand({"postconf", "-c", config_dir, "-P"});
  if (!m.ok() || !p.ok()) {
    out.error = fmt::format("postconf -c {} -M/-P failed: {}", config_dir,
                            m.ok() ? p.output : m.output);
    return out;
  }
  std::istringstream min(m.output);
  for (std::string line; std::getline(min, line);) {
    std::istringstream f(line);
    std::string name, type, priv, unpriv, chroot, wakeup, limit, command;
    if (f >> name >> type >> priv >> unpriv >> chroot >> wakeup >> limit >> command)
      out.services.push_back({name, type, command});
  }
  std::istringstream pin(p.output);
  for (std::string line; std::getline(pin, line);) out.overrides.push_back(line);
  return out;
}

GateInspection InspectGate(const Config& cfg) {
  GateInspection g;
  auto pc = Postconf(cfg.postfix_config_dir,
                     {"smtpd_proxy_filter", "smtpd_proxy_timeout", "smtpd_data_restrictions"});
  if (!pc.error.empty()) {
    g.error = pc.error;
    return g;
  }
  MasterCf mc = ReadMasterCf(cfg.postfix_config_dir);
  if (!mc.error.empty()) {
    g.error = mc.error;
    return g;
  }
  // Per inet smtpd service: its overrides ("svc/inet/name = value").
  std::map<std::string, std::map<std::string, std::string>> over;
  for (const std::string& line : mc.overrides) {
    auto eq = line.find(" = ");
    if (eq == std::string::npos) continue;
    std::string key = line.substr(0, eq), value = line.substr(eq + 3);
    auto s2 = key.rfind('/');
    auto s1 = s2 == std::string::npos ? s2 : key.rfind('/', s2 - 1);
    if (s1 == std::string::npos) continue;
    std::string type = key.substr(s1 + 1, s2 - s1 - 1);
    if (type != "inet" && type != "unix") continue;
    over[key.substr(0, s1) + "/" + type][key.substr(s2 + 1)] = value;
  }
  auto af = AfterFilterOf(cfg);
  for (const auto& [name, type, command] : mc.services) {
    if (command != "smtpd") continue;
    if (name == af.name && type == af.type) {
      g.after_filter = true;
      auto& o = over[name + "/" + type];
      std::string data = o.count("smtpd_data_restrictions") ? o["smtpd_data_restrictions"]
                                                            : pc.values["smtpd_data_restrictions"];
      g.after_filter_holds = data.find("static:HOLD") != std::string::npos;
      continue;
    }
    if (type != "inet") continue;
    auto& o = over[name + "/inet"];
    std::string filter = o.count("smtpd_proxy_filter") ? o["smtpd_proxy_filter"]
                                                       : pc.values["smtpd_proxy_filter"];
    if (filter != cfg.gate_listen && filter != "inet:" + cfg.gate_listen) continue;
    g.gated_services.push_back(name);
    std::string t = o.count("smtpd_proxy_timeout") ? o["smtpd_proxy_timeout"]
                                                   : pc.values["smtpd_proxy_timeout"];
    if (auto ms = ParsePostfixTime(t)) g.proxy_timeout = std::min(g.proxy_timeout.value_or(*ms), *ms);
  }
  return g;
}

void CheckGate(const Config& cfg, const GateInspection& g, ConfigErrors& out) {
  if (!g.error.empty()) {
    out.errors.push_back(g.error);
    return;
  }
  std::string fix = fmt::format("run `mailtwin postfix-config -c {} --apply`, then `postfix -c {} reload`",
                                cfg.path, cfg.postfix_config_dir);
  if (g.after_filter && g.after_filter_holds != (cfg.durability == Durability::kStrict)) {
    if (g.after_filter_holds)
      out.errors.push_back(fmt::format(
          "[gate] the after-filter smtpd \"{}\" puts every message on hold (strict durability's "
          "smtpd_data_restrictions = {}), but durability is {}: the gate would not release them "
          "and no mail would be delivered. {}",
          cfg.gate_after_filter, kStrictHold, DurabilityName(cfg.durability), fix));
    else
      out.errors.push_back(fmt::format(
          "[gate] durability is strict, but the after-filter smtpd \"{}\" does not put messages "
          "on hold (smtpd_data_restrictions = {}): a message the standby does not confirm in time "
          "could be delivered and refused at once, and its retry delivered again. {}",
          cfg.gate_after_filter, kStrictHold, fix));
  }
  if (cfg.durability == Durability::kAsync) return;
  if (g.gated_services.empty()) {
    (cfg.durability == Durability::kStrict ? out.errors : out.warnings).push_back(fmt::format(
        "[gate] durability is {}, but no smtpd service of Postfix in {} passes mail through the "
        "gate at {} (smtpd_proxy_filter): clients get their 250 before the standby holds the "
        "message. To close that window, {}",
        DurabilityName(cfg.durability), cfg.postfix_config_dir, cfg.gate_listen, fix));
    return;
  }
  if (!g.after_filter)
    out.errors.push_back(fmt::format(
        "[gate] Postfix in {} sends mail to the gate, but has no after-filter smtpd service "
        "\"{}\" for the gate to pass it on to: every message would be refused with 451. {}",
        cfg.postfix_config_dir, cfg.gate_after_filter, fix));
  // strict waits up to sync_timeout twice (the held file, then its release).
  int factor = cfg.durability == Durability::kStrict ? 4 : 2;
  if (g.proxy_timeout && *g.proxy_timeout < factor * cfg.sync_timeout)
    out.errors.push_back(fmt::format(
        "[gate] sync_timeout ({} ms) must stay well below Postfix's smtpd_proxy_timeout ({} ms), "
        "at most {} of it{}: when Postfix gives up on the gate first, the client gets a 451 for a "
        "message that is already queued, and its retry delivers it twice. Lower sync_timeout or "
        "raise smtpd_proxy_timeout",
        cfg.sync_timeout.count(), g.proxy_timeout->count(), factor == 2 ? "half" : "a quarter",
        factor == 2 ? "" : " in strict mode, which waits for the standby twice"));
}

}  // namespace mailtwin::postfix
