// status_json.h - `mailtwin status --json` and `inspect`, built from what
// each part of the node holds (docs/operations.md names every field; the
// Prometheus exposition in metrics/ reads the same JSON).
//
// Pure formatting: no locks, no I/O, nothing changes.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "ctl/control.h"
#include "ha/decide.h"
#include "ha/events.h"
#include "repl/messages.h"

namespace mailtwin {

class PrimarySide;
class MirrorSide;
namespace gate { class Gate; }
namespace relay { class Relay; }
namespace repl { class QueueModel; class Mirror; }

// The "ha" section: the node's view of failover, as the daemon sees it now.
struct HaSnapshot {
  bool auto_failover = true, paused = false, epoch_confirmed = false, postfix_running = false;
  bool postfix_kept_stopped = false;  // mailtwind holds master.pid's lock
  bool queue_writable = true;
  double queue_free_mb = 0;
  ha::Decision decision;
  std::chrono::system_clock::time_point decided_at;
  std::string probe;
  std::uint64_t probes = 0;
  int probe_failures = 0;         // consecutive, overlapping probes
  int probe_serial_failures = 0;  // the same streak, one probe at a time
  std::string probe_error;
  double last_probe_ms = 0;
  bool primary_seen = false;
  std::size_t handover_pending = 0;
  const PrimarySide* primary = nullptr;  // for the handover sink's counts
  std::size_t ledger_ids = 0;
  std::string preferred;
  bool auto_failback = false, switching = false;
  std::optional<double> last_switch_pause_s;
  ctl::Json vip;  // null without [vip]
  std::vector<ha::Event> recent_events;
};

ctl::Json HaJson(const HaSnapshot& s);
ctl::Json NodeJson(const std::string& node, const repl::msg::NodeStatus& m);
ctl::Json PrimaryReplicationJson(const PrimarySide& p, const Config& cfg);
ctl::Json GateJson(const gate::Gate& g, const Config& cfg);
ctl::Json RelayJson(const relay::Relay& r, const Config& cfg);
ctl::Json StandbyReplicationJson(const MirrorSide& m);
// Where one message is: in the primary's model (model may be null on a
// standby) and in the mirror.
ctl::Json InspectJson(const std::string& id, const repl::QueueModel* model,
                      const repl::Mirror& mirror);
// CPU time this process used so far.
double CpuMs();

}  // namespace mailtwin
