#include "common/config.h"

#include <net/if.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "common/process.h"
#include "common/tls_files.h"
#include "net/vip.h"

namespace mailtwin {

std::string_view DurabilityName(Durability d) {
  switch (d) {
    case Durability::kAsync: return "async";
    case Durability::kSync: return "sync";
    case Durability::kStrict: return "strict";
  }
  return "?";
}

std::optional<std::chrono::microseconds> ParseDurationUs(std::string_view text) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || v < 0 || v > (std::int64_t{1} << 40)) return std::nullopt;
  std::string_view unit(p, static_cast<std::size_t>(text.data() + text.size() - p));
  using us = std::chrono::microseconds;
  if (unit == "us") return us(v);
  if (unit.empty() || unit == "ms") return us(v * 1000);
  if (unit == "s") return us(v * 1000000);
  if (unit == "m") return us(v * 60000000);
  if (unit == "h" && v <= 1000000) return us(v * 3600000000LL);
  if (unit == "d" && v <= 100000) return us(v * 86400000000LL);
  return std::nullopt;
}

std::optional<Millis> ParseDuration(std::string_view text) {
  auto us = ParseDurationUs(text);
  if (!us || us->count() % 1000) return std::nullopt;
  return std::chrono::duration_cast<Millis>(*us);
}

bool SplitHostPort(std::string_view addr, std::string& host, std::uint16_t& port) {
  std::size_t colon;
  if (!addr.empty() && addr[0] == '[') {
    auto close = addr.find(']');
    if (close == std::string_view::npos || close + 1 >= addr.size() || addr[close + 1] != ':')
      return false;
    host = std::string(addr.substr(1, close - 1));
    colon = close + 1;
  } else {
    colon = addr.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    host = std::string(addr.substr(0, colon));
  }
  std::string_view p = addr.substr(colon + 1);
  unsigned v = 0;
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
  if (ec != std::errc() || end != p.data() + p.size() || v == 0 || v > 65535) return false;
  port = static_cast<std::uint16_t>(v);
  return true;
}

namespace {

// Reads one table, remembering which keys were used, so leftovers are typos.
class Section {
 public:
  Section(const toml::table* t, std::string name, ConfigErrors& out)
      : t_(t), name_(std::move(name)), out_(out) {}

  std::string Str(const char* key, bool required, std::string def = {}) {
    used_.insert(key);
    const toml::node* n = t_ ? t_->get(key) : nullptr;
    if (!n) {
      if (required) Error(fmt::format("[{}] {} is missing", name_, key));
      return def;
    }
    if (auto s = n->value<std::string>()) return *s;
    Error(At(n, fmt::format("[{}] {} must be a string", name_, key)));
    return def;
  }

  bool Bool(const char* key, bool def) {
    used_.insert(key);
    const toml::node* n = t_ ? t_->get(key) : nullptr;
    if (!n) return def;
    if (auto b = n->value<bool>()) return *b;
    Error(At(n, fmt::format("[{}] {} must be true or false", name_, key)));
    return def;
  }

  int Int(const char* key, int def, int lo, int hi) {
    used_.insert(key);
    const toml::node* n = t_ ? t_->get(key) : nullptr;
    if (!n) return def;
    auto v = n->value<std::int64_t>();
    if (v && n->is_integer() && *v >= lo && *v <= hi) return static_cast<int>(*v);
    Error(At(n, fmt::format("[{}] {} must be a whole number from {} to {}", name_, key, lo, hi)));
    return def;
  }

  Millis Duration(const char* key, Millis def) {
    auto us = DurationUs(key, def, false);
    return std::chrono::duration_cast<Millis>(us);
  }

  std::chrono::microseconds DurationUs(const char* key, std::chrono::microseconds def,
                                       bool zero_ok) {
    used_.insert(key);
    const toml::node* n = t_ ? t_->get(key) : nullptr;
    if (!n) return def;
    std::optional<std::chrono::microseconds> v;
    if (auto i = n->value<std::int64_t>(); i && n->is_integer()) {
      if (*i >= 0) v = std::chrono::microseconds(*i * 1000);
    } else if (auto s = n->value<std::string>()) {
      v = ParseDurationUs(*s);
      if (v && !zero_ok && v->count() % 1000) v.reset();  // whole milliseconds only
    }
    if (v && (zero_ok || v->count() > 0)) return *v;
    Error(At(n, fmt::format("[{}] {} must be a {} duration such as \"200ms\", \"3s\" or "
                            "a number of milliseconds",
                            name_, key, zero_ok ? "" : "positive")));
    return def;
  }

