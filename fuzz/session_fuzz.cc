// Fuzzes the standby's connection state machine (repl/session_state.h) with
// the epoch rules (ha::JudgePeer, common/epoch.h), in-process: a sequence of
// frames - any type, any epoch - from a peer that passed TLS, walked the way
// StandbyServer walks them (Step() first; a Hello judged; a Switchover's
// epoch checked; the daemon's storing of epochs as docs/failover.md says).
// Aborts if a change, SyncDone, status or switchover is ever applied before
// an accepted Hello, anything after the session closed, or if the node's
// stored epoch ever decreases, wraps, or reaches the bound.
//
// Input: records of 9 bytes: u8 frame type selector, u64 value (the epoch of
// a Hello or Switchover; bit 0 of the selector's high nibble: wrong cluster).
// The first byte picks this node's role and the next 8 its starting epoch.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "common/epoch.h"
#include "ha/decide.h"
#include "repl/session_state.h"

using namespace mailtwin;
using namespace mailtwin::repl;

namespace {

const MsgType kTypes[] = {
    MsgType::kHello,        MsgType::kError,          MsgType::kHeartbeat,  MsgType::kManifest,
    MsgType::kSyncDone,     MsgType::kFile,           MsgType::kPatch,      MsgType::kMeta,
    MsgType::kMove,         MsgType::kDelete,         MsgType::kLogData,    MsgType::kLogDelete,
    MsgType::kAck,          MsgType::kHandoverFile,   MsgType::kHandoverLog, MsgType::kHandoverDone,
    MsgType::kHandoverResult, MsgType::kSwitchover,   MsgType::kSwitchoverRequest,
    MsgType::kNodeStatus,   MsgType::kFingerprint,
};

std::uint64_t U64(const std::uint8_t* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

void Check(bool ok) {
  if (!ok) std::abort();
}

struct Node {
  NodeRole role;
  std::uint64_t epoch;
};

// This node's answer to a dialing primary's Hello, as mailtwind gives it
// (Daemon::JudgeListener): follow and store its epoch, step down, or refuse.
bool JudgeHello(Node& self, std::uint64_t peer_epoch) {
  auto j = ha::JudgePeer({self.role, self.epoch, "self"}, {NodeRole::kPrimary, peer_epoch, "peer"});
  switch (j.verdict) {
    case ha::Verdict::kFollow:
      Check(j.epoch == peer_epoch);
      if (peer_epoch > self.epoch) self.epoch = peer_epoch;
      return true;
    case ha::Verdict::kStepDown:
      self.role = NodeRole::kStandby;
      self.epoch = std::max(j.epoch, self.epoch);
      return true;
    default: return false;
  }
}

// A legal Switchover: the daemon takes over at max(m.epoch, epoch + 1).
void TakeOver(Node& self, std::uint64_t epoch) {
  if (self.role != NodeRole::kStandby || epoch <= self.epoch) return;
  auto next = NextEpoch(self.epoch);
  Check(next.has_value());
  self.epoch = std::max(epoch, *next);
  self.role = NodeRole::kPrimary;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 9) return 0;
  // A node's stored epoch is one it reached by the rules: below the bound.
  Node self{data[0] & 1 ? NodeRole::kPrimary : NodeRole::kStandby, U64(data + 1) % kMaxEpoch};
  if (self.epoch == 0) self.epoch = 1;
  SessionState s = SessionState::kHello;
  std::optional<std::uint64_t> hello_epoch;  // set once a Hello is accepted
  for (std::size_t at = 9; at + 9 <= size; at += 9) {
    MsgType t = kTypes[data[at] % std::size(kTypes)];
    bool wrong_cluster = data[at] & 0x80;
    std::uint64_t value = U64(data + at + 1);
    Node before = self;
    SessionStep step = Step(s, t);
    if (!step.legal) {
      Check(step.next == SessionState::kClosed);
      s = SessionState::kClosed;
      continue;
    }
    // Only a Hello, a heartbeat or an Error is legal before the Hello is accepted.
    if (!hello_epoch)
      Check(t == MsgType::kHello || t == MsgType::kHeartbeat || t == MsgType::kError);
    s = step.next;
    if (t == MsgType::kHello) {
      Check(!hello_epoch);
      if (wrong_cluster || !JudgeHello(self, value)) {
        s = SessionState::kClosed;
        continue;
      }
      hello_epoch = value;
    } else if (t == MsgType::kSwitchover) {
      Check(hello_epoch.has_value() && s == SessionState::kLive);
      if (CheckSwitchoverEpoch(*hello_epoch, value)) {
        s = SessionState::kClosed;
        continue;
      }
      TakeOver(self, value);
    }
    // The stored epoch only grows, never wraps, never reaches the bound.
    Check(self.epoch >= before.epoch && self.epoch < kMaxEpoch + 1);
    Check(self.epoch - before.epoch <= kMaxEpochLead + 1);
  }
  return 0;
}
