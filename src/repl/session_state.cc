// session_state.cc - the standby's connection states (see session_state.h).
#include "repl/session_state.h"

#include <fmt/format.h>

#include "common/epoch.h"

namespace mailtwin::repl {

std::string_view SessionStateName(SessionState s) {
  switch (s) {
    case SessionState::kHello: return "hello";
    case SessionState::kCatchup: return "catchup";
    case SessionState::kLive: return "live";
    case SessionState::kClosed: return "closed";
  }
  return "?";
}

namespace {

bool IsChangeType(MsgType t) { return t >= MsgType::kFile && t <= MsgType::kFingerprint; }

}  // namespace

SessionStep Step(SessionState s, MsgType t) {
  using enum SessionState;
  constexpr SessionStep kIllegal{kClosed, false};
  if (s == kClosed) return kIllegal;
  // In every open state: heartbeats keep it open, an Error ends it.
  if (t == MsgType::kHeartbeat) return {s, true};
  if (t == MsgType::kError) return {kClosed, true};
  switch (s) {
    case kHello:
      // Only the Hello is judged here; nothing else may touch the node first.
      return t == MsgType::kHello ? SessionStep{kCatchup, true} : kIllegal;
    case kCatchup:
      if (IsChangeType(t)) return {kCatchup, true};
      if (t == MsgType::kSyncDone) return {kLive, true};
      return kIllegal;
    case kLive:
      // A primary that fell behind catches up again and sends SyncDone anew.
      if (IsChangeType(t) || t == MsgType::kSyncDone || t == MsgType::kNodeStatus ||
          t == MsgType::kHandoverResult || t == MsgType::kSwitchover)
        return {kLive, true};
      return kIllegal;
    case kClosed: break;
  }
  return kIllegal;
}

std::optional<std::string> CheckSwitchoverEpoch(std::uint64_t hello_epoch,
                                                std::uint64_t switchover_epoch) {
  if (NextEpoch(hello_epoch) != switchover_epoch)
    return fmt::format("switchover to epoch {} from a primary at epoch {}: a switchover moves the "
                       "epoch up by exactly one",
                       switchover_epoch, hello_epoch);
  return std::nullopt;
}

}  // namespace mailtwin::repl
