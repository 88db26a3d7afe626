// daemon.h - mailtwind: one node's event loop, wiring the parts together.
//
// The parts, each an object whose lifetime is what it serves:
//   MirrorSide    every node, always: the mirror and the replication
//                 listener (a standby follows through it; a primary meets a
//                 rival there), and the handover of set-aside messages;
//   PrimarySide   while primary: watcher, link to the standby, gate,
//                 handover sink; created at start or take-over, destroyed
//                 at step-down;
//   PrimaryProbe  while standby: failed SMTP probes of the primary;
//   Relay         every node, always (when [relay] listen is set): the public
//                 SMTP port, passed to this node's Postfix or to the peer's
//                 (relay/relay.h); its route follows the role (SyncRelay);
//   RoleStore     role, epoch, pause flag: stored before they change;
//   PostfixControl, QueueFsProbe, net::Vip: effects on this host.
// Every check_interval, Tick observes, ha::Decide decides, Apply acts. Peers
// met on the link are judged by ha::JudgePeer (the higher epoch serves).
// Role transitions run the step lists of node/transitions.h; a switchover
// is the pure machine of node/switchover.h, stepped every 2 ms.
//
// The node's life, as the role store and the HA state say it:
//
//   standby --(primary lost: Decide kPromote / promote / Switchover frame)--> primary
//      ^                                                                       |
//      +----(a newer epoch met: JudgePeer kStepDown / switchover done)---------+
//
//   primary, unconfirmed --(a peer accepts our epoch, or we took over)--> serving
//   serving --(our loop stalled past the lease: kFence)--> primary, unconfirmed
//
// A node restarts in the role it last stored; a primary serves (runs
// Postfix) only once confirmed. Events go to the event log and notifier.
// Single-threaded (the notifier has its own thread): one asio::io_context.
// Blocking work on the loop (Postfix start/stop, promotion's moves) is
// counted as busy time, not as a stall (Busy below).
#pragma once

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <asio.hpp>

#include "common/config.h"
#include "ctl/control.h"
#include "gate/dedup_table.h"
#include "ha/decide.h"
#include "ha/events.h"
#include "ha/ledger.h"
#include "metrics/http_server.h"
#include "net/vip.h"
#include "ha/witness.h"
#include "node/etcd_client.h"
#include "node/mirror_side.h"
#include "node/postfix_control.h"
#include "node/primary_probe.h"
#include "node/primary_side.h"
#include "node/queue_fs_probe.h"
#include "node/role_store.h"
#include "node/switchover.h"
#include "relay/relay.h"
#include "repl/identity.h"

namespace mailtwin {

class Daemon {
 public:
  explicit Daemon(Config cfg);
  ~Daemon();
  // Runs until SIGTERM/SIGINT. Returns the process exit code.
  int Run();

 private:
  std::string Init();
  std::string ReadPostfixLayout();
  std::string StartMirrorSide();
  std::string StartPrimarySide();
  repl::Identity Ident() const;
  std::string HandoverDir() const { return mirror_dir_ + "-handover"; }

  // Control commands (daemon_control.cc).
  ctl::Json Handle(const ctl::Json& req);
  ctl::Json Status();
  ctl::Json Promote(const ctl::Json& req);
  ctl::Json SetPaused(bool paused);

  // Observe, decide, apply.
  void ScheduleTick();
  void Tick();
  ha::Observations Observe(ha::Clock::time_point now);
  void Evaluate(ha::Clock::time_point now);
  // Standby: one more decision when the link's silence reaches peer_timeout.
  void WatchSilence(ha::Clock::time_point now);
  void Apply(const ha::Decision& d, ha::Clock::time_point now);
  void TellConditions(const ha::Decision& d);
  void Raise(const std::string& kind, const std::string& reason, const std::string& peer = {});
  void RaiseIfUnprotected();

  // The virtual IP follows the role: held while this node is a serving
  // primary, given up first thing when it is not.
  void SyncVip(ha::Clock::time_point now);
  void ReleaseVip(const std::string& why);
  ctl::Json VipJson() const;

