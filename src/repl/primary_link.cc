#include "repl/primary_link.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace mailtwin::repl {
namespace {

constexpr std::size_t kHighWater = 32u << 20;  // above this, live changes become resends

}  // namespace

std::string_view PrimaryLink::StateName(State s) {
  switch (s) {
    case State::kDisconnected: return "disconnected";
    case State::kConnecting: return "connecting";
    case State::kHello: return "hello";
    case State::kManifest: return "manifest";
    case State::kCatchup: return "catchup";
    case State::kLive: return "live";
  }
  return "?";
}

PrimaryLink::PrimaryLink(asio::io_context& io, const Config& cfg, Identity id,
                         QueueWatcher& watcher)
    : io_(io), cfg_(cfg), ident_(std::move(id)), watcher_(watcher), retry_(io) {}

PrimaryLink::~PrimaryLink() {
  Stop();
  *alive_ = false;
}

std::string PrimaryLink::Start() {
  std::string err = ConfigureTls(tls_, cfg_);
  if (!err.empty()) return err;
  Connect();
  return {};
}

void PrimaryLink::Stop() {
  stopped_ = true;
  retry_.cancel();
  if (conn_) conn_->Close("shutting down");
}

void PrimaryLink::DialNow() {
  if (stopped_ || state_ != State::kDisconnected) return;
  retry_.cancel();
  failures_ = 0;
  Connect();
}

void PrimaryLink::ScheduleReconnect() {
  if (stopped_) return;
  // Back off while the standby stays unreachable, keeps refusing us, or
  // keeps failing soon after the catch-up (a full disk): reconnect_interval,
  // doubling up to 5 s, each wait drawn between half and all of it so that
  // restarts do not march in step. A session that stayed live for
  // kStableSession resets it (OnClosed).
  auto full = cfg_.reconnect_interval * (1 << std::min(failures_, 5));
  full = std::min<Millis>(std::max(full, cfg_.reconnect_interval), Millis(5000));
  std::uniform_int_distribution<std::int64_t> half_to_full(full.count() / 2, full.count());
  Millis delay(failures_ == 0 ? full.count() : half_to_full(jitter_));
  ++failures_;
  retry_.expires_after(delay);
  retry_.async_wait([this, alive = alive_](asio::error_code ec) {
    if (!ec && *alive) Connect();
  });
}

void PrimaryLink::Connect() {
  if (stopped_) return;
  state_ = State::kConnecting;
  std::string host;
  std::uint16_t port;
  SplitHostPort(cfg_.peer, host, port);
  asio::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) {
    last_error_ = fmt::format("peer address {} is not an IP address", host);
    state_ = State::kDisconnected;
    return ScheduleReconnect();
  }
  auto stream = std::make_shared<TlsStream>(io_, tls_);
  stream->lowest_layer().async_connect(
      asio::ip::tcp::endpoint(addr, port), [this, stream, alive = alive_](asio::error_code ec) {
        if (!*alive || stopped_) return;
        if (ec) {
          last_error_ = fmt::format("connect to {}: {}", cfg_.peer, ec.message());
          // Once per outage, not once per retry.
          if (failures_ == 0) spdlog::warn("replication: {}; retrying with back-off", last_error_);
          state_ = State::kDisconnected;
          return ScheduleReconnect();
        }
        stream->lowest_layer().set_option(asio::ip::tcp::no_delay(true));
        stream->async_handshake(asio::ssl::stream_base::client, [this, stream, alive](
                                                                    asio::error_code ec) {
          if (!*alive || stopped_) return;
          if (ec) {
            last_error_ = fmt::format("TLS handshake with {}: {}", cfg_.peer, ec.message());
            spdlog::warn("replication: {}", last_error_);
            state_ = State::kDisconnected;
            return ScheduleReconnect();
          }
          conn_ = std::make_shared<Connection>(std::move(*stream), this, cfg_.heartbeat_interval,
                                               cfg_.peer_timeout);
          conn_->Start();
          state_ = State::kHello;
          seq_ = 0;
          acked_ = 0;
          inflight_.clear();
          peer_fingerprints_ = false;
          peer_tokens_ = false;
          conn_->Send(0, ident_.HelloAs(Role::kPrimary));
        });
      });
}

