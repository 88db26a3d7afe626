// The standby's connection state machine as a table: every frame type in
// every state, legal or not, and where it leads (docs/protocol.md §5).
#include "repl/session_state.h"

#include "repl/primary_link.h"

#include <gtest/gtest.h>

using namespace mailtwin;
using namespace mailtwin::repl;

namespace {

const MsgType kAll[] = {
    MsgType::kHello,          MsgType::kError,          MsgType::kHeartbeat,
    MsgType::kManifest,       MsgType::kSyncDone,       MsgType::kFile,
    MsgType::kPatch,          MsgType::kMeta,           MsgType::kMove,
    MsgType::kDelete,         MsgType::kLogData,        MsgType::kLogDelete,
    MsgType::kAck,            MsgType::kHandoverFile,   MsgType::kHandoverLog,
    MsgType::kHandoverDone,   MsgType::kHandoverResult, MsgType::kSwitchover,
    MsgType::kSwitchoverRequest, MsgType::kNodeStatus,
};

bool IsChangeType(MsgType t) { return t >= MsgType::kFile && t <= MsgType::kLogDelete; }

// What docs/protocol.md says, written independently of Step().
bool Legal(SessionState s, MsgType t) {
  using enum SessionState;
  if (s == kClosed) return false;
  if (t == MsgType::kHeartbeat || t == MsgType::kError) return true;
  if (s == kHello) return t == MsgType::kHello;
  if (IsChangeType(t) || t == MsgType::kSyncDone) return true;
  return s == kLive && (t == MsgType::kNodeStatus || t == MsgType::kHandoverResult ||
                        t == MsgType::kSwitchover);
}

}  // namespace

TEST(SessionState, EveryFrameInEveryState) {
  using enum SessionState;
  for (SessionState s : {kHello, kCatchup, kLive, kClosed}) {
    for (MsgType t : kAll) {
      SessionStep step = Step(s, t);
      EXPECT_EQ(step.legal, Legal(s, t))
          << SessionStateName(s) << " type " << static_cast<int>(t);
      if (!step.legal) {
        EXPECT_EQ(step.next, kClosed);
      }
    }
  }
}

TEST(SessionState, Transitions) {
  using enum SessionState;
  EXPECT_EQ(Step(kHello, MsgType::kHello).next, kCatchup);
  EXPECT_EQ(Step(kHello, MsgType::kHeartbeat).next, kHello);
  EXPECT_EQ(Step(kCatchup, MsgType::kSyncDone).next, kLive);
  EXPECT_EQ(Step(kCatchup, MsgType::kFile).next, kCatchup);
  EXPECT_EQ(Step(kLive, MsgType::kSyncDone).next, kLive);
  EXPECT_EQ(Step(kLive, MsgType::kError).next, kClosed);
  // The attacks of issue 12: SyncDone, a change or a Switchover first.
  EXPECT_FALSE(Step(kHello, MsgType::kSyncDone).legal);
  EXPECT_FALSE(Step(kHello, MsgType::kDelete).legal);
  EXPECT_FALSE(Step(kHello, MsgType::kSwitchover).legal);
  EXPECT_FALSE(Step(kCatchup, MsgType::kSwitchover).legal);
  EXPECT_FALSE(Step(kCatchup, MsgType::kHello).legal);
}

TEST(SessionState, SwitchoverEpochIsHelloPlusOne) {
  EXPECT_EQ(CheckSwitchoverEpoch(4, 5), std::nullopt);
  EXPECT_NE(CheckSwitchoverEpoch(4, 4), std::nullopt);
  EXPECT_NE(CheckSwitchoverEpoch(4, 7), std::nullopt);
  EXPECT_NE(CheckSwitchoverEpoch(4, UINT64_MAX), std::nullopt);
  EXPECT_NE(CheckSwitchoverEpoch(UINT64_MAX, 0), std::nullopt);
  EXPECT_NE(CheckSwitchoverEpoch(kMaxEpoch, kMaxEpoch + 1), std::nullopt);
}

// The dialing primary's side: the standby's frames by the link's state.
TEST(PrimaryLinkStates, StandbyFramesByState) {
  using S = PrimaryLink::State;
  for (MsgType t : kAll) {
    bool common = t == MsgType::kHeartbeat || t == MsgType::kError;
    EXPECT_EQ(PrimaryLink::Legal(S::kHello, t), common || t == MsgType::kHello);
    EXPECT_EQ(PrimaryLink::Legal(S::kManifest, t), common || t == MsgType::kManifest);
    bool later = common || t == MsgType::kAck || t == MsgType::kNodeStatus ||
                 t == MsgType::kSwitchoverRequest ||
                 (t >= MsgType::kHandoverFile && t <= MsgType::kHandoverDone);
    EXPECT_EQ(PrimaryLink::Legal(S::kCatchup, t), later) << static_cast<int>(t);
    EXPECT_EQ(PrimaryLink::Legal(S::kLive, t), later) << static_cast<int>(t);
  }
  // A standby that asks for the role before it said who it is.
  EXPECT_FALSE(PrimaryLink::Legal(S::kHello, MsgType::kSwitchoverRequest));
  EXPECT_FALSE(PrimaryLink::Legal(S::kHello, MsgType::kNodeStatus));
}
