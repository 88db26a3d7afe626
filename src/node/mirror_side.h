// mirror_side.h - the mirror and the replication listener, which every node
// runs for its whole life.
//
// A standby follows its primary through it: the StandbyServer applies the
// primary's changes to the durable Mirror, and once in sync the node hands
// over, one message at a time, what it set aside when it stepped down (the
// HandoverSource). A primary keeps it too: a rival primary that dials in is
// met here and judged (the higher epoch serves).
//
// The node's role decides what the hooks do; this object does not know it.
// Single-threaded: everything runs on the daemon's io_context.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <asio.hpp>

#include "common/config.h"
#include "node/handover.h"
#include "repl/identity.h"
#include "repl/mirror.h"
#include "repl/standby_server.h"

namespace mailtwin {

class MirrorSide {
 public:
  struct Hooks {
    repl::HelloJudge judge;                      // a dialing primary's Hello
    std::function<repl::msg::Hello()> hello;     // this node's own
    std::function<void(const repl::msg::File&)> on_file_frame;  // StandbyServer::SetOnFileFrame
    // The primary's fingerprint of a message (node: the primary's name).
    std::function<void(const std::string& node, const repl::msg::Fingerprint&)> on_fingerprint;
    std::function<void(const std::string& node, const repl::msg::NodeStatus&)> on_node_status;
    std::function<void(const repl::msg::Switchover&)> on_switchover;
    std::function<void()> on_in_sync;            // the primary's SyncDone arrived
    // A handover round ended; notable: something was imported or refused.
    std::function<void(const std::string& summary, bool notable)> on_handover_done;
  };
  MirrorSide(asio::io_context& io, const Config& cfg, std::string mirror_dir,
             repl::Identity ident, Hooks hooks);
  MirrorSide(const MirrorSide&) = delete;
  MirrorSide& operator=(const MirrorSide&) = delete;

  // Opens the mirror and listens. "" or what failed.
  std::string Start();
  void Stop() { server_->Stop(); }

  // Offers what was set aside in dir to the primary, one message at a time
  // (each waits for its HandoverResult); a round already under way restarts.
  void StartHandover(const std::string& dir);

  repl::Mirror& mirror() { return *mirror_; }
  const repl::Mirror& mirror() const { return *mirror_; }
  repl::StandbyServer& server() { return *server_; }
  const repl::StandbyServer& server() const { return *server_; }

 private:
  void HandoverNext();
  void OnHandoverResult(const repl::msg::HandoverResult& r);

  asio::io_context& io_;
  const Config& cfg_;
  std::string mirror_dir_;
  repl::Identity ident_;
  Hooks hooks_;
  std::unique_ptr<repl::Mirror> mirror_;
  std::unique_ptr<repl::StandbyServer> server_;

  std::unique_ptr<HandoverSource> source_;
  std::optional<std::string> inflight_;  // offered, its result not in yet
  struct Round {
    std::uint64_t imported = 0, already = 0, refused = 0;
  } round_;
};

}  // namespace mailtwin
