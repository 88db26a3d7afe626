#include "node/switchover.h"

#include <fmt/format.h>

namespace mailtwin::switchover {

std::string_view PhaseName(Phase p) {
  switch (p) {
    case Phase::kDeliveries: return "deliveries";
    case Phase::kIntake: return "intake";
    case Phase::kReplicate: return "replicate";
    case Phase::kTakeOver: return "take-over";
    case Phase::kDone: return "done";
    case Phase::kFailed: return "failed";
  }
  return "?";
}

std::string_view ActionName(Action a) {
  switch (a) {
    case Action::kNone: return "none";
    case Action::kDrainGate: return "drain-gate";
    case Action::kStopPostfix: return "stop-postfix";
    case Action::kSendSwitchover: return "send-switchover";
    case Action::kStepDown: return "step-down";
    case Action::kAbort: return "abort";
  }
  return "?";
}

State Begin(Clock::time_point now) {
  State s;
  s.t0 = now;
  s.deadline = now + kDeliveryLimit;
  return s;
}

namespace {

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

Result Fail(State s, std::string why) {
  s.failed_in = s.phase;
  s.phase = Phase::kFailed;
  return {s, Action::kAbort, std::move(why)};
}

Result Deliveries(State s, const Facts& f, Clock::time_point now) {
  if (!f.link_live) return Fail(s, "the link to the standby was lost while deliveries stopped");
  if (f.delivering) s.quiet_since.reset();
  else if (!s.quiet_since) s.quiet_since = now;
  bool quiet = s.quiet_since && now - *s.quiet_since >= kDeliveryQuiet;
  if (!quiet && now <= s.deadline) return {s, Action::kNone, {}};
  std::string why = fmt::format("deliveries stopped in {:.0f} ms; intake stops", Ms(now - s.t0));
  if (!quiet && f.delivering) {
    s.cut += f.delivering;
    why = fmt::format("{} deliveries still in flight after {:.0f} ms: they are cut; what the "
                      "remote side took already will be delivered again by the new primary",
                      f.delivering, Ms(kDeliveryLimit));
  }
  s.phase = Phase::kIntake;
  s.intake_t0 = now;
  s.deadline = now + kIntakeLimit;
  return {s, Action::kDrainGate, why};
}

Result Intake(State s, const Facts& f, Clock::time_point now) {
  if (!f.link_live) return Fail(s, "the link to the standby was lost while intake stopped");
  if (f.gate_drained && !s.intake_done) s.intake_done = now;
  bool settled = f.gate_drained && now - *s.intake_done >= kIntakeGrace;
  if (!settled && now <= s.deadline) return {s, Action::kNone, {}};
  std::string why = "intake stopped; Postfix stops";
  if (!f.gate_drained) {
    ++s.cut;
    why = fmt::format("a message's reply was still not passed on after {:.0f} ms: stopping "
                      "Postfix anyway; its client may send it again",
                      Ms(kIntakeLimit));
  }
  s.phase = Phase::kReplicate;
  s.deadline = now + kReplicateLimit;
  return {s, Action::kStopPostfix, why};
}

Result Replicate(State s, const Facts& f, Clock::time_point now) {
  if (!f.link_live) return Fail(s, "the link to the standby was lost while draining");
  if (f.standby_holds_all) {
    s.phase = Phase::kTakeOver;
    s.deadline = now + kTakeOverLimit;
    return {s, Action::kSendSwitchover,
            fmt::format("the standby holds every change ({} frames)", f.acked)};
  }
  if (now > s.deadline)
    return Fail(s, fmt::format("the standby did not acknowledge every change within {:.0f} s "
                               "({} of {} frames)",
                               Ms(kReplicateLimit) / 1000, f.acked, f.sent));
  return {s, Action::kNone, {}};
}

Result TakeOver(State s, const Facts& f, Clock::time_point now) {
  // The standby ends our session once it has taken over.
  if (!f.link_live) {
    s.phase = Phase::kDone;
    return {s, Action::kStepDown, "the standby took over"};
  }
  if (now > s.deadline)
    return Fail(s, fmt::format("the standby did not take over within {:.0f} s",
                               Ms(kTakeOverLimit) / 1000));
  return {s, Action::kNone, {}};
}

}  // namespace

Result Step(State s, const Facts& f, Clock::time_point now) {
  switch (s.phase) {
    case Phase::kDeliveries: return Deliveries(s, f, now);
    case Phase::kIntake: return Intake(s, f, now);
    case Phase::kReplicate: return Replicate(s, f, now);
    case Phase::kTakeOver: return TakeOver(s, f, now);
    case Phase::kDone:
    case Phase::kFailed: break;
  }
  return {s, Action::kNone, {}};  // over: nothing more to do
}

std::string Refusal(bool serving_primary, bool under_way, bool link_live) {
  if (!serving_primary) return "this node is not a serving primary";
  if (under_way) return "a switchover is already under way";
  if (!link_live)
    return "the standby is not in sync (link not live): a switchover now could lose mail; wait "
           "for it, or stop this node and let it fail over";
  return {};
}

}  // namespace mailtwin::switchover
