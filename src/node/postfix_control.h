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
  // While this node must not serve, nobody else may start its Postfix
  // either (an administrator's `postfix start`, an init script): its queue
  // manager would deliver a stale queue at once, before mailtwind could
  // stop it. KeepStopped takes the lock Postfix's master itself takes
  // (no-op if a master runs, or already kept); AllowStart gives it back.
  // Start gives it back by itself.
  virtual void KeepStopped() = 0;
  virtual void AllowStart() = 0;
  virtual bool KeptStopped() const = 0;
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
  // Postfix's master holds an exclusive flock(2) on
  // <queue_directory>/pid/master.pid while it runs, and refuses to start
  // while another process holds it (postfix-script: "the Postfix mail
  // system is already running"). mailtwind holds it instead while Postfix
  // must stay stopped, with a line in the file that `postfix status`
  // shows and `postfix stop` cannot mistake for a process ID.
  void KeepStopped() override;
  void AllowStart() override;
  bool KeptStopped() const override { return guard_fd_ >= 0; }
  ~LocalPostfix() override;
  // A switchover cut short by a crash of mailtwind may have left the queue
  // manager stopped: Postfix would accept mail and deliver none. Returns how
  // many processes were continued.
  int ContinueStoppedQueueManagers();

 private:
  std::string config_dir_, queue_dir_;
  std::string active_dir_;  // canonical <queue_dir>/active/, as /proc/PID/fd shows it
  int guard_fd_ = -1;       // <queue_dir>/pid/master.pid, flock'ed, while KeptStopped
  bool guard_warned_ = false;
};

// The first line of master.pid while mailtwind keeps Postfix stopped: no
// digit, no word that starts with '-' or '%' (postfix-script runs
// `kill $(sed 1q pid/master.pid)` for stop, reload and abort).
inline constexpr const char* kKeptStoppedLine =
    "mailtwind-guard: mailtwind keeps this Postfix stopped: this node is not serving (see mailtwin status)\n";

}  // namespace mailtwin
