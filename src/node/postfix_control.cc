#include "node/postfix_control.h"

#include <signal.h>

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

bool LocalPostfix::Start(std::string& output) {
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
