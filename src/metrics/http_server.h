// http_server.h - serves GET /metrics (Prometheus) on [metrics] listen.
//
// Deliberately small: one request per connection, the request head capped
// at 8 KiB and 5 s, only "GET /metrics" answered (404 otherwise), then the
// connection closes. Bind it to a management address: it is not
// authenticated (the numbers reveal queue sizes, nothing more).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <asio.hpp>

namespace mailtwin::metrics {

class HttpServer {
 public:
  HttpServer(asio::io_context& io, std::string listen, std::function<std::string()> body);
  ~HttpServer();
  std::string Start();

 private:
  void Accept();
  asio::io_context& io_;
  std::string listen_;
  std::function<std::string()> body_;
  asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// The response to one request head (pure; "" = not complete yet).
std::string Respond(std::string_view head, const std::function<std::string()>& body);

}  // namespace mailtwin::metrics
