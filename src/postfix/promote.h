// promote.h - turning the standby's mirror into its live Postfix queue.
//
// The sequence of docs/operations.md ("Promotion"), after the caller has
// stored the new epoch:
//   1. stop the local Postfix if it runs (a standby's Postfix must not serve);
//   2. rename every mirrored queue file into the live queue, keeping mode and
//      mtime (= next retry time), owner = Postfix's mail_owner: incoming and
//      active -> incoming/, deferred -> deferred/ (flat: postsuper -s hashes
//      it), hold, maildrop, corrupt alike; logs into defer/, bounce/, trace/;
//      a name that already exists in the live queue is left in the mirror and
//      reported, never overwritten;
//   3. fsync the live queue directories;
//   4. postsuper -s; postfix start; postqueue -f (if configured; in the background).
// Idempotent: running it again after a crash moves what is left.
#pragma once

#include <string>
#include <vector>

#include "repl/mirror.h"

namespace mailtwin::postfix {

struct PromoteReport {
  std::size_t files = 0;
  std::size_t logs = 0;
  std::vector<std::string> conflicts;  // IDs left in the mirror
  std::vector<std::string> steps;      // what was done, for the operator
  std::string error;                   // empty on success
};

PromoteReport Promote(repl::Mirror& mirror, const std::string& queue_dir,
                      const std::string& config_dir, bool flush);
// The same in two steps, so a caller can open its gate in between: steps 1-3
// and postsuper -s, then postfix start and the flush.
PromoteReport MakeLive(repl::Mirror& mirror, const std::string& queue_dir,
                       const std::string& config_dir);
void Serve(const std::string& config_dir, bool flush, PromoteReport& rep);

// Finishes a promotion that a crash or power cut interrupted: the node's
// state already says primary (it is saved before anything moves), but its
// mirror still holds queue files or logs that never reached the live queue;
// nothing would ever deliver them. Makes them live as MakeLive does (which
// never overwrites a queued file, so what already moved is not moved twice).
// Does nothing when the mirror is empty. For the daemon: at start with role
// primary, before the watcher scans the queue, and when `promote --force`
// confirms the epoch of an unconfirmed primary (docs/powercut.md).
PromoteReport FinishPromotion(repl::Mirror& mirror, const std::string& queue_dir,
                              const std::string& config_dir);

// A node that steps down sets its live queue aside, so that nothing it
// holds is delivered twice (the new primary has the replicated part) or lost
// (the rest is handed over): every committed queue file (incoming, active,
// deferred, hold, maildrop) and every defer/bounce/trace log is renamed to
// dest/<queue or log dir>/<ID>. Postfix must be stopped. Files still being
// written (no owner-execute bit) stay where they are.
struct SetAsideReport {
  std::size_t files = 0;
  std::size_t logs = 0;
  std::string error;
};
SetAsideReport SetAside(const std::string& queue_dir, const std::string& dest);
// A node that takes over while messages it set aside are still waiting for
// handover puts back those its new live queue does not hold (the mirror's
// copy wins when both exist): otherwise they would wait forever. Deferred
// and active mail goes to incoming/; postsuper -s runs if anything moved.
// Returns how many queue files were put back; the rest were dropped.
struct RestoreReport {
  std::size_t restored = 0, dropped = 0;
  std::string error;
};
RestoreReport RestoreSetAside(const std::string& dest, const std::string& queue_dir,
                              const std::string& config_dir);
// Queue files waiting in a set-aside directory.
std::size_t CountSetAside(const std::string& dest);

// `postfix start` without postfix-script's integrity checks (Postfix's
// quick-start marker): what promotion and a primary's restart use.
bool StartPostfixQuick(const std::string& config_dir, std::string& output);

}  // namespace mailtwin::postfix
