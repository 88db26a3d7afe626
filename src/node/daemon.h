// daemon.h - mailtwind: one node's event loop, wiring the pieces together.
//
// A primary runs the queue watcher and the replication link to its standby;
// a standby runs the replication server and keeps the mirror. Both serve the
// control socket. The role and epoch persist in the node state file, so a
// node restarts in the role it last had, not the one in its config.
// Single-threaded: everything runs on one asio::io_context.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <asio.hpp>

#include "common/config.h"
#include "ctl/control.h"
#include "gate/gate.h"
#include "node/node_state.h"
#include "repl/mirror.h"
#include "repl/primary_link.h"
#include "repl/queue_model.h"
#include "repl/queue_watcher.h"
#include "repl/standby_server.h"

namespace mailtwin {

class Daemon : private gate::Replicas {
 public:
  explicit Daemon(Config cfg);
  ~Daemon();
  // Runs until SIGTERM/SIGINT. Returns the process exit code.
  int Run();

 private:
  std::string Init();
  std::string StartPrimary();
  std::string StartStandby();
  std::string StartGate();
  void WatchInotify();
  void PollInotify();
  ctl::Json Handle(const ctl::Json& req);
  ctl::Json Status();
  ctl::Json Promote(const ctl::Json& req);
  ctl::Json Inspect(const std::string& id);
  // gate::Replicas, on the primary.
  void WaitDurable(const std::string& id, std::function<void(bool)> done) override;
  std::optional<std::chrono::steady_clock::time_point> DownSince() const override;
  std::string Withdraw(const std::string& id) override;

  Config cfg_;
  asio::io_context io_;
  asio::signal_set signals_;
  asio::steady_timer batch_timer_;
  NodeState state_;
  repl::Identity ident_;
  std::string queue_dir_;
  std::string mirror_dir_;
  repl::HashLayout hash_;
  std::chrono::steady_clock::time_point started_;

  std::unique_ptr<repl::QueueModel> model_;
  std::unique_ptr<repl::QueueWatcher> watcher_;
  std::unique_ptr<asio::posix::stream_descriptor> inotify_;
  std::unique_ptr<repl::PrimaryLink> link_;
  std::unique_ptr<gate::Gate> gate_;

  std::unique_ptr<repl::Mirror> mirror_;
  std::unique_ptr<repl::StandbyServer> server_;

  std::unique_ptr<ctl::ControlServer> control_;
};

}  // namespace mailtwin
