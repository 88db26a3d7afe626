// primary_link.h - the primary's side of replication: dial, reconcile, stream.
//
// States (one connection at a time):
//
//   disconnected -> connecting -> hello -> manifest -> catchup -> live
//        ^________________________________________________________|  (any error)
//
// - hello:    TLS is up (both certificates verified); Hello frames exchanged,
//             cluster and roles checked.
// - manifest: the standby lists what its mirror holds; the primary diffs it
//             against its model in one step of the event loop, so no change
//             can slip between the diff and the live stream.
// - catchup:  messages that differ are sent whole by a pump that reads them
//             from disk as the socket drains (memory stays bounded); live
//             changes of other messages stream meanwhile.
// - live:     SyncDone sent; every change is streamed as it is observed.
//
// Every change frame carries a sequence number; the standby acknowledges the
// highest one that is durable. The link records, per committed message, when
// its copy became durable (replication lag) and lets callers wait for it
// (the zero-loss gate builds on WaitDurable).
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <asio.hpp>
#include <asio/ssl.hpp>

#include "common/config.h"
#include "repl/connection.h"
#include "repl/identity.h"
#include "repl/tls.h"
#include "repl/queue_model.h"
#include "repl/queue_watcher.h"
#include "repl/stats.h"

namespace mailtwin::repl {

class PrimaryLink : public Connection::Handler {
 public:
  enum class State { kDisconnected, kConnecting, kHello, kManifest, kCatchup, kLive };

  PrimaryLink(asio::io_context& io, const Config& cfg, Identity id, QueueWatcher& watcher);
  ~PrimaryLink() override;
  std::string Start();  // "" or a TLS configuration error
  // Judges the standby's Hello (role and epoch); without one, any standby
  // of our cluster is accepted. May be set before Start only.
  void SetJudge(HelloJudge judge) { judge_ = std::move(judge); }
  // Takes the standby's handover frames (docs/failover.md); returns the
  // reply to send, if any. Without one, handover frames end the session.
  using HandoverFn = std::function<std::optional<Message>(const Message&)>;
  void SetHandover(HandoverFn fn) { handover_ = std::move(fn); }
  // The standby asked for a switchover.
  void SetOnNodeStatus(std::function<void(const msg::NodeStatus&)> fn) {
    on_node_status_ = std::move(fn);
  }
  void SetOnSwitchoverRequest(std::function<void(const msg::SwitchoverRequest&)> fn) {
    on_switchover_request_ = std::move(fn);
  }
  // Sends a control message (Switchover) on the live session.
  bool SendControl(const Message& m) {
    if (!conn_ || state_ != State::kLive) return false;
    conn_->Send(0, m);
    return true;
  }
  // The peer's Hello of the current session.
  const std::optional<msg::Hello>& peer_hello() const { return peer_hello_; }
  void Stop();
  // Dials at once if the link is waiting to reconnect (the peer is known to
  // be back), forgetting the back-off.
  void DialNow();
  // Closes the current session (if any); the link dials again.
  void Reconnect(const std::string& why) {
    if (conn_) conn_->Close(why);
  }

  // The watcher's output.
  void OnChanges(const std::string& id, ApplyResult&& r);

  State state() const { return state_; }
  static std::string_view StateName(State s);
  // Which of the standby's frames are legal in a state (docs/protocol.md §5):
  // Hello only in hello, Manifest only in manifest, acks, handover frames,
  // status and switchover requests only once catching up or live.
  static bool Legal(State s, MsgType t);
  std::string peer_node() const { return peer_node_; }
  std::uint64_t sent_seq() const { return seq_; }
  std::uint64_t acked_seq() const { return acked_; }
  std::size_t pending_resend() const { return resend_.size(); }
  std::size_t queued_bytes() const { return conn_ ? conn_->queued_bytes() : 0; }
  const LatencyStats& lag() const { return lag_; }
  // The primary's share of lag(): commit -> the frame handed to the connection.
  const LatencyStats& ship_lag() const { return ship_; }
  // Done marks and removals (a finished delivery): from Postfix's write (the
  // queue file's mtime; a removal, which has none: the watcher's first event
  // of it) to the standby's acknowledgement. A primary lost within this time
  // of a delivery leaves the standby a copy it delivers again.
  const LatencyStats& done_lag() const { return done_lag_; }
  // Its parts: Postfix's write -> the watcher's first event (done marks
  // only), and that event -> the frame handed to the connection.
  const LatencyStats& done_read() const { return done_read_; }
  const LatencyStats& done_ship() const { return done_ship_; }
  std::uint64_t files_sent() const { return files_sent_; }
  std::uint64_t bytes_sent() const { return bytes_sent_; }
  std::string last_error() const { return last_error_; }
  // Seconds the current catch-up took, once live.
  std::optional<double> last_catchup_seconds() const { return last_catchup_s_; }

