// relay.h - the node's public SMTP port (docs/failover.md, "Who owns port
// 25"): mailtwind, not Postfix, accepts on it, on both nodes, at all times,
// and passes each connection on as a byte stream, behind a PROXY v1 header
// that names the real client (relay/proxy_header.h):
//
//   client --:25--> Relay --route kLocal--> Postfix smtpd (relay.smtpd, PROXY)
//                         --route kPeer---> the peer's Relay (peer port)
//                                            --> its Postfix smtpd (PROXY)
//   route kHold, or the next hop unreachable: the connection is held, with
//   no greeting, and tried again every 250 ms and at once when the route
//   changes, for at most hold_timeout; then closed (the client retries).
//
// The daemon sets the route: a primary whose Postfix runs: kLocal; a
// standby: kPeer; a primary not serving yet: kHold. So a connection to the
// standby enters the primary's gate like any other, and one that arrives
// while the primary is found dead waits until this node serves.
//
// Guarantees: a PROXY header is only ever written by this code, from the
// accepted socket's own addresses or from the header of the peer's relay,
// which is read only from the peer's address (anyone else is closed
// unread), capped at 107 bytes and 5 s, and parsed strictly. A connection
// from the peer is never sent back to the peer (no loop between two
// standbys). At most max_held connections are held and max_sessions open:
// beyond, nothing more is accepted (connections wait in the kernel's
// backlog, using no descriptor) until one ends. A relayed session ends
// after 10 minutes without a byte either way.
// Single-threaded, on the daemon's io_context.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <asio.hpp>

#include "common/config.h"

namespace mailtwin::relay {

enum class Route { kLocal, kPeer, kHold };
std::string_view RouteName(Route r);

class Relay {
 public:
  Relay(asio::io_context& io, const Config& cfg);
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // Binds the public and the peer listeners. "" or what failed.
  std::string Start();
  // Held connections are tried again at once when the route changes.
  void SetRoute(Route r);
  Route route() const { return route_; }

  struct Stats {
    std::uint64_t sessions = 0;      // accepted, both listeners
    std::uint64_t active = 0;        // open now (held ones included)
    std::uint64_t held = 0;          // held now
    std::uint64_t held_total = 0;    // ever held
    std::uint64_t hold_expired = 0;  // closed after hold_timeout
    std::uint64_t handed_back = 0;   // from the peer while this node follows: closed unanswered
    std::uint64_t to_local = 0;      // passed to this node's Postfix
    std::uint64_t to_peer = 0;       // passed to the peer's relay
    std::uint64_t from_peer = 0;     // arrived from the peer's relay
    std::uint64_t rejected = 0;      // on the peer port, not from the peer / bad header
    double held_max_s = 0;           // the longest hold that ended in a relay
  };
  const Stats& stats() const { return stats_; }
  // The bound ports (a listen address with port 0 gets one from the kernel).
  std::uint16_t public_port() const { return public_.acceptor.local_endpoint().port(); }
  std::uint16_t peer_port() const { return peer_listener_.acceptor.local_endpoint().port(); }

 private:
  class Session;
  struct Listener {
    explicit Listener(asio::io_context& io) : acceptor(io) {}
    asio::ip::tcp::acceptor acceptor;
    bool from_peer = false;
    bool accepting = false;
  };
  std::string Listen(Listener& l, const std::string& where, const char* what);
  void Accept(Listener& l);
  // Accepting resumes on every listener that has room again.
  void MaybeAccept();
  // At the cap: the pending accepts are cancelled (asio cannot pause one).
  void PauseIfFull();
  bool Full() const;
  void Forget(Session* s);

  asio::io_context& io_;
  const Config& cfg_;
  Route route_ = Route::kHold;
  asio::ip::tcp::endpoint smtpd_, peer_;
  asio::ip::address peer_addr_, self_addr_;
  Listener public_, peer_listener_;
  std::vector<std::weak_ptr<Session>> sessions_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  Stats stats_;
};

}  // namespace mailtwin::relay
