#include "ha/decide.h"

#include <fmt/format.h>

namespace mailtwin::ha {

std::string_view ActionName(Action a) {
  switch (a) {
    case Action::kStartPostfix: return "start-postfix";
    case Action::kStopPostfix: return "stop-postfix";
    case Action::kFence: return "fence";
    case Action::kPromote: return "promote";
    case Action::kFailback: return "failback";
    case Action::kSwitchover: return "switchover";
    case Action::kReconfirm: return "reconfirm";
  }
  return "?";
}

std::string_view ConditionName(Condition c) {
  switch (c) {
    case Condition::kNone: return "";
    case Condition::kPrimaryLost: return "primary-lost";
    case Condition::kStandbyLost: return "standby-lost";
    case Condition::kQueueTrouble: return "queue-trouble";
  }
  return "?";
}

std::string_view VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kAccept: return "accept";
    case Verdict::kFollow: return "follow";
    case Verdict::kStepDown: return "step-down";
    case Verdict::kRefuse: return "refuse";
  }
  return "?";
}

HaConfig HaConfigOf(const Config& cfg) {
  HaConfig h;
  h.auto_failover = cfg.auto_failover;
  h.manage_postfix = cfg.manage_postfix;
  h.check_interval = cfg.check_interval;
  h.fail_threshold = cfg.fail_threshold;
  h.peer_timeout = cfg.peer_timeout;
  h.min_free_mb = cfg.min_free_mb;
  h.preferred = cfg.preferred;
  h.auto_failback = cfg.auto_failback;
  h.failback_delay = cfg.failback_delay;
  return h;
}

