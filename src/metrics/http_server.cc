#include "metrics/http_server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/config.h"

namespace mailtwin::metrics {

std::string Respond(std::string_view head, const std::function<std::string()>& body) {
  auto status = [](int code, std::string_view text, std::string_view ctype, std::string_view b) {
    return fmt::format("HTTP/1.0 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n"
                       "Connection: close\r\n\r\n{}",
                       code, text, ctype, b.size(), b);
  };
  auto eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  if (line.rfind("GET /metrics ", 0) == 0 || line == "GET /metrics")
    return status(200, "OK", "text/plain; version=0.0.4", body());
  if (line.rfind("GET ", 0) == 0) return status(404, "Not Found", "text/plain", "try /metrics\n");
  return status(405, "Method Not Allowed", "text/plain", "GET /metrics only\n");
}

HttpServer::HttpServer(asio::io_context& io, std::string listen, std::function<std::string()> body)
    : io_(io), listen_(std::move(listen)), body_(std::move(body)), acceptor_(io) {}

HttpServer::~HttpServer() { *alive_ = false; }

std::string HttpServer::Start() {
  std::string host;
  std::uint16_t port;
  if (!SplitHostPort(listen_, host, port)) return fmt::format("[metrics] listen {} is not host:port", listen_);
  asio::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return fmt::format("[metrics] listen {}: not an IP address", listen_);
  asio::ip::tcp::endpoint ep(addr, port);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(16, ec);
  if (ec) return fmt::format("cannot serve metrics on {}: {}", listen_, ec.message());
  spdlog::info("metrics: serving GET /metrics on {}", listen_);
  Accept();
  return {};
}

namespace {

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(asio::ip::tcp::socket s, const std::function<std::string()>& body)
      : sock_(std::move(s)), timer_(sock_.get_executor()), body_(body) {}
  void Start() {
    timer_.expires_after(std::chrono::seconds(5));
    timer_.async_wait([self = shared_from_this()](asio::error_code ec) {
      if (!ec) self->sock_.close(ec);
    });
    Read();
  }

 private:
  void Read() {
    sock_.async_read_some(asio::buffer(chunk_), [self = shared_from_this()](asio::error_code ec,
                                                                            std::size_t n) {
      if (ec) {
        self->timer_.cancel();
        return;
      }
      self->buf_.append(self->chunk_.data(), n);
      if (self->buf_.find("\r\n\r\n") == std::string::npos && self->buf_.size() < 8192)
        return self->Read();
      self->out_ = Respond(self->buf_, self->body_);
      asio::async_write(self->sock_, asio::buffer(self->out_),
                        [self](asio::error_code, std::size_t) {
                          asio::error_code ignored;
                          self->sock_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
                          self->sock_.close(ignored);
                          self->timer_.cancel();
                        });
    });
  }
  asio::ip::tcp::socket sock_;
  asio::steady_timer timer_;
  std::function<std::string()> body_;
  std::string buf_, out_;
  std::array<char, 1024> chunk_{};
};

}  // namespace

void HttpServer::Accept() {
  acceptor_.async_accept([this, alive = alive_](asio::error_code ec, asio::ip::tcp::socket s) {
    if (!*alive) return;
    if (!ec) std::make_shared<Conn>(std::move(s), body_)->Start();
    Accept();
  });
}

}  // namespace mailtwin::metrics
