// Decide and JudgePeer as tables, with a simulated clock: each row is a
// situation, the expected role and actions, and words the reason must hold.
#include "ha/decide.h"

#include <functional>

#include <gtest/gtest.h>

using namespace mailtwin;
using namespace mailtwin::ha;
using namespace std::chrono_literals;

namespace {

const Clock::time_point T0{};  // the simulated clock's origin

HaConfig Cfg() {
  HaConfig c;
  c.check_interval = 250ms;
  c.fail_threshold = 3;
  c.peer_timeout = 2000ms;
  return c;
}

Observations Standby() {
  Observations o;
  o.role = NodeRole::kStandby;
  o.epoch = 4;
  o.primary_seen = true;
  o.link_up = true;
  o.last_from_primary = T0;
  return o;
}

// A primary after a stall's fence: Postfix stopped, epoch not confirmed,
// no link to the peer.
void Stalled(Observations& o) {
  o.epoch_confirmed = false;
  o.fenced_by_stall = true;
  o.postfix_running = false;
  o.link_live = false;
}

Observations Primary() {
  Observations o;
  o.role = NodeRole::kPrimary;
  o.epoch = 4;
  o.epoch_confirmed = true;
  o.postfix_running = true;
  o.link_live = true;
  return o;
}

struct Row {
  const char* name;
  Observations o;
  Clock::duration now;  // since T0
  NodeRole role;
  std::vector<Action> actions;
  const char* reason_has;
  const char* event = "";
};

template <typename F>
Observations With(Observations o, F f) {
  f(o);
  return o;
}

}  // namespace

