// The relay with the real kernel on loopback: its bounds (max_held,
// hold_timeout), its PROXY header, the hand-over of held clients when the
// route changes, a next hop that dies before its greeting, and the peer
// port's refusals. The next hop is a small TCP server that records the
// header it gets and greets; the real Postfix behind the relay is the lab's
// (tests/lab/t-14-mx-relay).
#include "relay/relay.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <future>
#include <thread>

#include <gtest/gtest.h>

namespace mailtwin::relay {
namespace {

using namespace std::chrono_literals;
using asio::ip::tcp;

// A blocking client socket (5 s receive timeout), from a given address.
struct Client {
  int fd = -1;
  std::uint16_t port = 0;  // its own
  Client(std::uint16_t to, const char* from = "127.0.0.1") {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    inet_pton(AF_INET, from, &a.sin_addr);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    a.sin_port = htons(to);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~Client() { close(fd); }
  void Send(const std::string& s) { ASSERT_EQ(send(fd, s.data(), s.size(), 0), ssize_t(s.size())); }
  // What arrives within the timeout; "" once closed (a FIN, or a reset:
  // a socket closed with unread bytes resets), "TIMEOUT" if nothing.
  std::string Recv(int timeout_ms = 5000) {
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) return errno == ECONNRESET ? "" : "TIMEOUT";
    return std::string(buf, static_cast<std::size_t>(n));
  }
};

// The next hop: records each connection's first line (the header), then
// greets; the first `drop_first` connections are closed before a greeting.
struct NextHop {
  explicit NextHop(asio::io_context& io)
      : acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    Accept();
  }
  void Accept() {
    acceptor.async_accept([this](asio::error_code ec, tcp::socket s) {
      if (ec) return;
      auto sock = std::make_shared<tcp::socket>(std::move(s));
      auto buf = std::make_shared<asio::streambuf>();
      auto got = [this, sock, buf](asio::error_code ec, std::size_t n) {
        if (ec) return;
        std::string line(asio::buffers_begin(buf->data()), asio::buffers_begin(buf->data()) + n);
        std::lock_guard lock(mu);
        headers.push_back(line);
        if (drop_first > 0) {
          --drop_first;
          sock->close();
          return;
        }
        static const std::string kHello = "220 next hop\r\n";
        asio::async_write(*sock, asio::buffer(kHello), [sock](asio::error_code, std::size_t) {});
        open.push_back(sock);
      };
      asio::async_read_until(*sock, *buf, "\r\n", got);
      Accept();
    });
  }
  std::uint16_t port() const { return acceptor.local_endpoint().port(); }
  std::vector<std::string> Headers() {
    std::lock_guard lock(mu);
    return headers;
  }
  tcp::acceptor acceptor;
  std::mutex mu;
  std::vector<std::string> headers;
  std::vector<std::shared_ptr<tcp::socket>> open;
  int drop_first = 0;
};

// A relay on loopback, its io_context on a thread of its own.
struct Lab {
  explicit Lab(Config c) : cfg(std::move(c)) {}
  void Start() {
    relay = std::make_unique<Relay>(io, cfg);
    ASSERT_EQ(relay->Start(), "");
    thread = std::thread([this] { io.run(); });
  }
  ~Lab() {
    asio::post(io, [this] { relay.reset(); work.reset(); io.stop(); });
    if (thread.joinable()) thread.join();
  }
  template <class F>
  auto On(F f) {  // runs f on the relay's thread
    std::packaged_task<decltype(f())()> task(f);
    auto fut = task.get_future();
    asio::post(io, [&task] { task(); });
    return fut.get();
  }
  Relay::Stats Stats() { return On([this] { return relay->stats(); }); }
  void Route(Route r) { On([this, r] { relay->SetRoute(r); return 0; }); }
  // Waits (5 s at most) until pred(stats) holds.
  bool WaitFor(const std::function<bool(const Relay::Stats&)>& pred) {
    for (int i = 0; i < 500; ++i) {
      if (pred(Stats())) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work{io.get_executor()};
  Config cfg;
  std::unique_ptr<Relay> relay;
  std::thread thread;
};

Config Base(std::uint16_t smtpd_port) {
  Config c;
  c.relay_listen = "127.0.0.1:0";
  c.relay_peer_listen = "127.0.0.1:0";
  c.relay_peer = "127.0.0.1:1";  // nothing listens: a standby's clients are held
  c.relay_smtpd = "127.0.0.1:" + std::to_string(smtpd_port);
  return c;
}

TEST(RelaySession, HeldClientGoesToPostfixWithItsOwnAddressWhenTheRouteSaysSo) {
  asio::io_context hop_io;
  NextHop hop(hop_io);
  std::thread hop_thread([&] { hop_io.run(); });
  {
    Lab lab(Base(hop.port()));
    lab.Start();
    Client c(lab.On([&] { return lab.relay->public_port(); }));
    ASSERT_TRUE(lab.WaitFor([](const auto& s) { return s.held == 1; }));
    EXPECT_EQ(c.Recv(300), "TIMEOUT");  // held: no greeting yet
    EXPECT_TRUE(hop.Headers().empty());
    lab.Route(Route::kLocal);
    EXPECT_EQ(c.Recv(), "220 next hop\r\n");
    std::uint16_t relay_port = lab.On([&] { return lab.relay->public_port(); });
    ASSERT_EQ(hop.Headers().size(), 1u);
    EXPECT_EQ(hop.Headers()[0], "PROXY TCP4 127.0.0.1 127.0.0.1 " + std::to_string(c.port) + " " +
                                    std::to_string(relay_port) + "\r\n");
    auto s = lab.Stats();
    EXPECT_EQ(s.held, 0u);
    EXPECT_EQ(s.held_total, 1u);
    EXPECT_EQ(s.to_local, 1u);
  }
  hop_io.stop();
  hop_thread.join();
}

TEST(RelaySession, NextHopThatDiesBeforeItsGreetingCostsTheClientNothing) {
  asio::io_context hop_io;
  NextHop hop(hop_io);
  hop.drop_first = 2;
  std::thread hop_thread([&] { hop_io.run(); });
  {
    Lab lab(Base(hop.port()));
    lab.Start();
    lab.Route(Route::kLocal);
    Client c(lab.On([&] { return lab.relay->public_port(); }));
    EXPECT_EQ(c.Recv(), "220 next hop\r\n");
    EXPECT_EQ(hop.Headers().size(), 3u);  // two dropped, the third greeted
  }
  hop_io.stop();
  hop_thread.join();
}

TEST(RelaySession, HoldsAtMostMaxHeldAndClosesAfterHoldTimeout) {
  Config c = Base(1);
  c.relay_max_held = 2;
  c.relay_hold_timeout = 1500ms;
  Lab lab(c);
  lab.Start();
  std::uint16_t port = lab.On([&] { return lab.relay->public_port(); });
  Client a(port), b(port);
  ASSERT_TRUE(lab.WaitFor([](const auto& s) { return s.held == 2; }));
  Client third(port);  // the kernel completes it; the relay does not accept it
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(lab.Stats().sessions, 2u);
  EXPECT_EQ(lab.Stats().held, 2u);
  // Nothing serves: the first two are closed after hold_timeout, unanswered;
  // then the third is accepted, and held in turn.
  EXPECT_EQ(a.Recv(), "");
  EXPECT_EQ(b.Recv(), "");
  ASSERT_TRUE(lab.WaitFor([](const auto& s) { return s.sessions == 3 && s.hold_expired == 2; }));
  EXPECT_EQ(third.Recv(), "");
  EXPECT_TRUE(lab.WaitFor([](const auto& s) { return s.hold_expired == 3 && s.active == 0; }));
}

TEST(RelaySession, PeerPortTakesOnlyThePeersWellFormedHeader) {
  asio::io_context hop_io;
  NextHop hop(hop_io);
  std::thread hop_thread([&] { hop_io.run(); });
  {
    Config c = Base(hop.port());
    c.relay_peer = "127.0.0.2:1";  // the peer's address: 127.0.0.2
    Lab lab(c);
    lab.Start();
    lab.Route(Route::kLocal);
    std::uint16_t peer_port = lab.On([&] { return lab.relay->peer_port(); });
    {
      Client stranger(peer_port, "127.0.0.1");
      stranger.Send("PROXY TCP4 192.0.2.7 192.0.2.25 1234 25\r\n");
      EXPECT_EQ(stranger.Recv(), "");  // closed unread
    }
    {
      Client bad(peer_port, "127.0.0.2");
      bad.Send("PROXY UNKNOWN\r\n");
      EXPECT_EQ(bad.Recv(), "");
    }
    {
      Client too_long(peer_port, "127.0.0.2");
      too_long.Send(std::string(200, 'A'));
      EXPECT_EQ(too_long.Recv(), "");
    }
    EXPECT_TRUE(lab.WaitFor([](const auto& s) { return s.rejected == 3; }));
    EXPECT_TRUE(hop.Headers().empty());
    Client peer(peer_port, "127.0.0.2");
    peer.Send("PROXY TCP4 192.0.2.7 192.0.2.25 1234 25\r\nEHLO early\r\n");
    EXPECT_EQ(peer.Recv(), "220 next hop\r\n");
    ASSERT_EQ(hop.Headers().size(), 1u);
    EXPECT_EQ(hop.Headers()[0], "PROXY TCP4 192.0.2.7 192.0.2.25 1234 25\r\n");
    // A client the peer passed on while this node was not serving yet is
    // held here...
    lab.Route(Route::kHold);
    Client held(peer_port, "127.0.0.2");
    held.Send("PROXY TCP4 192.0.2.8 192.0.2.25 1235 25\r\n");
    EXPECT_TRUE(lab.WaitFor([](const auto& s) { return s.held == 1; }));
    // ...and never passed back to the peer: once this node follows, it is
    // closed unanswered at once (the peer's relay then tries its own
    // route), not held until hold_timeout.
    lab.Route(Route::kPeer);
    EXPECT_EQ(held.Recv(1000), "");
    Client again(peer_port, "127.0.0.2");
    again.Send("PROXY TCP4 192.0.2.9 192.0.2.25 1236 25\r\n");
    EXPECT_EQ(again.Recv(1000), "");
    EXPECT_TRUE(lab.WaitFor([](const auto& s) { return s.handed_back == 2 && s.held == 0; }));
    EXPECT_EQ(lab.Stats().to_peer, 0u);
  }
  hop_io.stop();
  hop_thread.join();
}

}  // namespace
}  // namespace mailtwin::relay
