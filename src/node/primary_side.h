// primary_side.h - what a node runs while it is the primary, as one object.
//
// Created when the node starts as primary or takes over, destroyed when it
// steps down: its lifetime is the primary role's. It holds the queue model,
// the inotify watcher and its batching, the replication link to the
// standby, the zero-loss gate and the handover sink (what a rejoining old
// primary hands over). It is also the gate's view of the replicas
// (gate::Replicas).
//
// Destroying it stops the gate and the link and closes the watcher. Asio
// runs a handler whose operation had completed before a cancel() with
// success, so every handler it starts checks a token that dies with it:
// one that runs after the step-down does nothing.
//
// Single-threaded: everything runs on the daemon's io_context.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <asio.hpp>

#include "common/config.h"
#include "gate/gate.h"
#include "ha/ledger.h"
#include "node/handover.h"
#include "repl/identity.h"
#include "repl/primary_link.h"
#include "repl/queue_model.h"
#include "repl/queue_watcher.h"

namespace mailtwin {

class PrimarySide : private gate::Replicas {
 public:
  // What the primary side tells the node it belongs to.
  struct Hooks {
    repl::HelloJudge judge;  // the standby's Hello on the link
    std::function<void(const std::string& node, const repl::msg::NodeStatus&)> on_node_status;
    std::function<void(const repl::msg::SwitchoverRequest&)> on_switchover_request;
  };
  PrimarySide(asio::io_context& io, const Config& cfg, const std::string& queue_dir,
              const repl::HashLayout& hash, repl::Identity ident, ha::Ledger& ledger, Hooks hooks,
              gate::DedupTable* dedup = nullptr);
  ~PrimarySide() override;
  PrimarySide(const PrimarySide&) = delete;
  PrimarySide& operator=(const PrimarySide&) = delete;

  // Scans the queue, starts the link and the gate. "" or what failed.
  std::string Start();

  // Reads every inotify event already queued, so that the model (and the
  // link) have every change Postfix made so far.
  void DrainWatcher();
  // The standby holds every change sent so far.
  bool StandbyHoldsAll() const;
  // After a failover the standby was the primary that died: until a
  // standby has acknowledged something on this link, the gate has no
  // replica to wait for, and answers at once (sync: 250, unprotected;
  // strict: 451) instead of holding each client for sync_timeout.
  void ExpectNoStandby() { no_standby_ = true; }
  bool awaiting_first_standby() const { return no_standby_ && link_->acked_seq() == 0; }

  repl::PrimaryLink& link() { return *link_; }
  const repl::PrimaryLink& link() const { return *link_; }
  bool link_live() const { return link_->state() == repl::PrimaryLink::State::kLive; }
  gate::Gate* gate() { return gate_.get(); }
  const gate::Gate* gate() const { return gate_.get(); }
  const repl::QueueModel& model() const { return *model_; }
  const repl::QueueWatcher& watcher() const { return *watcher_; }
  const HandoverSink* sink() const { return sink_.get(); }

 private:
  std::string StartLink();
  std::string StartGate();
  std::optional<repl::Message> OnHandover(const repl::Message& m);
  void WatchInotify();
  void PollInotify();
  // gate::Replicas
  void WaitDurable(const std::string& id, std::function<void(bool)> done) override;
  std::optional<std::chrono::steady_clock::time_point> DownSince() const override;
  postfix::HoldResult Release(const std::string& id) override;
  postfix::HoldResult Withdraw(const std::string& id) override;
  void Fingerprint(const std::string& id, const gate::Digest& d, bool sent_by_token) override;
  bool FingerprintByToken(const std::string& token, const gate::Digest& d) override;

  asio::io_context& io_;
  const Config& cfg_;
  std::string queue_dir_;
  repl::HashLayout hash_;
  repl::Identity ident_;
  ha::Ledger& ledger_;
  Hooks hooks_;
  gate::DedupTable* dedup_;
  bool no_standby_ = false;
  // Dies with this object: handlers that run after it see it expired.
  std::shared_ptr<char> alive_ = std::make_shared<char>();

  std::unique_ptr<repl::QueueModel> model_;
  std::unique_ptr<repl::QueueWatcher> watcher_;
  std::unique_ptr<asio::posix::stream_descriptor> inotify_;
  asio::steady_timer batch_timer_;
  std::unique_ptr<repl::PrimaryLink> link_;
  std::unique_ptr<HandoverSink> sink_;
  std::unique_ptr<gate::Gate> gate_;
  // The fingerprints of the messages the gate saw queued over the last
  // dedup_window, oldest first: a new session's standby gets them again
  // (SendRecentFingerprints), so that one whose frame was lost with a
  // broken connection, or never sent while the link was down, still
  // reaches it with the queue file that the catch-up sends.
  struct Queued {
    std::chrono::steady_clock::time_point at;
    std::string id;
    gate::Digest digest;
  };
  static constexpr std::size_t kMaxRecent = 200000;
  std::deque<Queued> recent_;
  void PruneRecent(std::chrono::steady_clock::time_point now);
  void SendRecentFingerprints();
  // MAILTWIN_TEST_REPL_NO_LIVE_CHANGES=1 (lab tests only): queue changes
  // after the start never go to the standby, as if this node died before
  // its watcher sent them, while the gate's token frames still do
  // (tests/lab/t-27, an orphan made on purpose).
  bool test_no_live_changes_ = false;
};

}  // namespace mailtwin
