// standby_server.cc - accept, judge newcomers, serve one session (see
// standby_server.h). Every frame is checked against session_state.h before
// anything is applied.
#include "repl/standby_server.h"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace mailtwin::repl {

// A connection whose Hello has not been judged yet. It owns the connection
// until then; it never sees the mirror or the live session.
class StandbyServer::Newcomer : public Connection::Handler {
 public:
  Newcomer(StandbyServer& server, std::shared_ptr<Connection> conn)
      : server_(server), conn_(std::move(conn)), deadline_(server.io_) {}

  void Start() {
    conn_->Start();
    // A peer that authenticates but never says Hello must not hold a slot.
    deadline_.expires_after(server_.cfg_.peer_timeout);
    deadline_.async_wait([this, alive = server_.alive_](asio::error_code ec) {
      if (!ec && *alive && conn_)
        Refuse(msg::ErrorCode::kProtocol,
               fmt::format("no Hello within {} ms (timed out)", server_.cfg_.peer_timeout.count()));
    });
  }
  void Close(const std::string& why) {
    if (conn_) conn_->Close(why);
  }
  // Hands the judged connection over; this newcomer is finished.
  std::shared_ptr<Connection> Release() {
    deadline_.cancel();
    return std::move(conn_);
  }
  Connection* conn() const { return conn_.get(); }
  // Refuses the peer: an Error frame (the connection logs it), then closed.
  void Refuse(msg::ErrorCode code, const std::string& why) {
    refused_ = true;
    conn_->Fail(code, why);
  }

  void OnFrame(Frame&& f) override {
    MsgType t = TypeOf(f.msg);
    SessionStep step = Step(SessionState::kHello, t);
    if (!step.legal)
      return Refuse(msg::ErrorCode::kProtocol,
                    fmt::format("message type {} before the Hello was accepted",
                                static_cast<int>(t)));
    if (const auto* hello = std::get_if<msg::Hello>(&f.msg)) return server_.JudgeNewcomer(*this, *hello);
    if (const auto* err = std::get_if<msg::Error>(&f.msg))
      conn_->Close(fmt::format("peer says: {}", err->text));
  }
  void OnClosed(const std::string& why) override {
    deadline_.cancel();
    if (!refused_)  // a refusal was logged, with the address, when it was sent
      spdlog::warn("replication: connection from {} closed before its Hello was accepted: {}",
                 conn_ ? conn_->peer() : "?", why);
    server_.ForgetNewcomer(this);
  }

 private:
  StandbyServer& server_;
  std::shared_ptr<Connection> conn_;
  asio::steady_timer deadline_;
  bool refused_ = false;
};

std::string_view StandbyServer::StateName(State s) {
  switch (s) {
    case State::kListening: return "listening";
    case State::kHello: return "hello";
    case State::kCatchup: return "catchup";
    case State::kLive: return "live";
  }
  return "?";
}

StandbyServer::StandbyServer(asio::io_context& io, const Config& cfg, Identity id, Mirror& mirror)
    : io_(io), cfg_(cfg), ident_(std::move(id)), mirror_(mirror), acceptor_(io) {}

StandbyServer::~StandbyServer() {
  Stop();
  *alive_ = false;
}

StandbyServer::State StandbyServer::state() const {
  if (conn_ && session_ == SessionState::kLive) return State::kLive;
  if (conn_ && session_ == SessionState::kCatchup) return State::kCatchup;
  return newcomers_.empty() ? State::kListening : State::kHello;
}

std::string StandbyServer::Start() {
  std::string err = ConfigureTls(tls_, cfg_);
  if (!err.empty()) return err;
  std::string host;
  std::uint16_t port;
  SplitHostPort(cfg_.listen, host, port);
  asio::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return fmt::format("[replication] listen {} is not an IP address", host);
  asio::ip::tcp::endpoint ep(addr, port);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fmt::format("cannot listen on {}: {}", cfg_.listen, ec.message());
  spdlog::info("replication: standby {} listening on {}", ident_.node, cfg_.listen);
  Accept();
  return {};
}

void StandbyServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  asio::error_code ec;
  acceptor_.close(ec);
  // Each newcomer forgets itself as it closes: close them from a copy.
  std::vector<Newcomer*> waiting;
  for (auto& n : newcomers_) waiting.push_back(n.get());
  for (Newcomer* n : waiting) n->Close("standby stopping");
  if (conn_) conn_->Close("standby stopping");
  mirror_.Commit();
  mirror_.DropPartial();
}

void StandbyServer::Drop(const std::string& why) {
  if (conn_) conn_->Close(why);
}

