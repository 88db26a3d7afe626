// standby_server.h - the standby's side of replication: accept, judge, list,
// apply, ack.
//
// Every node listens. Each accepted connection passes, in order:
//
//   TLS handshake (certificate of the cluster CA naming peer_name,
//                  bounded by peer_timeout)
//   -> newcomer:  its own handler; only Hello, Heartbeat and Error are legal.
//                 The Hello is checked (version, cluster, role) and judged
//                 (epochs: SetHooks) before the connection may touch the
//                 live session; a refused or silent newcomer (no Hello
//                 within peer_timeout) is closed and the live session, if
//                 any, never notices. At most kMaxNewcomers wait at once.
//   -> session:   an accepted newcomer replaces the live session (the old
//                 primary connection is probably dead); the mirror's manifest
//                 is sent; then every frame is checked against the connection
//                 state machine (session_state.h, docs/protocol.md §5):
//                 catchup (changes until SyncDone) -> live (changes, status,
//                 handover results, switchover).
// Any illegal frame is a protocol error: an Error frame, the connection
// closes, and nothing behind it is applied. A change the mirror cannot apply
// (bad patch, disk full) ends the session the same way; the primary
// reconnects and reconciles.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <asio.hpp>
#include <asio/ssl.hpp>

#include "common/config.h"
#include "repl/connection.h"
#include "repl/mirror.h"
#include "repl/primary_link.h"
#include "repl/session_state.h"

namespace mailtwin::repl {

class StandbyServer : public Connection::Handler {
 public:
  // kHello: no session, but a newcomer is being judged.
  enum class State { kListening, kHello, kCatchup, kLive };
  // Connections waiting for their Hello to be judged, at most.
  static constexpr std::size_t kMaxNewcomers = 4;

  StandbyServer(asio::io_context& io, const Config& cfg, Identity id, Mirror& mirror);
  ~StandbyServer() override;
  std::string Start();
  // Stops accepting and ends the session; everything applied is committed.
  void Stop();
  // Ends the current session (if any) and keeps listening.
  void Drop(const std::string& why);

  // How this node answers a dialing primary: judge refuses it (or, as a side
  // effect, makes this node follow it); hello is this node's own Hello, sent
  // before any Error so that a refused peer learns our role and epoch.
  // Without them: any primary of our cluster, and we are a standby.
  void SetHooks(HelloJudge judge, std::function<msg::Hello()> hello) {
    judge_ = std::move(judge);
    hello_ = std::move(hello);
  }
  // Called when the primary's SyncDone arrives (the mirror is in sync), and
  // for each HandoverResult; SendUp sends a frame to the primary.
  void SetLiveHooks(std::function<void()> on_live,
                    std::function<void(const msg::HandoverResult&)> on_result) {
    on_live_ = std::move(on_live);
    on_result_ = std::move(on_result);
  }
  // The primary hands its role over (switchover).
  void SetOnNodeStatus(std::function<void(const msg::NodeStatus&)> fn) {
    on_node_status_ = std::move(fn);
  }
  void SetOnSwitchover(std::function<void(const msg::Switchover&)> fn) {
    on_switchover_ = std::move(fn);
  }
  bool SendUp(const Message& m) {
    if (!conn_ || session_ != SessionState::kLive) return false;
    conn_->Send(0, m);
    return true;
  }
  std::size_t queued_bytes() const { return conn_ ? conn_->queued_bytes() : 0; }
  // Called with each Fingerprint the primary sends (it is acknowledged like
  // a change, but the mirror keeps no trace of it).
  void SetOnFingerprint(std::function<void(const msg::Fingerprint&)> fn) {
    on_fingerprint_ = std::move(fn);
  }
  // Called with each File frame the mirror applied (offset 0: a queue file
  // it starts receiving; offset + size = total_size: the file is whole),
  // before the frame is committed.
  void SetOnFileFrame(std::function<void(const msg::File&)> fn) { on_file_frame_ = std::move(fn); }
  // A primary's session is open (catching up or live).
  bool connected() const {
    return conn_ && (session_ == SessionState::kCatchup || session_ == SessionState::kLive);
  }
  // When the last frame of the current session arrived.
  std::optional<std::chrono::steady_clock::time_point> last_rx() const {
    return conn_ && connected() ? std::make_optional(conn_->last_rx()) : std::nullopt;
  }

  State state() const;
  static std::string_view StateName(State s);
  std::string peer_node() const { return peer_node_; }
  // The live session's peer address ("" without one).
  std::string peer_address() const { return conn_ ? conn_->peer() : std::string(); }
  std::uint64_t applied_seq() const { return last_seq_; }
  std::string last_error() const { return last_error_; }
  std::chrono::system_clock::time_point last_change() const { return last_change_; }
  // Per acknowledgement: from applying the first change it covers to sending
  // it (applying the batch + its commit), in ms. With the primary's lag and
  // its ship time, it tells where a change waited.
  const LatencyStats& batch_latency() const { return batch_latency_; }

 private:
  class Newcomer;
  void Accept();
  void OnHandshake(std::shared_ptr<TlsStream> stream, const std::string& from);
  // The newcomer's Hello: refused (the newcomer closes) or it becomes the session.
  void JudgeNewcomer(Newcomer& n, const msg::Hello& hello);
  void ForgetNewcomer(Newcomer* n);
  void OpenSession(std::shared_ptr<Connection> conn, const msg::Hello& hello);
  void OnFrame(Frame&& f) override;
  void OnChange(Frame&& f);
  void OnControl(Frame&& f);
  void OnReadDone(bool more_pending) override;
  void OnClosed(const std::string& why) override;

  asio::io_context& io_;
  const Config& cfg_;
  Identity ident_;
  Mirror& mirror_;
  asio::ssl::context tls_{asio::ssl::context::tls_server};
  asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<Connection> conn_;  // the session (Hello accepted), if any
  SessionState session_ = SessionState::kClosed;
  std::optional<msg::Hello> peer_hello_;  // the session's accepted Hello
  std::vector<std::unique_ptr<Newcomer>> newcomers_;
  bool stopped_ = false;
  // Shared with every pending handler: false once this object is gone, so a
  // handler that completes later (operation_aborted) never touches it.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  HelloJudge judge_;
  std::function<msg::Hello()> hello_;
  std::function<void()> on_live_;
  std::function<void(const msg::Switchover&)> on_switchover_;
  std::function<void(const msg::NodeStatus&)> on_node_status_;
  std::function<void(const msg::HandoverResult&)> on_result_;
  std::function<void(const msg::File&)> on_file_frame_;
  std::function<void(const msg::Fingerprint&)> on_fingerprint_;
  std::string peer_node_;
  std::string last_error_;
  std::uint64_t last_seq_ = 0;
  std::uint64_t acked_ = 0;
  bool uncommitted_ = false;
  std::size_t uncommitted_frames_ = 0;
  std::chrono::steady_clock::time_point batch_start_{};
  LatencyStats batch_latency_;
  std::chrono::system_clock::time_point last_change_{};
};

}  // namespace mailtwin::repl
