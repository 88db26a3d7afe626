#include "node/postfix_control.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <chrono>
#include <filesystem>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/process.h"
#include "postfix/processes.h"
#include "postfix/promote.h"

namespace mailtwin {

LocalPostfix::LocalPostfix(std::string config_dir, std::string queue_dir)
    : config_dir_(std::move(config_dir)), queue_dir_(std::move(queue_dir)) {
  std::error_code ec;
  auto canon = std::filesystem::weakly_canonical(queue_dir_ + "/active", ec);
  active_dir_ = (ec ? queue_dir_ + "/active" : canon.string()) + "/";
}

bool LocalPostfix::Running() const { return postfix::RunningMaster(queue_dir_) != 0; }

LocalPostfix::~LocalPostfix() { AllowStart(); }

void LocalPostfix::KeepStopped() {
  if (guard_fd_ >= 0) return;
  std::string path = queue_dir_ + "/pid/master.pid";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    if (!guard_warned_)
      spdlog::warn("cannot keep Postfix stopped: open {}: {} (a Postfix started by hand "
                   "would run until mailtwind stops it)",
                   path, std::strerror(errno));
    guard_warned_ = true;
    return;
  }
  // A master that runs holds the lock: nothing to keep, the role logic
  // stops it if it must not run.
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    close(fd);
    return;
  }
  guard_warned_ = false;
  // The master that ran last left its PID here: `postfix stop` would kill
  // whatever process has that number now.
  std::size_t n = std::strlen(kKeptStoppedLine);
  if (ftruncate(fd, 0) != 0 || pwrite(fd, kKeptStoppedLine, n, 0) != static_cast<ssize_t>(n))
    spdlog::warn("{}: cannot write the guard line: {}", path, std::strerror(errno));
  guard_fd_ = fd;
  spdlog::info("Postfix is kept stopped: mailtwind holds {} (a `postfix start` by hand fails "
               "with \"already running\")",
               path);
}

void LocalPostfix::AllowStart() {
  if (guard_fd_ < 0) return;
  // Postfix's master truncates the file and writes its own PID.
  close(guard_fd_);
  guard_fd_ = -1;
}

bool LocalPostfix::Start(std::string& output) {
  AllowStart();
  return postfix::StartPostfixQuick(config_dir_, output) || Running();
}

PostfixControl::Stopped LocalPostfix::Stop(pid_t qmgr) {
  // What `postfix stop` and `postfix abort` both do - SIGTERM to the master,
  // which passes it to its process group - but polled every 2 ms rather
  // than postfix-script's once a second: this is the intake pause of a
  // switchover and the delay of a fence.
  Stopped out;
  if (qmgr) kill(qmgr, SIGTERM);
  pid_t pid = postfix::RunningMaster(queue_dir_);
  if (!pid) {
    if (qmgr) kill(qmgr, SIGCONT);
    return out;
  }
  out.was_running = true;
  auto t0 = std::chrono::steady_clock::now();
  kill(pid, SIGTERM);
  if (qmgr) kill(qmgr, SIGCONT);
  for (int i = 0; i < 1000 && postfix::ProcessLive(pid); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  if (postfix::ProcessLive(pid)) {
    out.killed = true;
    kill(pid, SIGKILL);
    RunCommand({"postfix", "-c", config_dir_, "abort"});
  }
  out.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

std::pair<pid_t, pid_t> LocalPostfix::SuspendQueueManager() {
  pid_t master = postfix::RunningMaster(queue_dir_), qmgr = 0;
  for (const auto& p : postfix::ProcessGroup(master))
    if (postfix::IsQueueManager(p) && kill(p.pid, SIGSTOP) == 0) qmgr = p.pid;
  return {master, qmgr};
}

void LocalPostfix::ResumeQueueManager(pid_t qmgr) {
  if (qmgr) kill(qmgr, SIGCONT);
}

std::size_t LocalPostfix::DeliveriesInFlight(pid_t master, std::string& error) {
  return master ? postfix::DeliveriesInFlight(master, active_dir_, error) : 0;
}

int LocalPostfix::ContinueStoppedQueueManagers() {
  int n = 0;
  for (const auto& p : postfix::ProcessGroup(postfix::RunningMaster(queue_dir_)))
    if (postfix::IsQueueManager(p) && p.state == 'T') {
      kill(p.pid, SIGCONT);
      ++n;
      spdlog::warn("Postfix's {} (pid {}) was stopped, as a switchover leaves it: continued",
                   p.comm, p.pid);
    }
  return n;
}

}  // namespace mailtwin
