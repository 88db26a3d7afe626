#include "relay/relay.h"

#include <array>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "relay/proxy_header.h"

namespace mailtwin::relay {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {
constexpr auto kRetry = std::chrono::milliseconds(250);
// The peer's relay answers from its own loop: a second is long; a host
// that is gone does not answer at all, and its SYNs would take minutes.
constexpr auto kPeerConnectTimeout = std::chrono::seconds(1);
constexpr auto kLocalConnectTimeout = std::chrono::seconds(2);
constexpr auto kHeaderTimeout = std::chrono::seconds(5);
// Postfix's smtpd gives up on a silent client after 300 s; a pipe idle
// for longer than that is one whose ends are gone.
constexpr auto kIdle = std::chrono::minutes(10);

bool ParseEndpoint(const std::string& hp, tcp::endpoint& out) {
  std::string host;
  std::uint16_t port = 0;
  // Port 0 (the kernel picks one: the unit tests) is no port for the
  // configuration's SplitHostPort.
  if (hp.size() > 2 && hp.ends_with(":0") && hp.front() != '[') host = hp.substr(0, hp.size() - 2);
  else if (!SplitHostPort(hp, host, port)) return false;
  asio::error_code ec;
  auto a = asio::ip::make_address(host, ec);
  if (ec) return false;
  out = tcp::endpoint(a, port);
  return true;
}
}  // namespace

std::string_view RouteName(Route r) {
  switch (r) {
    case Route::kLocal: return "local";
    case Route::kPeer: return "peer";
    case Route::kHold: return "hold";
  }
  return "?";
}

// One client connection: read the peer's header (peer port only), find the
// next hop by the route, write our header, then pump bytes both ways.
class Relay::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Relay& relay, tcp::socket front, bool from_peer)
      : relay_(relay),
        alive_(relay.alive_),
        front_(std::move(front)),
        back_(front_.get_executor()),
        timer_(front_.get_executor()),
        from_peer_(from_peer) {}

  void Start() {
    asio::error_code ec1, ec2;
    auto remote = front_.remote_endpoint(ec1), local = front_.local_endpoint(ec2);
    if (ec1 || ec2) return Close();
    if (!from_peer_) {
      ends_ = {remote.address(), local.address(), remote.port(), local.port()};
      return Dispatch();
    }
    ++relay_.stats_.from_peer;
    ReadHeader();
  }

  // The route changed: a held connection tries at once.
  void Kick() {
    if (held_ && !closed_ && !connecting_ && !greeting_) timer_.cancel();
  }
  bool closed() const { return closed_; }
  bool held() const { return held_; }

  void Close() {
    if (closed_) return;
    closed_ = true;
    asio::error_code ec;
    front_.close(ec);
    back_.close(ec);
    timer_.cancel();
    if (!*alive_) return;
    Unhold();
    --relay_.stats_.active;
    relay_.MaybeAccept();
  }

 private:
  bool Gone() const { return !*alive_ || closed_; }

  void ReadHeader() {
    Arm(kHeaderTimeout, "no PROXY header from the peer's relay");
    // asio::streambuf's cap: a line longer than 107 bytes fails the read.
    asio::async_read_until(front_, hbuf_, "\r\n", [self = shared_from_this()](
                                                       asio::error_code ec, std::size_t n) {
      if (self->Gone()) return;
      self->header_read_ = true;
      self->timer_.cancel();
      std::string data(asio::buffers_begin(self->hbuf_.data()),
                       asio::buffers_end(self->hbuf_.data()));
      std::optional<ProxyEndpoints> e;
      if (!ec) e = ParseProxyV1(std::string_view(data).substr(0, n));
      if (!e) {
        ++self->relay_.stats_.rejected;
        spdlog::warn("relay: closing a connection on the peer port: {}",
                     ec ? ec.message() : "not a PROXY v1 header");
        return self->Close();
      }
      self->ends_ = *e;
      // What the client sent after the header goes on after ours.
      self->early_ = data.substr(n);
      self->Dispatch();
    });
  }

  void Arm(Clock::duration d, const char* why) {
    timer_.expires_after(d);
    timer_.async_wait([self = shared_from_this(), why](asio::error_code ec) {
      if (ec || self->Gone() || self->header_read_) return;
      spdlog::warn("relay: {}", why);
      self->Close();
    });
  }

  void Dispatch() {
    Route r = relay_.route_;
    // A connection the peer passed on is never passed back. If this node
    // follows now (the peer passed it on while this node served, or was
    // about to), the peer serves or is taking over: closed before any
    // byte went back, the peer's relay holds its client again and tries
    // its own route (Retry), instead of both holding it until
    // hold_timeout, longer than a sender waits for a greeting. Between two
    // standbys this repeats every 250 ms until one serves.
    if (from_peer_ && r == Route::kPeer) {
      ++relay_.stats_.handed_back;
      spdlog::info("relay: a client from {} the peer passed on goes back to the peer's relay: "
                   "this node follows now",
                   ends_.src.to_string());
      return Close();
    }
    if (r == Route::kHold) return Hold();
    bool local = r == Route::kLocal;
    tcp::endpoint to = local ? relay_.smtpd_ : relay_.peer_;
    connecting_ = true;
    unsigned gen = ++gen_;
    timer_.expires_after(local ? kLocalConnectTimeout : kPeerConnectTimeout);
    timer_.async_wait([self = shared_from_this(), gen](asio::error_code ec) {
      // An expiry already queued when the connect completed: too late.
      if (ec || self->Gone() || gen != self->gen_ || !self->connecting_) return;
      asio::error_code ignored;
      self->back_.close(ignored);  // the connect handler sees it failed
    });
    asio::error_code ignored;
    back_.close(ignored);
    if (!local) {
      // From this node's own address on the peer port's side: the peer
      // accepts a header only from there (and a service address this
      // node may hold must not be the source).
      back_.open(to.protocol(), ignored);
      back_.bind(tcp::endpoint(relay_.self_addr_, 0), ignored);
      if (ignored)
        spdlog::warn("relay: cannot send from {}: {}", relay_.self_addr_.to_string(),
                     ignored.message());
    }
    back_.async_connect(to, [self = shared_from_this(), gen, local, to](asio::error_code ec) {
      if (self->Gone() || gen != self->gen_) return;
      self->connecting_ = false;
      self->timer_.cancel();
      if (ec || !self->back_.is_open()) {
        if (!self->held_)
          spdlog::info("relay: {} at {}:{} not reachable ({}): holding a client from {}",
                       local ? "this node's Postfix" : "the peer's relay",
                       to.address().to_string(), to.port(), ec ? ec.message() : "timed out",
                       self->ends_.src.to_string());
        return self->Hold();
      }
      self->Connected(local);
    });
  }

  void Hold() {
    if (!held_) {
      held_ = true;
      held_since_ = Clock::now();
      ++relay_.stats_.held;
      ++relay_.stats_.held_total;
      WatchLeave();
    }
    if (Clock::now() - held_since_ >= relay_.cfg_.relay_hold_timeout) {
      ++relay_.stats_.hold_expired;
      spdlog::warn("relay: a client from {} held for {} ms and nothing serves: closed (it "
                   "tries again later)",
                   ends_.src.to_string(), relay_.cfg_.relay_hold_timeout.count());
      return Close();
    }
    relay_.PauseIfFull();  // a held one counts: accepting may have to stop
    timer_.expires_after(kRetry);
    timer_.async_wait([self = shared_from_this()](asio::error_code) {
      // Expired or cancelled by Kick: try again, if still held (a stale
      // completion may arrive after the session went on).
      if (!self->Gone() && self->held_ && !self->connecting_ && !self->greeting_)
        self->Dispatch();
    });
  }

  // A held client that gives up (an SMTP probe's timeout, a sender's own)
  // frees its place at once, not after hold_timeout: what it sent early is
  // only peeked at, and goes on with the rest.
  void WatchLeave() {
    front_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](asio::error_code ec) {
      if (self->Gone() || !self->held_) return;
      char c;
      asio::error_code rec;
      std::size_t n = ec ? 0 : self->front_.receive(asio::buffer(&c, 1),
                                                    tcp::socket::message_peek, rec);
      if (ec || rec || n == 0) return self->Close();
      // It spoke before the greeting: leave that to Postfix's smtpd
      // (it may hang up on it, as it does with any early talker).
    });
  }

  void Unhold() {
    if (!held_) return;
    held_ = false;
    --relay_.stats_.held;
    double s = std::chrono::duration<double>(Clock::now() - held_since_).count();
    if (!closed_) relay_.stats_.held_max_s = std::max(relay_.stats_.held_max_s, s);
  }

  // The next hop accepted: our header goes out, then nothing else until
  // its greeting. Until that first byte the client has seen nothing and
  // sent nothing we read, so a next hop that dies now (the primary killed
  // between its kernel's handshake and its greeting) costs the client
  // nothing: it is held again and tried elsewhere.
  void Connected(bool local) {
    asio::error_code ignored;
    back_.set_option(tcp::no_delay(true), ignored);
    front_.set_option(tcp::no_delay(true), ignored);
    head_ = FormatProxyV1(ends_) + early_;
    greeting_ = true;
    unsigned gen = gen_;
    asio::async_write(back_, asio::buffer(head_), [self = shared_from_this(), local, gen](
                                                      asio::error_code ec, std::size_t) {
      if (self->Gone() || gen != self->gen_) return;
      if (ec) return self->Retry(local, ec.message());
      self->ReadGreeting(local);
    });
  }

  void ReadGreeting(bool local) {
    unsigned gen = gen_;
    // As long as a client may be held: a next hop that holds it itself
    // (the peer, not serving either) closes by then.
    timer_.expires_after(relay_.cfg_.relay_hold_timeout);
    timer_.async_wait([self = shared_from_this(), gen](asio::error_code ec) {
      if (ec || self->Gone() || gen != self->gen_ || !self->greeting_) return;
      spdlog::warn("relay: no greeting from the next hop for a client from {}: closed",
                   self->ends_.src.to_string());
      self->Close();
    });
    back_.async_read_some(asio::buffer(down_), [self = shared_from_this(), local, gen](
                                                   asio::error_code ec, std::size_t n) {
      if (self->Gone() || gen != self->gen_) return;
      if (ec) return self->Retry(local, ec.message());
      self->greeting_ = false;
      self->timer_.cancel();
      if (self->held_) {
        spdlog::info("relay: a client from {} held {:.0f} ms goes to {}",
                     self->ends_.src.to_string(),
                     std::chrono::duration<double, std::milli>(Clock::now() - self->held_since_)
                         .count(),
                     local ? "this node's Postfix" : "the peer");
        self->Unhold();
        self->relay_.MaybeAccept();
      }
      ++(local ? self->relay_.stats_.to_local : self->relay_.stats_.to_peer);
      self->early_.clear();
      asio::async_write(self->front_, asio::buffer(self->down_.data(), n),
                        [self](asio::error_code ec, std::size_t) {
                          if (self->Gone()) return;
                          if (ec) return self->Close();
                          self->last_ = Clock::now();
                          self->WatchIdle();
                          self->Pump(self->front_, self->back_, self->up_, 0);
                          self->Pump(self->back_, self->front_, self->down_, 1);
                        });
    });
  }

  // The next hop went away before its greeting: hold the client again.
  void Retry(bool local, const std::string& why) {
    spdlog::info("relay: {} closed before its greeting ({}): holding a client from {} again",
                 local ? "this node's Postfix" : "the peer's relay", why, ends_.src.to_string());
    greeting_ = false;
    ++gen_;  // what is still pending on the old connection is stale
    asio::error_code ignored;
    back_.close(ignored);
    timer_.cancel();
    Hold();
  }

  // from -> to, until from ends; then to's sending side is shut, and the
  // session closes once both directions have ended.
  void Pump(tcp::socket& from, tcp::socket& to, std::array<char, 16384>& buf, int dir) {
    from.async_read_some(asio::buffer(buf), [self = shared_from_this(), &from, &to, &buf, dir](
                                                asio::error_code ec, std::size_t n) {
      if (self->Gone()) return;
      if (ec) {
        asio::error_code ignored;
        to.shutdown(tcp::socket::shutdown_send, ignored);
        if (++self->ended_ == 2 || ec != asio::error::eof) self->Close();
        return;
      }
      self->last_ = Clock::now();
      asio::async_write(to, asio::buffer(buf.data(), n),
                        [self, &from, &to, &buf, dir](asio::error_code ec, std::size_t) {
                          if (self->Gone()) return;
                          if (ec) return self->Close();
                          self->Pump(from, to, buf, dir);
                        });
    });
  }

  void WatchIdle() {
    timer_.expires_after(std::chrono::minutes(1));
    timer_.async_wait([self = shared_from_this()](asio::error_code ec) {
      if (ec || self->Gone()) return;
      if (Clock::now() - self->last_ >= kIdle) {
        spdlog::info("relay: a session from {} idle for 10 minutes: closed",
                     self->ends_.src.to_string());
        return self->Close();
      }
      self->WatchIdle();
    });
  }

  Relay& relay_;
  std::shared_ptr<bool> alive_;
  tcp::socket front_, back_;
  asio::steady_timer timer_;
  bool from_peer_;
  asio::streambuf hbuf_{kMaxProxyV1};
  ProxyEndpoints ends_;
  std::string early_, head_;
  std::array<char, 16384> up_{}, down_{};
  bool closed_ = false, held_ = false, connecting_ = false, header_read_ = false;
  bool greeting_ = false;  // connected, waiting for the next hop's first byte
  int ended_ = 0;
  unsigned gen_ = 0;
  Clock::time_point held_since_, last_;
};

