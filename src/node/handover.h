// handover.h - rejoin without loss: a node that stepped down gives the new
// primary the messages only it has (docs/failover.md, "Rejoin").
//
// At the step-down the old primary's live queue was set aside
// (postfix::SetAside) into <mirror_dir>-handover/<queue or log dir>/<ID>.
// Once it follows the new primary and its mirror is in sync:
//   - an ID its mirror holds is queued on the primary: the local copy is
//     dropped (the primary's copy is the one that counts);
//   - every other ID is offered (HandoverSource): logs, queue file, Done.
// The primary (HandoverSink) takes it only if the ID is neither queued there
// nor in its ledger (then it was delivered or removed: taking it would
// deliver it twice). It writes the file into its queue like cleanup does -
// mode 0600 while writing, fsync, owner = mail_owner, fchmod 0700 = commit,
// fsync - and wakes qmgr (or pickup, for maildrop). The result tells the
// offering side to drop its copy, or (refused) to keep it for later.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <sys/types.h>

#include "ha/ledger.h"
#include "repl/messages.h"
#include "repl/queue_watcher.h"

namespace mailtwin {

class HandoverSink {
 public:
  struct Stats {
    std::uint64_t imported = 0, queued = 0, finished = 0, refused = 0;
    std::uint64_t resent = 0;  // of queued: copies whose sender had sent them again
  };
  // queued(id): the primary's queue holds id now. resent(log_ident): the
  // queue ID under which this node queued the resend of the message the
  // offering node's gate named log_ident (gate::DedupTable::ResentAs), or
  // nullopt: then the offered copy is the only one.
  using ResentFn = std::function<std::optional<std::string>(std::string_view log_ident)>;
  HandoverSink(std::string queue_dir, repl::HashLayout hash, std::string config_dir,
               ha::Ledger& ledger, std::function<bool(const std::string&)> queued,
               ResentFn resent = {});
  ~HandoverSink();
  std::string Init();  // resolves Postfix's mail_owner and setgid_group
  // Takes one handover frame; returns the Result to send once the message is
  // settled (at its Done, or at the first error).
  std::optional<repl::msg::HandoverResult> OnMessage(const repl::Message& m);
  const Stats& stats() const { return stats_; }

 private:
  struct Incoming {
    std::optional<repl::msg::HandoverOutcome> verdict;
    std::string text;
    int fd = -1;
    std::string path;  // relative to the queue directory
    Queue queue = Queue::kIncoming;
    std::uint32_t mode = 0700;
    std::uint64_t size = 0, written = 0;
    std::vector<std::string> logs;  // written, relative paths
  };
  Incoming& Get(const std::string& id);
  void Refuse(Incoming& in, std::string why);
  // Settles in with verdict, removing what was written of it.
  void Discard(Incoming& in, repl::msg::HandoverOutcome verdict, std::string why);
  std::optional<repl::msg::HandoverResult> Finish(const std::string& id);

  std::string queue_dir_;
  repl::HashLayout hash_;
  std::string config_dir_;
  ha::Ledger& ledger_;
  std::function<bool(const std::string&)> queued_;
  ResentFn resent_;
  uid_t uid_ = 0;
  gid_t gid_ = 0, drop_gid_ = 0;
  int qfd_ = -1;
  std::unordered_map<std::string, Incoming> in_;
  Stats stats_;
};

class HandoverSource {
 public:
  explicit HandoverSource(std::string dir) : dir_(std::move(dir)) {}
  // The next message to offer, as frames (logs, file chunks, Done). IDs for
  // which have(id) is true are dropped locally on the way (the primary has
  // them). Returns false when nothing is left.
  bool Next(const std::function<bool(const std::string&)>& have, std::vector<repl::Message>& frames,
            std::string& id);
  // The primary settled id: drop the local copy and its logs.
  void Drop(const std::string& id);
  // IDs dropped by Next because the primary has them queued.
  std::size_t dropped() const { return dropped_; }
  std::vector<std::string> skipped;  // refused this round: not offered again

 private:
  std::string dir_;
  std::size_t dropped_ = 0;
};

}  // namespace mailtwin