TEST(Decide, Table) {
  HaConfig manual = Cfg();
  manual.auto_failover = false;
  const auto S = NodeRole::kStandby, P = NodeRole::kPrimary;
  std::vector<Row> rows = {
      {"healthy standby follows", Standby(), 100ms, S, {}, "following the primary at epoch 4"},
      {"one failed probe, link fine: wait",
       With(Standby(), [](auto& o) { o.probe_failures = 1; o.probe_serial_failures = 1; o.probe_error = "connect: refused"; }),
       100ms, S, {}, "1 SMTP probe failures one after another (1 overlapping) (connect: refused) (threshold 12, its daemon is alive)"},
      {"link closed, probes ok: degraded, no failover",
       With(Standby(), [](auto& o) { o.link_up = false; }), 100ms, S, {},
       "the replication link is closed, but the primary answers SMTP"},
      {"link closed, 2 probe failures: not yet",
       With(Standby(), [](auto& o) { o.link_up = false; o.probe_failures = 2; }), 100ms, S, {},
       "2 consecutive SMTP probe failures (threshold 3)"},
      {"link closed, 3 probe failures: take over",
       With(Standby(), [](auto& o) { o.link_up = false; o.probe_failures = 3; }), 100ms, P,
       {Action::kPromote}, "primary down: 3 consecutive SMTP probe failures and the replication "
       "link is closed: taking over at epoch 5", "primary-lost"},
      {"link open but silent past peer_timeout, 3 failures: take over",
       With(Standby(), [](auto& o) { o.probe_failures = 3; }), 2500ms, P, {Action::kPromote},
       "nothing came over the replication link for 2500 ms", "primary-lost"},
      {"link open and silent 1.9 s, 3 failures: heartbeat still fresh, wait",
       With(Standby(), [](auto& o) { o.probe_failures = 3; }), 1900ms, S, {}, "its daemon is alive"},
      {"link alive but SMTP broken for 12 probes one after another: take over, fence over the link",
       With(Standby(), [](auto& o) { o.probe_failures = 12; o.probe_serial_failures = 12; }), 100ms, P,
       {Action::kPromote}, "primary's SMTP service is broken: 12 SMTP probe failures one after another",
       "primary-lost"},
      // Overlapping probes of a slow primary (greeting later than
      // probe_timeout): 12 failed, but a single probe would have seen 5.
      {"link alive, busy primary: 12 overlapping failures, 5 serial: not broken, wait",
       With(Standby(), [](auto& o) { o.probe_failures = 12; o.probe_serial_failures = 5; o.probe_error = "no answer within 700 ms (waiting for the banner)"; }),
       100ms, S, {}, "5 SMTP probe failures one after another (12 overlapping) (no answer within 700 ms (waiting for the banner)) (threshold 12, its daemon is alive): waiting"},
      // With the link silent the overlapping count decides: a dead host
      // makes every probe hang, and waiting for them one by one is what made
      // a silent death slow.
      {"link silent past peer_timeout, 3 overlapping failures (1 serial): take over",
       With(Standby(), [](auto& o) { o.probe_failures = 3; o.probe_serial_failures = 1; }), 2000ms, P,
       {Action::kPromote}, "primary down: 3 consecutive SMTP probe failures and nothing came over "
       "the replication link for 2000 ms: taking over at epoch 5", "primary-lost"},
      {"link silent past peer_timeout, 2 failures: the probes are not done yet, wait",
       With(Standby(), [](auto& o) { o.probe_failures = 2; o.probe_serial_failures = 1; }), 2000ms, S, {},
       "2 consecutive SMTP probe failures (threshold 3): waiting"},
      {"down, but failover = manual: only tell",
       With(Standby(), [](auto& o) { o.link_up = false; o.probe_failures = 5; }), 100ms, S, {},
       "failover = manual: run `mailtwin promote`", "primary-lost"},
      {"down, but no primary seen since start: stale mirror, no takeover",
       With(Standby(), [](auto& o) { o.link_up = false; o.probe_failures = 5; o.primary_seen = false; }),
       100ms, S, {}, "this mirror may be stale", "primary-lost"},
      {"silent and refusing just after handing the role over: the new primary is still coming up",
       With(Standby(), [](auto& o) { o.link_up = false; o.probe_failures = 3; o.since_handed_over = 700ms; }),
       100ms, S, {}, "handed the role to the peer 700 ms ago and it is still taking over"},
      {"...but not forever: the new primary died during its promotion",
       With(Standby(), [](auto& o) { o.link_up = false; o.probe_failures = 9; o.since_handed_over = 8001ms; }),
       100ms, P, {Action::kPromote}, "primary down: 9 consecutive SMTP probe failures", "primary-lost"},
      {"down, but paused", With(Standby(), [](auto& o) { o.link_up = false; o.probe_failures = 9; o.paused = true; }),
       100ms, S, {}, "paused: no automatic failover"},
      {"a standby's Postfix is stopped", With(Standby(), [](auto& o) { o.postfix_running = true; }),
       100ms, S, {Action::kStopPostfix}, "a standby's Postfix must not serve"},
      {"healthy primary serves", Primary(), 100ms, P, {}, "serving at epoch 4"},
      {"primary without its standby for 3 s: tell",
       With(Primary(), [](auto& o) { o.link_live = false; o.link_down_for = 3000ms; }), 100ms, P, {},
       "the standby is unreachable for 3000 ms", "standby-lost"},
      {"primary's Postfix died: restart it",
       With(Primary(), [](auto& o) { o.postfix_running = false; }), 100ms, P, {Action::kStartPostfix},
       "starting it (attempt 1)"},
      {"Postfix fails to start 3 times: stop trying",
       With(Primary(), [](auto& o) { o.postfix_running = false; o.postfix_start_failures = 3; }), 100ms,
       P, {}, "failed to start 3 times"},
      {"unconfirmed epoch, Postfix stopped: stays stopped",
       With(Primary(), [](auto& o) { o.epoch_confirmed = false; o.postfix_running = false; }), 100ms,
       P, {}, "epoch 4 is not confirmed by the peer yet: Postfix stays stopped"},
      {"unconfirmed epoch, Postfix running, 1 s: grace",
       With(Primary(), [](auto& o) { o.epoch_confirmed = false; o.unconfirmed_for = 1000ms; }), 100ms,
       P, {}, "keeps running a little longer"},
      {"unconfirmed epoch, Postfix running, 2 s: fence",
       With(Primary(), [](auto& o) { o.epoch_confirmed = false; o.unconfirmed_for = 2000ms; }), 100ms,
       P, {Action::kFence}, "fencing Postfix"},
      {"primary frozen for 1.5 s (lease 1 s): fence at once",
       With(Primary(), [](auto& o) { o.stalled = 1500ms; }), 100ms, P, {Action::kFence},
       "this daemon stalled for 1500 ms (lease 1000 ms)"},
      {"queue filesystem full: say so, keep serving",
       With(Primary(), [](auto& o) { o.queue_free_mb = 12; }), 100ms, P, {},
       "the queue's filesystem has 12 MB free (min_free_mb 200)", "queue-trouble"},
      {"queue filesystem read-only: say so",
       With(Primary(), [](auto& o) { o.queue_writable = false; }), 100ms, P, {},
       "cannot be written: Postfix answers 4xx", "queue-trouble"},
      {"primary stalled 0.5 s: fine", With(Primary(), [](auto& o) { o.stalled = 500ms; }), 100ms, P,
       {}, "serving at epoch 4"},
      {"fenced by a stall, peer probes failing 2 of 3: stays stopped",
       With(Primary(), [](auto& o) { Stalled(o); o.probe_failures = 2; }), 100ms, P, {},
       "until the peer confirms epoch 4, or its SMTP service has failed 3 probes in a row (2 so "
       "far) and 8000 ms passed without a link"},
      {"fenced by a stall, 3 peer probes failed, no link, but within a take-over's time: waits",
       With(Primary(), [](auto& o) { Stalled(o); o.probe_failures = 3; o.unconfirmed_for = 7900ms; }),
       100ms, P, {}, "fenced after a stall: Postfix stays stopped"},
      {"fenced by a stall, 3 peer probes failed, no link for 8 s: the epoch is ours again",
       With(Primary(), [](auto& o) { Stalled(o); o.probe_failures = 3; o.unconfirmed_for = 8000ms; o.probe_error = "connect: Connection refused"; }),
       100ms, P, {Action::kReconfirm}, "did not take over; epoch 4 is confirmed again"},
      {"fenced by a stall, probes failing but a link is up: its Hello decides",
       With(Primary(), [](auto& o) { Stalled(o); o.probe_failures = 5; o.unconfirmed_for = 60s; o.link_live = true; }), 100ms, P,
       {}, "fenced after a stall: Postfix stays stopped"},
      {"fenced by a stall and paused: no reconfirmation",
       With(Primary(), [](auto& o) { Stalled(o); o.probe_failures = 5; o.unconfirmed_for = 60s; o.paused = true; }), 100ms, P,
       {}, "is not confirmed by the peer yet"},
      {"unconfirmed after a restart, peer probes failing: only the peer (or --force) confirms",
       With(Primary(), [](auto& o) { o.epoch_confirmed = false; o.postfix_running = false; o.probe_failures = 9; o.unconfirmed_for = 60s; }),
       100ms, P, {}, "is not confirmed by the peer yet: Postfix stays stopped"},
  };
  for (const auto& r : rows) {
    const HaConfig& c = std::string(r.reason_has).find("manual") != std::string::npos ? manual : Cfg();
    Decision d = Decide(r.o, c, T0 + r.now);
    EXPECT_EQ(d.role, r.role) << r.name << ": " << d.reason;
    EXPECT_EQ(d.actions, r.actions) << r.name << ": " << d.reason;
    EXPECT_NE(d.reason.find(r.reason_has), std::string::npos)
        << r.name << "\n  reason: " << d.reason << "\n  wanted: " << r.reason_has;
    EXPECT_EQ(ConditionName(d.condition), r.event) << r.name;
  }
}

