#include "postfix/hold.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <stdio.h>  // renameat2

#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include <fmt/format.h>

namespace mailtwin::postfix {

namespace {

// rename() that never replaces a file (a queue ID names one message).
int Move(const std::string& from, const std::string& to) {
  return renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE);
}

std::string Path(const std::string& queue_dir, const std::string& rel) {
  return queue_dir + "/" + rel;
}

// The path id would have in queue (hashed when the layout says so).
std::string Target(const repl::HashLayout& hash, std::string_view queue, const std::string& id) {
  std::vector<std::string> c;
  hash.Paths(queue, id, c);
  return c.front();
}

// Hashed subdirectories Postfix has not made yet (rel = "incoming/D/0/ID"):
// made as Postfix would, each with the owner and mode of the one above.
bool MakeParents(const std::string& queue_dir, const std::string& rel) {
  std::string dir = queue_dir + "/" + rel.substr(0, rel.find('/'));
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0) return false;
  for (std::size_t at = rel.find('/'); ; ) {
    std::size_t next = rel.find('/', at + 1);
    if (next == std::string::npos) return true;
    dir = queue_dir + "/" + rel.substr(0, next);
    if (mkdir(dir.c_str(), st.st_mode & 07777) == 0) {
      if (chown(dir.c_str(), st.st_uid, st.st_gid) != 0 && errno != EPERM) return false;
    } else if (errno != EEXIST) {
      return false;
    }
    at = next;
  }
}

}  // namespace

HoldResult ReleaseHeld(const std::string& queue_dir, const repl::HashLayout& hash,
                       const std::string& id) {
  std::vector<std::string> from;
  hash.Paths("hold", id, from);
  std::string to_rel = Target(hash, "incoming", id);
  std::string to = Path(queue_dir, to_rel);
  for (const auto& rel : from) {
    std::string src = Path(queue_dir, rel);
    int r = Move(src, to);
    if (r != 0 && errno == ENOENT && access(src.c_str(), F_OK) == 0 &&
        MakeParents(queue_dir, to_rel))
      r = Move(src, to);
    if (r == 0) {
      TriggerQmgr(queue_dir);
      return {HoldOutcome::kDone, rel};
    }
    int err = errno;
    if (access(src.c_str(), F_OK) == 0)  // still on hold: the move itself failed
      return {HoldOutcome::kError,
              fmt::format("cannot move {} to {}: {}", src, to, std::strerror(err))};
  }
  return {HoldOutcome::kNotHeld, fmt::format("{} is not in {}/hold", id, queue_dir)};
}

namespace {

// Deletes id from queue (hashed or flat path). nullopt when it is not there;
// a failure other than ENOENT is reported with outcome `failed`.
std::optional<HoldResult> Unlink(const std::string& queue_dir, const repl::HashLayout& hash,
                                 std::string_view queue, const std::string& id,
                                 HoldOutcome failed) {
  std::vector<std::string> paths;
  hash.Paths(queue, id, paths);
  for (const auto& rel : paths) {
    std::string p = Path(queue_dir, rel);
    if (unlink(p.c_str()) == 0) return HoldResult{HoldOutcome::kDone, rel};
    if (errno != ENOENT)
      return HoldResult{failed, fmt::format("cannot remove {}: {}", p, std::strerror(errno))};
  }
  return std::nullopt;
}

}  // namespace

HoldResult WithdrawHeld(const std::string& queue_dir, const repl::HashLayout& hash,
                        const std::string& id) {
  // Still on hold: a file that cannot be removed is never delivered either.
  if (auto r = Unlink(queue_dir, hash, "hold", id, HoldOutcome::kStuck)) return *r;
  // Released already: delete it from incoming/ unless qmgr was first.
  if (auto r = Unlink(queue_dir, hash, "incoming", id, HoldOutcome::kError)) return *r;
  return {HoldOutcome::kTooLate,
          fmt::format("{} is neither in hold/ nor in incoming/ (the queue manager has it)", id)};
}

void TriggerQmgr(const std::string& queue_dir, char request) {
  // public/qmgr is a UNIX-domain socket ("qmgr unix ..." in master.cf, the
  // default since Postfix 2.x on Debian) or a FIFO ("qmgr fifo ...").
  std::string path = queue_dir + "/public/qmgr";
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return;
  if (S_ISFIFO(st.st_mode)) {
    int fd = open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return;
    [[maybe_unused]] ssize_t n = write(fd, &request, 1);
    close(fd);
    return;
  }
  if (!S_ISSOCK(st.st_mode)) return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  // Like Postfix's unix_trigger(): connect, write the request, close; qmgr
  // reads it from the socket buffer. Never blocks the daemon: a full
  // backlog (EAGAIN) means qmgr has requests queued already.
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    [[maybe_unused]] ssize_t n = send(fd, &request, 1, MSG_NOSIGNAL);
  }
  close(fd);
}

}  // namespace mailtwin::postfix
