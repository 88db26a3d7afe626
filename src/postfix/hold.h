// hold.h - strict durability's queue moves (docs/gate.md, "Strict mode").
//
// In strict mode the after-filter smtpd puts every message on hold (an
// access HOLD action): cleanup files it in hold/, which qmgr never reads.
// The gate then either releases it (hold/ -> incoming/, then qmgr is
// triggered) once the standby holds it, or withdraws it (deletes it) and
// answers 451. Both are single rename()/unlink() calls on one filesystem,
// atomic against qmgr, which only ever renames incoming/ -> active/: exactly
// one of qmgr's move and ours can win, so a withdrawn message can never also
// be delivered.
#pragma once

#include <string>

#include "repl/queue_watcher.h"  // HashLayout

namespace mailtwin::postfix {

enum class HoldOutcome {
  kDone,      // released / withdrawn
  kNotHeld,   // Release: the message is not in hold/ (not found there)
  kTooLate,   // Withdraw: qmgr has it already (not in hold/ or incoming/)
  kStuck,     // Withdraw: could not be deleted, but it is in hold/: never delivered
  kError,     // an unexpected system error (text says which)
};

struct HoldResult {
  HoldOutcome outcome;
  std::string text;  // for logs: where it was, or the error
};

// Moves id from hold/ to incoming/ and wakes qmgr up (public/qmgr, "I": scan
// incoming). The file keeps its inode, owner, mode and mtime.
HoldResult ReleaseHeld(const std::string& queue_dir, const repl::HashLayout& hash,
                       const std::string& id);

// Takes id out of the queue before it can be delivered: deletes it from
// hold/, or from incoming/ if it was released already (qmgr may win that
// race: its rename to active/ and our unlink are both atomic, so exactly one
// succeeds; then kTooLate). Deleting is what replicates: the standby drops
// its copy too.
HoldResult WithdrawHeld(const std::string& queue_dir, const repl::HashLayout& hash,
                        const std::string& id);

// Sends one request byte to Postfix's public/qmgr endpoint (a UNIX-domain
// socket, or a FIFO), as Postfix's own mail_trigger() does. Never blocks; an
// endpoint that is missing or busy is not an error (qmgr scans incoming/ on
// its own, and every other new message wakes it up too).
void TriggerQmgr(const std::string& queue_dir, char request = 'I');

}  // namespace mailtwin::postfix