Relay::Relay(asio::io_context& io, const Config& cfg)
    : io_(io), cfg_(cfg), public_(io), peer_listener_(io) {
  peer_listener_.from_peer = true;
}

Relay::~Relay() {
  *alive_ = false;
  asio::error_code ec;
  public_.acceptor.close(ec);
  peer_listener_.acceptor.close(ec);
  for (auto& w : sessions_)
    if (auto s = w.lock()) s->Close();
}

std::string Relay::Listen(Listener& l, const std::string& where, const char* what) {
  tcp::endpoint ep;
  if (!ParseEndpoint(where, ep)) return fmt::format("[relay] {} {}: not IP:port", what, where);
  asio::error_code ec;
  l.acceptor.open(ep.protocol(), ec);
  if (!ec) l.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) l.acceptor.bind(ep, ec);
  if (!ec) l.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return fmt::format("[relay] cannot listen on {} ({}): {} (does Postfix still listen there? "
                       "run `mailtwin postfix-config --apply`)",
                       where, what, ec.message());
  return {};
}

std::string Relay::Start() {
  if (!ParseEndpoint(cfg_.relay_smtpd, smtpd_))
    return fmt::format("[relay] smtpd {}: not IP:port", cfg_.relay_smtpd);
  if (!ParseEndpoint(cfg_.relay_peer, peer_))
    return fmt::format("[relay] peer {}: not IP:port", cfg_.relay_peer);
  peer_addr_ = peer_.address();
  tcp::endpoint self;
  if (!ParseEndpoint(cfg_.relay_peer_listen, self))
    return fmt::format("[relay] peer_listen {}: not IP:port", cfg_.relay_peer_listen);
  self_addr_ = self.address();
  if (std::string err = Listen(public_, cfg_.relay_listen, "listen"); !err.empty()) return err;
  if (std::string err = Listen(peer_listener_, cfg_.relay_peer_listen, "peer_listen");
      !err.empty())
    return err;
  spdlog::info("relay: SMTP on {} goes to this node's Postfix at {} (primary) or the peer's "
               "relay at {} (standby); from the peer on {}; holds at most {} for {} ms",
               cfg_.relay_listen, cfg_.relay_smtpd, cfg_.relay_peer, cfg_.relay_peer_listen,
               cfg_.relay_max_held, cfg_.relay_hold_timeout.count());
  MaybeAccept();
  return {};
}

