// The witness's rules (ha/witness.h) as tables on a simulated clock: each
// row is a situation, the decision that must come out of it (role, actions,
// words of the reason), the request sent to etcd, and a step-down if any.
// Then the answers from etcd folded into the state, and the etcd gateway's
// parsers (node/etcd_client.h) against hostile bytes.
#include "ha/witness.h"

#include <gtest/gtest.h>

#include "node/etcd_client.h"

using namespace mailtwin;
using namespace mailtwin::ha;
using namespace std::chrono_literals;

namespace {

const Clock::time_point kWitT0{};  // the simulated clock's origin

WitnessConfig WitCfg() {
  WitnessConfig c;  // a 4 s lease, as in the lab
  c.ttl = 4000ms;
  c.renew_every = 1000ms;
  c.retry_every = 250ms;
  c.fence_margin = 1000ms;
  c.fresh = 1000ms;
  c.lost_after = 1000ms;
  return c;
}

// A primary that renewed its lease (sent at T0, TTL 4 s): valid here until
// T0 + 3.96 s (1 % for the clock rate), so it fences from 2.96 s on.
WitnessState Holding() {
  WitnessState s;
  s.lease_id = 77;
  s.valid_until = kWitT0 + 3960ms;
  s.last_ok = kWitT0;
  s.last_sent = kWitT0;
  s.key = LeaderKey{true, "main", 4, 77, std::nullopt};
  s.key_read_at = kWitT0;
  s.store_epoch = 4;
  return s;
}

// A standby whose last read (at T0) found the key free.
WitnessState KeyFree() {
  WitnessState s;
  s.last_ok = kWitT0;
  s.last_sent = kWitT0;
  s.key = LeaderKey{};
  s.key_read_at = kWitT0;
  s.store_epoch = 4;
  return s;
}

WitnessState Unreachable(WitnessState s, Clock::duration since) {
  s.unreachable_since = kWitT0 + since;
  s.error = "none of the 3 endpoints answered: Timeout was reached";
  return s;
}

Decision Serving() { return Decision{NodeRole::kPrimary, {}, "serving at epoch 4", Condition::kNone}; }
Decision Starting() {
  return Decision{NodeRole::kPrimary, {Action::kStartPostfix}, "Postfix is not running: starting it",
                  Condition::kNone};
}
Decision TakingOver() {
  return Decision{NodeRole::kPrimary, {Action::kPromote}, "primary down: taking over at epoch 5",
                  Condition::kPrimaryLost};
}
Decision Following() {
  return Decision{NodeRole::kStandby, {}, "following the primary at epoch 4", Condition::kNone};
}

WitnessFacts WPrimary(Decision d, bool running, bool link_live) {
  WitnessFacts f;
  f.role = NodeRole::kPrimary;
  f.epoch = 4;
  f.self = "main";
  f.postfix_running = running;
  f.epoch_confirmed = true;
  f.link_live = link_live;
  f.decided = std::move(d);
  return f;
}

WitnessFacts WStandby(Decision d) {
  WitnessFacts f;
  f.role = NodeRole::kStandby;
  f.epoch = 4;
  f.self = "backup";
  f.decided = std::move(d);
  return f;
}

struct WitRow {
  const char* name;
  WitnessState s;
  WitnessFacts f;
  Clock::duration now;
  NodeRole role;
  std::vector<Action> actions;
  const char* reason_has;
  WitnessRequest request;
  std::uint64_t claim_epoch = 0;
  std::uint64_t step_down = 0;
};

}  // namespace

