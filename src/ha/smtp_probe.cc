#include "ha/smtp_probe.h"

#include <fmt/format.h>

#include "common/config.h"

namespace mailtwin::ha {

namespace {

class Probe : public std::enable_shared_from_this<Probe> {
 public:
  Probe(asio::io_context& io, std::string helo, std::function<void(ProbeResult)> done)
      : sock_(io), timer_(io), helo_(std::move(helo)), done_(std::move(done)),
        t0_(std::chrono::steady_clock::now()) {}

  void Start(const std::string& address, std::chrono::milliseconds timeout) {
    std::string host;
    std::uint16_t port;
    asio::error_code ec;
    asio::ip::address addr;
    if (SplitHostPort(address, host, port)) addr = asio::ip::make_address(host, ec);
    if (!SplitHostPort(address, host, port) || ec)
      return Finish(false, fmt::format("probe address {} is not IP:port", address));
    timer_.expires_after(timeout);
    timer_.async_wait([self = shared_from_this(), timeout](asio::error_code ec) {
      if (!ec)
        self->Finish(false, fmt::format("no answer within {} ms ({})", timeout.count(),
                                        self->stage_));
    });
    stage_ = "connecting";
    sock_.async_connect(asio::ip::tcp::endpoint(addr, port),
                        [self = shared_from_this()](asio::error_code ec) {
                          if (self->finished_) return;
                          if (ec) return self->Finish(false, "connect: " + ec.message());
                          self->stage_ = "waiting for the banner";
                          self->Expect(220, [self] { self->Ehlo(); });
                        });
  }

 private:
  void Ehlo() {
    stage_ = "EHLO";
    Send(fmt::format("EHLO {}\r\n", helo_));
    Expect(250, [self = shared_from_this()] { self->Mail(); });
  }
  void Mail() {
    stage_ = "MAIL FROM";
    Send("MAIL FROM:<>\r\n");
    Read([self = shared_from_this()](const ReplyParser::Reply& r) {
      if (r.code / 100 == 4)
        return self->Finish(false, fmt::format("MAIL FROM answered {} {}", r.code, r.text));
      self->stage_ = "QUIT";
      // RSET and QUIT together: the server is known to be alive already.
      self->Finish(true, "");
      self->Send(r.code / 100 == 2 ? "RSET\r\nQUIT\r\n" : "QUIT\r\n", [self] {
        // Read the 221 (or EOF) so the server logs a clean QUIT, briefly.
        asio::error_code ec;
        self->sock_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
        self->timer_.expires_after(std::chrono::milliseconds(500));
        self->timer_.async_wait([self](asio::error_code ec) {
          if (!ec) self->sock_.close(ec);
        });
        self->sock_.async_read_some(asio::buffer(self->buf_), [self](asio::error_code,
                                                                     std::size_t) {
          asio::error_code ec;
          self->timer_.cancel();
          self->sock_.close(ec);
        });
      });
    });
  }
  void Expect(int code, std::function<void()> next) {
    Read([self = shared_from_this(), code, next = std::move(next)](const ReplyParser::Reply& r) {
      if (r.code != code)
        return self->Finish(false, fmt::format("{}: expected {}, got {} {}", self->stage_, code,
                                               r.code, r.text));
      next();
    });
  }
  void Read(std::function<void(const ReplyParser::Reply&)> on_reply) {
    if (auto r = parser_.Next()) return on_reply(*r);
    sock_.async_read_some(asio::buffer(buf_), [self = shared_from_this(),
                                               on_reply = std::move(on_reply)](
                                                  asio::error_code ec, std::size_t n) mutable {
      if (self->finished_) return;
      if (ec)
        return self->Finish(false, fmt::format("{}: {}", self->stage_,
                                               ec == asio::error::eof ? "connection closed"
                                                                      : ec.message()));
      if (!self->parser_.Feed(std::string_view(self->buf_.data(), n)))
        return self->Finish(false, self->parser_.error());
      self->Read(std::move(on_reply));
    });
  }
  void Send(std::string text, std::function<void()> then = {}) {
    auto data = std::make_shared<std::string>(std::move(text));
    asio::async_write(sock_, asio::buffer(*data),
                      [self = shared_from_this(), data, then = std::move(then)](
                          asio::error_code ec, std::size_t) {
                        if (!ec && then) then();
                      });
  }
  void Finish(bool ok, std::string error) {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    auto cb = std::move(done_);
    ProbeResult r{ok, std::move(error),
                  std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - t0_)};
    if (!ok) {
      asio::error_code ec;
      sock_.close(ec);
    }
    asio::post(sock_.get_executor(), [cb = std::move(cb), r = std::move(r)] { cb(r); });
  }

  asio::ip::tcp::socket sock_;
  asio::steady_timer timer_;
  std::string helo_;
  std::function<void(ProbeResult)> done_;
  std::chrono::steady_clock::time_point t0_;
  ReplyParser parser_;
  std::array<char, 2048> buf_{};
  std::string stage_;
  bool finished_ = false;
};

}  // namespace

void ProbeSmtp(asio::io_context& io, const std::string& address, const std::string& helo,
               std::chrono::milliseconds timeout, std::function<void(ProbeResult)> done) {
  std::make_shared<Probe>(io, helo, std::move(done))->Start(address, timeout);
}

}  // namespace mailtwin::ha