  // A key read by the caller itself (not a string, number or duration).
  void Known(const char* key) { used_.insert(key); }

  void CheckUnknown() {
    if (!t_) return;
    for (const auto& [k, v] : *t_) {
      if (used_.count(std::string(k.str()))) continue;
      std::string known;
      for (const auto& u : used_) known += (known.empty() ? "" : ", ") + u;
      Error(At(&v, fmt::format("unknown key '{}' in [{}] (known keys: {})", k.str(), name_,
                               known)));
    }
  }

 private:
  std::string At(const toml::node* n, std::string msg) {
    auto line = n->source().begin.line;
    return line ? fmt::format("line {}: {}", line, msg) : msg;
  }
  void Error(std::string msg) { out_.errors.push_back(std::move(msg)); }

  const toml::table* t_;
  std::string name_;
  ConfigErrors& out_;
  std::set<std::string> used_;
};

bool ValidName(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
  return true;
}

// [witness]: endpoints, TLS files, key prefix, TTL (docs/configuration.md).
void LoadWitness(const toml::table* t, Config& c, ConfigErrors& out) {
  if (!t) return;
  const toml::node* eps = t->get("endpoints");
  Section w(t, "witness", out);
  w.Known("endpoints");  // an array, read below
  c.witness_ca_file = w.Str("ca_file", false);
  c.witness_cert_file = w.Str("cert_file", false);
  c.witness_key_file = w.Str("key_file", false);
  c.witness_prefix = w.Str("prefix", false, c.witness_prefix);
  c.witness_ttl = w.Duration("ttl", c.witness_ttl);
  w.CheckUnknown();
  const toml::array* arr = eps ? eps->as_array() : nullptr;
  if (!arr || arr->empty()) {
    out.errors.push_back("[witness] endpoints is missing: a list of the etcd cluster's client "
                         "URLs, e.g. [\"https://10.0.0.5:2379\", \"https://10.0.0.6:2379\", "
                         "\"https://10.0.0.7:2379\"] (leave out [witness] for no witness)");
    return;
  }
  for (const auto& e : *arr) {
    auto v = e.value<std::string>();
    std::string host;
    std::uint16_t port;
    std::string_view url = v ? std::string_view(*v) : std::string_view();
    std::string_view rest;
    if (url.rfind("https://", 0) == 0) rest = url.substr(8);
    else if (url.rfind("http://", 0) == 0) rest = url.substr(7);
    if (!v || rest.empty() || !SplitHostPort(rest, host, port)) {
      out.errors.push_back(fmt::format("[witness] endpoint {} is not http(s)://host:port (an etcd "
                                       "client URL, no path)",
                                       v ? "\"" + *v + "\"" : std::string("(not a string)")));
      continue;
    }
    c.witness_endpoints.push_back(*v);
  }
  if (c.witness_ttl < Millis(2000) || c.witness_ttl > Millis(300000) || c.witness_ttl.count() % 1000)
    out.errors.push_back(fmt::format("[witness] ttl ({} ms) must be whole seconds from 2 s to 300 s "
                                     "(etcd counts leases in seconds); 10s is the default",
                                     c.witness_ttl.count()));
  else if (c.witness_ttl < 4 * c.check_interval)
    out.errors.push_back(fmt::format("[witness] ttl ({} ms) must be at least 4 x [failover] "
                                     "check_interval ({} ms): the primary renews every ttl / 4",
                                     c.witness_ttl.count(), c.check_interval.count()));
  if (c.witness_prefix.empty() || c.witness_prefix.front() != '/' || c.witness_prefix.back() != '/' ||
      c.witness_prefix.size() > 128)
    out.errors.push_back(fmt::format("[witness] prefix \"{}\" must start and end with '/' (each "
                                     "cluster's keys are <prefix><cluster>/leader and /epoch)",
                                     c.witness_prefix));
  if (c.witness_cert_file.empty() != c.witness_key_file.empty())
    out.errors.push_back("[witness] cert_file and key_file go together (the client certificate "
                         "etcd checks with --client-cert-auth)");
  bool plain = false;
  for (const auto& e : c.witness_endpoints) plain |= e.rfind("http://", 0) == 0;
  if (plain)
    out.warnings.push_back("[witness] an endpoint is plain http://: anyone on that network can "
                           "read and forge the leader key (and make both nodes stop serving, or "
                           "one take over); use https:// with ca_file, cert_file and key_file");
  if (plain && (!c.witness_ca_file.empty() || !c.witness_cert_file.empty()))
    out.warnings.push_back("[witness] TLS files are set but an endpoint is plain http://: they "
                           "are not used for it");
}

}  // namespace

