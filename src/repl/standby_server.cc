#include "repl/standby_server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace mailtwin::repl {

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
    sock.set_option(asio::ip::tcp::no_delay(true));
    auto stream = std::make_shared<TlsStream>(std::move(sock), tls_);
    // A handshake that never completes must not hold the slot: bound it.
    auto timer = std::make_shared<asio::steady_timer>(io_, cfg_.peer_timeout);
    timer->async_wait([stream](asio::error_code ec) {
      if (!ec) stream->lowest_layer().close(ec);
    });
    stream->async_handshake(asio::ssl::stream_base::server, [this, stream, timer,
                                                             alive](asio::error_code ec) {
      timer->cancel();
      if (!*alive || stopped_) return;
      if (ec) {
        asio::error_code ignored;
        auto ep = stream->lowest_layer().remote_endpoint(ignored);
        spdlog::warn("replication: TLS handshake from {} failed: {}", ep.address().to_string(),
                     ec.message());
        return;
      }
      if (conn_) conn_->Close("replaced by a new connection from the primary");
      conn_ = std::make_shared<Connection>(std::move(*stream), this, cfg_.heartbeat_interval,
                                           cfg_.peer_timeout);
      state_ = State::kHello;
      last_seq_ = 0;
      acked_ = 0;
      conn_->Start();
    });
    Accept();
  });
}

void StandbyServer::OnFrame(Frame&& f) {
  if (IsChange(f.msg)) {
    if (state_ != State::kCatchup && state_ != State::kLive)
      return conn_->Fail(msg::ErrorCode::kProtocol, "change before the handshake");
    if (f.seq != last_seq_ + 1)
      return conn_->Fail(msg::ErrorCode::kProtocol,
                         fmt::format("sequence {} after {}", f.seq, last_seq_));
    std::string err = mirror_.Apply(f.msg);
    if (!err.empty()) {
      last_error_ = err;
      spdlog::error("mirror: {}", err);
      return conn_->Fail(msg::ErrorCode::kApply, err);
    }
    last_seq_ = f.seq;
    if (!uncommitted_) batch_start_ = std::chrono::steady_clock::now();
    if (on_new_file_)
      if (const auto* file = std::get_if<msg::File>(&f.msg); file && file->offset == 0)
        on_new_file_(file->id);
    uncommitted_ = true;
    ++uncommitted_frames_;
    return;
  }
  std::visit(
      [&](auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, msg::Hello>) {
          if (state_ != State::kHello)
            return conn_->Fail(msg::ErrorCode::kProtocol, "unexpected Hello");
          auto err = CheckPeerHello(m, ident_, Role::kPrimary);
          if (!err && judge_) err = judge_(m);
          if (!conn_) return;  // the judge dropped this session
          conn_->Send(0, hello_ ? hello_() : ident_.HelloAs(Role::kStandby));
          if (err) {
            last_error_ = err->text;
            spdlog::warn("replication: refused {}: {}", m.node, err->text);
            return conn_->Fail(err->code, err->text);
          }
          peer_node_ = m.node;
          auto entries = mirror_.Manifest();
          msg::Manifest chunk;
          for (std::size_t i = 0; i < entries.size(); ++i) {
            chunk.entries.push_back(std::move(entries[i]));
            if (chunk.entries.size() == 8192) {
              conn_->Send(0, chunk);
              chunk.entries.clear();
            }
          }
          chunk.last = true;
          conn_->Send(0, chunk);
          state_ = State::kCatchup;
          spdlog::info("replication: primary {} connected from {}; sent manifest of {} entries",
                       m.node, conn_->peer(), entries.size());
        } else if constexpr (std::is_same_v<T, msg::SyncDone>) {
          state_ = State::kLive;
          spdlog::info("replication: in sync with primary {} ({} messages)", peer_node_,
                       m.messages);
          if (on_live_) on_live_();
        } else if constexpr (std::is_same_v<T, msg::HandoverResult>) {
          if (on_result_) on_result_(m);
        } else if constexpr (std::is_same_v<T, msg::Switchover>) {
          if (state_ != State::kLive)
            return conn_->Fail(msg::ErrorCode::kProtocol, "switchover before the mirror is in sync");
          if (on_switchover_) on_switchover_(m);
        } else if constexpr (std::is_same_v<T, msg::NodeStatus>) {
          if (on_node_status_) on_node_status_(m);
        } else if constexpr (std::is_same_v<T, msg::Heartbeat>) {
        } else if constexpr (std::is_same_v<T, msg::Error>) {
          last_error_ = fmt::format("primary says: {}", m.text);
          spdlog::error("replication: {}", last_error_);
          conn_->Close(last_error_);
        } else {
          conn_->Fail(msg::ErrorCode::kProtocol, "unexpected message from the primary");
        }
      },
      f.msg);
}

void StandbyServer::OnReadDone(bool more_pending) {
  if (!uncommitted_ || !conn_) return;
  // Group commit: while the primary keeps sending, keep applying, and make it
  // all durable with one round of syncs once caught up (or every 2048 frames,
  // so a bulk transfer is acknowledged as it goes).
  if (more_pending && uncommitted_frames_ < 2048) return;
  uncommitted_frames_ = 0;
  std::string err = mirror_.Commit();
  if (!err.empty()) {
    last_error_ = err;
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
  if (!stopped_) spdlog::warn("replication: session with {} ended: {}", peer_node_, why);
  mirror_.Commit();
  mirror_.DropPartial();
  conn_.reset();
  state_ = State::kListening;
}

}  // namespace mailtwin::repl