  // The status exchange: this node's view of itself, sent to the peer
  // about once a second.
  repl::msg::NodeStatus SelfStatus() const;
  void OnPeerStatus(const std::string& node, const repl::msg::NodeStatus& m);
  void SendStatus(ha::Clock::time_point now);

  // systemd (Type=notify): READY=1 once the node follows as standby or
  // serves as primary (epoch confirmed, Postfix running); the decision's
  // reason as the unit's status line.
  void NotifyIfReady();
  bool ready_sent_ = false;
  // The relay's route from the role: a primary whose Postfix runs takes
  // its clients itself, a standby passes them on, a primary not serving
  // yet holds them.
  void SyncRelay();

  bool StartPostfix();
  void StopPostfix(bool fence);

  // Role transitions (node/transitions.h). TakeOver returns the control
  // reply. A switchover names the epoch, and its old primary follows at
  // once; after a failover no standby is expected until one connects.
  // at_least: the epoch the witness stored with its leader key (a
  // failover through the witness takes exactly that epoch).
  ctl::Json TakeOver(const std::string& reason,
                     std::optional<std::uint64_t> switchover_epoch = std::nullopt,
                     std::uint64_t at_least = 0);
  void StepDown(std::uint64_t epoch, const std::string& reason);
  // A primary whose mirror still holds mail (its take-over was cut short
  // by a crash or power loss after the role was stored) makes it live.
  void FinishTakeOver();
  void OnInSync();

  // Hellos met on the link. A primary that dialed this node's listener
  // claims the role: follow it, step down for it, or refuse it.
  std::optional<repl::msg::Error> JudgeClaimedPrimary(const repl::msg::Hello& peer);
  // The node this primary's link reached: our standby (its acceptance
  // confirms our epoch), or a rival primary.
  std::optional<repl::msg::Error> JudgeReplicaPeer(const repl::msg::Hello& peer);
  repl::msg::Hello SelfHello() const;

  // The witness (daemon_witness.cc, ha/witness.h): Decide's decision as the
  // witness allows it; the requests it asks for go to etcd's client.
  ha::Decision Witness(ha::Decision d, ha::Clock::time_point now);
  void SendWitness(ha::WitnessRequest r, std::uint64_t epoch, bool exact, std::string reason);
  void OnWitnessAnswer(const ha::WitnessAnswer& a, const std::string& reason);
  // At a step-down: our lease is revoked, so the new primary need not wait.
  void ReleaseWitness();
  ctl::Json WitnessJson() const;

  // Switchover (daemon_switchover.cc; kind is "switchover" or "failback").
  ctl::Json StartSwitchover(const std::string& reason, const std::string& kind);
  ctl::Json RequestSwitchover(const std::string& reason, const std::string& kind);
  void SwitchoverPoll();
  void SwitchoverFailed(const std::string& why);
  void SwitchoverDone();
  // Undoes what a switchover under way has done to Postfix (SIGCONT to its
  // queue manager) and lets a lingering address go: mailtwind stops.
  void AbandonSwitchover(const std::string& why);

  Config cfg_;
  asio::io_context io_;
  asio::signal_set signals_;
  asio::steady_timer tick_timer_;
  asio::steady_timer switch_timer_;
  asio::steady_timer silence_timer_;
  RoleStore roles_;
  repl::Identity ident_;  // its epoch is roles_.epoch(): see Ident()
  std::string queue_dir_;
  std::string mirror_dir_;
  repl::HashLayout hash_;
  std::chrono::steady_clock::time_point started_;

  std::unique_ptr<LocalPostfix> postfix_;
  std::unique_ptr<QueueFsProbe> fs_probe_;
  std::unique_ptr<MirrorSide> mirror_side_;
  std::unique_ptr<PrimarySide> primary_;  // while primary
  PrimaryProbe probe_;

