#include "node/queue_fs_probe.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

namespace mailtwin {

void QueueFsProbe::Sample(Clock::time_point now) {
  struct statvfs vfs;
  if (statvfs(queue_dir_.c_str(), &vfs) == 0)
    free_mb_ = static_cast<double>(vfs.f_bavail) * vfs.f_frsize / (1024.0 * 1024.0);
  if (now - last_write_test_ < std::chrono::seconds(5)) return;
  last_write_test_ = now;
  std::string path = test_dir_ + "/.mailtwin-write-test";
  auto t0 = Clock::now();
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool ok = fd >= 0 && write(fd, "x", 1) == 1 && fsync(fd) == 0;
  int err = errno;
  if (fd >= 0) close(fd);
  unlink(path.c_str());
  spdlog::debug("write test of the queue's filesystem: {:.3f} ms",
                std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  if (!ok && writable_)
    spdlog::error("the queue's filesystem cannot be written ({}: {})", path, std::strerror(err));
  writable_ = ok;
}

}  // namespace mailtwin
