// switchover.h - the primary's side of a switchover, as a pure state machine
// (docs/failover.md). No clocks, sockets or processes inside: the daemon
// gathers the facts every 2 ms, calls Step and runs the action it returns.
//
// A switchover hands the role to an in-sync standby without loss and
// without duplicates. Postfix's own stop (SIGTERM to every process) could
// cut a delivery after the remote server took the message and before the
// recipient is marked done, or a session after its message is queued and
// before the client has the 250: either would arrive twice. So things stop
// in this order:
//
//   kDeliveries  the queue manager is stopped (SIGSTOP, by the daemon before
//      |         the first Step); deliveries in flight finish. Mail is still
//      |         accepted. Quiet for kDeliveryQuiet, or kDeliveryLimit passed
//      |         (what is still delivering is cut) -> action kDrainGate
//   kIntake      the gate takes no new message; every held reply is passed
//      |         on. Drained (+ kIntakeGrace for smtpd to pass the reply on),
//      |         or kIntakeLimit passed -> action kStopPostfix
//   kReplicate   Postfix is stopped; the standby acknowledges the last
//      |         changes. All acknowledged -> action kSendSwitchover
//   kTakeOver    the standby was told to take over at epoch + 1; it ends the
//      |         session when it has. Session ended -> action kStepDown
//   kDone
//
// From any phase before kDone: the link lost, or a phase's time limit
// passed where no cut is allowed (kReplicate 5 s, kTakeOver 5 s) ->
// kFailed with action kAbort and the reason; the daemon then serves again
// (queue manager continued, gate resumed, Postfix started if stopped).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mailtwin::switchover {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A switchover waits at most this long for the deliveries in flight (mail
// is still accepted meanwhile), then at most kIntakeLimit for the sessions
// whose message is ended to get their reply (a 10 MB message in the middle
// of its DATA is not waited for: it is cut, and its client sends it again).
inline constexpr milliseconds kDeliveryLimit{3000};
inline constexpr milliseconds kIntakeLimit{1000};
// No delivery in flight for this long: the queue manager's last request
// may still have been in its socket before.
inline constexpr milliseconds kDeliveryQuiet{30};
// After the gate's last session ended, the time Postfix's smtpd gets to
// pass the reply on to its client.
inline constexpr milliseconds kIntakeGrace{50};
inline constexpr milliseconds kReplicateLimit{5000};
inline constexpr milliseconds kTakeOverLimit{5000};

enum class Phase { kDeliveries, kIntake, kReplicate, kTakeOver, kDone, kFailed };
std::string_view PhaseName(Phase p);

// What the daemon sees at each step.
struct Facts {
  bool link_live = false;       // the session with the standby is live
  std::size_t delivering = 0;   // deliveries in flight (latest look at /proc)
  bool gate_drained = false;    // every gate session ended
  bool standby_holds_all = false;  // every change sent is acknowledged
  std::uint64_t sent = 0, acked = 0;  // frames, for the reason
};

struct State {
  Phase phase = Phase::kDeliveries;
  Clock::time_point t0, deadline;
  std::optional<Clock::time_point> quiet_since;  // no delivery in flight since
  Clock::time_point intake_t0;                   // when intake stopped
  std::optional<Clock::time_point> intake_done;  // when the gate was drained
  std::size_t cut = 0;  // deliveries or sessions cut at a time limit
  Phase failed_in = Phase::kFailed;  // with kFailed: the phase that failed
  // Postfix still runs (its queue manager stopped) before kReplicate.
  bool postfix_stopped() const {
    Phase p = phase == Phase::kFailed ? failed_in : phase;
    return p != Phase::kDeliveries && p != Phase::kIntake;
  }
};

enum class Action { kNone, kDrainGate, kStopPostfix, kSendSwitchover, kStepDown, kAbort };
std::string_view ActionName(Action a);

struct Result {
  State state;
  Action action = Action::kNone;
  std::string reason;  // for the log; for kAbort, why it failed
};

State Begin(Clock::time_point now);
Result Step(State s, const Facts& f, Clock::time_point now);

// Why a switchover cannot start now, or "" if it can.
std::string Refusal(bool serving_primary, bool under_way, bool link_live);

}  // namespace mailtwin::switchover