bool PrimaryLink::Legal(State s, MsgType t) {
  if (t == MsgType::kHeartbeat || t == MsgType::kError) return true;
  switch (s) {
    case State::kHello: return t == MsgType::kHello;
    case State::kManifest: return t == MsgType::kManifest;
    case State::kCatchup:
    case State::kLive:
      return t == MsgType::kAck || t == MsgType::kHandoverFile || t == MsgType::kHandoverLog ||
             t == MsgType::kHandoverDone || t == MsgType::kSwitchoverRequest ||
             t == MsgType::kNodeStatus;
    case State::kDisconnected:
    case State::kConnecting: break;
  }
  return false;
}

void PrimaryLink::OnFrame(Frame&& f) {
  // The standby's frames, like the primary's, follow its connection state
  // (docs/protocol.md §5): anything else ends the session, nothing applied.
  if (!Legal(state_, TypeOf(f.msg)))
    return conn_->Fail(msg::ErrorCode::kProtocol,
                       fmt::format("message type {} is not allowed in state {}",
                                   static_cast<int>(TypeOf(f.msg)), StateName(state_)));
  std::visit(
      [&](auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, msg::Hello>) {
          if (state_ != State::kHello)
            return conn_->Fail(msg::ErrorCode::kProtocol, "unexpected Hello");
          auto err = CheckPeerHello(m, ident_, judge_ ? std::nullopt
                                                      : std::make_optional(Role::kStandby));
          peer_hello_ = m;
          if (!err && judge_) err = judge_(m);
          if (err) {
            last_error_ = err->text;
            return conn_->Fail(err->code, err->text);
          }
          peer_node_ = m.node;
          manifest_.clear();
          state_ = State::kManifest;
          spdlog::info("replication: connected to standby {} at {}", m.node, conn_->peer());
        } else if constexpr (std::is_same_v<T, msg::Manifest>) {
          if (state_ != State::kManifest)
            return conn_->Fail(msg::ErrorCode::kProtocol, "unexpected Manifest");
          for (auto& e : m.entries) manifest_.push_back(std::move(e));
          if (m.last) OnManifestComplete();
        } else if constexpr (std::is_same_v<T, msg::Ack>) {
          OnAck(m.seq);
        } else if constexpr (std::is_same_v<T, msg::Heartbeat>) {
        } else if constexpr (std::is_same_v<T, msg::HandoverFile> ||
                             std::is_same_v<T, msg::HandoverLog> ||
                             std::is_same_v<T, msg::HandoverDone>) {
          if (!handover_ || (state_ != State::kCatchup && state_ != State::kLive))
            return conn_->Fail(msg::ErrorCode::kProtocol, "unexpected handover frame");
          if (auto reply = handover_(f.msg)) conn_->Send(0, *reply);
        } else if constexpr (std::is_same_v<T, msg::SwitchoverRequest>) {
          if (on_switchover_request_) on_switchover_request_(m);
        } else if constexpr (std::is_same_v<T, msg::NodeStatus>) {
          if ((m.flags & msg::NodeStatus::kFingerprints) && !peer_fingerprints_) {
            peer_fingerprints_ = true;
            spdlog::info("replication: standby {} takes fingerprints: duplicates of messages "
                         "whose 250 a failover loses can be recognised",
                         peer_node_);
            if (on_fingerprints_ok_) on_fingerprints_ok_();
          }
          if ((m.flags & msg::NodeStatus::kFingerprints) &&
              (m.flags & msg::NodeStatus::kGateTokens))
            peer_tokens_ = true;
          if (on_node_status_) on_node_status_(m);
        } else if constexpr (std::is_same_v<T, msg::Error>) {
          last_error_ = fmt::format("standby refused: {}", m.text);
          spdlog::error("replication: {} ({})", last_error_, conn_->peer());
          conn_->Close(last_error_);
        } else {
          conn_->Fail(msg::ErrorCode::kProtocol, "unexpected message from the standby");
        }
      },
      f.msg);
}

