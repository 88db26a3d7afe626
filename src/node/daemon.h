// daemon.h - mailtwind: one node's event loop, wiring the pieces together.
//
// Every node listens for the replication link and serves the control socket.
// A primary also runs the queue watcher, the replication link to its standby
// and the gate; a standby keeps the mirror and probes the primary. Every
// check_interval the node gathers what it observes, asks ha::Decide what to
// do, and does it (start or stop Postfix, fence, promote); peers met on the
// link are judged by ha::JudgePeer (the higher epoch serves). The role, epoch
// and pause flag persist in the node state file, so a node restarts in the
// role it last had - and a primary serves only once its peer has confirmed
// that no newer primary exists. Events go to the event log and the notifier.
// Single-threaded (the notifier has its own thread): one asio::io_context.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <asio.hpp>

#include "common/config.h"
#include "ctl/control.h"
#include "gate/gate.h"
#include "ha/decide.h"
#include "ha/events.h"
#include "ha/ledger.h"
#include "node/handover.h"
#include "metrics/http_server.h"
#include "net/vip.h"
#include "node/node_state.h"
#include "postfix/processes.h"
#include "repl/mirror.h"
#include "repl/primary_link.h"
#include "repl/queue_model.h"
#include "repl/queue_watcher.h"
#include "repl/standby_server.h"

namespace mailtwin {

class Daemon : private gate::Replicas {
 public:
  explicit Daemon(Config cfg);
  ~Daemon();
  // Runs until SIGTERM/SIGINT. Returns the process exit code.
  int Run();

 private:
  std::string Init();
  std::string StartPrimary();
  std::string StartStandby();
  std::string StartGate();
  void WatchInotify();
  void PollInotify();
  ctl::Json Handle(const ctl::Json& req);
  ctl::Json HandleCommand(const ctl::Json& req);
  ctl::Json Status();
  ctl::Json Promote(const ctl::Json& req);
  ctl::Json Inspect(const std::string& id);
  ctl::Json SetPaused(bool paused);

  // High availability (docs/failover.md).
  void ScheduleTick();
  void Tick();
  // The virtual IP follows the role: held while this node is a serving
  // primary, given up first thing when it is not.
  void SyncVip(ha::Clock::time_point now);
  void ReleaseVip(const std::string& why);
  // This node's view of itself, sent to the peer about once a second.
  repl::msg::NodeStatus SelfStatus() const;
  void OnPeerStatus(const std::string& node, const repl::msg::NodeStatus& m);
  void SendStatus(ha::Clock::time_point now);
  // Undoes what a switchover under way has done to Postfix (SIGCONT to its
  // queue manager) and lets a lingering address go: mailtwind stops.
  void AbandonSwitchover(const std::string& why);
  ha::Observations Observe(ha::Clock::time_point now);
  void Evaluate(ha::Clock::time_point now);
  void CheckQueueFilesystem(ha::Clock::time_point now);
  void Apply(const ha::Decision& d, ha::Clock::time_point now);
  std::string HandoverDir() const;
  void StartProbe();
  bool PostfixUp() const;
  bool StartPostfix();
  void StopPostfix(bool fence);
  // Takes over as primary: epoch + 1 stored first, mirror made live, Postfix
  // started, replication to the old primary's address started. Returns the
  // control reply.
  ctl::Json TakeOver(const std::string& reason,
                     std::optional<std::uint64_t> epoch = std::nullopt);
  // A newer primary exists: stop serving (fence), set the queue aside for
  // handover, follow at epoch.
  void StepDown(std::uint64_t epoch, const std::string& reason);
  void StopPrimary();
  std::optional<repl::msg::Error> JudgeDialer(const repl::msg::Hello& peer);
  std::optional<repl::msg::Error> JudgeListener(const repl::msg::Hello& peer);
  repl::msg::Hello SelfHello() const;
  // Switchover (docs/failover.md): kind is "switchover" or "failback".
  ctl::Json StartSwitchover(const std::string& reason, const std::string& kind);
  void SwitchoverPoll();
  void SwitchoverFailed(const std::string& why);
  ctl::Json RequestSwitchover(const std::string& reason, const std::string& kind);
  void OnFollowingLive();
  void HandoverNext();
  void OnHandoverResult(const repl::msg::HandoverResult& r);
  void Raise(const std::string& kind, const std::string& reason, const std::string& peer = {});
  // gate::Replicas, on the primary.
  void WaitDurable(const std::string& id, std::function<void(bool)> done) override;
  std::optional<std::chrono::steady_clock::time_point> DownSince() const override;
  postfix::HoldResult Release(const std::string& id) override;
  postfix::HoldResult Withdraw(const std::string& id) override;