  // Sends the gate's fingerprint of message id (a change frame, so a
  // WaitDurable that follows covers it). Only to a standby that said it
  // takes them (NodeStatus kFingerprints); false when not sent.
  bool SendFingerprint(const std::string& id, const std::array<std::uint8_t, 32>& digest);
  bool SendFingerprint(const msg::Fingerprint& m);
  bool peer_takes_fingerprints() const { return peer_fingerprints_; }
  // ... and fingerprints under a gate token (NodeStatus kGateTokens): a
  // Fingerprint whose id is a token is not sent to a standby without it.
  bool peer_takes_gate_tokens() const { return peer_tokens_; }
  // Called when the standby of this session says it takes fingerprints.
  void SetOnFingerprintsOk(std::function<void()> fn) { on_fingerprints_ok_ = std::move(fn); }
  std::uint64_t fingerprints_sent() const { return fingerprints_sent_; }

  // The zero-loss gate's question: is id's committed queue file durable on
  // the standby? Calls done(true) once the standby has acknowledged frames
  // carrying id's current state, or done(false) if the message leaves the
  // queue first (delivered or deleted: nothing left to protect). The caller
  // must first let the watcher read pending queue events, so that id's
  // commit is in the model. Waits across reconnects (a catch-up covers every
  // message still queued) and never gives up by itself: the gate has its own
  // timeout. done runs on the io_context, never inside WaitDurable.
  using DurableFn = std::function<void(bool replicated)>;
  void WaitDurable(const std::string& id, DurableFn done);
  // When the link stopped being live (nullopt while live or catching up).
  std::optional<std::chrono::steady_clock::time_point> down_since() const { return down_since_; }
  // Since when the link has been live (nullopt when not live).
  std::optional<std::chrono::steady_clock::time_point> live_since() const { return live_since_; }
  // The last frame from the standby while live (nullopt when not live).
  std::optional<std::chrono::steady_clock::time_point> last_rx() const {
    return conn_ && state_ == State::kLive ? std::make_optional(conn_->last_rx()) : std::nullopt;
  }
  // The link has been live at least once since this object was made.
  bool ever_live() const { return ever_live_; }

 private:
  void Connect();
  void ScheduleReconnect();
  void OnFrame(Frame&& f) override;
  void OnDrained() override;
  void OnClosed(const std::string& why) override;
  void OnManifestComplete();
  void Pump();
  void SendChanges(const std::string& id, ApplyResult&& r, bool live);
  void OnAck(std::uint64_t seq);
  void CompleteWaiters();
  void FinishGone(const std::string& id);  // id left the queue: done(false)

  asio::io_context& io_;
  const Config& cfg_;
  Identity ident_;
  QueueWatcher& watcher_;
  asio::ssl::context tls_{asio::ssl::context::tls_client};
  asio::steady_timer retry_;
  std::shared_ptr<Connection> conn_;
  bool ever_live_ = false;
  State state_ = State::kDisconnected;
  bool stopped_ = false;
  // Consecutive connection attempts that did not stay live for kStableSession.
  int failures_ = 0;
  static constexpr Millis kStableSession{10000};
  std::minstd_rand jitter_{std::random_device{}()};
  // Shared with every pending handler: false once this object is gone.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  HelloJudge judge_;
  HandoverFn handover_;
  std::function<void(const msg::SwitchoverRequest&)> on_switchover_request_;
  std::function<void(const msg::NodeStatus&)> on_node_status_;
  std::optional<msg::Hello> peer_hello_;
  std::string peer_node_;
  std::string last_error_;
  std::vector<msg::ManifestEntry> manifest_;
  std::deque<std::string> resend_;
  std::unordered_set<std::string> resend_set_;
  std::uint64_t seq_ = 0;
  std::uint64_t acked_ = 0;
  struct Inflight {
    std::uint64_t seq;
    std::int64_t commit_ns;  // a done mark or removal: when Postfix made it
    bool live;
    bool done = false;  // a done mark or removal, not a whole file
  };
  std::deque<Inflight> inflight_;
  LatencyStats lag_;
  LatencyStats ship_;
  LatencyStats done_lag_, done_read_, done_ship_;
  std::uint64_t files_sent_ = 0;
  std::uint64_t fingerprints_sent_ = 0;
  bool peer_fingerprints_ = false;
  bool peer_tokens_ = false;
  std::function<void()> on_fingerprints_ok_;  // this session's standby takes Fingerprint frames
  std::uint64_t bytes_sent_ = 0;
  struct Waiter {
    std::optional<std::uint64_t> target;  // acked >= target means durable
    DurableFn done;
  };
  std::unordered_map<std::string, std::vector<Waiter>> waiters_;
  std::optional<std::chrono::steady_clock::time_point> live_since_;
  std::optional<std::chrono::steady_clock::time_point> down_since_ =
      std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point catchup_start_;
  std::optional<double> last_catchup_s_;
};

}  // namespace mailtwin::repl
