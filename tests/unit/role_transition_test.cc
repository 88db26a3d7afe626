// Role transitions (node/transitions.h, node/role_store.h): the role and
// epoch are durable before anything acts on them, a take-over stops at its
// first fatal failure, a step-down stops serving whatever fails, and the
// epoch never goes back nor wraps.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <limits>

#include <gtest/gtest.h>

#include "common/epoch.h"
#include "node/role_store.h"
#include "node/transitions.h"
#include "test_util.h"

namespace mailtwin {
namespace {

using transition::Step;

std::vector<Step> Ran(std::span<const Step> steps, std::span<const Step> fatal,
                      std::optional<Step> failing, std::optional<Step>* stopped_at = nullptr) {
  std::vector<Step> ran;
  auto r = transition::Execute(steps, fatal, [&](Step s) {
    ran.push_back(s);
    return s != failing;
  });
  if (stopped_at) *stopped_at = r;
  return ran;
}

TEST(RoleTransition, BothPersistTheRoleAndEpochBeforeAnythingElse) {
  EXPECT_EQ(transition::kTakeOver.front(), Step::kPersist);
  EXPECT_EQ(transition::kStepDown.front(), Step::kPersist);
}

TEST(RoleTransition, ATakeOverRunsItsStepsInOrder) {
  std::optional<Step> stopped;
  auto ran = Ran(transition::kTakeOver, transition::kTakeOverFatal, std::nullopt, &stopped);
  EXPECT_FALSE(stopped);
  EXPECT_EQ(ran, (std::vector<Step>{Step::kPersist, Step::kDropFollower, Step::kMakeMirrorLive,
                                    Step::kRestoreSetAside, Step::kStartPrimarySide,
                                    Step::kStartPostfix, Step::kTakeAddress, Step::kTell}));
}

TEST(RoleTransition, ATakeOverWhoseEpochCannotBeStoredMovesNothing) {
  std::optional<Step> stopped;
  auto ran = Ran(transition::kTakeOver, transition::kTakeOverFatal, Step::kPersist, &stopped);
  EXPECT_EQ(stopped, Step::kPersist);
  EXPECT_EQ(ran, std::vector<Step>{Step::kPersist});
}

TEST(RoleTransition, ATakeOverWhoseMirrorCannotGoLiveNeverStartsPostfix) {
  std::optional<Step> stopped;
  auto ran = Ran(transition::kTakeOver, transition::kTakeOverFatal, Step::kMakeMirrorLive, &stopped);
  EXPECT_EQ(stopped, Step::kMakeMirrorLive);
  EXPECT_EQ(std::count(ran.begin(), ran.end(), Step::kStartPostfix), 0);
  EXPECT_EQ(std::count(ran.begin(), ran.end(), Step::kTakeAddress), 0);
}

TEST(RoleTransition, ATakeOverWithoutReplicationStillServes) {
  // The primary side failing (no TLS, a port taken) leaves the node an
  // unprotected primary, said loudly; better than no mail service.
  std::optional<Step> stopped;
  auto ran = Ran(transition::kTakeOver, transition::kTakeOverFatal, Step::kStartPrimarySide, &stopped);
  EXPECT_FALSE(stopped);
  EXPECT_EQ(ran.back(), Step::kTell);
}

TEST(RoleTransition, AStepDownStopsIntakeBeforePostfixAndSetsTheQueueAsideLast) {
  auto ran = Ran(transition::kStepDown, transition::kStepDownFatal, std::nullopt);
  auto at = [&](Step s) { return std::find(ran.begin(), ran.end(), s) - ran.begin(); };
  EXPECT_LT(at(Step::kPersist), at(Step::kReleaseAddress));
  EXPECT_LT(at(Step::kReleaseAddress), at(Step::kStopPrimarySide));  // no new clients
  EXPECT_LT(at(Step::kStopPrimarySide), at(Step::kStopPostfix));  // the gate answers no more 250
  EXPECT_LT(at(Step::kStopPostfix), at(Step::kSetAsideQueue));  // nothing delivers meanwhile
}

TEST(RoleTransition, AStepDownGoesOnWhateverFails) {
  for (Step failing : transition::kStepDown) {
    std::optional<Step> stopped;
    auto ran = Ran(transition::kStepDown, transition::kStepDownFatal, failing, &stopped);
    EXPECT_FALSE(stopped) << transition::StepName(failing);
    EXPECT_EQ(ran.size(), transition::kStepDown.size()) << transition::StepName(failing);
  }
}

TEST(RoleStore, FirstStartStoresTheConfiguredRoleAtEpochOne) {
  testing::TempDir dir;
  RoleStore store(dir.path());
  ASSERT_EQ(store.Load(NodeRole::kPrimary), "");
  EXPECT_EQ(store.role(), NodeRole::kPrimary);
  EXPECT_EQ(store.epoch(), 1u);
  RoleStore again(dir.path());
  ASSERT_EQ(again.Load(NodeRole::kStandby), "");  // the stored role wins
  EXPECT_EQ(again.role(), NodeRole::kPrimary);
}

TEST(RoleStore, ACommitIsDurableBeforeItIsAdopted) {
  testing::TempDir dir;
  RoleStore store(dir.path());
  ASSERT_EQ(store.Load(NodeRole::kStandby), "");
  ASSERT_EQ(store.Become(NodeRole::kPrimary, 7), "");
  RoleStore reread(dir.path());
  ASSERT_EQ(reread.Load(NodeRole::kStandby), "");
  EXPECT_EQ(reread.role(), NodeRole::kPrimary);
  EXPECT_EQ(reread.epoch(), 7u);
  // The state directory unusable (here: a file where it was): nothing
  // changes, and the caller is told why.
  std::filesystem::remove_all(dir.path());
  { std::ofstream(dir.path()) << "not a directory"; }
  std::string err = store.Become(NodeRole::kStandby, 8);
  EXPECT_NE(err, "");
  EXPECT_EQ(store.role(), NodeRole::kPrimary);
  EXPECT_EQ(store.epoch(), 7u);
}

TEST(RoleStore, TheEpochNeverGoesBackNorWraps) {
  testing::TempDir dir;
  RoleStore store(dir.path());
  ASSERT_EQ(store.Load(NodeRole::kStandby), "");
  ASSERT_EQ(store.Become(NodeRole::kStandby, 5), "");
  EXPECT_NE(store.Become(NodeRole::kPrimary, 4).find("back from 5 to 4"), std::string::npos);
  EXPECT_EQ(store.epoch(), 5u);
  EXPECT_EQ(store.NextEpoch(), 6u);
  EXPECT_EQ(store.NextEpoch(9), 9u);  // a switchover names the epoch
  EXPECT_NE(store.Become(NodeRole::kStandby, kMaxEpoch).find("bound"), std::string::npos);
  EXPECT_EQ(store.NextEpoch(kMaxEpoch), std::nullopt);
  ASSERT_EQ(store.Become(NodeRole::kStandby, kMaxEpoch - 1), "");
  EXPECT_EQ(store.NextEpoch(), std::nullopt);  // never wraps
}

}  // namespace
}  // namespace mailtwin