void PrimaryLink::OnManifestComplete() {
  catchup_start_ = std::chrono::steady_clock::now();
  auto rec = watcher_.model().Reconcile(manifest_);
  spdlog::info("replication: standby holds {} entries; {} messages to send whole, {} fixes",
               manifest_.size(), rec.resend.size(), rec.changes.size());
  manifest_.clear();
  manifest_.shrink_to_fit();
  for (auto& c : rec.changes) conn_->Send(++seq_, c);
  resend_.clear();
  resend_set_.clear();
  for (auto& id : rec.resend) {
    resend_set_.insert(id);
    resend_.push_back(std::move(id));
  }
  state_ = State::kCatchup;
  Pump();
}

void PrimaryLink::Pump() {
  if (state_ != State::kCatchup || !conn_) return;
  while (!resend_.empty() && conn_->queued_bytes() < Connection::kLowWater) {
    std::string id = std::move(resend_.front());
    resend_.pop_front();
    resend_set_.erase(id);
    ApplyResult r = watcher_.Snapshot(id);
    SendChanges(id, std::move(r), false);
  }
  if (resend_.empty() && state_ == State::kCatchup) {
    conn_->Send(0, msg::SyncDone{watcher_.model().size()});
    state_ = State::kLive;
    down_since_.reset();
    live_since_ = std::chrono::steady_clock::now();
    ever_live_ = true;
    // Everything still queued has now been sent: waiters whose frames were
    // lost with an earlier connection wait for the catch-up's last frame.
    for (auto& [id, ws] : waiters_)
      for (auto& w : ws)
        if (!w.target) w.target = seq_;
    CompleteWaiters();
    last_catchup_s_ =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - catchup_start_).count();
    spdlog::info("replication: standby {} caught up in {:.3f} s; streaming live", peer_node_,
                 *last_catchup_s_);
  }
}

void PrimaryLink::OnDrained() { Pump(); }

void PrimaryLink::OnChanges(const std::string& id, ApplyResult&& r) {
  bool deleting = false;
  for (const auto& c : r.changes)
    if (std::holds_alternative<msg::Delete>(c)) deleting = true;
  if (deleting) FinishGone(id);
  if (state_ != State::kCatchup && state_ != State::kLive) return;  // reconcile will cover it
  if (resend_set_.count(id)) {
    if (!deleting) return;  // the pump sends its current state later
    resend_set_.erase(id);
    std::erase(resend_, id);
  } else if (!deleting && conn_->queued_bytes() > kHighWater) {
    // The standby is slow: keep memory bounded, send it whole later.
    resend_set_.insert(id);
    resend_.push_back(id);
    if (state_ == State::kLive) state_ = State::kCatchup;
    return;
  }
  SendChanges(id, std::move(r), true);
}

void PrimaryLink::SendChanges(const std::string& id, ApplyResult&& r, bool live) {
  for (auto& c : r.changes) {
    std::uint64_t seq = ++seq_;
    if (auto* file = std::get_if<msg::File>(&c)) {
      bytes_sent_ += file->data.size();
      if (file->offset + file->data.size() == file->total_size) {
        ++files_sent_;
        const MessageState* st = watcher_.model().Find(id);
        std::int64_t now = WallClockNs();
        const Inflight& f = inflight_.emplace_back(
            Inflight{seq, st ? st->file.ctime_ns : now, live && r.new_file});
        double after_ms = static_cast<double>(now - f.commit_ns) / 1e6;
        if (f.live) ship_.Add(after_ms);
        if (spdlog::should_log(spdlog::level::debug))
          spdlog::debug("sent {} seq {} {:.3f} ms after commit", id, seq, after_ms);
      }
    } else if (live && r.seen_ns &&
               (std::holds_alternative<msg::Patch>(c) || std::holds_alternative<msg::Delete>(c))) {
      // A finished delivery on its way (docs/operations.md, `done ms`):
      // a done mark dates from Postfix's write, a removal from its event.
      std::int64_t now = WallClockNs();
      std::int64_t start = r.seen_ns;
      if (std::holds_alternative<msg::Patch>(c) && r.observed_mtime_ns &&
          r.observed_mtime_ns < start) {
        start = r.observed_mtime_ns;
        done_read_.Add(static_cast<double>(r.seen_ns - start) / 1e6);
      }
      done_ship_.Add(static_cast<double>(now - r.seen_ns) / 1e6);
      inflight_.push_back(Inflight{seq, start, true, true});
      if (spdlog::should_log(spdlog::level::debug))
        spdlog::debug("sent {} of {} seq {} {:.3f} ms after Postfix made it; {} bytes ahead",
                      std::holds_alternative<msg::Patch>(c) ? "done mark" : "removal", id, seq,
                      static_cast<double>(now - start) / 1e6, conn_->queued_bytes());
    }
    conn_->Send(seq, c);
  }
}

