// relay_config.h - the Postfix side of the relay (relay/relay.h), generated
// and checked, like gate_config.h for the gate.
//
// With [relay] listen set, mailtwind owns the public SMTP port, so Postfix
// must not: its public smtpd service ("smtp", port 25) is commented out of
// master.cf, and a smtpd service on relay.smtpd (loopback) takes its place,
// with smtpd_upstream_proxy_protocol = haproxy, so that it learns the real
// client from the relay's PROXY header. That service is the one the gate
// then sits behind (smtpd_proxy_filter), exactly as "smtp" did.
#pragma once

#include <string>
#include <vector>

#include "common/config.h"

namespace mailtwin::postfix {

// The master.cf inet service name of relay.smtpd ("127.0.0.1:10024").
std::string RelaySmtpdService(const Config& cfg);

// The services that carry the public mail: "smtp" stands for the relay's
// smtpd service when the relay is on (what the gate must sit behind).
std::vector<std::string> PublicServices(const Config& cfg, std::vector<std::string> services);

// postconf argv lists (without "postconf -c DIR"), in order; none when the
// relay is off.
std::vector<std::vector<std::string>> RelayCommands(const Config& cfg);

struct RelayInspection {
  std::vector<std::string> on_port_25;  // enabled smtpd/postscreen services on port 25
  bool smtpd = false;                   // the relay's smtpd service exists
  bool proxy_protocol = false;          // ... with smtpd_upstream_proxy_protocol = haproxy
  std::string error;                    // postconf could not run
};
RelayInspection InspectRelay(const Config& cfg);

// Problems of cfg against Postfix's configuration (check-config).
void CheckRelay(const Config& cfg, const RelayInspection& r, ConfigErrors& out);

}  // namespace mailtwin::postfix
