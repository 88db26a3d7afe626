// witness.h - the etcd witness as pure logic (docs/failover.md, "The witness").
//
// With a [witness], the cluster's leader key <prefix><cluster>/leader in etcd,
// attached to a lease with a TTL, says who may serve; <prefix><cluster>/epoch
// holds the cluster's epoch. The rules, in one place:
// - A primary serves (runs Postfix) while it holds the key: its lease cannot
//   have expired at etcd yet, judged on this host's monotonic clock only,
//   from the moment the lease's last grant or keepalive was *sent* (etcd
//   starts the TTL later than that), shortened by kRateMargin for a clock
//   that runs faster than etcd's. It renews every renew_every; it fences
//   itself (Postfix stopped) fence_margin before that bound when it could
//   not renew and its standby is unreachable too. A primary that reaches its
//   standby keeps serving without etcd (Patroni's "failsafe"): the standby
//   cannot take over without the witness.
// - A standby takes over only when ha::Decide says the primary is lost AND
//   it then acquires the key in one compare-and-swap transaction: the key
//   absent (the old lease expired) and the epoch key unchanged since read;
//   the transaction stores the new epoch (the store's epoch + 1) with the
//   key. No witness answer, no failover.
// - The store names a newer primary than us (its key or its epoch key):
//   step down to that epoch.
// Two pure functions: StepWitness (every decision: rewrites ha::Decide's
// decision, says which request to send) and AbsorbWitness (folds an answer
// from etcd into the state). No sockets, files or clocks inside.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "common/config.h"
#include "ha/decide.h"

namespace mailtwin::ha {

// This host's monotonic clock may run faster than the etcd leader's by at
// most this much: NTP slews a clock by at most 500 ppm, a quartz drifts by
// 100 ppm or less; 1 % leaves a wide margin.
inline constexpr double kRateMargin = 0.01;

struct WitnessConfig {
  Millis ttl{10000};         // the lease's TTL at etcd
  Millis renew_every{2500};  // a primary's keepalives (ttl / 4)
  Millis retry_every{250};   // after a failed request, and a standby's reads
  // A primary that could not renew fences this long before its lease can
  // have expired: time for `postfix abort` and a late tick.
  Millis fence_margin{2000};
  // A standby's read of the key older than this is no evidence.
  Millis fresh{1000};
  // How long the witness must stay unreachable before the event is raised.
  Millis lost_after{2500};
  // How long this host waits at most for the lease to end after `sent`
  // (the granted TTL, shortened by kRateMargin).
  Millis LocalTtl(Millis granted) const {
    return Millis(static_cast<std::int64_t>(static_cast<double>(granted.count()) *
                                            (1.0 - kRateMargin)));
  }
};
WitnessConfig WitnessConfigOf(const Config& cfg);

// What etcd said about the leader key.
struct LeaderKey {
  bool exists = false;
  std::string holder;        // the node named in the value
  std::uint64_t epoch = 0;   // the epoch stored with it
  std::int64_t lease = 0;    // the lease it is attached to
  std::optional<Millis> ttl_left;  // etcd's word on that lease (status only)
  bool operator==(const LeaderKey&) const = default;
};

enum class WitnessRequest {
  kNone,
  kClaim,    // create the key (CAS) at claim_epoch, or adopt ours after a restart
  kRenew,    // keepalive of our lease, and a read of the key
  kRead,     // read the key, the epoch key and the key's lease
  kRelease,  // revoke our lease (the key goes with it): at a step-down
};
std::string_view WitnessRequestName(WitnessRequest r);

struct WitnessState {
  std::int64_t lease_id = 0;  // our lease; 0 = none
  // Our lease cannot have expired at etcd before this (this host's clock).
  std::optional<Clock::time_point> valid_until;
  std::optional<Clock::time_point> last_ok;            // last answer from etcd
  std::optional<Clock::time_point> unreachable_since;  // requests fail since
  std::string error;                                   // why the last one failed
  std::optional<LeaderKey> key;                        // the last read of the key
  std::optional<Clock::time_point> key_read_at;
  std::uint64_t store_epoch = 0;  // the epoch key as last read
  WitnessRequest in_flight = WitnessRequest::kNone;
  std::optional<Clock::time_point> last_sent;
  bool operator==(const WitnessState&) const = default;
};

struct WitnessFacts {
  NodeRole role = NodeRole::kStandby;
  std::uint64_t epoch = 1;
  std::string self;
  bool postfix_running = false;
  // Primary: serving by Decide's rules (a standby accepted our epoch, or we
  // took over); an unconfirmed one is Decide's to fence.
  bool epoch_confirmed = false;
  // Primary: its standby hears it: the link is live, or silent for less
  // than half of peer_timeout (the standby needs all of it to take over).
  bool link_live = false;
  Decision decided;        // what ha::Decide said
};

struct WitnessStep {
  WitnessState state;
  Decision decision;  // Decide's decision as the witness allows it
  WitnessRequest request = WitnessRequest::kNone;
  std::uint64_t claim_epoch = 0;  // kClaim: at least this epoch
  bool claim_exact = false;       // kClaim: exactly claim_epoch (a primary keeps its epoch)
  std::optional<std::uint64_t> step_down_to;  // the store names a newer primary
  std::string summary;  // one line on the witness, for status
};

// True while this node's lease certainly holds, with the fence margin to spare.
bool LeaseHeld(const WitnessState& s, const WitnessConfig& c, Clock::time_point now);

WitnessStep StepWitness(const WitnessState& s, const WitnessFacts& f, const WitnessConfig& c,
                        Clock::time_point now);

// An answer to a request (or its failure), from the etcd client.
struct WitnessAnswer {
  WitnessRequest request = WitnessRequest::kNone;
  bool ok = false;     // etcd answered, and the answer was valid
  std::string error;   // why not
  Clock::time_point sent_at{};   // kClaim/kRenew: when the grant/keepalive went out
  std::int64_t lease_id = 0;     // kClaim: the lease; kRenew: the lease renewed
  Millis ttl{0};                 // granted/renewed TTL; 0: the lease is gone
  bool claimed = false;          // kClaim: the transaction succeeded
  std::uint64_t epoch = 0;       // kClaim: the epoch stored with the key
  std::optional<LeaderKey> key;  // the key as read (absent: not read)
  std::optional<std::uint64_t> store_epoch;  // the epoch key as read (0: absent)
};

WitnessState AbsorbWitness(WitnessState s, const WitnessAnswer& a, const std::string& self,
                           Clock::time_point now);

}  // namespace mailtwin::ha