  Config cfg_;
  asio::io_context io_;
  asio::signal_set signals_;
  asio::steady_timer batch_timer_;
  NodeState state_;
  repl::Identity ident_;
  std::string queue_dir_;
  std::string active_dir_;  // canonical <queue_dir>/active/, as /proc/PID/fd shows it
  std::string mirror_dir_;
  repl::HashLayout hash_;
  std::chrono::steady_clock::time_point started_;

  std::unique_ptr<repl::QueueModel> model_;
  std::unique_ptr<repl::QueueWatcher> watcher_;
  std::unique_ptr<asio::posix::stream_descriptor> inotify_;
  std::unique_ptr<repl::PrimaryLink> link_;
  std::unique_ptr<gate::Gate> gate_;

  std::unique_ptr<repl::Mirror> mirror_;
  std::unique_ptr<repl::StandbyServer> server_;

  std::unique_ptr<ctl::ControlServer> control_;
  std::unique_ptr<metrics::HttpServer> metrics_;
  std::unique_ptr<net::Vip> vip_;
  // What the peer last said of itself (NodeStatus), and when.
  std::optional<repl::msg::NodeStatus> peer_status_;
  std::string peer_status_node_;
  ha::Clock::time_point peer_status_at_{}, status_sent_at_{};
  std::optional<ha::Clock::time_point> queue_trouble_since_;
  std::optional<ha::Clock::time_point> switchover_failed_at_;
  bool vip_held_ = false;
  // After a switchover the old primary keeps the address a little longer:
  // its Postfix is stopped, so a client that still sends there gets a reset
  // and tries again at once, instead of a silence until its SYN is resent
  // (1 s) while the new primary starts and announces itself.
  ha::Clock::time_point vip_linger_until_{};
  std::string vip_error_;  // the last failure, reported once

  // Measures blocking work of this loop (not a stall: see Tick).
  struct Busy {
    explicit Busy(Daemon& daemon) : d(daemon) { ++d.busy_depth_; }
    ~Busy();
    Daemon& d;
    std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  };
  Millis busy_{0};
  Millis stalled_{0};  // measured by Tick, seen by its decision
  std::uint64_t primary_gen_ = 0;  // bumped by StopPrimary
  int busy_depth_ = 0;  // only the outermost Busy counts
  ha::HaConfig ha_;
  asio::steady_timer tick_timer_;
  ha::Clock::time_point last_tick_;
  bool epoch_confirmed_ = false;
  std::optional<ha::Clock::time_point> unconfirmed_since_;
  bool primary_seen_ = false;
  int probe_failures_ = 0;
  std::string probe_error_;
  bool probe_running_ = false;
  std::uint64_t probes_ = 0;
  double last_probe_ms_ = 0;
  int postfix_start_failures_ = 0;
  ha::Decision last_decision_;
  std::chrono::system_clock::time_point last_decision_at_{};
  bool primary_lost_raised_ = false;
  bool standby_lost_raised_ = false;
  bool degraded_raised_ = false;
  bool queue_trouble_raised_ = false;
  bool queue_writable_ = true;
  double queue_free_mb_ = 1e12;
  ha::Clock::time_point last_write_test_{};
  std::size_t handover_pending_ = 0;
  ha::Ledger ledger_;
  std::unique_ptr<HandoverSink> sink_;
  std::unique_ptr<HandoverSource> source_;
  std::optional<std::string> handover_inflight_;
  struct HandoverRound {
    std::uint64_t imported = 0, already = 0, refused = 0;
  } round_;
  struct Switching {
    std::string reason, kind;
    ha::Clock::time_point t0, deadline;
    // kDeliveries: the queue manager is stopped, deliveries in flight
    //   finish (mail is still accepted meanwhile);
    // kIntake: the gate drains: no new message, every reply passed on;
    // kReplicate: Postfix is stopped, the standby acknowledges the rest;
    // kTakeOver: Switchover sent, waiting for the standby to take the role.
    enum class Phase { kDeliveries, kIntake, kReplicate, kTakeOver } phase = Phase::kDeliveries;
    pid_t master = 0, qmgr = 0;  // qmgr: SIGSTOPped until Postfix stops
    ha::Clock::time_point scanned;                // the last look at /proc
    std::optional<ha::Clock::time_point> quiet_since;  // no delivery in flight since
    std::size_t delivering = 0;
    bool diag_warned = false;
    ha::Clock::time_point intake_t0;              // when intake stopped
    std::optional<ha::Clock::time_point> intake_done;
    std::size_t cut = 0;  // deliveries or sessions cut at a time limit
  };
  std::optional<Switching> switching_;
  asio::steady_timer switch_timer_{io_};
  std::optional<double> last_switch_pause_s_;
  ha::EventLog events_;
  std::unique_ptr<ha::Notifier> notifier_;
};

}  // namespace mailtwin
