// control.cc - the control socket (see control.h).
#include "ctl/control.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace mailtwin::ctl {

ControlServer::ControlServer(asio::io_context& io, std::string path, RequestHandler handler)
    : io_(io), path_(std::move(path)), handler_(std::move(handler)), acceptor_(io) {}

ControlServer::~ControlServer() {
  asio::error_code ec;
  if (acceptor_.is_open()) acceptor_.close(ec);
  // Only the socket this server bound: a second daemon that failed to start
  // must not take the running one's socket away.
  struct stat st;
  if (bound_ && lstat(path_.c_str(), &st) == 0 && st.st_ino == inode_) unlink(path_.c_str());
}

namespace {

// True if a server answers on the Unix socket at path (a running daemon).
bool SomeoneListens(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  bool up = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return up;
}

}  // namespace

std::string ControlServer::Start() {
  auto dir = path_.substr(0, path_.rfind('/'));
  if (!dir.empty()) mkdir(dir.c_str(), 0755);
  struct stat st;
  if (lstat(path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return fmt::format("control socket {} exists and is not a socket: remove it or choose "
                         "another [node] control_socket",
                         path_);
    if (SomeoneListens(path_))
      return fmt::format("control socket {} is in use: another mailtwind runs with it (talk to "
                         "it with `mailtwin status`; stop it before starting another)",
                         path_);
    unlink(path_.c_str());  // a crashed daemon's leftover
  }
  asio::error_code ec;
  asio::local::stream_protocol::endpoint ep(path_);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec && lstat(path_.c_str(), &st) == 0) {
    bound_ = true;
    inode_ = st.st_ino;
  }
  if (!ec) chmod(path_.c_str(), 0600);
  if (!ec) acceptor_.listen(16, ec);
  if (ec) return fmt::format("cannot listen on control socket {}: {}", path_, ec.message());
  Accept();
  return {};
}

void ControlServer::Accept() {
  acceptor_.async_accept([this](asio::error_code ec, asio::local::stream_protocol::socket sock) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      auto s = std::make_shared<asio::local::stream_protocol::socket>(std::move(sock));
      struct ucred cred{};
      socklen_t len = sizeof cred;
      bool allowed = getsockopt(s->native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
                     (cred.uid == 0 || cred.uid == geteuid());
      auto buf = std::make_shared<asio::streambuf>(64 * 1024);
      auto reply = [s](const Json& j) {
        auto out = std::make_shared<std::string>(j.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n");
        asio::async_write(*s, asio::buffer(*out), [s, out](asio::error_code, std::size_t) {});
      };
      if (!allowed) {
        spdlog::warn("control: refused a request from uid {} pid {}", cred.uid, cred.pid);
        reply(Json{{"ok", false}, {"error", "permission denied: only root may control mailtwind"}});
      } else {
        asio::async_read_until(*s, *buf, '\n', [this, s, buf, reply](asio::error_code ec,
                                                                     std::size_t n) {
          if (ec) return;
          std::string line(asio::buffers_begin(buf->data()),
                           asio::buffers_begin(buf->data()) + static_cast<std::ptrdiff_t>(n));
          Json req = Json::parse(line, nullptr, false);
          if (req.is_discarded() || !req.is_object())
            return reply(Json{{"ok", false}, {"error", "request is not a JSON object"}});
          try {
            reply(handler_(req));
          } catch (const std::exception& e) {
            reply(Json{{"ok", false}, {"error", e.what()}});
          }
        });
      }
    }
    Accept();
  });
}

Json Call(const std::string& path, const Json& request, int timeout_ms) {
  auto fail = [&](std::string why) { return Json{{"ok", false}, {"error", why}}; };
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(fmt::format("socket: {}", std::strerror(errno)));
  struct sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) {
    close(fd);
    return fail("control socket path too long");
  }
  std::strcpy(sa.sun_path, path.c_str());
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    int err = errno;
    // Only a missing or dead socket means the daemon is not running.
    std::string hint = err == ENOENT || err == ECONNREFUSED ? " (is mailtwind running?)"
                       : err == EACCES ? " (only root may control mailtwind)"
                                       : "";
    std::string why =
        fmt::format("cannot reach mailtwind at {}: {}{}", path, std::strerror(err), hint);
    close(fd);
    return fail(why);
  }
  std::string out = request.dump() + "\n";
  // MSG_NOSIGNAL: a daemon that refuses us (SO_PEERCRED) answers at once and
  // hangs up, maybe before our request is written. Its reason is still there
  // to read; without this the CLI would die of SIGPIPE, saying nothing.
  ssize_t w = send(fd, out.data(), out.size(), MSG_NOSIGNAL);
  if (w != static_cast<ssize_t>(out.size()) && !(w < 0 && (errno == EPIPE || errno == ECONNRESET))) {
    close(fd);
    return fail("write to control socket failed");
  }
  std::string in;
  char buf[65536];
  for (;;) {
    struct pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, timeout_ms);
    if (r <= 0) {
      close(fd);
      return fail("mailtwind did not answer in time");
    }
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    in.append(buf, static_cast<std::size_t>(n));
    if (in.find('\n') != std::string::npos) break;
  }
  close(fd);
  Json j = Json::parse(in, nullptr, false);
  if (j.is_discarded()) return fail("mailtwind sent an unreadable reply");
  return j;
}

}  // namespace mailtwin::ctl
