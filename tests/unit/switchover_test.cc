// The switchover machine (node/switchover.h), phase by phase, on a
// simulated clock: every phase's way forward, its time limit and its
// failure branch.
#include "node/switchover.h"

#include <gtest/gtest.h>

namespace mailtwin::switchover {
namespace {

using namespace std::chrono_literals;
const Clock::time_point T0 = Clock::time_point{} + 1000s;

Facts Live() {
  Facts f;
  f.link_live = true;
  return f;
}

// Steps from state s with facts f every 2 ms from now until an action
// other than kNone (or limit); returns that result and when it came.
std::pair<Result, Clock::time_point> RunUntilAction(State s, Facts f, Clock::time_point now,
                                                    Clock::duration limit = 20s) {
  for (auto t = now; t <= now + limit; t += 2ms) {
    Result r = Step(s, f, t);
    if (r.action != Action::kNone) return {r, t};
    s = r.state;
  }
  return {Result{s, Action::kNone, {}}, now + limit};
}

TEST(Switchover, AHappyOneRunsEveryPhaseInOrder) {
  State s = Begin(T0);
  Facts f = Live();
  auto [r1, t1] = RunUntilAction(s, f, T0);
  EXPECT_EQ(r1.action, Action::kDrainGate);
  EXPECT_EQ(r1.state.phase, Phase::kIntake);
  EXPECT_EQ(t1 - T0, kDeliveryQuiet);  // quiet from the first look
  EXPECT_NE(r1.reason.find("deliveries stopped"), std::string::npos) << r1.reason;
  f.gate_drained = true;
  auto [r2, t2] = RunUntilAction(r1.state, f, t1 + 2ms);
  EXPECT_EQ(r2.action, Action::kStopPostfix);
  EXPECT_EQ(r2.state.phase, Phase::kReplicate);
  EXPECT_EQ(t2 - (t1 + 2ms), kIntakeGrace);  // smtpd gets its grace to pass the reply on
  f.standby_holds_all = true;
  auto [r3, t3] = RunUntilAction(r2.state, f, t2 + 2ms);
  EXPECT_EQ(r3.action, Action::kSendSwitchover);
  EXPECT_EQ(r3.state.phase, Phase::kTakeOver);
  EXPECT_EQ(t3, t2 + 2ms);
  f.link_live = false;  // the standby ends our session once it has taken over
  auto [r4, t4] = RunUntilAction(r3.state, f, t3 + 2ms);
  EXPECT_EQ(r4.action, Action::kStepDown);
  EXPECT_EQ(r4.state.phase, Phase::kDone);
  EXPECT_EQ(r4.state.cut, 0u);
  EXPECT_TRUE(r4.state.postfix_stopped());
  // Over: nothing more happens.
  EXPECT_EQ(Step(r4.state, f, t4 + 1s).action, Action::kNone);
}

TEST(Switchover, DeliveriesInFlightAreWaitedForThenCutAtTheLimit) {
  Facts f = Live();
  f.delivering = 2;
  auto [r, t] = RunUntilAction(Begin(T0), f, T0);
  EXPECT_EQ(r.action, Action::kDrainGate);
  EXPECT_GT(t - T0, kDeliveryLimit);
  EXPECT_LE(t - T0, kDeliveryLimit + 2ms);
  EXPECT_EQ(r.state.cut, 2u);
  EXPECT_NE(r.reason.find("2 deliveries still in flight"), std::string::npos) << r.reason;
}

TEST(Switchover, ADeliveryThatStartsAgainRestartsTheQuietClock) {
  Facts f = Live();
  State s = Begin(T0);
  s = Step(s, f, T0).state;  // quiet since T0
  f.delivering = 1;
  s = Step(s, f, T0 + 20ms).state;  // a delivery: not quiet any more
  EXPECT_FALSE(s.quiet_since.has_value());
  f.delivering = 0;
  auto [r, t] = RunUntilAction(s, f, T0 + 22ms);
  EXPECT_EQ(r.action, Action::kDrainGate);
  EXPECT_EQ(t, T0 + 22ms + kDeliveryQuiet);
  EXPECT_EQ(r.state.cut, 0u);
}

TEST(Switchover, ASessionThatNeverEndsIsCutAfterTheIntakeLimit) {
  Facts f = Live();
  auto [r1, t1] = RunUntilAction(Begin(T0), f, T0);
  ASSERT_EQ(r1.action, Action::kDrainGate);
  f.gate_drained = false;
  auto [r2, t2] = RunUntilAction(r1.state, f, t1 + 2ms);
  EXPECT_EQ(r2.action, Action::kStopPostfix);
  EXPECT_GT(t2 - t1, kIntakeLimit);
  EXPECT_EQ(r2.state.cut, 1u);
  EXPECT_NE(r2.reason.find("its client may send it again"), std::string::npos) << r2.reason;
}

TEST(Switchover, TheLinkLostInAnyPhaseFailsIt) {
  const char* why[] = {"while deliveries stopped", "while intake stopped", "while draining"};
  Facts f = Live();
  f.gate_drained = true;
  State s = Begin(T0);
  for (int phase = 0; phase < 3; ++phase) {
    Facts lost = f;
    lost.link_live = false;
    Result r = Step(s, lost, T0 + 1ms);
    EXPECT_EQ(r.action, Action::kAbort) << phase;
    EXPECT_EQ(r.state.phase, Phase::kFailed);
    EXPECT_EQ(static_cast<int>(r.state.failed_in), phase);
    EXPECT_NE(r.reason.find(why[phase]), std::string::npos) << r.reason;
    // Postfix still runs (and its queue manager must continue) before kReplicate.
    EXPECT_EQ(r.state.postfix_stopped(), phase == 2) << phase;
    s = RunUntilAction(s, f, T0).first.state;  // on to the next phase
  }
}

TEST(Switchover, AStandbyThatDoesNotAcknowledgeFailsItAfterFiveSeconds) {
  State s = Begin(T0);
  s.phase = Phase::kReplicate;
  s.deadline = T0 + kReplicateLimit;
  Facts f = Live();
  f.sent = 10;
  f.acked = 7;
  auto [r, t] = RunUntilAction(s, f, T0);
  EXPECT_EQ(r.action, Action::kAbort);
  EXPECT_GT(t - T0, kReplicateLimit);
  EXPECT_NE(r.reason.find("7 of 10 frames"), std::string::npos) << r.reason;
  EXPECT_TRUE(r.state.postfix_stopped());
}

TEST(Switchover, AStandbyThatDoesNotTakeOverFailsItAfterFiveSeconds) {
  State s = Begin(T0);
  s.phase = Phase::kTakeOver;
  s.deadline = T0 + kTakeOverLimit;
  auto [r, t] = RunUntilAction(s, Live(), T0);
  EXPECT_EQ(r.action, Action::kAbort);
  EXPECT_GT(t - T0, kTakeOverLimit);
  EXPECT_NE(r.reason.find("did not take over"), std::string::npos) << r.reason;
}

TEST(Switchover, StartsOnlyOnAServingPrimaryInSyncAndOnceAtATime) {
  EXPECT_EQ(Refusal(true, false, true), "");
  EXPECT_NE(Refusal(false, false, true).find("not a serving primary"), std::string::npos);
  EXPECT_NE(Refusal(true, true, true).find("already under way"), std::string::npos);
  EXPECT_NE(Refusal(true, false, false).find("could lose mail"), std::string::npos);
}

}  // namespace
}  // namespace mailtwin::switchover
