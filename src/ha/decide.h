// decide.h - what a node should do next, as pure logic (docs/failover.md).
//
// Two functions, no sockets, files or clocks inside; the daemon gathers the
// observations, calls them and runs what they return:
//
//   Decide(observations, config, now) -> next role, actions, one-line reason
//       called every check_interval on each node;
//   JudgePeer(self, peer's Hello) -> verdict on a peer that just introduced
//       itself on the replication link (who serves, who follows).
//
// The rules, in one place:
// - A standby takes over when the primary has failed `fail_threshold`
//   consecutive SMTP probes AND nothing has come over the replication link
//   for `peer_timeout` (or it is closed) - both, so that neither a busy SMTP
//   port nor a lossy link alone causes a failover. The two are judged side by
//   side at every call, on the standby's own clock (the link's silence is
//   now - last frame received): whichever completes last decides, neither
//   waits for the other to start. With the link alive, only a primary whose
//   probes failed 4 x fail_threshold times one after another (serially, not
//   overlapping) is taken over from (its SMTP service is broken); only if a
//   primary was seen
//   since this daemon started (a standby that never synced would take over
//   with an empty queue: that takes `promote --force`); never when paused or
//   when failover = manual.
// - A primary serves (runs Postfix) only once it knows the cluster's epoch:
//   after a standby acknowledged it, or after its own promotion. A primary
//   whose daemon was stalled (frozen, suspended) long enough for the standby
//   to take over fences itself - Postfix stopped - until the peer confirms,
//   or, with no link to the peer for handover_grace (a take-over's time),
//   until its latest fail_threshold probes of the peer's SMTP service have
//   failed: a peer that does not serve did not take over (without that a
//   stall with the peer down stopped the mail for good).
// - Whoever sees a higher epoch than its own steps down; equal epochs on two
//   primaries (split brain after forced promotions) go to the smaller name.
// - A peer's epoch more than kMaxEpochLead ahead of ours, or at kMaxEpoch
//   (common/epoch.h), is refused whatever the roles: nobody adopts it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/epoch.h"

namespace mailtwin::ha {

using Clock = std::chrono::steady_clock;

struct Observations {
  NodeRole role = NodeRole::kStandby;
  std::uint64_t epoch = 1;
  bool paused = false;           // `mailtwin pause`: no automatic action
  bool postfix_running = false;  // this node's Postfix master is alive

  // Primary side.
  bool epoch_confirmed = false;  // a standby accepted our epoch, or we promoted
  // The daemon's loop did not run for this long (frozen, suspended, starved).
  Millis stalled{0};
  Millis unconfirmed_for{0};  // since the epoch stopped being confirmed
  // Fenced after a stall: the peer's SMTP service is probed (probe_failures)
  // to learn whether it took over.
  bool fenced_by_stall = false;
  bool link_live = false;     // replicating to the standby
  Millis link_down_for{0};
  Millis link_live_for{0};    // since the link went live
  bool caught_up = false;     // every change acknowledged by the standby
  std::string self_node, peer_node;
  bool switching = false;     // a switchover is under way
  int postfix_start_failures = 0;  // consecutive failed `postfix start`
  // The last take-over could not make the mirror live (a file could not be
  // moved into the queue): what it says. Postfix must not serve a queue
  // missing the mirrored mail; empty when no take-over failed.
  std::string promotion_failed;
  bool queue_writable = true;      // a test file on the queue's filesystem could be written
  double queue_free_mb = 1e12;     // free space there
  Millis queue_trouble_for{0};     // since the queue's filesystem got into trouble
  // The peer's queue filesystem as the peer last reported it (NodeStatus):
  // writable with min_free_mb free. nullopt when no fresh report came.
  std::optional<bool> peer_queue_ok;
  // Since the last switchover (automatic or asked) failed, if one did.
  std::optional<Millis> since_switchover_failed;