void PrimaryLink::OnAck(std::uint64_t seq) {
  if (seq > seq_) return conn_->Fail(msg::ErrorCode::kProtocol, "ack of a frame never sent");
  acked_ = std::max(acked_, seq);
  std::int64_t now = WallClockNs();
  while (!inflight_.empty() && inflight_.front().seq <= acked_) {
    const Inflight& f = inflight_.front();
    double ms = static_cast<double>(now - f.commit_ns) / 1e6;
    if (f.done) done_lag_.Add(ms);
    else if (f.live) lag_.Add(ms);
    if (spdlog::should_log(spdlog::level::debug))
      spdlog::debug("acked seq {} {:.3f} ms after commit", inflight_.front().seq,
                    (now - inflight_.front().commit_ns) / 1e6);
    inflight_.pop_front();
  }
  CompleteWaiters();
}

bool PrimaryLink::SendFingerprint(const std::string& id,
                                  const std::array<std::uint8_t, 32>& digest) {
  return SendFingerprint(msg::Fingerprint{id, digest, 0, {}});
}

bool PrimaryLink::SendFingerprint(const msg::Fingerprint& m) {
  if (!conn_ || !peer_fingerprints_ || (state_ != State::kLive && state_ != State::kCatchup))
    return false;
  if (IsGateToken(m.id) && !peer_tokens_) return false;
  conn_->Send(++seq_, m);
  ++fingerprints_sent_;
  return true;
}

void PrimaryLink::WaitDurable(const std::string& id, DurableFn done) {
  if (!watcher_.model().Find(id)) {
    // Not queued (any more): delivered or deleted before we looked.
    asio::post(io_, [done = std::move(done)] { done(false); });
    return;
  }
  Waiter w{std::nullopt, std::move(done)};
  // Streaming and id not waiting for a whole resend: its current state was
  // handed to the connection already, so it is covered by every frame sent.
  if ((state_ == State::kLive || state_ == State::kCatchup) && !resend_set_.count(id)) {
    if (seq_ <= acked_) {  // all of it acknowledged already
      asio::post(io_, [done = std::move(w.done)] { done(true); });
      return;
    }
    w.target = seq_;
  }
  waiters_[id].push_back(std::move(w));
}

void PrimaryLink::CompleteWaiters() {
  std::vector<DurableFn> ready;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    auto& ws = it->second;
    std::erase_if(ws, [&](Waiter& w) {
      if (!w.target || *w.target > acked_) return false;
      ready.push_back(std::move(w.done));
      return true;
    });
    it = ws.empty() ? waiters_.erase(it) : std::next(it);
  }
  for (auto& fn : ready) asio::post(io_, [fn = std::move(fn)] { fn(true); });
}

void PrimaryLink::FinishGone(const std::string& id) {
  auto it = waiters_.find(id);
  if (it == waiters_.end()) return;
  for (auto& w : it->second) asio::post(io_, [fn = std::move(w.done)] { fn(false); });
  waiters_.erase(it);
}

void PrimaryLink::OnClosed(const std::string& why) {
  if (!stopped_) spdlog::warn("replication: link to {} lost: {}", cfg_.peer, why);
  // Only a session that held counts as a success: one that failed right
  // after its catch-up (the standby's disk is full) keeps backing off.
  if (live_since_ && std::chrono::steady_clock::now() - *live_since_ >= kStableSession)
    failures_ = 0;
  last_error_ = why;
  conn_.reset();
  peer_hello_.reset();
  peer_fingerprints_ = false;
  peer_tokens_ = false;
  state_ = State::kDisconnected;
  if (!down_since_) down_since_ = std::chrono::steady_clock::now();
  live_since_.reset();
  // Frames not acknowledged may be lost: waiters wait for the next catch-up.
  for (auto& [id, ws] : waiters_)
    for (auto& w : ws) w.target.reset();
  resend_.clear();
  resend_set_.clear();
  inflight_.clear();
  ScheduleReconnect();
}

}  // namespace mailtwin::repl
