#include "postfix/promote.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/process.h"
#include "postfix/processes.h"

namespace mailtwin::postfix {
namespace {

// The live queue's message directories and log directories.
constexpr const char* kMessageDirs[] = {"incoming", "active", "deferred", "hold", "maildrop"};
constexpr const char* kLogDirs[] = {"defer", "bounce", "trace"};

std::string LiveDir(Queue q) {
  switch (q) {
    case Queue::kActive:  // qmgr would move it back to incoming at start anyway
    case Queue::kIncoming: return "incoming";
    default: return std::string(QueueName(q));
  }
}

// The moved files' new owners durable before their new names: after a power
// cut the queue must not hold root-owned files (qmgr cannot open them, and
// every message in the queue would stay there). One syncfs covers them all;
// a test disk that cannot see syncfs (MirrorSync::kFsyncOnly) gets an fsync
// per file instead.
void SyncOwners(int qfd, const std::vector<std::string>& moved, repl::MirrorSync mode) {
  if (moved.empty() || mode == repl::MirrorSync::kNone) return;
  if (mode == repl::MirrorSync::kNormal) {
    syncfs(qfd);
    return;
  }
  for (const auto& rel : moved) {
    int fd = openat(qfd, rel.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    fsync(fd);
    close(fd);
  }
}

}  // namespace

SetAsideReport SetAside(const std::string& queue_dir, const std::string& dest) {
  namespace fs = std::filesystem;
  SetAsideReport rep;
  std::error_code ec;
  std::vector<std::pair<const char*, bool>> dirs;  // (directory, holds logs)
  for (const char* d : kMessageDirs) dirs.emplace_back(d, false);
  for (const char* d : kLogDirs) dirs.emplace_back(d, true);
  for (auto [d, is_log] : dirs) {
    fs::path src = fs::path(queue_dir) / d, to = fs::path(dest) / d;
    if (!fs::exists(src, ec)) continue;
    bool made = false;
    for (auto it = fs::recursive_directory_iterator(src, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
      if (!it->is_regular_file(ec)) continue;
      std::string name = it->path().filename();
      if (!IsValidQueueId(name)) continue;
      struct stat st;
      if (!is_log && (stat(it->path().c_str(), &st) != 0 || !(st.st_mode & S_IXUSR))) continue;
      if (!made) {
        fs::create_directories(to, ec);
        made = true;
      }
      if (rename(it->path().c_str(), (to / name).c_str()) != 0) {
        if (rep.error.empty())
          rep.error = fmt::format("cannot move {} aside to {}: {}", it->path().string(),
                                  to.string(), std::strerror(errno));
        continue;
      }
      ++(is_log ? rep.logs : rep.files);
    }
    if (made) {
      int fd = open(to.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd >= 0) {
        fsync(fd);
        close(fd);
      }
    }
  }
  return rep;
}

RestoreReport RestoreSetAside(const std::string& dest, const std::string& queue_dir,
                              const std::string& config_dir) {
  namespace fs = std::filesystem;
  RestoreReport rep;
  std::error_code ec;
  // What the live queue holds, read once.
  std::unordered_set<std::string> live;
  for (const char* d : {"incoming", "active", "deferred", "hold", "maildrop", "corrupt"})
    for (auto it = fs::recursive_directory_iterator(fs::path(queue_dir) / d, ec);
         !ec && it != fs::end(it); it.increment(ec))
      live.insert(it->path().filename());
  auto pc = Postconf(config_dir, {"mail_owner", "setgid_group"});
  struct passwd* pw = pc.error.empty() ? getpwnam(pc.values["mail_owner"].c_str()) : nullptr;
  if (!pw) {
    rep.error = pc.error.empty() ? "mail_owner is not a user here" : pc.error;
    return rep;
  }
  struct group* gr = getgrnam(pc.values["setgid_group"].c_str());
  for (const char* q : kMessageDirs) {
    std::string_view qn(q);
    const char* to_dir = qn == "hold" ? "hold" : qn == "maildrop" ? "maildrop" : "incoming";
    for (auto it = fs::directory_iterator(fs::path(dest) / q, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
      std::string id = it->path().filename();
      if (!IsValidQueueId(id)) continue;
      if (live.count(id)) {
        fs::remove(it->path(), ec);
        for (const char* l : kLogDirs) fs::remove(fs::path(dest) / l / id, ec);
        ++rep.dropped;
        continue;
      }
      for (const char* l : kLogDirs) {
        fs::path from = fs::path(dest) / l / id, to = fs::path(queue_dir) / l / id;
        if (rename(from.c_str(), to.c_str()) == 0) chown(to.c_str(), pw->pw_uid, pw->pw_gid);
      }
      fs::path to = fs::path(queue_dir) / to_dir / id;
      if (rename(it->path().c_str(), to.c_str()) != 0) {
        if (rep.error.empty())
          rep.error = fmt::format("cannot put {} back: {}", to.string(), std::strerror(errno));
        continue;
      }
      chown(to.c_str(), pw->pw_uid, qn == "maildrop" && gr ? gr->gr_gid : pw->pw_gid);
      ++rep.restored;
    }
  }
  if (rep.restored) RunCommand({"postsuper", "-c", config_dir, "-s"});
  return rep;
}

std::size_t CountSetAside(const std::string& dest) {
  namespace fs = std::filesystem;
  std::size_t n = 0;
  std::error_code ec;
  for (const char* d : kMessageDirs)
    for (auto it = fs::directory_iterator(fs::path(dest) / d, ec); !ec && it != fs::end(it);
         it.increment(ec))
      ++n;
  return n;
}

PromoteReport MakeLive(repl::Mirror& mirror, const std::string& queue_dir,
                       const std::string& config_dir) {
  PromoteReport rep;
  auto step = [&](std::string s) {
    spdlog::info("promote: {}", s);
    rep.steps.push_back(std::move(s));
  };
  auto pc = Postconf(config_dir, {"mail_owner", "setgid_group"});
  if (!pc.error.empty()) {
    rep.error = pc.error;
    return rep;
  }
  struct passwd* pw = getpwnam(pc.values["mail_owner"].c_str());
  if (!pw) {
    rep.error = fmt::format("mail_owner {} is not a user on this host", pc.values["mail_owner"]);
    return rep;
  }
  uid_t uid = pw->pw_uid;
  gid_t gid = pw->pw_gid;
  struct group* gr = getgrnam(pc.values["setgid_group"].c_str());
  gid_t drop_gid = gr ? gr->gr_gid : gid;

  // The master itself, not `postfix status`: that asks whether
  // pid/master.pid is locked, and mailtwind holds that lock while Postfix
  // must stay stopped (LocalPostfix::KeepStopped); `postfix stop` would
  // then wait 5 s for a master that does not exist.
  if (RunningMaster(queue_dir) != 0) {
    auto r = RunCommand({"postfix", "-c", config_dir, "stop"});
    step(fmt::format("stopped the local Postfix first (exit {})", r.status));
  }

  int qfd = open(queue_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (qfd < 0) {
    rep.error = fmt::format("cannot open queue_directory {}: {}", queue_dir, std::strerror(errno));
    return rep;
  }
  int mfd = mirror.root_fd();
  std::vector<std::string> moved;
  // A name already queued is a conflict (never overwritten, left in the
  // mirror); any other failure (EXDEV: the mirror on another filesystem,
  // EIO, ...) stops the promotion: nothing may look moved that is not.
  enum class Moved { kYes, kConflict, kFailed };
  auto move_one = [&](const std::string& from, const std::string& to, gid_t g) {
    struct stat st;
    if (fstatat(qfd, to.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return Moved::kConflict;
    if (renameat(mfd, from.c_str(), qfd, to.c_str()) != 0) {
      int err = errno;
      rep.error = fmt::format(
          "promotion stopped: cannot move {}/{} to {}/{}: {}{}. The mirrored mail is still in {} "
          "and Postfix was left stopped; fix this, then run `mailtwin promote` again",
          mirror.root(), from, queue_dir, to, std::strerror(err),
          err == EXDEV ? " (the mirror is not on the queue's filesystem: move mirror_dir beside "
                         "queue_directory; `mailtwin check-config` explains)"
                       : "",
          mirror.root());
      return Moved::kFailed;
    }
    fchownat(qfd, to.c_str(), uid, g, AT_SYMLINK_NOFOLLOW);
    moved.push_back(to);
    return Moved::kYes;
  };

  // Logs first: a queue file must never be live without the logs it points to.
  for (const auto& [key, e] : mirror.logs()) {
    std::string name = std::string(LogKindName(key.first)) + "/" + key.second;
    Moved m = move_one(repl::MirrorDir(key.first) + "/" + key.second, name, gid);
    if (m == Moved::kFailed) break;
    if (m == Moved::kYes) ++rep.logs;
  }
  for (const auto& [id, e] : mirror.files()) {
    if (!rep.error.empty()) break;
    std::string to = LiveDir(e.queue) + "/" + id;
    Moved m = move_one(repl::MirrorDir(e.queue) + "/" + id, to,
                       e.queue == Queue::kMaildrop ? drop_gid : gid);
    if (m == Moved::kYes) ++rep.files;
    else if (m == Moved::kConflict) rep.conflicts.push_back(id);
  }
  SyncOwners(qfd, moved, mirror.sync_mode());
  for (const char* d : {"incoming", "deferred", "hold", "maildrop", "corrupt", "defer", "bounce",
                        "trace"}) {
    int dfd = openat(qfd, d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      fsync(dfd);
      close(dfd);
    }
  }
  close(qfd);
  step(fmt::format("moved {} queue files and {} logs into {}", rep.files, rep.logs, queue_dir));
  if (!rep.conflicts.empty())
    step(fmt::format("left {} files in the mirror: a file of that name is already queued",
                     rep.conflicts.size()));
  if (!rep.error.empty()) return rep;
  // The mirror's index is stale now; rebuild it from what is left.
  mirror.Open();

  auto r = RunCommand({"postsuper", "-c", config_dir, "-s"});
  step(fmt::format("postsuper -s: exit {}{}", r.status, r.output.empty() ? "" : ": " + r.output));
  return rep;
}

PromoteReport FinishPromotion(repl::Mirror& mirror, const std::string& queue_dir,
                              const std::string& config_dir) {
  if (mirror.files().empty() && mirror.logs().empty()) return {};
  spdlog::warn("promote: the mirror still holds {} queue files and {} logs of an interrupted "
               "promotion: making them live now",
               mirror.files().size(), mirror.logs().size());
  return MakeLive(mirror, queue_dir, config_dir);
}

bool StartPostfixQuick(const std::string& config_dir, std::string& output) {
  // Postfix's own quick start (what `postfix quick-stop` arranges): with
  // <queue_directory>/quick-start present, postfix-script skips its
  // integrity checks (about 0.4 s of shell) and starts the master at once.
  // mailtwind ran `postfix check` when it started, and postsuper -s just ran.
  auto pc = Postconf(config_dir, {"queue_directory"});
  if (pc.error.empty()) {
    std::string marker = pc.values["queue_directory"] + "/quick-start";
    int fd = open(marker.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
  }
  auto r = RunCommand({"postfix", "-c", config_dir, "start"});
  output = r.output;
  return r.ok();
}

void Serve(const std::string& config_dir, bool flush, PromoteReport& rep) {
  auto step = [&](std::string s) {
    spdlog::info("promote: {}", s);
    rep.steps.push_back(std::move(s));
  };
  std::string out;
  CommandResult r;
  r.status = StartPostfixQuick(config_dir, out) ? 0 : 1;
  r.output = out;
  if (!r.ok()) {
    rep.error = fmt::format("postfix -c {} start failed (exit {}): {}", config_dir, r.status,
                            r.output);
    return;
  }
  step("started Postfix");
  if (flush) {
    // In the background: it can take a second, and the caller has a gate to
    // open and a link to start meanwhile.
    std::thread([config_dir] { RunCommand({"postqueue", "-c", config_dir, "-f"}); }).detach();
    step("postqueue -f started (deferred mail is retried now)");
  }
}

PromoteReport Promote(repl::Mirror& mirror, const std::string& queue_dir,
                      const std::string& config_dir, bool flush) {
  PromoteReport rep = MakeLive(mirror, queue_dir, config_dir);
  if (rep.error.empty()) Serve(config_dir, flush, rep);
  return rep;
}

}  // namespace mailtwin::postfix