// A silent death on a simulated clock: the link's silence and the probes
// are judged side by side at every call, and whichever completes last
// decides - in either order, with nothing waiting for the other to start.
TEST(Decide, SilenceAndProbesSideBySide) {
  const HaConfig c = Cfg();  // peer_timeout 2 s, fail_threshold 3
  struct Step {
    Clock::duration now;
    int failures;
    NodeRole role;
    const char* reason_has;
  };
  const auto S = NodeRole::kStandby, P = NodeRole::kPrimary;
  // Probes complete first (0.5 + 0.7 s), the silence last (2 s).
  std::vector<Step> probes_first = {
      {700ms, 1, S, "1 SMTP probe failures one after another"},
      {1200ms, 3, S, "(threshold 12, its daemon is alive): waiting"},
      {1999ms, 3, S, "(threshold 12, its daemon is alive): waiting"},
      {2000ms, 3, P, "primary down: 3 consecutive SMTP probe failures and nothing came over the "
                     "replication link for 2000 ms"},
  };
  // The silence completes first (a primary frozen while probes were still
  // answering), the probes last: the decision follows the third failure.
  std::vector<Step> silence_first = {
      {2000ms, 0, S, "nothing came over the replication link for 2000 ms, but the primary answers "
                     "SMTP: replication degraded"},
      {2400ms, 2, S, "2 consecutive SMTP probe failures (threshold 3): waiting"},
      {2450ms, 3, P, "primary down: 3 consecutive SMTP probe failures and nothing came over the "
                     "replication link for 2450 ms"},
  };
  for (const auto* steps : {&probes_first, &silence_first}) {
    for (const auto& st : *steps) {
      auto o = With(Standby(), [&](auto& o) {
        o.probe_failures = st.failures;
        o.probe_serial_failures = st.failures ? 1 : 0;
      });
      Decision d = Decide(o, c, T0 + st.now);
      EXPECT_EQ(d.role, st.role) << d.reason;
      EXPECT_NE(d.reason.find(st.reason_has), std::string::npos)
          << "at " << std::chrono::duration_cast<Millis>(st.now).count() << " ms\n  reason: " << d.reason
          << "\n  wanted: " << st.reason_has;
    }
  }
}