TEST(Witness, Table) {
  using R = WitnessRequest;
  const auto P = NodeRole::kPrimary, S = NodeRole::kStandby;
  WitnessState in_flight = Holding();
  in_flight.in_flight = R::kRenew;
  WitnessState key_held = KeyFree();
  key_held.key = LeaderKey{true, "main", 4, 77, 3000ms};
  WitnessState stale_read = KeyFree();
  stale_read.key_read_at = kWitT0 - 2s;
  WitnessState claiming = KeyFree();
  claiming.in_flight = R::kClaim;
  WitnessState newer_key = Holding();
  newer_key.key = LeaderKey{true, "backup", 5, 99, std::nullopt};
  WitnessState newer_store = Holding();
  newer_store.store_epoch = 6;
  WitnessState never = WitnessState{};
  WitnessFacts unconfirmed = WPrimary(Serving(), true, false);
  unconfirmed.epoch_confirmed = false;
  std::vector<WitRow> rows = {
      // Primary, lease held.
      {"holds the lease: serves, no request before renew_every", Holding(),
       WPrimary(Serving(), true, true), 500ms, P, {}, "serving at epoch 4", R::kNone},
      {"renews every renew_every", Holding(), WPrimary(Serving(), true, true), 1000ms, P, {},
       "serving", R::kRenew},
      {"one request at a time", in_flight, WPrimary(Serving(), true, true), 1500ms, P, {},
       "serving", R::kNone},
      {"lease held, standby gone: serves on (the standby cannot take over)", Holding(),
       WPrimary(Serving(), true, false), 2900ms, P, {}, "serving at epoch 4", R::kRenew},
      // Primary, lease running out.
      {"cannot renew, standby gone: fences a margin before the lease can end",
       Unreachable(Holding(), 1000ms), WPrimary(Serving(), true, false), 2960ms, P,
       {Action::kFence}, "could not be renewed", R::kRenew},
      {"the fence comes before the lease's end, not after", Unreachable(Holding(), 1000ms),
       WPrimary(Serving(), true, false), 2950ms, P, {}, "serving at epoch 4", R::kRenew},
      {"cannot renew, standby follows: serves on (failsafe), says so",
       Unreachable(Holding(), 1000ms), WPrimary(Serving(), true, true), 10s, P, {},
       "no failover decision without the witness", R::kRenew},
      {"an unconfirmed primary is Decide's to fence", Unreachable(Holding(), 1000ms),
       unconfirmed, 10s, P, {}, "serving", R::kRenew},
      {"fenced already: nothing more", Unreachable(Holding(), 1000ms),
       WPrimary(Serving(), false, false), 10s, P, {}, "serving", R::kRenew},
      // Primary without a lease.
      {"no lease: claims it at its own epoch, Postfix waits", never,
       WPrimary(Starting(), false, true), 0ms, P, {}, "not before this node holds", R::kClaim, 4},
      {"no lease, etcd down, standby follows: starts (the pair as without a witness)",
       Unreachable(never, 0ms), WPrimary(Starting(), false, true), 1s, P,
       {Action::kStartPostfix}, "starting it", R::kClaim, 4},
      {"no lease, etcd down, no standby: does not start", Unreachable(never, 0ms),
       WPrimary(Starting(), false, false), 1s, P, {}, "unreachable", R::kClaim, 4},
      {"the store names a newer primary: step down", newer_key, WPrimary(Serving(), true, true),
       100ms, S, {}, "backup holds the leader key at epoch 5", R::kNone, 0, 5},
      {"the store's epoch is newer: step down", newer_store, WPrimary(Serving(), true, true),
       100ms, S, {}, "epoch 6 exists", R::kNone, 0, 6},
      // Standby.
      {"reads the key every retry_every", KeyFree(), WStandby(Following()), 250ms, S, {},
       "following", R::kRead},
      {"primary lost, key free: claims at the store's epoch + 1, no take-over yet", KeyFree(),
       WStandby(TakingOver()), 100ms, S, {}, "claiming the leader key at epoch 5", R::kClaim, 5},
      {"primary lost, key held: waits for its lease to expire", key_held, WStandby(TakingOver()),
       100ms, S, {}, "main holds the leader key at epoch 4", R::kNone},
      {"primary lost, witness unreachable: no failover", Unreachable(KeyFree(), 0ms),
       WStandby(TakingOver()), 100ms, S, {}, "no failover without the witness", R::kNone},
      {"primary lost, never heard the witness: no failover", never, WStandby(TakingOver()), 0ms,
       S, {}, "has not answered", R::kRead},
      {"primary lost, the read is stale: waits for a fresh one", stale_read,
       WStandby(TakingOver()), 100ms, S, {}, "waiting for a fresh read", R::kNone},
      {"primary lost, claim under way: no second claim", claiming, WStandby(TakingOver()),
       300ms, S, {}, "claiming the witness's leader key", R::kNone},
      {"follows, witness unreachable: says there is no failover decision",
       Unreachable(KeyFree(), 0ms), WStandby(Following()), 300ms, S, {},
       "no failover decision without it", R::kRead},
  };
  for (const auto& r : rows) {
    auto out = StepWitness(r.s, r.f, WitCfg(), kWitT0 + r.now);
    SCOPED_TRACE(r.name);
    EXPECT_EQ(out.decision.role, r.role) << out.decision.reason;
    EXPECT_EQ(out.decision.actions, r.actions) << out.decision.reason;
    EXPECT_NE(out.decision.reason.find(r.reason_has), std::string::npos) << out.decision.reason;
    EXPECT_EQ(out.request, r.request) << WitnessRequestName(out.request);
    if (r.request == R::kClaim) {
      EXPECT_EQ(out.claim_epoch, r.claim_epoch);
    }
    EXPECT_EQ(out.step_down_to.value_or(0), r.step_down);
  }
}

