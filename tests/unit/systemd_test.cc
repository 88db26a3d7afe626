// The sd_notify messages, as received on a real notify socket (what systemd
// reads for a Type=notify unit).
#include "common/systemd.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

using namespace mailtwin::systemd;

namespace {

// A datagram socket standing in for systemd's, named by $NOTIFY_SOCKET.
class NotifySocket {
 public:
  NotifySocket() {
    path_ = std::filesystem::temp_directory_path() /
            ("mailtwin-notify-" + std::to_string(getpid()) + ".sock");
    std::filesystem::remove(path_);
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, path_.c_str(), sizeof(sa.sun_path) - 1);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
    setenv("NOTIFY_SOCKET", path_.c_str(), 1);
  }
  ~NotifySocket() {
    unsetenv("NOTIFY_SOCKET");
    close(fd_);
    std::filesystem::remove(path_);
  }
  std::string Receive() {
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
    return n < 0 ? "(nothing)" : std::string(buf, n);
  }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

}  // namespace

TEST(Systemd, ReadyCarriesTheStatusLine) {
  NotifySocket sock;
  auto r = NotifyReady("standby of mx1 at epoch 3\nlink listening");
  EXPECT_TRUE(r.sent) << r.error;
  EXPECT_EQ(sock.Receive(), "READY=1\nSTATUS=standby of mx1 at epoch 3 link listening");
}

TEST(Systemd, StatusAndStopping) {
  NotifySocket sock;
  EXPECT_TRUE(NotifyStatus("primary at epoch 4, waiting for the peer").sent);
  EXPECT_EQ(sock.Receive(), "STATUS=primary at epoch 4, waiting for the peer");
  EXPECT_TRUE(NotifyStopping().sent);
  EXPECT_EQ(sock.Receive(), "STOPPING=1\nSTATUS=stopping");
}

TEST(Systemd, OutsideSystemdNothingIsSent) {
  unsetenv("NOTIFY_SOCKET");
  auto r = NotifyReady("serving");
  EXPECT_FALSE(r.sent);
  EXPECT_TRUE(r.ok());
}

TEST(Systemd, AMissingSocketIsAnError) {
  setenv("NOTIFY_SOCKET", "/nonexistent/mailtwin-notify.sock", 1);
  auto r = NotifyReady("serving");
  unsetenv("NOTIFY_SOCKET");
  EXPECT_FALSE(r.sent);
  EXPECT_NE(r.error.find("sd_notify(READY=1) failed"), std::string::npos) << r.error;
}