TEST(Decide, ManagePostfixOff) {
  HaConfig c = Cfg();
  c.manage_postfix = false;
  auto p = Primary();
  p.postfix_running = false;
  EXPECT_TRUE(Decide(p, c, T0).actions.empty());
  auto s = Standby();
  s.postfix_running = true;
  EXPECT_TRUE(Decide(s, c, T0).actions.empty());
  // Fencing is not management: it happens regardless.
  p.postfix_running = true;
  p.stalled = 5000ms;
  EXPECT_EQ(Decide(p, c, T0).actions, std::vector<Action>{Action::kFence});
}

// A take-over whose mirror could not be moved into the queue (EXDEV): the
// node is primary, its epoch confirmed, but Postfix must not serve.
TEST(Decide, NoServingAfterAnIncompleteTakeOver) {
  HaConfig c = Cfg();
  Observations o = Primary();
  o.postfix_running = false;
  o.promotion_failed = "promotion stopped: cannot move mirror/deferred/X: Invalid cross-device link";
  Decision d = Decide(o, c, T0);
  EXPECT_EQ(d.role, NodeRole::kPrimary);
  EXPECT_TRUE(d.actions.empty()) << d.reason;
  EXPECT_NE(d.reason.find("Postfix stays stopped"), std::string::npos) << d.reason;
  EXPECT_NE(d.reason.find("cross-device"), std::string::npos) << d.reason;
  o.postfix_running = true;  // started by hand meanwhile: stopped again
  EXPECT_EQ(Decide(o, c, T0).actions, std::vector<Action>{Action::kStopPostfix});
  o.promotion_failed.clear();
  o.postfix_running = false;
  EXPECT_EQ(Decide(o, c, T0).actions, std::vector<Action>{Action::kStartPostfix});
}

TEST(JudgePeer, Table) {
  const auto S = NodeRole::kStandby, P = NodeRole::kPrimary;
  struct J {
    PeerView self, peer;
    Verdict v;
    std::uint64_t epoch;
    const char* has;
  };
  std::vector<J> rows = {
      {{P, 3, "a"}, {S, 3, "b"}, Verdict::kAccept, 3, "follows this primary at epoch 3"},
      {{P, 3, "a"}, {S, 2, "b"}, Verdict::kAccept, 3, "standby b (epoch 2)"},
      {{P, 3, "a"}, {S, 4, "b"}, Verdict::kStepDown, 4, "newer than ours"},
      {{P, 3, "a"}, {P, 4, "b"}, Verdict::kStepDown, 4, "b is primary at epoch 4, newer than ours (3)"},
      {{P, 4, "a"}, {P, 3, "b"}, Verdict::kRefuse, 4, "older than ours"},
      {{P, 4, "b"}, {P, 4, "a"}, Verdict::kStepDown, 4, "split brain"},
      {{P, 4, "a"}, {P, 4, "b"}, Verdict::kRefuse, 4, "a keeps the role"},
      {{S, 3, "b"}, {P, 3, "a"}, Verdict::kFollow, 3, "following primary a at epoch 3"},
      {{S, 3, "b"}, {P, 5, "a"}, Verdict::kFollow, 5, "epoch 5"},
      {{S, 5, "b"}, {P, 3, "a"}, Verdict::kRefuse, 5, "stale"},
      {{S, 3, "b"}, {S, 3, "a"}, Verdict::kRefuse, 3, "nobody serves"},
  };
  for (const auto& r : rows) {
    Judgement j = JudgePeer(r.self, r.peer);
    EXPECT_EQ(j.verdict, r.v) << j.reason;
    EXPECT_EQ(j.epoch, r.epoch) << j.reason;
    EXPECT_NE(j.reason.find(r.has), std::string::npos) << j.reason << " / wanted: " << r.has;
  }
  // Both sides of a split brain agree on who keeps the role.
  auto ab = JudgePeer({P, 7, "a"}, {P, 7, "b"});
  auto ba = JudgePeer({P, 7, "b"}, {P, 7, "a"});
  EXPECT_EQ(ab.verdict, Verdict::kRefuse);
  EXPECT_EQ(ba.verdict, Verdict::kStepDown);
}