void StandbyServer::Accept() {
  acceptor_.async_accept([this, alive = alive_](asio::error_code ec, asio::ip::tcp::socket sock) {
    if (!*alive || stopped_) return;
    if (ec) {
      spdlog::warn("replication: accept: {}", ec.message());
      return Accept();
    }
    // The address now: once the socket is closed it cannot be asked.
    asio::error_code aec;
    auto ep = sock.remote_endpoint(aec);
    std::string from = aec ? "?" : fmt::format("{}:{}", ep.address().to_string(), ep.port());
    sock.set_option(asio::ip::tcp::no_delay(true), aec);
    auto stream = std::make_shared<TlsStream>(std::move(sock), tls_);
    // A handshake that never completes must not hold the slot: bound it.
    auto timer = std::make_shared<asio::steady_timer>(io_, cfg_.peer_timeout);
    auto timed_out = std::make_shared<bool>(false);
    timer->async_wait([stream, timed_out](asio::error_code ec) {
      if (ec) return;
      *timed_out = true;
      stream->lowest_layer().close(ec);
    });
    stream->async_handshake(asio::ssl::stream_base::server, [this, stream, timer, timed_out,
                                                             from, alive](asio::error_code ec) {
      timer->cancel();
      if (!*alive || stopped_) return;
      if (ec) {
        spdlog::warn("replication: TLS handshake from {} failed: {}", from,
                     *timed_out ? fmt::format("no handshake within {} ms (timed out)",
                                              cfg_.peer_timeout.count())
                                : ec.message());
        return;
      }
      OnHandshake(stream, from);
    });
    Accept();
  });
}

void StandbyServer::OnHandshake(std::shared_ptr<TlsStream> stream, const std::string& from) {
  // Authenticated, not yet judged: it waits beside the session, never in it.
  if (newcomers_.size() >= kMaxNewcomers) {
    spdlog::warn("replication: connection from {} refused: {} connections are already waiting "
                 "for their Hello to be judged",
                 from, newcomers_.size());
    asio::error_code ec;
    stream->lowest_layer().close(ec);
    return;
  }
  auto conn = std::make_shared<Connection>(std::move(*stream), nullptr, cfg_.heartbeat_interval,
                                           cfg_.peer_timeout);
  auto n = std::make_unique<Newcomer>(*this, conn);
  conn->SetHandler(n.get());
  newcomers_.push_back(std::move(n));
  newcomers_.back()->Start();
}

void StandbyServer::ForgetNewcomer(Newcomer* n) {
  // Not now: the newcomer's own call is still on the stack.
  auto it = std::find_if(newcomers_.begin(), newcomers_.end(),
                         [n](const auto& p) { return p.get() == n; });
  if (it == newcomers_.end()) return;
  std::shared_ptr<Newcomer> gone(std::move(*it));
  newcomers_.erase(it);
  asio::post(io_, [gone] {});
}

void StandbyServer::JudgeNewcomer(Newcomer& n, const msg::Hello& hello) {
  auto err = CheckPeerHello(hello, ident_, Role::kPrimary);
  if (!err && judge_) err = judge_(hello);
  // The judge may have stopped this server (or closed the newcomer).
  if (stopped_ || !n.conn() || n.conn()->failing()) return;
  n.conn()->Send(0, hello_ ? hello_() : ident_.HelloAs(Role::kStandby));
  if (err) {
    last_error_ = err->text;
    return n.Refuse(err->code, fmt::format("refused {}: {}", hello.node, err->text));
  }
  auto conn = n.Release();
  ForgetNewcomer(&n);
  OpenSession(std::move(conn), hello);
}

void StandbyServer::OpenSession(std::shared_ptr<Connection> conn, const msg::Hello& hello) {
  if (conn_) conn_->Close(fmt::format("replaced by a new connection from {} ({})", hello.node,
                                      conn->peer()));
  conn_ = std::move(conn);
  conn_->SetHandler(this);
  session_ = SessionState::kCatchup;
  peer_hello_ = hello;
  peer_node_ = hello.node;
  last_seq_ = 0;
  acked_ = 0;
  auto entries = mirror_.Manifest();
  std::size_t total = entries.size();
  msg::Manifest chunk;
  for (auto& e : entries) {
    chunk.entries.push_back(std::move(e));
    if (chunk.entries.size() == 8192) {
      conn_->Send(0, chunk);
      chunk.entries.clear();
    }
  }
  chunk.last = true;
  conn_->Send(0, chunk);
  spdlog::info("replication: primary {} connected from {}; sent manifest of {} entries",
               hello.node, conn_->peer(), total);
}