void Relay::SetRoute(Route r) {
  if (r == route_) return;
  spdlog::info("relay: route {} -> {} ({} held)", RouteName(route_), RouteName(r), stats_.held);
  route_ = r;
  for (auto& w : sessions_)
    if (auto s = w.lock()) s->Kick();
}

bool Relay::Full() const {
  return stats_.held >= static_cast<std::uint64_t>(cfg_.relay_max_held) ||
         stats_.active >= static_cast<std::uint64_t>(cfg_.relay_max_sessions);
}

void Relay::MaybeAccept() {
  if (Full()) return;
  for (Listener* l : {&public_, &peer_listener_})
    if (!l->accepting && l->acceptor.is_open()) Accept(*l);
}

void Relay::PauseIfFull() {
  if (!Full()) return;
  asio::error_code ec;
  for (Listener* l : {&public_, &peer_listener_})
    if (l->accepting) l->acceptor.cancel(ec);
}

void Relay::Accept(Listener& l) {
  l.accepting = true;
  l.acceptor.async_accept([this, &l, alive = alive_](asio::error_code ec, tcp::socket s) {
    if (!*alive) return;
    l.accepting = false;
    if (!l.acceptor.is_open() || ec == asio::error::operation_aborted) return;  // paused
    if (ec) {
      // EMFILE and the like: try again shortly rather than spin.
      spdlog::warn("relay: accept: {}", ec.message());
      auto t = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
      t->async_wait([this, t, alive](asio::error_code) {
        if (*alive) MaybeAccept();
      });
      return;
    }
    asio::error_code ec2;
    auto remote = s.remote_endpoint(ec2);
    if (l.from_peer && (ec2 || remote.address() != peer_addr_)) {
      // Only the peer's relay may name a client: anyone else is closed unread.
      ++stats_.rejected;
      spdlog::warn("relay: a connection on the peer port from {}, not the peer {}: closed",
                   ec2 ? "?" : remote.address().to_string(), peer_addr_.to_string());
      s.close(ec2);
    } else if (Full()) {
      // Accepted in the instant the pause took: not one more than the cap.
      ++stats_.rejected;
      s.close(ec2);
    } else {
      ++stats_.sessions;
      ++stats_.active;
      auto session = std::make_shared<Session>(*this, std::move(s), l.from_peer);
      std::erase_if(sessions_, [](const auto& w) { return w.expired(); });
      sessions_.push_back(session);
      session->Start();
    }
    PauseIfFull();
    MaybeAccept();
  });
}

}  // namespace mailtwin::relay
