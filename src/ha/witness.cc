#include "ha/witness.h"

#include <algorithm>

#include <fmt/format.h>

namespace mailtwin::ha {

std::string_view WitnessRequestName(WitnessRequest r) {
  switch (r) {
    case WitnessRequest::kNone: return "none";
    case WitnessRequest::kClaim: return "claim";
    case WitnessRequest::kRenew: return "renew";
    case WitnessRequest::kRead: return "read";
    case WitnessRequest::kRelease: return "release";
  }
  return "?";
}

WitnessConfig WitnessConfigOf(const Config& cfg) {
  WitnessConfig c;
  c.ttl = cfg.witness_ttl;
  c.renew_every = c.ttl / 4;
  c.retry_every = std::clamp(cfg.check_interval, Millis(100), Millis(500));
  c.fence_margin = std::max(Millis(1000), c.ttl / 5);
  c.fresh = std::max(Millis(1000), 4 * c.retry_every);
  c.lost_after = c.renew_every;
  return c;
}

bool LeaseHeld(const WitnessState& s, const WitnessConfig& c, Clock::time_point now) {
  return s.lease_id != 0 && s.valid_until && now + c.fence_margin < *s.valid_until;
}

namespace {

long long MsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<Millis>(b - a).count();
}

bool Has(const Decision& d, Action a) {
  return std::find(d.actions.begin(), d.actions.end(), a) != d.actions.end();
}

void Drop(Decision& d, Action a) {
  d.actions.erase(std::remove(d.actions.begin(), d.actions.end(), a), d.actions.end());
}

// Why the witness cannot be heard; with how long only for status (a
// decision's reason must not change at every tick).
std::string Unreachable(const WitnessState& s, Clock::time_point now, bool how_long) {
  if (!s.last_ok && !s.unreachable_since) return "the witness has not answered yet";
  if (!s.unreachable_since) return "";
  if (!how_long) return fmt::format("the witness (etcd) is unreachable ({})", s.error);
  return fmt::format("the witness (etcd) is unreachable for {} ms ({})",
                     MsBetween(*s.unreachable_since, now), s.error);
}

std::string Holder(const LeaderKey& k, bool ttl = false) {
  std::string left = ttl && k.ttl_left
                         ? fmt::format(", its lease {} ms left by etcd", k.ttl_left->count())
                         : std::string();
  return fmt::format("{} holds the leader key at epoch {}{}", k.holder, k.epoch, left);
}

}  // namespace