namespace {

// The decision: the role after the actions (which may change it: kPromote
// makes a standby primary), the actions, and why.
Decision Decided(NodeRole role, std::string reason, std::vector<Action> actions = {}) {
  return Decision{role, std::move(actions), std::move(reason), Condition::kNone};
}

Decision DecidePrimary(const Observations& o, const HaConfig& c) {
  const auto P = NodeRole::kPrimary;
  if (o.switching) return Decided(P, "switchover under way: deliveries, then intake, stop; the standby gets every change");
  // A take-over that could not move the mirror into the queue: serving would
  // strand the mirrored mail, so Postfix stays stopped until it is fixed.
  if (!o.promotion_failed.empty())
    return Decided(P,
                   fmt::format("the take-over did not complete ({}): Postfix stays stopped; fix "
                               "it, then run `mailtwin promote` again",
                               o.promotion_failed),
                   o.postfix_running ? std::vector<Action>{Action::kStopPostfix}
                                     : std::vector<Action>{});
  if (o.epoch_confirmed && o.stalled >= c.lease())
    return Decided(P,
                fmt::format("this daemon stalled for {} ms (lease {} ms): the standby may have "
                            "taken over, so Postfix stops until the peer confirms epoch {}",
                            o.stalled.count(), c.lease().count(), o.epoch),
                {Action::kFence});
  if (!o.epoch_confirmed && o.fenced_by_stall && !o.paused) {
    // The stall gave the standby its chance to take over, and the fence
    // gives it another (our SMTP is down now). A peer that took over serves
    // (its Hello, or its SMTP answering, says so); one that still neither
    // dials in nor answers SMTP after handover_grace, a take-over's time,
    // did not: without this a node whose peer is down stayed fenced for
    // good.
    if (!o.link_live && o.probe_failures >= c.fail_threshold &&
        o.unconfirmed_for >= c.handover_grace())
      return Decided(P,
                     fmt::format("fenced after a stall, but the peer does not serve ({} probes "
                                 "of its SMTP service failed: {}) and no link came up in {} ms: "
                                 "it did not take over; epoch {} is confirmed again",
                                 o.probe_failures, o.probe_error, o.unconfirmed_for.count(),
                                 o.epoch),
                     {Action::kReconfirm});
    return Decided(P, fmt::format("fenced after a stall: Postfix stays stopped until the peer "
                                  "confirms epoch {}, or its SMTP service has failed {} probes "
                                  "in a row ({} so far) and {} ms passed without a link",
                                  o.epoch, c.fail_threshold, o.probe_failures,
                                  c.handover_grace().count()));
  }
  if (!o.epoch_confirmed) {
    // A Postfix already running (the daemon restarted) keeps serving while
    // the peer has peer_timeout to answer: a standby that is up confirms in
    // milliseconds. After that it is stopped: a newer primary may exist.
    bool fence = o.postfix_running && o.unconfirmed_for >= c.peer_timeout;
    std::string why = fmt::format(
        "epoch {} is not confirmed by the peer yet: {} (promote --force serves without the "
        "peer)",
        o.epoch,
        o.postfix_running ? (fence ? "fencing Postfix" : "Postfix keeps running a little longer")
                          : "Postfix stays stopped");
    return fence ? Decided(P, why, {Action::kFence}) : Decided(P, why);
  }
  if (o.postfix_running && (!o.queue_writable || o.queue_free_mb < c.min_free_mb)) {
    // Postfix itself answers 4xx when it cannot write (nothing is lost).
    // With a healthy standby in sync the role moves there after a while;
    // otherwise the administrator must act.
    std::string trouble = o.queue_writable
                              ? fmt::format("has {:.0f} MB free (min_free_mb {:.0f})", o.queue_free_mb,
                                            c.min_free_mb)
                              : std::string("cannot be written");
    if (c.auto_failover && !o.paused && o.link_live && o.caught_up && o.peer_queue_ok == true) {
      if (o.since_switchover_failed && *o.since_switchover_failed < c.switchover_retry) {
        Decision d = Decided(P, fmt::format("serving at epoch {}, but the queue's filesystem {}; the "
                                         "last switchover failed {} s ago: trying again in {} s",
                                         o.epoch, trouble, o.since_switchover_failed->count() / 1000,
                                         (c.switchover_retry - *o.since_switchover_failed).count() / 1000));
        d.condition = Condition::kQueueTrouble;
        return d;
      }
      if (o.queue_trouble_for >= c.queue_trouble_delay) {
        Decision d = Decided(NodeRole::kStandby,
                          fmt::format("the queue's filesystem {} for {} s and {}'s is healthy: "
                                      "handing the role over (switchover)",
                                      trouble, o.queue_trouble_for.count() / 1000, o.peer_node),
                          {Action::kSwitchover});
        d.condition = Condition::kQueueTrouble;
        return d;
      }
      Decision d = Decided(P, fmt::format("serving at epoch {}, but the queue's filesystem {}: the "
                                       "role moves to {} if this lasts {} s",
                                       o.epoch, trouble, o.peer_node,
                                       c.queue_trouble_delay.count() / 1000));
      d.condition = Condition::kQueueTrouble;
      return d;
    }
    Decision d = Decided(P, o.queue_writable
                             ? fmt::format("serving at epoch {}, but the queue's filesystem has "
                                           "{:.0f} MB free (min_free_mb {:.0f}): free space or "
                                           "switch over",
                                           o.epoch, o.queue_free_mb, c.min_free_mb)
                             : fmt::format("serving at epoch {}, but the queue's filesystem "
                                           "cannot be written: Postfix answers 4xx; fix the disk "
                                           "or switch over",
                                           o.epoch));
    d.condition = Condition::kQueueTrouble;
    return d;
  }
  if (o.postfix_running) {
    if (!o.link_live && o.link_down_for >= c.peer_timeout) {
      Decision d = Decided(P, fmt::format("serving at epoch {}; the standby is unreachable for {} ms: "
                                       "mail is not replicated",
                                       o.epoch, o.link_down_for.count()));
      d.condition = Condition::kStandbyLost;
      return d;
    }
    if (c.auto_failback && !c.preferred.empty() && o.self_node != c.preferred &&
        o.peer_node == c.preferred && o.link_live && !o.paused) {
      if (o.peer_queue_ok == false)
        return Decided(P, fmt::format("serving at epoch {}; no failback to {}: its queue's "
                                   "filesystem is in trouble",
                                   o.epoch, c.preferred));
      if (!o.peer_queue_ok)
        return Decided(P, fmt::format("serving at epoch {}; failback to {} waits for its status "
                                   "report (sent once a second on the link)",
                                   o.epoch, c.preferred));
      if (o.since_switchover_failed && *o.since_switchover_failed < c.switchover_retry)
        return Decided(P, fmt::format("serving at epoch {}; the last switchover failed {} s ago: "
                                   "failback to {} tried again in {} s",
                                   o.epoch, o.since_switchover_failed->count() / 1000, c.preferred,
                                   (c.switchover_retry - *o.since_switchover_failed).count() / 1000));
      if (o.link_live_for >= c.failback_delay && o.caught_up && o.peer_queue_ok == true)
        return Decided(NodeRole::kStandby,
                    fmt::format("failback: the preferred node {} has been in sync for {} s: "
                                "handing the role back (switchover)",
                                c.preferred, o.link_live_for.count() / 1000),
                    {Action::kFailback});
      return Decided(P, fmt::format("serving at epoch {}; failback to {} once it has been in sync "
                                 "for {} s ({} s so far)",
                                 o.epoch, c.preferred, c.failback_delay.count() / 1000,
                                 o.link_live_for.count() / 1000));
    }
    return Decided(P, fmt::format("serving at epoch {}", o.epoch));
  }
  if (o.paused) return Decided(P, "paused: Postfix is not running and is not started");
  if (!c.manage_postfix)
    return Decided(P, "Postfix is not running (manage_postfix = false: not starting it)");
  if (o.postfix_start_failures >= c.max_postfix_starts)
    return Decided(P, fmt::format("Postfix failed to start {} times: see its log; the standby "
                               "takes over when its probes keep failing",
                               o.postfix_start_failures));
  return Decided(P,
              fmt::format("Postfix is not running: starting it (attempt {})",
                          o.postfix_start_failures + 1),
              {Action::kStartPostfix});
}

Decision DecideStandby(const Observations& o, const HaConfig& c, Clock::time_point now) {
  const auto S = NodeRole::kStandby;
  if (o.postfix_running && c.manage_postfix)
    return Decided(S, "a standby's Postfix must not serve: stopping it", {Action::kStopPostfix});
  if (o.paused) return Decided(S, "paused: no automatic failover");
  bool silent = !o.link_up || !o.last_from_primary ||
                now - *o.last_from_primary >= c.peer_timeout;
  auto silence = [&] {
    if (!o.link_up) return std::string("the replication link is closed");
    if (!o.last_from_primary) return std::string("nothing came over the replication link");
    return fmt::format("nothing came over the replication link for {} ms",
                       std::chrono::duration_cast<Millis>(now - *o.last_from_primary).count());
  };
  // With the link silent, overlapping probes count (a dead host makes them
  // all hang); with it alive, failures count one after another, as a single
  // probe would see them: a busy primary is slow, not broken.
  std::string why = o.probe_error.empty() ? "" : " (" + o.probe_error + ")";
  std::string probes =
      silent ? fmt::format("{} consecutive SMTP probe failures{}", o.probe_failures, why)
             : fmt::format("{} SMTP probe failures one after another ({} overlapping){}",
                           o.probe_serial_failures, o.probe_failures, why);
  bool down = silent && o.probe_failures >= c.fail_threshold;
  bool broken = !silent && o.probe_serial_failures >= c.fail_threshold_link_up();
  if ((down || broken) && o.since_handed_over && *o.since_handed_over < c.handover_grace())
    return Decided(S, fmt::format("{} and {}, but this node handed the role to {} {} ms ago and "
                                  "it is still taking over: waiting up to {} ms for it to serve",
                                  probes, silence(), o.peer_node.empty() ? "the peer" : o.peer_node,
                                  o.since_handed_over->count(), c.handover_grace().count()));
  if (down || broken) {
    std::string what =
        down ? fmt::format("primary down: {} and {}", probes, silence())
             : fmt::format("primary's SMTP service is broken: {} while its daemon is alive "
                           "(it is fenced over the link)",
                           probes);
    Decision d;
    if (!o.primary_seen)
      d = Decided(S, what + "; but no primary has connected since this daemon started, so this "
                         "mirror may be stale: not taking over (promote --force does)");
    else if (!c.auto_failover)
      d = Decided(S, what + "; failover = manual: run `mailtwin promote` to take over");
    else
      d = Decided(NodeRole::kPrimary, fmt::format("{}: taking over at epoch {}", what, o.epoch + 1),
               {Action::kPromote});
    d.condition = Condition::kPrimaryLost;
    return d;
  }
  if (silent && o.probe_failures == 0)
    return Decided(S, fmt::format("{}, but the primary answers SMTP: replication degraded, not "
                               "failing over",
                               silence()));
  if (o.probe_failures > 0)
    return Decided(S, fmt::format("{} (threshold {}{}): waiting", probes,
                               silent ? c.fail_threshold : c.fail_threshold_link_up(),
                               silent ? "" : ", its daemon is alive"));
  if (!o.primary_seen) return Decided(S, "waiting for the primary to connect");
  return Decided(S, fmt::format("following the primary at epoch {}", o.epoch));
}

}  // namespace