// The primary's lease on the simulated clock: renewals that stop at a cut,
// the fence before etcd's TTL can have run out even on a clock 1 % fast.
TEST(Witness, PartitionTimeline) {
  WitnessConfig c = WitCfg();
  WitnessState s = Holding();
  // Renewed at 1 s (sent then, answered 20 ms later).
  WitnessAnswer a;
  a.request = WitnessRequest::kRenew;
  a.ok = true;
  a.lease_id = 77;
  a.ttl = 4000ms;
  a.sent_at = kWitT0 + 1000ms;
  a.key = LeaderKey{true, "main", 4, 77, std::nullopt};
  s.in_flight = WitnessRequest::kRenew;
  s = AbsorbWitness(s, a, "main", kWitT0 + 1020ms);
  ASSERT_EQ(s.valid_until, kWitT0 + 1000ms + 3960ms);
  // The cut at 1.5 s: every request from then on times out.
  WitnessAnswer lost;
  lost.request = WitnessRequest::kRenew;
  lost.error = "Timeout was reached";
  s.in_flight = WitnessRequest::kRenew;
  s = AbsorbWitness(s, lost, "main", kWitT0 + 2500ms);
  std::optional<Clock::duration> fenced;
  for (auto t = 2500ms; t < 6000ms; t += 250ms) {
    auto out = StepWitness(s, WPrimary(Serving(), true, false), c, kWitT0 + t);
    s = out.state;
    if (out.request != WitnessRequest::kNone) s.in_flight = WitnessRequest::kNone;
    if (!out.decision.actions.empty()) {
      fenced = t;
      EXPECT_NE(out.decision.reason.find("before the lease can have expired"), std::string::npos);
      break;
    }
  }
  ASSERT_TRUE(fenced);
  // etcd started the TTL no sooner than the keepalive was sent (1 s); on a
  // clock 1 % fast its 4 s are 3.96 s here: the fence must come before.
  EXPECT_LT(*fenced + 250ms, 1000ms + 3960ms);  // a late tick still fences in time
  EXPECT_GE(*fenced, 1000ms + 3960ms - c.fence_margin - 250ms);
}

