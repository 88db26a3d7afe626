// config.h - one TOML file per node (docs/configuration.md lists every key).
//
// LoadConfig parses and validates the file's shape: unknown keys, wrong types,
// missing keys and bad values are all reported, each with its line and what
// to do, not just the first one. CheckEnvironment goes further for
// `mailtwin check-config`: files readable, certificate and key matching,
// Postfix settings (long queue IDs), mirror on the queue's filesystem.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mailtwin {

using Millis = std::chrono::milliseconds;

enum class NodeRole { kPrimary, kStandby };

// When the gate answers the client's 250 (docs/gate.md).
enum class Durability {
  kAsync,   // at once: replication follows a few milliseconds later
  kSync,    // once the standby holds the message, or after sync_timeout
  kStrict,  // only once the standby holds it; 451 after sync_timeout
};
std::string_view DurabilityName(Durability d);

struct Config {
  std::string path;

  // [node]
  std::string node_name;
  std::string cluster;
  NodeRole role = NodeRole::kStandby;  // role at first start
  std::string state_dir;
  std::string mirror_dir;
  std::string control_socket;

  // [postfix]
  std::string postfix_config_dir = "/etc/postfix";
  std::string queue_directory;  // from postconf unless set
  bool flush_after_promote = true;
  bool manage_postfix = true;  // mailtwind starts/stops Postfix with the role

  // [replication]
  std::string listen;  // host:port the standby accepts on
  std::string peer;    // host:port of the peer's listener
  // Silence for peer_timeout is one of a standby's two proofs of a dead
  // primary (docs/failover.md, "Silent death": why 100 ms and 1.2 s).
  Millis heartbeat_interval{100};
  Millis peer_timeout{1200};
  Millis reconnect_interval{200};
  // How long the primary lets queue events gather before reading them: a
  // little latency for far fewer wake-ups under load.
  std::chrono::microseconds batch_delay{500};

  // [tls]
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string peer_name;  // CN/SAN the peer's certificate must carry

  // [gate] the before-queue SMTP proxy (Postfix smtpd_proxy_filter)
  std::string gate_listen = "127.0.0.1:10025";     // where Postfix's public smtpd connects
  std::string gate_after_filter = "127.0.0.1:10026";  // the smtpd that queues the mail
  Durability durability = Durability::kSync;
  Millis sync_timeout{1000};
  // Duplicates after a failover (docs/gate.md): fingerprints the standby
  // received this long before it takes over enter the new primary's dedup
  // table (0: off), and stay there dedup_retention.
  Millis dedup_window{30000};
  Millis dedup_retention{5LL * 24 * 3600 * 1000};

  // [failover] (docs/failover.md)
  bool auto_failover = true;  // mode = "auto" | "manual"
  Millis check_interval{250};
  int fail_threshold = 3;
  Millis probe_timeout{700};  // see docs/failover.md, "Silent death"
  std::string probe;  // host:port of the peer's SMTP service; default peer host, port 25
  double min_free_mb = 200;   // the primary warns below this much free space for its queue
  std::string preferred;      // node name automatic failback returns to ("" = none)
  bool auto_failback = false;  // failback = "auto" | "manual"
  Millis failback_delay{60000};

  // [notify]
  std::string notify_mail_to;
  std::string notify_mail_from = "mailtwin@localhost";
  std::string notify_hook;

  // [metrics]
  std::string metrics_listen;  // host:port for Prometheus, empty = off

  // [relay] who owns the public SMTP port (src/relay/relay.h); listen
  // empty = off: Postfix's smtpd listens there itself, as before.
  std::string relay_listen;                     // "0.0.0.0:25"
  std::string relay_smtpd = "127.0.0.1:10024";  // Postfix's smtpd, PROXY protocol
  std::string relay_peer_listen;  // this node's peer port; default replication host:10027
  std::string relay_peer;         // the peer's; default replication peer host:10027
  Millis relay_hold_timeout{30000};
  int relay_max_held = 200;
  int relay_max_sessions = 2000;

  // [witness] an etcd cluster that says who may serve (ha/witness.h);
  // no endpoints = no witness: the pair works as without one.
  std::vector<std::string> witness_endpoints;  // "https://10.0.0.5:2379"
  std::string witness_ca_file, witness_cert_file, witness_key_file;
  std::string witness_prefix = "/mailtwin/";  // keys: <prefix><cluster>/leader, /epoch
  Millis witness_ttl{10000};
  bool witness() const { return !witness_endpoints.empty(); }
  std::string WitnessKey(std::string_view leaf) const {
    return witness_prefix + cluster + "/" + std::string(leaf);
  }

  // [vip] the address only the primary holds (src/net/vip.h); empty = none
  std::string vip_address;    // "192.0.2.10/24"
  std::string vip_interface;  // "eth0"
};

struct ConfigErrors {
  std::vector<std::string> errors;
  std::vector<std::string> warnings;
  bool ok() const { return errors.empty(); }
};

std::optional<Config> LoadConfig(const std::string& path, ConfigErrors& out);

// Checks that need the machine: files, certificates, Postfix. Appends to out.
void CheckEnvironment(const Config& cfg, ConfigErrors& out);

// The Debian package's drop-in for Debian's postfix@.service: it skips
// starting Postfix once <state_dir>/state.json exists, so that only
// mailtwind starts it (docs/deploy.md, "Boot order").
inline constexpr const char* kPostfixDropIn = "/lib/systemd/system/postfix@.service.d/mailtwin.conf";

// Warns when the drop-in at `dropin` is installed but looks for another
// node state than this configuration's: Debian's unit would then start
// Postfix at boot, before mailtwind knows the epoch. Nothing if not installed.
void CheckBootGuard(const Config& cfg, const std::string& dropin, ConfigErrors& out);

// Parses "500us", "250ms", "2s", "1m" or a bare number of milliseconds.
std::optional<std::chrono::microseconds> ParseDurationUs(std::string_view text);
std::optional<Millis> ParseDuration(std::string_view text);

// Splits "host:port" ("[v6]:port" too). Returns false on a malformed address.
bool SplitHostPort(std::string_view addr, std::string& host, std::uint16_t& port);

}  // namespace mailtwin
