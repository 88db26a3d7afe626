// control.h - the local control socket between `mailtwin` and `mailtwind`.
//
// A Unix stream socket (mode 0600). One request per connection: a JSON object
// on one line, answered by a JSON object on one line. The server checks the
// caller with SO_PEERCRED: only root or the daemon's own user may talk to it;
// anyone else is answered with an error and logged.
//
// The socket is replaced only by its owner: Start() removes a socket file only
// when nothing answers on it (a crashed daemon's leftover), and refuses when
// a daemon does; the destructor removes only the socket this server bound
// (same inode), never one a later daemon made.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include <asio.hpp>
#include <nlohmann/json.hpp>

namespace mailtwin::ctl {

using Json = nlohmann::json;
using RequestHandler = std::function<Json(const Json& request)>;

class ControlServer {
 public:
  ControlServer(asio::io_context& io, std::string path, RequestHandler handler);
  ~ControlServer();
  std::string Start();

 private:
  void Accept();
  asio::io_context& io_;
  std::string path_;
  RequestHandler handler_;
  asio::local::stream_protocol::acceptor acceptor_;
  bool bound_ = false;  // the socket file at path_ is ours (inode_)
  ino_t inode_ = 0;
};

// Sends one request and returns the reply; on failure the reply is
// {"ok": false, "error": "..."}.
Json Call(const std::string& path, const Json& request, int timeout_ms = 120000);

}  // namespace mailtwin::ctl
