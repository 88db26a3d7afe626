// postfix_control.h - mailtwind's hand on this node's Postfix instance.
//
// The daemon starts and stops Postfix itself (docs/failover.md): a standby's
// Postfix must not run, a primary's runs only once its epoch is confirmed,
// a switchover stops deliveries before intake. These are the few things it
// does to Postfix, behind one small interface so that the role logic can
// be run in a test without a Postfix instance (LocalPostfix is the real one).
//
// Blocking, by design: Start runs `postfix start` (tens of ms) and Stop
// waits for the master to exit (polled every 2 ms, at most 2 s, then
// SIGKILL). Both run on the daemon's loop and are counted as its own busy
// time, not as a stall (see Daemon::Busy): nothing else may happen between
// a fence's Stop and the set-aside of the queue that follows it.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>

namespace mailtwin {

class PostfixControl {
 public:
  virtual ~PostfixControl() = default;
  virtual bool Running() const = 0;
  // `postfix start` without postfix-script's integrity checks; output says
  // why it failed.
  virtual bool Start(std::string& output) = 0;
  struct Stopped {
    bool was_running = false;
    double ms = 0;
    bool killed = false;  // the master ignored SIGTERM for 2 s
  };
  // Stops the master and its process group. A queue manager a switchover
  // stopped (SIGSTOP) gets its SIGTERM first, so that it dies as soon as it
  // continues, before it runs another instruction of its own.
  virtual Stopped Stop(pid_t stopped_qmgr) = 0;
  // Switchover: stops the queue manager (SIGSTOP) so that no new delivery
  // starts; returns the master's and the queue manager's PIDs (0: none).
  virtual std::pair<pid_t, pid_t> SuspendQueueManager() = 0;
  virtual void ResumeQueueManager(pid_t qmgr) = 0;
  // Deliveries still in flight under master (postfix/processes.h).
  virtual std::size_t DeliveriesInFlight(pid_t master, std::string& error) = 0;
};

class LocalPostfix : public PostfixControl {
 public:
  LocalPostfix(std::string config_dir, std::string queue_dir);
  bool Running() const override;
  bool Start(std::string& output) override;
  Stopped Stop(pid_t stopped_qmgr) override;
  std::pair<pid_t, pid_t> SuspendQueueManager() override;
  void ResumeQueueManager(pid_t qmgr) override;
  std::size_t DeliveriesInFlight(pid_t master, std::string& error) override;
  // A switchover cut short by a crash of mailtwind may have left the queue
  // manager stopped: Postfix would accept mail and deliver none. Returns how
  // many processes were continued.
  int ContinueStoppedQueueManagers();

 private:
  std::string config_dir_, queue_dir_;
  std::string active_dir_;  // canonical <queue_dir>/active/, as /proc/PID/fd shows it
};

}  // namespace mailtwin
