// instance_lock.cc - see instance_lock.h.
#include "common/instance_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

namespace mailtwin {

InstanceLock::~InstanceLock() {
  if (fd_ >= 0) close(fd_);
}

std::string InstanceLock::Take(const std::string& state_dir) {
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  if (ec)
    return fmt::format("cannot create the state directory {}: {}", state_dir, ec.message());
  std::string path = state_dir + "/mailtwind.lock";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fmt::format("cannot open the lock file {}: {}", path, std::strerror(errno));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char pid[32] = {};
    ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
    close(fd);
    std::string holder = n > 0 ? std::string(pid, static_cast<std::size_t>(n)) : "?";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    if (err == EWOULDBLOCK)
      return fmt::format(
          "another mailtwind (pid {}) already runs for this node: it holds {}. One daemon per "
          "node: use `mailtwin status` to talk to it, or stop it before starting another",
          holder, path);
    return fmt::format("cannot lock {}: {}", path, std::strerror(err));
  }
  // Ours now: say who holds it.
  std::string me = fmt::format("{}\n", getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, me.data(), me.size(), 0) < 0) {
    // The lock holds without the PID; only the message of a rival suffers.
  }
  fd_ = fd;
  return {};
}

}  // namespace mailtwin