  // Standby side.
  bool primary_seen = false;  // a primary at our epoch connected since we started
  bool link_up = false;       // the replication session with the primary is open
  std::optional<Clock::time_point> last_from_primary;  // last frame received
  // Consecutive failed SMTP probes of the primary (they overlap); of the
  // peer, on a primary fenced by a stall.
  int probe_failures = 0;
  // The same streak counted one probe at a time (ha/probe_streak.h): what a
  // live link's primary is judged by, so that a slow greeting is not
  // counted once per overlapping probe.
  int probe_serial_failures = 0;
  std::string probe_error;    // why the last probe failed
  // Since this node handed the role to the peer (switchover, failback),
  // while the new primary has not connected yet: it is taking over, and
  // its SMTP service is down until its promotion ends.
  std::optional<Millis> since_handed_over;
};

enum class Action {
  kStartPostfix,
  kStopPostfix,  // a standby's Postfix must not run
  kFence,        // primary: stop Postfix and wait until the peer confirms the epoch
  kPromote,      // take over: epoch + 1 stored first, then the mirror goes live
  kFailback,     // primary: hand the role to the preferred node (a switchover)
  kSwitchover,   // primary: hand the role to the standby (a switchover)
  kReconfirm,    // primary fenced by a stall: the peer does not serve; the epoch is ours again
};
std::string_view ActionName(Action a);

// A condition a decision reports to the administrator; the daemon raises
// it as an event once while it lasts (its name is the event's kind).
enum class Condition { kNone, kPrimaryLost, kStandbyLost, kQueueTrouble };
std::string_view ConditionName(Condition c);  // "primary-lost", ...; "" for kNone

struct Decision {
  NodeRole role = NodeRole::kStandby;  // the role after the actions
  std::vector<Action> actions;
  std::string reason;  // one line for the log and `mailtwin status`
  Condition condition = Condition::kNone;
  bool operator==(const Decision&) const = default;
};

struct HaConfig {
  bool auto_failover = true;
  // Start Postfix on a serving primary, stop it on a standby. Promotion
  // starts it and fencing stops it either way.
  bool manage_postfix = true;
  Millis check_interval{250};
  int fail_threshold = 3;
  Millis peer_timeout{1200};
  int max_postfix_starts = 3;  // then stop trying and tell the administrator
  double min_free_mb = 200;    // below this the queue's filesystem is in trouble
  std::string preferred;       // the node automatic failback returns to
  bool auto_failback = false;
  Millis failback_delay{60000};
  // A primary whose queue filesystem stays in trouble this long hands the
  // role to a standby whose own is healthy (automatic failover only).
  Millis queue_trouble_delay{10000};
  // After a failed switchover, automatic ones wait this long to try again.
  Millis switchover_retry{60000};
  // With the link up, the primary's daemon is alive and restarts its own
  // Postfix; the standby takes over only after this many failed probes.
  int fail_threshold_link_up() const { return fail_threshold * 4; }
  // A primary whose loop stalled this long may have been replaced.
  Millis lease() const { return peer_timeout / 2; }
  // After handing the role over, this long for the new primary to serve
  // before its silence and failed probes count: a promotion takes 0.2-1 s,
  // more on a loaded host, and this node's probes would otherwise find it
  // "down" within fail_threshold probes and take the role straight back.
  Millis handover_grace() const { return std::max(Millis(5000), peer_timeout * 4); }
};
HaConfig HaConfigOf(const Config& cfg);

Decision Decide(const Observations& o, const HaConfig& cfg, Clock::time_point now);

// A peer's Hello on the replication link, judged by this node.
enum class Verdict {
  kAccept,    // we are primary, the peer a standby at our epoch or older: serve
  kFollow,    // we are standby, the peer a primary at our epoch or newer: follow it
  kStepDown,  // we are a primary at an older epoch (or lost the tie): step down
  kRefuse,    // the peer is stale or confused: tell it, close the session
};
std::string_view VerdictName(Verdict v);

struct Judgement {
  Verdict verdict = Verdict::kRefuse;
  std::uint64_t epoch = 0;  // the cluster's epoch as far as both know
  std::string reason;
  bool operator==(const Judgement&) const = default;
};

struct PeerView {
  NodeRole role;
  std::uint64_t epoch;
  std::string node;
};

Judgement JudgePeer(const PeerView& self, const PeerView& peer);

}  // namespace mailtwin::ha