std::optional<Config> LoadConfig(const std::string& path, ConfigErrors& out) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    auto line = e.source().begin.line;
    out.errors.push_back(line ? fmt::format("{}: line {}: {}", path, line, e.description())
                              : fmt::format("{}: {}", path, e.description()));
    return std::nullopt;
  }
  Config c;
  c.path = path;
  static const std::set<std::string> kSections{"node",     "postfix", "replication",
                                                   "tls",      "gate",    "failover",
                                                   "notify",   "metrics", "vip",
                                                   "relay",    "witness"};
  for (const auto& [k, v] : root) {
    if (!kSections.count(std::string(k.str())))
      out.errors.push_back(fmt::format("unknown section [{}] (known: node, postfix, replication, "
                                       "tls, gate, failover, notify, metrics, vip, relay, witness)",
                                       k.str()));
    else if (!v.is_table())
      out.errors.push_back(fmt::format("{} must be a table: write it as [{}]", k.str(), k.str()));
  }

  Section node(root["node"].as_table(), "node", out);
  c.node_name = node.Str("name", true);
  c.cluster = node.Str("cluster", true);
  std::string role = node.Str("role", true);
  c.state_dir = node.Str("state_dir", false, "/var/lib/mailtwin");
  c.mirror_dir = node.Str("mirror_dir", false);
  c.control_socket = node.Str("control_socket", false, "/run/mailtwin/control.sock");
  node.CheckUnknown();
  if (!c.node_name.empty() && !ValidName(c.node_name))
    out.errors.push_back("[node] name may use only letters, digits, '-', '_' and '.'");
  if (!c.cluster.empty() && !ValidName(c.cluster))
    out.errors.push_back("[node] cluster may use only letters, digits, '-', '_' and '.'");
  if (role == "primary") c.role = NodeRole::kPrimary;
  else if (role == "standby") c.role = NodeRole::kStandby;
  else if (!role.empty())
    out.errors.push_back(fmt::format("[node] role is \"{}\": it must be \"primary\" or "
                                     "\"standby\" (the role this node takes at its first start)",
                                     role));

  Section pf(root["postfix"].as_table(), "postfix", out);
  c.postfix_config_dir = pf.Str("config_dir", false, "/etc/postfix");
  c.queue_directory = pf.Str("queue_directory", false);
  c.flush_after_promote = pf.Bool("flush_after_promote", true);
  c.manage_postfix = pf.Bool("manage", true);
  pf.CheckUnknown();

  Section rep(root["replication"].as_table(), "replication", out);
  c.listen = rep.Str("listen", true);
  c.peer = rep.Str("peer", true);
  c.heartbeat_interval = rep.Duration("heartbeat_interval", c.heartbeat_interval);
  c.peer_timeout = rep.Duration("peer_timeout", c.peer_timeout);
  c.reconnect_interval = rep.Duration("reconnect_interval", Millis(200));
  c.batch_delay = rep.DurationUs("batch_delay", c.batch_delay, true);
  rep.CheckUnknown();
  std::string host;
  std::uint16_t port;
  if (!c.listen.empty() && !SplitHostPort(c.listen, host, port))
    out.errors.push_back(fmt::format("[replication] listen \"{}\" is not host:port", c.listen));
  if (!c.peer.empty() && !SplitHostPort(c.peer, host, port))
    out.errors.push_back(fmt::format("[replication] peer \"{}\" is not host:port", c.peer));
  if (c.batch_delay > std::chrono::milliseconds(50))
    out.errors.push_back(fmt::format(
        "[replication] batch_delay ({} us) above 50 ms would delay every replicated change by "
        "that much; typical values are 0 to 2 ms",
        c.batch_delay.count()));
  if (c.peer_timeout < 2 * c.heartbeat_interval)
    out.errors.push_back(fmt::format(
        "[replication] peer_timeout ({} ms) must be at least twice heartbeat_interval ({} ms), "
        "or one late heartbeat would drop the link",
        c.peer_timeout.count(), c.heartbeat_interval.count()));

  Section tls(root["tls"].as_table(), "tls", out);
  c.ca_file = tls.Str("ca_file", true);
  c.cert_file = tls.Str("cert_file", true);
  c.key_file = tls.Str("key_file", true);
  c.peer_name = tls.Str("peer_name", true);
  tls.CheckUnknown();

  Section gate(root["gate"].as_table(), "gate", out);
  c.gate_listen = gate.Str("listen", false, c.gate_listen);
  c.gate_after_filter = gate.Str("after_filter", false, c.gate_after_filter);
  std::string durability = gate.Str("durability", false, "sync");
  c.sync_timeout = gate.Duration("sync_timeout", c.sync_timeout);
  c.dedup_window =
      std::chrono::duration_cast<Millis>(gate.DurationUs("dedup_window", c.dedup_window, true));
  c.dedup_retention = gate.Duration("dedup_retention", c.dedup_retention);
  gate.CheckUnknown();
  if (c.dedup_window > Millis(600000))
    out.errors.push_back(fmt::format(
        "[gate] dedup_window ({} ms) above 10 minutes: it only needs to cover the replies that "
        "may have been lost with the old primary (sync_timeout, the failover's detection); "
        "30s is the default, 0 turns duplicate detection off",
        c.dedup_window.count()));
  if (c.dedup_window.count() > 0 &&
      (c.dedup_retention < Millis(60000) || c.dedup_retention > Millis(31LL * 86400 * 1000)))
    out.errors.push_back(fmt::format(
        "[gate] dedup_retention ({} ms) must be between 1 minute and 31 days: a sender retries a "
        "message whose reply it lost for days (Postfix: up to maximal_queue_lifetime, 5d); "
        "5d is the default",
        c.dedup_retention.count()));
  if (durability == "async") c.durability = Durability::kAsync;
  else if (durability == "sync") c.durability = Durability::kSync;
  else if (durability == "strict") c.durability = Durability::kStrict;
  else
    out.errors.push_back(fmt::format(
        "[gate] durability is \"{}\": it must be \"async\" (answer 250 at once), \"sync\" (wait "
        "for the standby up to sync_timeout) or \"strict\" (never 250 without a replica)",
        durability));
  if (!SplitHostPort(c.gate_listen, host, port))
    out.errors.push_back(fmt::format("[gate] listen \"{}\" is not host:port", c.gate_listen));
  if (c.gate_after_filter.rfind("unix:/", 0) != 0 && !SplitHostPort(c.gate_after_filter, host, port))
    out.errors.push_back(
        fmt::format("[gate] after_filter \"{}\" is neither host:port nor unix:/path",
                    c.gate_after_filter));
  if (c.sync_timeout > Millis(30000))
    out.errors.push_back(fmt::format(
        "[gate] sync_timeout ({} ms) above 30 s: every client would wait that long whenever the "
        "standby is slow; 1s is the default",
        c.sync_timeout.count()));

  Section relay(root["relay"].as_table(), "relay", out);
  c.relay_listen = relay.Str("listen", false);
  c.relay_smtpd = relay.Str("smtpd", false, c.relay_smtpd);
  c.relay_peer_listen = relay.Str("peer_listen", false);
  c.relay_peer = relay.Str("peer", false);
  c.relay_hold_timeout = relay.Duration("hold_timeout", c.relay_hold_timeout);
  c.relay_max_held = relay.Int("max_held", c.relay_max_held, 1, 100000);
  c.relay_max_sessions = relay.Int("max_sessions", c.relay_max_sessions, 1, 1000000);
  relay.CheckUnknown();
  // The peer port sits beside the replication listener, on the same
  // addresses: what the pair already routes between its nodes.
  if (c.relay_peer_listen.empty() && SplitHostPort(c.listen, host, port))
    c.relay_peer_listen = host + ":10027";
  if (c.relay_peer.empty() && SplitHostPort(c.peer, host, port)) c.relay_peer = host + ":10027";
  for (const auto* k : {&c.relay_smtpd, &c.relay_peer_listen, &c.relay_peer})
    if (!c.relay_listen.empty() && !SplitHostPort(*k, host, port))
      out.errors.push_back(fmt::format("[relay] \"{}\" is not host:port", *k));
  if (!c.relay_listen.empty() && !SplitHostPort(c.relay_listen, host, port))
    out.errors.push_back(fmt::format("[relay] listen \"{}\" is not host:port", c.relay_listen));
  if (c.relay_hold_timeout > Millis(240000))
    out.errors.push_back(fmt::format(
        "[relay] hold_timeout ({} ms) above 240 s: a sending MTA waits 300 s for the greeting "
        "(smtp_helo_timeout) and must see the close before it gives up on its own; 30s is the "
        "default",
        c.relay_hold_timeout.count()));

  Section fo(root["failover"].as_table(), "failover", out);
  std::string mode = fo.Str("mode", false, "auto");
  c.check_interval = fo.Duration("check_interval", c.check_interval);
  c.fail_threshold = fo.Int("fail_threshold", c.fail_threshold, 1, 100);
  c.probe_timeout = fo.Duration("probe_timeout", c.probe_timeout);
  c.probe = fo.Str("probe", false);
  c.preferred = fo.Str("preferred", false);
  c.min_free_mb = fo.Int("min_free_mb", 200, 0, 100000000);
  std::string failback = fo.Str("failback", false, "manual");
  c.failback_delay = fo.Duration("failback_delay", c.failback_delay);
  fo.CheckUnknown();
  if (failback == "auto") c.auto_failback = true;
  else if (failback != "manual")
    out.errors.push_back(fmt::format(
        "[failover] failback is \"{}\": it must be \"manual\" (`mailtwin failback` moves the role "
        "back) or \"auto\" (the role returns to the preferred node once it is back and in sync "
        "for failback_delay)",
        failback));
  if (c.auto_failback && c.preferred.empty())
    out.errors.push_back("[failover] failback = \"auto\" needs preferred = \"<node name>\": the "
                         "node the role returns to");
  if (!c.preferred.empty() && !ValidName(c.preferred))
    out.errors.push_back("[failover] preferred must be a node name");
  if (mode == "auto") c.auto_failover = true;
  else if (mode == "manual") c.auto_failover = false;
  else
    out.errors.push_back(fmt::format(
        "[failover] mode is \"{}\": it must be \"auto\" (the standby takes over by itself) or "
        "\"manual\" (it only alerts; the administrator runs `mailtwin promote`)",
        mode));
  if (c.probe.empty() && SplitHostPort(c.peer, host, port))
    c.probe = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":25";
  if (!c.probe.empty() && !SplitHostPort(c.probe, host, port))
    out.errors.push_back(fmt::format("[failover] probe \"{}\" is not host:port (the primary's "
                                     "SMTP service)",
                                     c.probe));
  if (c.check_interval < Millis(50) || c.check_interval > Millis(60000))
    out.errors.push_back(fmt::format("[failover] check_interval ({} ms) must be from 50 ms to 60 s",
                                     c.check_interval.count()));
  if (c.probe_timeout < Millis(50))
    out.errors.push_back(fmt::format("[failover] probe_timeout ({} ms) below 50 ms would fail "
                                     "healthy servers",
                                     c.probe_timeout.count()));

  Section nt(root["notify"].as_table(), "notify", out);
  c.notify_mail_to = nt.Str("mail_to", false);
  c.notify_mail_from = nt.Str("mail_from", false, "mailtwin@localhost");
  c.notify_hook = nt.Str("hook", false);
  nt.CheckUnknown();
  if (!c.notify_mail_to.empty() && c.notify_mail_to.find('@') == std::string::npos)
    out.errors.push_back(fmt::format("[notify] mail_to \"{}\" is not a mail address",
                                     c.notify_mail_to));
  if (!c.notify_hook.empty() && c.notify_hook[0] != '/')
    out.errors.push_back(fmt::format("[notify] hook \"{}\" must be an absolute path to an "
                                     "executable",
                                     c.notify_hook));

  Section met(root["metrics"].as_table(), "metrics", out);
  c.metrics_listen = met.Str("listen", false);
  met.CheckUnknown();
  if (!c.metrics_listen.empty() && !SplitHostPort(c.metrics_listen, host, port))
    out.errors.push_back(fmt::format("[metrics] listen \"{}\" is not host:port", c.metrics_listen));

  Section vip(root["vip"].as_table(), "vip", out);
  c.vip_address = vip.Str("address", false);
  c.vip_interface = vip.Str("interface", false);
  vip.CheckUnknown();
  if (!c.vip_address.empty()) {
    net::VipAddress va;
    if (std::string err = net::ParseVip(c.vip_address, va); !err.empty())
      out.errors.push_back("[vip] address " + err);
    else
      c.vip_address = va.text;
    if (c.vip_interface.empty())
      out.errors.push_back("[vip] interface is missing: the interface the address goes on "
                           "(the one on the clients' network, e.g. \"eth0\")");
    else if (c.vip_interface.size() >= 16 || c.vip_interface.find_first_of("/: ") != std::string::npos)
      out.errors.push_back(fmt::format("[vip] interface \"{}\" is not an interface name",
                                       c.vip_interface));
  } else if (!c.vip_interface.empty()) {
    out.errors.push_back("[vip] interface is set but address is not");
  }

  LoadWitness(root["witness"].as_table(), c, out);

  if (!out.ok()) return std::nullopt;
  return c;
}