// Epochs are bounded: a claim far ahead of ours, or near the top of the
// range, is refused in every role pair, and our epoch stays ours.
TEST(JudgePeer, EpochBounds) {
  const auto S = NodeRole::kStandby, P = NodeRole::kPrimary;
  const std::uint64_t far = 3 + kMaxEpochLead + 1, top = UINT64_MAX;
  struct J {
    PeerView self, peer;
    Verdict v;
    std::uint64_t epoch;
  };
  std::vector<J> rows = {
      {{S, 3, "b"}, {P, 3 + kMaxEpochLead, "a"}, Verdict::kFollow, 3 + kMaxEpochLead},
      {{S, 3, "b"}, {P, far, "a"}, Verdict::kRefuse, 3},
      {{S, 3, "b"}, {P, top, "a"}, Verdict::kRefuse, 3},
      {{S, 3, "b"}, {P, kMaxEpoch, "a"}, Verdict::kRefuse, 3},
      {{P, 3, "a"}, {S, far, "b"}, Verdict::kRefuse, 3},
      {{P, 3, "a"}, {P, far, "b"}, Verdict::kRefuse, 3},
      {{P, 3, "a"}, {P, top, "b"}, Verdict::kRefuse, 3},
      {{S, 3, "b"}, {S, top, "a"}, Verdict::kRefuse, 3},
  };
  for (const auto& r : rows) {
    Judgement j = JudgePeer(r.self, r.peer);
    EXPECT_EQ(j.verdict, r.v) << r.peer.epoch << ": " << j.reason;
    EXPECT_EQ(j.epoch, r.epoch) << r.peer.epoch << ": " << j.reason;
    if (r.v == Verdict::kRefuse) {
      EXPECT_NE(j.reason.find("beyond what this node"), std::string::npos) << j.reason;
    }
  }
}

TEST(Epoch, NextEpochNeverWraps) {
  EXPECT_EQ(NextEpoch(1), 2u);
  EXPECT_EQ(NextEpoch(kMaxEpoch - 1), kMaxEpoch);
  EXPECT_EQ(NextEpoch(kMaxEpoch), std::nullopt);
  EXPECT_EQ(NextEpoch(UINT64_MAX), std::nullopt);
}

TEST(Decide, FailbackToThePreferredNode) {
  HaConfig c = Cfg();
  c.auto_failback = true;
  c.preferred = "main";
  c.failback_delay = 60000ms;
  Observations o = Primary();
  o.self_node = "backup";
  o.peer_node = "main";
  o.caught_up = true;
  o.peer_queue_ok = true;
  o.link_live_for = 10000ms;
  Decision d = Decide(o, c, T0);
  EXPECT_TRUE(d.actions.empty());
  EXPECT_NE(d.reason.find("failback to main once it has been in sync for 60 s (10 s so far)"),
            std::string::npos)
      << d.reason;
  o.link_live_for = 61000ms;
  d = Decide(o, c, T0);
  EXPECT_EQ(d.actions, std::vector<Action>{Action::kFailback}) << d.reason;
  EXPECT_EQ(d.role, NodeRole::kStandby);
  EXPECT_NE(d.reason.find("the preferred node main has been in sync for 61 s"), std::string::npos);
  // Not to a node whose disk is in trouble, or that has not said how its
  // disk is; not while changes are unacknowledged, not when paused, not on
  // the preferred node itself, not with failback = manual.
  o.peer_queue_ok = false;
  d = Decide(o, c, T0);
  EXPECT_TRUE(d.actions.empty());
  EXPECT_NE(d.reason.find("no failback to main: its queue's filesystem is in trouble"),
            std::string::npos)
      << d.reason;
  o.peer_queue_ok.reset();
  d = Decide(o, c, T0);
  EXPECT_TRUE(d.actions.empty());
  EXPECT_NE(d.reason.find("failback to main waits for its status report"), std::string::npos)
      << d.reason;
  o.peer_queue_ok = true;
  // A failed switchover is not retried at once.
  o.since_switchover_failed = 20000ms;
  d = Decide(o, c, T0);
  EXPECT_TRUE(d.actions.empty());
  EXPECT_NE(d.reason.find("the last switchover failed 20 s ago: failback to main tried again in "
                          "40 s"),
            std::string::npos)
      << d.reason;
  o.since_switchover_failed = 61000ms;
  EXPECT_EQ(Decide(o, c, T0).actions, std::vector<Action>{Action::kFailback});
  o.since_switchover_failed.reset();
  o.caught_up = false;
  EXPECT_TRUE(Decide(o, c, T0).actions.empty());
  o.caught_up = true;
  o.paused = true;
  EXPECT_TRUE(Decide(o, c, T0).actions.empty());
  o.paused = false;
  o.self_node = "main";
  o.peer_node = "backup";
  EXPECT_TRUE(Decide(o, c, T0).actions.empty());
  o.self_node = "backup";
  o.peer_node = "main";
  c.auto_failback = false;
  EXPECT_TRUE(Decide(o, c, T0).actions.empty());
  // During a switchover nothing else happens (Postfix is stopped on purpose).
  c.auto_failback = true;
  o.switching = true;
  o.postfix_running = false;
  d = Decide(o, c, T0);
  EXPECT_TRUE(d.actions.empty());
  EXPECT_NE(d.reason.find("switchover under way"), std::string::npos);
}

