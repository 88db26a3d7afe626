// The control socket belongs to the daemon that made it: a second server on
// the same path refuses to start and leaves the first one reachable, also
// after it is gone; a dead socket (a crash's leftover) is replaced. Real Unix
// sockets in a temporary directory.
#include "ctl/control.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "test_util.h"

namespace mailtwin::ctl {
namespace {

// A control server answering {"who": name} on its own io_context thread.
class Running {
 public:
  Running(const std::string& path, const std::string& name)
      : server_(io_, path, [name](const Json&) { return Json{{"ok", true}, {"who", name}}; }) {}
  std::string Start() {
    std::string err = server_.Start();
    if (err.empty()) thread_ = std::thread([this] { io_.run(); });
    return err;
  }
  ~Running() {
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  asio::io_context io_;
  ControlServer server_;
  std::thread thread_;
};

TEST(ControlServer, ASecondServerLeavesTheFirstReachable) {
  mailtwin::testing::TempDir dir;
  std::string path = dir.path() + "/control.sock";
  Running first(path, "first");
  ASSERT_EQ(first.Start(), "");
  {
    asio::io_context io;
    auto second = std::make_unique<ControlServer>(io, path, [](const Json&) { return Json{}; });
    std::string err = second->Start();
    EXPECT_NE(err.find("is in use: another mailtwind runs with it"), std::string::npos) << err;
    second.reset();  // its destructor must not remove the first one's socket
  }
  Json r = Call(path, Json{{"cmd", "status"}}, 5000);
  EXPECT_EQ(r.value("who", ""), "first") << r.dump();
}

TEST(ControlServer, ADeadSocketIsReplaced) {
  mailtwin::testing::TempDir dir;
  std::string path = dir.path() + "/control.sock";
  {  // a socket file nobody listens on: what a crashed daemon leaves
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    close(fd);
  }
  Json dead = Call(path, Json{{"cmd", "status"}}, 5000);
  EXPECT_NE(dead.value("error", "").find("(is mailtwind running?)"), std::string::npos)
      << dead.dump();
  Running fresh(path, "fresh");
  ASSERT_EQ(fresh.Start(), "");
  EXPECT_EQ(Call(path, Json{{"cmd", "status"}}, 5000).value("who", ""), "fresh");
}

TEST(ControlCall, AMissingSocketAsksWhetherTheDaemonRuns) {
  mailtwin::testing::TempDir dir;
  Json missing = Call(dir.path() + "/none.sock", Json{{"cmd", "status"}}, 1000);
  EXPECT_NE(missing.value("error", "").find("(is mailtwind running?)"), std::string::npos);
}

}  // namespace
}  // namespace mailtwin::ctl