Decision Decide(const Observations& o, const HaConfig& c, Clock::time_point now) {
  return o.role == NodeRole::kPrimary ? DecidePrimary(o, c) : DecideStandby(o, c, now);
}

Judgement JudgePeer(const PeerView& self, const PeerView& peer) {
  using enum Verdict;
  const bool self_primary = self.role == NodeRole::kPrimary;
  const bool peer_primary = peer.role == NodeRole::kPrimary;
  // Checked before any other rule: a claim far ahead of ours cannot be
  // verified without a witness, so it never becomes anybody's epoch.
  if (!EpochBelievable(self.epoch, peer.epoch))
    return {kRefuse, self.epoch,
            fmt::format("{} claims epoch {}, beyond what this node (epoch {}) can believe: epochs "
                        "grow by one per promotion, at most {} ahead; refusing it. Check the "
                        "peer's state directory (a corrupt or forged node state); this node keeps "
                        "its role and epoch",
                        peer.node, peer.epoch, self.epoch, kMaxEpochLead)};
  auto top = std::max(self.epoch, peer.epoch);
  if (self_primary && !peer_primary) {
    if (peer.epoch <= self.epoch)
      return {kAccept, self.epoch,
              fmt::format("standby {} (epoch {}) follows this primary at epoch {}", peer.node,
                          peer.epoch, self.epoch)};
    return {kStepDown, top,
            fmt::format("standby {} knows epoch {}, newer than ours ({}): a newer primary "
                        "existed; stepping down",
                        peer.node, peer.epoch, self.epoch)};
  }
  if (self_primary && peer_primary) {
    bool we_lose = peer.epoch > self.epoch || (peer.epoch == self.epoch && peer.node < self.node);
    if (peer.epoch == self.epoch)
      return {we_lose ? kStepDown : kRefuse, top,
              fmt::format("split brain: {} and {} are both primary at epoch {}; {} keeps the "
                          "role (smaller name), the other steps down and hands its mail over",
                          self.node, peer.node, self.epoch, we_lose ? peer.node : self.node)};
    if (we_lose)
      return {kStepDown, top,
              fmt::format("{} is primary at epoch {}, newer than ours ({}): stepping down and "
                          "handing our mail over",
                          peer.node, peer.epoch, self.epoch)};
    return {kRefuse, top,
            fmt::format("{} claims primary at epoch {}, older than ours ({}): it must step down",
                        peer.node, peer.epoch, self.epoch)};
  }
  if (!self_primary && peer_primary) {
    if (peer.epoch >= self.epoch)
      return {kFollow, peer.epoch,
              fmt::format("following primary {} at epoch {}", peer.node, peer.epoch)};
    return {kRefuse, top,
            fmt::format("{} claims primary at epoch {}, but this node knows epoch {}: it is "
                        "stale and must step down",
                        peer.node, peer.epoch, self.epoch)};
  }
  return {kRefuse, top,
          fmt::format("both {} and {} are standby: nobody serves; promote one of them",
                      self.node, peer.node)};
}

}  // namespace mailtwin::ha