namespace {

void CheckReadable(const std::string& what, const std::string& path, ConfigErrors& out) {
  if (access(path.c_str(), R_OK) != 0)
    out.errors.push_back(fmt::format("{} {} cannot be read: {}", what, path, std::strerror(errno)));
}

}  // namespace

void CheckBootGuard(const Config& c, const std::string& dropin, ConfigErrors& out) {
  std::ifstream in(dropin);
  if (!in) return;  // not installed (no package, or another init system)
  const std::string key = "ConditionPathExists=!";
  std::string line, guarded;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) guarded = line.substr(key.size());
  auto norm = [](const std::string& p) { return std::filesystem::path(p).lexically_normal(); };
  if (!guarded.empty() && norm(guarded) == norm(c.state_dir + "/state.json")) return;
  out.warnings.push_back(fmt::format(
      "{} keeps Debian's postfix@.service from starting Postfix only where {} exists, but this "
      "node's state is {}/state.json: at boot Postfix may start and deliver a stale queue before "
      "mailtwind knows the epoch. Keep state_dir = \"/var/lib/mailtwin\", or point the drop-in "
      "at this state_dir (docs/deploy.md, \"Boot order\")",
      dropin, guarded.empty() ? "(no ConditionPathExists=!)" : guarded, c.state_dir));
}