void StandbyServer::OnFrame(Frame&& f) {
  MsgType t = TypeOf(f.msg);
  SessionStep step = Step(session_, t);
  if (!step.legal) {
    SessionState was = session_;
    session_ = SessionState::kClosed;
    return conn_->Fail(msg::ErrorCode::kProtocol,
                       fmt::format("message type {} is not allowed in state {}",
                                   static_cast<int>(t), SessionStateName(was)));
  }
  if (IsChange(f.msg)) return OnChange(std::move(f));
  OnControl(std::move(f));
}

void StandbyServer::OnChange(Frame&& f) {
  if (f.seq != last_seq_ + 1) {
    session_ = SessionState::kClosed;
    return conn_->Fail(msg::ErrorCode::kProtocol,
                       fmt::format("sequence {} after {}", f.seq, last_seq_));
  }
  std::string err;
  if (const auto* fp = std::get_if<msg::Fingerprint>(&f.msg)) {
    if (on_fingerprint_) on_fingerprint_(*fp);
  } else {
    err = mirror_.Apply(f.msg);
  }
  if (!err.empty()) {
    last_error_ = err;
    session_ = SessionState::kClosed;
    spdlog::error("mirror: {}", err);
    return conn_->Fail(msg::ErrorCode::kApply, err);
  }
  last_seq_ = f.seq;
  if (!uncommitted_) batch_start_ = std::chrono::steady_clock::now();
  if (on_file_frame_)
    if (const auto* file = std::get_if<msg::File>(&f.msg)) on_file_frame_(*file);
  uncommitted_ = true;
  ++uncommitted_frames_;
}

void StandbyServer::OnControl(Frame&& f) {
  std::visit(
      [&](auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, msg::SyncDone>) {
          session_ = SessionState::kLive;
          spdlog::info("replication: in sync with primary {} ({} messages)", peer_node_,
                       m.messages);
          if (on_live_) on_live_();
        } else if constexpr (std::is_same_v<T, msg::HandoverResult>) {
          if (on_result_) on_result_(m);
        } else if constexpr (std::is_same_v<T, msg::Switchover>) {
          // The epoch a switchover names is the session's Hello epoch + 1,
          // never one the peer picks (docs/failover.md).
          if (auto why = CheckSwitchoverEpoch(peer_hello_->epoch, m.epoch)) {
            session_ = SessionState::kClosed;
            return conn_->Fail(msg::ErrorCode::kStaleEpoch, *why);
          }
          if (on_switchover_) on_switchover_(m);
        } else if constexpr (std::is_same_v<T, msg::NodeStatus>) {
          if (on_node_status_) on_node_status_(m);
        } else if constexpr (std::is_same_v<T, msg::Error>) {
          session_ = SessionState::kClosed;
          last_error_ = fmt::format("primary says: {}", m.text);
          spdlog::error("replication: {} ({})", last_error_, conn_->peer());
          conn_->Close(last_error_);
        }
        // Heartbeat: last_rx_ is all it is for. Nothing else passes Step().
      },
      f.msg);
}

void StandbyServer::OnReadDone(bool more_pending) {
  if (!uncommitted_ || !conn_ || conn_->failing()) return;
  // Group commit: while the primary keeps sending, keep applying, and make it
  // all durable with one round of syncs once caught up (or every 2048 frames,
  // so a bulk transfer is acknowledged as it goes).
  if (more_pending && uncommitted_frames_ < 2048) return;
  uncommitted_frames_ = 0;
  std::string err = mirror_.Commit();
  if (!err.empty()) {
    last_error_ = err;
    session_ = SessionState::kClosed;
    spdlog::error("mirror: commit failed: {}", err);
    return conn_->Fail(msg::ErrorCode::kApply, "standby cannot make changes durable: " + err);
  }
  uncommitted_ = false;
  last_change_ = std::chrono::system_clock::now();
  if (last_seq_ > acked_) {
    acked_ = last_seq_;
    conn_->Send(0, msg::Ack{acked_});
    batch_latency_.Add(std::chrono::duration<double, std::milli>(
                           std::chrono::steady_clock::now() - batch_start_)
                           .count());
  }
}

void StandbyServer::OnClosed(const std::string& why) {
  if (!stopped_)
    spdlog::warn("replication: session with {} ({}) ended: {}", peer_node_,
                 conn_ ? conn_->peer() : "?", why);
  mirror_.Commit();
  mirror_.DropPartial();
  conn_.reset();
  peer_hello_.reset();
  session_ = SessionState::kClosed;
}

}  // namespace mailtwin::repl
