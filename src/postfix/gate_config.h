// gate_config.h - the Postfix settings the gate needs, generated and checked.
//
// The gate sits between Postfix's public smtpd (smtpd_proxy_filter points at
// the gate) and an "after-filter" smtpd on a loopback port that queues the
// mail (SMTPD_PROXY_README, "before-queue proxy"). GateCommands() prints the
// exact postconf commands that set this up, so nobody edits master.cf by
// hand; `mailtwin postfix-config --apply` runs them. InspectGate() reads a
// Postfix configuration back and says whether mail really passes the gate.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/config.h"

namespace mailtwin::postfix {

// The after-filter's master.cf service: "127.0.0.1:10026"/"inet", or for
// after_filter = "unix:/var/spool/postfix/private/NAME", "NAME"/"unix".
struct AfterFilterService {
  std::string name;
  std::string type;
};
AfterFilterService AfterFilterOf(const Config& cfg);

// The after-filter's smtpd_data_restrictions in strict mode: every message
// on hold until the gate releases it.
extern const char* const kStrictHold;

// postconf argv lists (without the leading "postconf -c DIR"), in order.
// services: the master.cf inet services whose mail must pass the gate
// ("smtp", and e.g. "submission").
std::vector<std::vector<std::string>> GateCommands(const Config& cfg,
                                                   const std::vector<std::string>& services);

// master.cf as postconf reads it back: each service's name, type and
// command (`postconf -M`), and the -o overrides (`postconf -P`: lines
// "service/type/name = value").
struct MasterEntry {
  std::string name, type, command;
};
struct MasterCf {
  std::vector<MasterEntry> services;
  std::vector<std::string> overrides;
  std::string error;  // postconf could not run
};
MasterCf ReadMasterCf(const std::string& config_dir);

struct GateInspection {
  std::vector<std::string> gated_services;  // smtpd_proxy_filter = the gate
  bool after_filter = false;                // the after-filter service exists
  bool after_filter_holds = false;          // it puts every message on hold (strict)
  std::optional<Millis> proxy_timeout;      // smtpd_proxy_timeout of the gated services (min)
  std::string error;                        // postconf could not run
};
GateInspection InspectGate(const Config& cfg);

// A Postfix time value ("100s", "5m", "100" = seconds). nullopt if malformed.
std::optional<Millis> ParsePostfixTime(std::string_view v, char default_unit = 's');

// Problems of cfg against the Postfix configuration, for check-config and
// the daemon's start: errors (the gate cannot keep its promise) and warnings.
void CheckGate(const Config& cfg, const GateInspection& g, ConfigErrors& out);

}  // namespace mailtwin::postfix