void CheckEnvironment(const Config& c, ConfigErrors& out) {
  CheckBootGuard(c, kPostfixDropIn, out);
  CheckReadable("[tls] ca_file", c.ca_file, out);
  CheckReadable("[tls] cert_file", c.cert_file, out);
  CheckReadable("[tls] key_file", c.key_file, out);
  for (const auto& [what, file] : {std::pair{"[witness] ca_file", &c.witness_ca_file},
                                   std::pair{"[witness] cert_file", &c.witness_cert_file},
                                   std::pair{"[witness] key_file", &c.witness_key_file}})
    if (!file->empty()) CheckReadable(what, *file, out);
  if (!c.notify_hook.empty() && access(c.notify_hook.c_str(), X_OK) != 0)
    out.errors.push_back(fmt::format("[notify] hook {} is not executable: {}", c.notify_hook,
                                     std::strerror(errno)));
  if (out.ok()) CheckTlsFiles(c, out);
  CheckPeerIsNotSelf(c, out);

  struct stat st;
  if (stat(c.postfix_config_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    out.errors.push_back(fmt::format("[postfix] config_dir {} is not a directory",
                                     c.postfix_config_dir));
    return;
  }
  auto pc = Postconf(c.postfix_config_dir,
                     {"queue_directory", "enable_long_queue_ids", "inet_interfaces",
                      "inet_protocols"});
  if (!pc.error.empty()) {
    out.errors.push_back(pc.error);
    return;
  }
  if (pc.values["enable_long_queue_ids"] != "yes")
    out.errors.push_back(fmt::format(
        "Postfix in {} uses short queue IDs (enable_long_queue_ids = {}). Short IDs are inode "
        "numbers and change when a file is copied to another host, so a standby cannot tell "
        "its copies apart. Run: postconf -c {} -e enable_long_queue_ids=yes; postfix -c {} reload",
        c.postfix_config_dir, pc.values["enable_long_queue_ids"], c.postfix_config_dir,
        c.postfix_config_dir));
  if (!c.vip_address.empty()) {
    if (!if_nametoindex(c.vip_interface.c_str()))
      out.errors.push_back(fmt::format("[vip] interface {}: no such interface on this host",
                                       c.vip_interface));
    std::string ip = c.vip_address.substr(0, c.vip_address.find('/'));
    bool v6 = ip.find(':') != std::string::npos;
    std::string protos = pc.values["inet_protocols"];
    if (v6 && protos.find("all") == std::string::npos && protos.find("ipv6") == std::string::npos)
      out.errors.push_back(fmt::format(
          "[vip] address {} is IPv6, but Postfix in {} speaks only inet_protocols = {}: run "
          "postconf -c {} -e 'inet_protocols = all' and restart Postfix",
          c.vip_address, c.postfix_config_dir, protos, c.postfix_config_dir));
    std::string ifs = pc.values["inet_interfaces"];
    bool listens = ifs.find("all") != std::string::npos;
    for (std::size_t at = ifs.find(ip); !listens && at != std::string::npos; at = ifs.find(ip, at + 1)) {
      char after = at + ip.size() < ifs.size() ? ifs[at + ip.size()] : ' ';
      char before = at ? ifs[at - 1] : ' ';
      listens = !std::isxdigit(static_cast<unsigned char>(after)) && after != '.' && after != ':' &&
                !std::isxdigit(static_cast<unsigned char>(before)) && before != '.' && before != ':';
    }
    if (!listens)
      out.warnings.push_back(fmt::format(
          "[vip] Postfix in {} does not listen on {} (inet_interfaces = {}): clients of the "
          "virtual address would be refused. Use inet_interfaces = all, or add {} to it and set "
          "net.{}.ip_nonlocal_bind = 1 so a standby's Postfix can start without it",
          c.postfix_config_dir, ip, ifs, ip, v6 ? "ipv6" : "ipv4"));
  }
  std::string qdir = c.queue_directory.empty() ? pc.values["queue_directory"] : c.queue_directory;
  struct stat qst, mst;
  if (stat(qdir.c_str(), &qst) != 0) {
    out.errors.push_back(fmt::format("queue_directory {} does not exist", qdir));
    return;
  }
  std::string mirror = c.mirror_dir.empty() ? qdir + "-mailtwin-mirror" : c.mirror_dir;
  std::string probe = mirror;
  while (stat(probe.c_str(), &mst) != 0) {  // nearest existing ancestor
    auto slash = probe.rfind('/');
    if (slash == std::string::npos || slash == 0) {
      probe.assign(1, '/');  // (= "/": GCC 12 warns -Wrestrict on that)
      stat("/", &mst);
      break;
    }
    probe.resize(slash);
  }
  if (mst.st_dev != qst.st_dev)
    out.errors.push_back(fmt::format(
        "[node] mirror_dir {} is not on the filesystem of queue_directory {}: promotion must be a "
        "rename, so put the mirror beside the queue (e.g. {}-mailtwin-mirror)",
        mirror, qdir, qdir));
  if (mirror.rfind(qdir + "/", 0) == 0)
    out.errors.push_back(fmt::format(
        "[node] mirror_dir {} is inside queue_directory {}: Postfix would see (and may rename or "
        "purge) the mirrored files; put it beside the queue instead",
        mirror, qdir));
}

}  // namespace mailtwin