TEST(Witness, Absorb) {
  // A claim granted: the lease counts from when the grant was sent.
  WitnessState s;
  s.in_flight = WitnessRequest::kClaim;
  WitnessAnswer a;
  a.request = WitnessRequest::kClaim;
  a.ok = true;
  a.claimed = true;
  a.lease_id = 5;
  a.ttl = 10s;
  a.epoch = 7;
  a.sent_at = kWitT0;
  s = AbsorbWitness(s, a, "backup", kWitT0 + 300ms);
  EXPECT_EQ(s.lease_id, 5);
  EXPECT_EQ(s.valid_until, kWitT0 + 9900ms);
  EXPECT_EQ(s.store_epoch, 7u);
  EXPECT_EQ(s.in_flight, WitnessRequest::kNone);
  EXPECT_TRUE(LeaseHeld(s, WitCfg(), kWitT0 + 8800ms));
  EXPECT_FALSE(LeaseHeld(s, WitCfg(), kWitT0 + 8900ms));

  // A keepalive that says the lease is gone (TTL 0): not held any more.
  WitnessAnswer gone;
  gone.request = WitnessRequest::kRenew;
  gone.ok = true;
  gone.lease_id = 5;
  gone.ttl = 0ms;
  gone.sent_at = kWitT0 + 1s;
  auto g = AbsorbWitness(s, gone, "backup", kWitT0 + 1s);
  EXPECT_EQ(g.lease_id, 0);
  EXPECT_FALSE(g.valid_until);

  // Renewed, but the key names another node: the lease no longer stands for the role.
  WitnessAnswer other = gone;
  other.ttl = 10s;
  other.key = LeaderKey{true, "main", 8, 9, std::nullopt};
  auto o = AbsorbWitness(s, other, "backup", kWitT0 + 1s);
  EXPECT_EQ(o.lease_id, 0);

  // A failure keeps the lease (it may still hold) and starts the clock of unreachability.
  WitnessAnswer fail;
  fail.request = WitnessRequest::kRenew;
  fail.error = "Couldn't connect to server";
  auto f = AbsorbWitness(s, fail, "backup", kWitT0 + 2s);
  EXPECT_EQ(f.lease_id, 5);
  EXPECT_EQ(f.unreachable_since, kWitT0 + 2s);
  auto f2 = AbsorbWitness(f, fail, "backup", kWitT0 + 3s);
  EXPECT_EQ(f2.unreachable_since, kWitT0 + 2s);
  EXPECT_EQ(f2.error, "Couldn't connect to server");
  // An answer ends it.
  WitnessAnswer read;
  read.request = WitnessRequest::kRead;
  read.ok = true;
  read.key = LeaderKey{true, "backup", 7, 5, 9000ms};
  auto r = AbsorbWitness(f2, read, "backup", kWitT0 + 4s);
  EXPECT_FALSE(r.unreachable_since);
  EXPECT_EQ(r.lease_id, 5);
  EXPECT_EQ(r.last_ok, kWitT0 + 4s);
}

TEST(EtcdGateway, Base64) {
  for (std::string s : std::vector<std::string>{"", "a", "ab", "abc", "/mailtwin/lab/leader",
                                                std::string("\0\xff\x10", 3)})
    EXPECT_EQ(etcd::Base64Decode(etcd::Base64Encode(s)), s);
  EXPECT_EQ(etcd::Base64Encode("/mt/lab/leader"), "L210L2xhYi9sZWFkZXI=");
  for (const char* bad : {"abc", "a===", "ab=c", "=abc", "ab!c", "YQ==YQ==", "  YQ", "YQ  ", "YQ\n\n"})
    EXPECT_FALSE(etcd::Base64Decode(bad)) << bad;
}

TEST(EtcdGateway, LeaderValue) {
  LeaderKey k;
  EXPECT_EQ(etcd::ParseLeaderValue(etcd::LeaderValue("main", 3), k), "");
  EXPECT_EQ(k.holder, "main");
  EXPECT_EQ(k.epoch, 3u);
  for (const char* bad :
       {"", "[]", "{\"node\":\"main\"}", "{\"node\":\"a b\",\"epoch\":1}",
        "{\"node\":\"main\",\"epoch\":0}", "{\"node\":\"main\",\"epoch\":-1}",
        "{\"node\":\"main\",\"epoch\":\"3\"}", "{\"node\":\"main\",\"epoch\":9223372036854775807}",
        "{\"node\":1,\"epoch\":1}", "not json"}) {
    LeaderKey b;
    EXPECT_NE(etcd::ParseLeaderValue(bad, b), "") << bad;
  }
  LeaderKey b;
  EXPECT_NE(etcd::ParseLeaderValue(std::string(600, ' '), b), "");
  std::uint64_t e = 0;
  EXPECT_EQ(etcd::ParseEpoch("12", e), "");
  EXPECT_EQ(e, 12u);
  for (const char* bad : {"", "-1", "1x", "99999999999999999999999", "9223372036854775807"})
    EXPECT_NE(etcd::ParseEpoch(bad, e), "") << bad;
}