WitnessStep StepWitness(const WitnessState& s, const WitnessFacts& f, const WitnessConfig& c,
                        Clock::time_point now) {
  WitnessStep out;
  out.state = s;
  out.decision = f.decided;
  const bool held = LeaseHeld(s, c, now);
  const bool answered = s.last_ok && !s.unreachable_since;
  const bool fresh = s.key && s.key_read_at && now - *s.key_read_at <= c.fresh;
  auto due = [&](Millis every) {
    return s.in_flight == WitnessRequest::kNone && (!s.last_sent || now - *s.last_sent >= every);
  };
  std::string down = Unreachable(s, now, false);
  std::string down_for = Unreachable(s, now, true);

  if (f.role == NodeRole::kPrimary) {
    // The store says a newer primary exists: its word orders epochs.
    std::uint64_t newer = 0;
    if (fresh && s.key->exists && s.key->holder != f.self && s.key->epoch > f.epoch)
      newer = s.key->epoch;
    if (answered && s.store_epoch > f.epoch) newer = std::max(newer, s.store_epoch);
    if (newer) {
      out.step_down_to = newer;
      out.decision = Decision{NodeRole::kStandby, {},
                              fmt::format("the witness says epoch {} exists (ours is {}){}: "
                                          "stepping down",
                                          newer, f.epoch,
                                          fresh && s.key->exists
                                              ? "; " + Holder(*s.key)
                                              : std::string()),
                              Condition::kNone};
      out.summary = out.decision.reason;
      return out;
    }
    if (s.lease_id != 0) {
      if (due(held && !s.unreachable_since ? c.renew_every : c.retry_every))
        out.request = WitnessRequest::kRenew;
    } else if (due(c.retry_every)) {
      out.request = WitnessRequest::kClaim;
      out.claim_epoch = f.epoch;
      out.claim_exact = true;
    }
    std::string lease =
        held ? fmt::format("holds the leader key: its lease holds {} ms more here (fencing "
                           "{} ms before that if it cannot renew)",
                           MsBetween(now, *s.valid_until), c.fence_margin.count())
             : std::string("does not hold the leader key");
    out.summary = down.empty() ? lease : lease + "; " + down_for;
    if (held) return out;
    // Without the lease: serving is safe only while the standby hears us
    // (it takes over only through the witness, after peer_timeout of
    // silence; link_live counts a silence shorter than half of that).
    if (f.postfix_running && f.epoch_confirmed && !f.link_live &&
        !Has(out.decision, Action::kFence)) {
      out.decision = Decision{
          NodeRole::kPrimary,
          {Action::kFence},
          s.valid_until
              ? fmt::format("the witness lease could not be renewed ({}) and the standby is "
                            "unreachable: fencing, {} ms before the lease can have expired",
                            down.empty() ? "not held" : down,
                            std::max<long long>(0, MsBetween(now, *s.valid_until)))
              : fmt::format("this node does not hold the witness's leader key ({}) and the "
                            "standby is unreachable: fencing",
                            down.empty() ? "claiming it" : down),
          Condition::kNone};
      return out;
    }
    if (Has(out.decision, Action::kStartPostfix)) {
      // Starting without the key: only when etcd cannot answer and the
      // standby confirms us (the pair works as without a witness).
      if (!(f.link_live && s.unreachable_since)) {
        Drop(out.decision, Action::kStartPostfix);
        out.decision.reason += fmt::format("; but not before this node holds the witness's "
                                           "leader key ({})",
                                           down.empty() ? "claiming it" : down);
      }
    } else if (f.postfix_running && !down.empty()) {
      out.decision.reason += fmt::format("; {}: serving on while the standby follows (no failover "
                                         "decision without the witness)",
                                         down);
    }
    return out;
  }

  // Standby: the key is read all the time (status, and evidence for a take-over).
  if (due(c.retry_every)) out.request = WitnessRequest::kRead;
  if (s.key && s.key_read_at)
    out.summary = s.key->exists ? Holder(*s.key, true) : std::string("nobody holds the leader key");
  else
    out.summary = "the leader key has not been read yet";
  if (!down.empty()) out.summary += "; " + down_for;
  if (!Has(out.decision, Action::kPromote)) {
    if (s.unreachable_since) out.decision.reason += "; " + down + ": no failover decision without it";
    return out;
  }
  Drop(out.decision, Action::kPromote);
  out.decision.role = NodeRole::kStandby;
  std::string& why = out.decision.reason;
  if (s.in_flight == WitnessRequest::kClaim) {
    why += "; claiming the witness's leader key";
  } else if (!answered) {
    why += "; but " + (down.empty() ? std::string("the witness has not answered") : down) +
           ": no failover without the witness";
  } else if (!fresh) {
    why += "; waiting for a fresh read of the witness's leader key";
  } else if (s.key->exists) {
    why += "; but " + Holder(*s.key) + ": taking over only once its lease has expired";
  } else if (s.in_flight == WitnessRequest::kNone) {
    out.request = WitnessRequest::kClaim;
    out.claim_epoch = std::max(f.epoch, s.store_epoch) + 1;
    out.claim_exact = false;
    why += fmt::format("; the primary's lease has expired: claiming the leader key at epoch {}",
                       out.claim_epoch);
  } else {
    why += "; the leader key is free: claiming it once the current request ends";
  }
  return out;
}

WitnessState AbsorbWitness(WitnessState s, const WitnessAnswer& a, const std::string& self,
                           Clock::time_point now) {
  if (s.in_flight == a.request) s.in_flight = WitnessRequest::kNone;
  if (!a.ok) {
    if (!s.unreachable_since) s.unreachable_since = now;
    s.error = a.error.empty() ? "no answer" : a.error;
    return s;
  }
  s.unreachable_since.reset();
  s.error.clear();
  s.last_ok = now;
  if (a.key) {
    s.key = a.key;
    s.key_read_at = now;
  }
  if (a.store_epoch) s.store_epoch = *a.store_epoch;
  // A lease whose TTL the answer does not vouch for is worth nothing here.
  auto adopt = [&](std::int64_t id) {
    s.lease_id = id;
    s.valid_until = a.sent_at + Millis(static_cast<std::int64_t>(
                                    static_cast<double>(a.ttl.count()) * (1.0 - kRateMargin)));
  };
  auto lose = [&] {
    s.lease_id = 0;
    s.valid_until.reset();
  };
  switch (a.request) {
    case WitnessRequest::kRenew: {
      bool ours = !a.key || (a.key->exists && a.key->holder == self && a.key->lease == a.lease_id);
      if (a.ttl > Millis(0) && ours && a.lease_id == s.lease_id)
        adopt(a.lease_id);
      else if (a.lease_id == s.lease_id)
        lose();
      break;
    }
    case WitnessRequest::kClaim:
      if (a.claimed && a.ttl > Millis(0) && a.lease_id != 0) {
        adopt(a.lease_id);
        s.key = LeaderKey{true, self, a.epoch, a.lease_id, a.ttl};
        s.key_read_at = now;
        s.store_epoch = std::max(s.store_epoch, a.epoch);
      }
      break;
    case WitnessRequest::kRelease:
      if (a.lease_id == s.lease_id) lose();
      break;
    case WitnessRequest::kRead:
    case WitnessRequest::kNone:
      // A read that shows the key is not ours any more: our lease no
      // longer stands for the role, whatever etcd's TTL says.
      if (s.lease_id && a.key && (!a.key->exists || a.key->holder != self)) lose();
      break;
  }
  return s;
}

}  // namespace mailtwin::ha
