// standby_server.h - the standby's side of replication: accept, list, apply, ack.
//
// States of the one session it serves:
//
//   listening -> hello -> streaming (catchup until SyncDone, then live)
//        ^____________________|   (any error; a new connection replaces the old)
//
// - hello:     the primary's certificate is verified by TLS; its Hello must
//              name our cluster and the primary role.
// - streaming: the mirror's manifest is sent first; then every change frame is
//              applied, and after each read the mirror is committed (group
//              commit) and the highest durable sequence number acknowledged.
// A change the mirror cannot apply (bad patch, disk full) ends the session
// with an Error frame; the primary reconnects and reconciles.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <asio.hpp>
#include <asio/ssl.hpp>

#include "common/config.h"
#include "repl/connection.h"
#include "repl/mirror.h"
#include "repl/primary_link.h"

namespace mailtwin::repl {

class StandbyServer : public Connection::Handler {
 public:
  enum class State { kListening, kHello, kCatchup, kLive };

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
    if (!conn_ || state_ != State::kLive) return false;
    conn_->Send(0, m);
    return true;
  }
  std::size_t queued_bytes() const { return conn_ ? conn_->queued_bytes() : 0; }
  // Called with the ID of each queue file the mirror starts receiving.
  void SetOnNewFile(std::function<void(const std::string&)> fn) { on_new_file_ = std::move(fn); }
  // A primary's session is open (catching up or live).
  bool connected() const { return state_ == State::kCatchup || state_ == State::kLive; }
  // When the last frame of the current session arrived.
  std::optional<std::chrono::steady_clock::time_point> last_rx() const {
    return conn_ && connected() ? std::make_optional(conn_->last_rx()) : std::nullopt;
  }

  State state() const { return state_; }
  static std::string_view StateName(State s);
  std::string peer_node() const { return peer_node_; }
  std::uint64_t applied_seq() const { return last_seq_; }
  std::string last_error() const { return last_error_; }
  std::chrono::system_clock::time_point last_change() const { return last_change_; }
  // Per acknowledgement: from applying the first change it covers to sending
  // it (applying the batch + its commit), in ms. With the primary's lag and
  // its ship time, it tells where a change waited.
  const LatencyStats& batch_latency() const { return batch_latency_; }

 private:
  void Accept();
  void OnFrame(Frame&& f) override;
  void OnReadDone(bool more_pending) override;
  void OnClosed(const std::string& why) override;

  asio::io_context& io_;
  const Config& cfg_;
  Identity ident_;
  Mirror& mirror_;
  asio::ssl::context tls_{asio::ssl::context::tls_server};
  asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<Connection> conn_;
  State state_ = State::kListening;
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
  std::function<void(const std::string&)> on_new_file_;
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