TEST(EtcdGateway, Range) {
  using nlohmann::json;
  const std::string key = "/mt/lab/leader";
  etcd::KeyValue kv;
  // As etcd 3.4's gateway answers (captured), absent and present.
  EXPECT_EQ(etcd::ParseRange(json::parse(R"({"header":{"revision":"1"}})"), key, kv), "");
  EXPECT_FALSE(kv.exists);
  auto present = json::parse(
      R"({"header":{"revision":"2"},"kvs":[{"key":"L210L2xhYi9sZWFkZXI=","create_revision":"2",)"
      R"("mod_revision":"2","version":"1","value":"eyJub2RlIjoibWFpbiIsImVwb2NoIjoxfQ==",)"
      R"("lease":"2324035784562918153"}],"count":"1"})");
  EXPECT_EQ(etcd::ParseRange(present, key, kv), "");
  EXPECT_TRUE(kv.exists);
  EXPECT_EQ(kv.value, R"({"node":"main","epoch":1})");
  EXPECT_EQ(kv.mod_revision, 2);
  EXPECT_EQ(kv.lease, 2324035784562918153);
  // Hostile: another key, two keys, bad base64, bad numbers.
  auto other = present;
  other["kvs"][0]["key"] = etcd::Base64Encode("/mt/other/leader");
  EXPECT_NE(etcd::ParseRange(other, key, kv), "");
  auto two = present;
  two["kvs"].push_back(present["kvs"][0]);
  EXPECT_NE(etcd::ParseRange(two, key, kv), "");
  auto b64 = present;
  b64["kvs"][0]["value"] = "!!!";
  EXPECT_NE(etcd::ParseRange(b64, key, kv), "");
  auto rev = present;
  rev["kvs"][0]["mod_revision"] = "12x";
  EXPECT_NE(etcd::ParseRange(rev, key, kv), "");
  auto lease = present;
  lease["kvs"][0]["lease"] = "-5";
  EXPECT_NE(etcd::ParseRange(lease, key, kv), "");
  EXPECT_NE(etcd::ParseRange(json::array(), key, kv), "");
}

TEST(EtcdGateway, Lease) {
  using nlohmann::json;
  std::int64_t id = 0, ttl = 0;
  EXPECT_EQ(etcd::ParseLease(json::parse(R"({"header":{},"ID":"2324035784562918149","TTL":"5"})"),
                             id, ttl),
            "");
  EXPECT_EQ(id, 2324035784562918149);
  EXPECT_EQ(ttl, 5);
  // keepalive: {"result": ...}; a lease etcd no longer has comes back without a TTL.
  EXPECT_EQ(etcd::ParseLease(json::parse(R"({"result":{"header":{},"ID":"123"}})"), id, ttl), "");
  EXPECT_EQ(ttl, 0);
  // timetolive of a gone lease: TTL -1.
  EXPECT_EQ(etcd::ParseLease(json::parse(R"({"ID":"9","TTL":"-1"})"), id, ttl), "");
  EXPECT_EQ(ttl, 0);
  for (const char* bad : {R"({"TTL":"5"})", R"({"ID":"0","TTL":"5"})", R"({"ID":"x","TTL":"5"})",
                          R"({"ID":"7","TTL":"99999999999"})", R"({"error":"etcdserver: no leader","ID":"7"})",
                          R"({"ID":"18446744073709551615","TTL":"5"})"})
    EXPECT_NE(etcd::ParseLease(json::parse(bad), id, ttl), "") << bad;
}