  std::unique_ptr<ctl::ControlServer> control_;
  std::unique_ptr<metrics::HttpServer> metrics_;
  std::unique_ptr<relay::Relay> relay_;
  std::unique_ptr<net::Vip> vip_;
  bool vip_held_ = false;
  // After a switchover the old primary keeps the address a little longer:
  // its Postfix is stopped, so a client that still sends there gets a reset
  // and tries again at once, instead of a silence until its SYN is resent
  // (1 s) while the new primary starts and announces itself.
  ha::Clock::time_point vip_linger_until_{};
  std::string vip_error_;  // the last failure, reported once

  // What the peer last said of itself (NodeStatus), and when.
  std::optional<repl::msg::NodeStatus> peer_status_;
  std::string peer_status_node_;
  ha::Clock::time_point peer_status_at_{}, status_sent_at_{};

  // Measures blocking work of this loop (not a stall: see Tick).
  struct Busy {
    explicit Busy(Daemon& daemon) : d(daemon) { ++d.busy_depth_; }
    ~Busy();
    Daemon& d;
    std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  };
  Millis busy_{0};
  Millis stalled_{0};   // measured by Tick, seen by its decision
  int busy_depth_ = 0;  // only the outermost Busy counts
  ha::HaConfig ha_;
  ha::Clock::time_point last_tick_;
  // A primary serves once its epoch is confirmed (ha/decide.h).
  bool epoch_confirmed_ = false;
  std::optional<ha::Clock::time_point> unconfirmed_since_;
  // The epoch stopped being confirmed because the loop stalled: the peer's
  // SMTP service is probed until it confirms (ha::Observations).
  bool fenced_by_stall_ = false;
  // A primary, fenced by a stall, whose epoch no one confirmed since.
  bool FencedByStall() const;
  // This node's SMTP probes of its peer run: a standby's, or a primary's
  // fenced by a stall.
  bool Probing() const;
  bool primary_seen_ = false;
  // When this node handed the role over (switchover, failback), until the
  // new primary connects: Decide gives it handover_grace to come up.
  std::optional<ha::Clock::time_point> handed_over_at_;
  int postfix_start_failures_ = 0;
  // The last take-over could not make the mirror live: Postfix must not
  // serve a queue without the mirrored mail (ha::Observations).
  std::string promotion_failed_;
  std::uint64_t refused_epoch_ = 0;  // the last unbelievable epoch told
  std::optional<ha::Clock::time_point> queue_trouble_since_;
  std::optional<ha::Clock::time_point> switchover_failed_at_;
  ha::Decision last_decision_;
  std::chrono::system_clock::time_point last_decision_at_{};
  // Conditions told once while they last, by ha::Condition.
  std::array<bool, 4> told_{};
  bool degraded_told_ = false;
  std::size_t handover_pending_ = 0;
  ha::Ledger ledger_;
  // Duplicates after a failover (docs/gate.md): the fingerprints a standby
  // received lately, and the table a primary answers resends from.
  gate::DedupTable dedup_;
  std::unique_ptr<gate::RecentFingerprints> recent_fps_;
  ha::Clock::time_point dedup_expired_at_{};
  void InheritFingerprints();
  ctl::Json DedupJson() const;

  struct Switching {
    std::string reason, kind;
    switchover::State sm;
    pid_t master = 0, qmgr = 0;  // qmgr: SIGSTOPped until Postfix stops
    ha::Clock::time_point scanned;  // the last look at /proc
    std::size_t delivering = 0;
    bool diag_warned = false;
  };
  std::optional<Switching> switching_;
  std::optional<double> last_switch_pause_s_;
  ha::EventLog events_;
  std::unique_ptr<ha::Notifier> notifier_;

  // [witness]: the etcd client, and what this node knows of its lease.
  std::unique_ptr<etcd::Client> witness_;
  ha::WitnessConfig wcfg_;
  ha::WitnessState wstate_;
  std::string witness_summary_;
  bool witness_lost_told_ = false;
  std::string witness_error_logged_;
  ha::Clock::time_point primary_started_{};  // the primary side's start (witness)
};

}  // namespace mailtwin