TEST(Decide, QueueTroubleMovesTheRoleToAHealthyStandby) {
  HaConfig c = Cfg();
  Observations o = Primary();
  o.peer_node = "backup";
  o.caught_up = true;
  o.peer_queue_ok = true;
  o.queue_writable = false;
  o.queue_trouble_for = 3000ms;
  Decision d = Decide(o, c, T0);
  EXPECT_TRUE(d.actions.empty());
  EXPECT_EQ(d.condition, Condition::kQueueTrouble);
  EXPECT_NE(d.reason.find("cannot be written: the role moves to backup if this lasts 10 s"),
            std::string::npos)
      << d.reason;
  o.queue_trouble_for = 10000ms;
  d = Decide(o, c, T0);
  EXPECT_EQ(d.actions, std::vector<Action>{Action::kSwitchover}) << d.reason;
  EXPECT_EQ(d.role, NodeRole::kStandby);
  EXPECT_NE(d.reason.find("the queue's filesystem cannot be written for 10 s and backup's is "
                          "healthy"),
            std::string::npos)
      << d.reason;
  // After a failed switchover: not again for a minute.
  o.since_switchover_failed = 5000ms;
  d = Decide(o, c, T0);
  EXPECT_TRUE(d.actions.empty()) << d.reason;
  EXPECT_NE(d.reason.find("the last switchover failed 5 s ago: trying again in 55 s"),
            std::string::npos)
      << d.reason;
  o.since_switchover_failed.reset();
  // Low space counts too.
  o.queue_writable = true;
  o.queue_free_mb = 50;
  d = Decide(o, c, T0);
  EXPECT_EQ(d.actions, std::vector<Action>{Action::kSwitchover}) << d.reason;
  EXPECT_NE(d.reason.find("50 MB free (min_free_mb 200)"), std::string::npos) << d.reason;
  // Not when the standby's disk is in trouble too, or unknown, or it lags,
  // or failover is manual, or paused: then only the administrator is told.
  for (auto spoil : std::vector<std::function<void(Observations&, HaConfig&)>>{
           [](Observations& o, HaConfig&) { o.peer_queue_ok = false; },
           [](Observations& o, HaConfig&) { o.peer_queue_ok.reset(); },
           [](Observations& o, HaConfig&) { o.caught_up = false; },
           [](Observations& o, HaConfig&) { o.link_live = false; },
           [](Observations& o, HaConfig& c) { c.auto_failover = false; },
           [](Observations& o, HaConfig&) { o.paused = true; }}) {
    Observations o2 = o;
    HaConfig c2 = c;
    spoil(o2, c2);
    d = Decide(o2, c2, T0);
    EXPECT_TRUE(d.actions.empty()) << d.reason;
    EXPECT_EQ(d.condition, Condition::kQueueTrouble);
    EXPECT_NE(d.reason.find("free space or switch over"), std::string::npos) << d.reason;
  }
}
