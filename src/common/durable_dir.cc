// durable_dir.cc: mkdir + fsync of the parent (see durable_dir.h).
#include "common/durable_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace mailtwin {
namespace {

// "/a/b/" -> "/a", "/a" -> "/", "a" -> ".".
std::string ParentOf(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

std::string SyncDirectory(const std::string& dir) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return fmt::format("cannot open {}: {}", dir, std::strerror(errno));
  int r = fsync(fd);
  int err = errno;
  close(fd);
  if (r != 0) return fmt::format("fsync {}: {}", dir, std::strerror(err));
  return {};
}

std::string MakeDurableDir(const std::string& path, mode_t mode) {
  if (mkdir(path.c_str(), mode) != 0 && errno != EEXIST)
    return fmt::format("cannot create {}: {}", path, std::strerror(errno));
  // Also when it existed: an earlier run may have died between its mkdir and
  // this fsync. One fsync per start costs nothing.
  return SyncDirectory(ParentOf(path));
}

}  // namespace mailtwin
