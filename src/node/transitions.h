// transitions.h - the order of the steps of the two role transitions, said
// once (docs/failover.md). The daemon runs these lists; the unit tests read
// the same lists, so the order they check is the order that runs.
//
// Take-over (a standby becomes primary):
//   the new epoch is stored first (no step may run at an epoch that a crash
//   would forget); the session with the old primary ends (nothing more is
//   applied to the mirror); the mirror becomes the live queue; messages set
//   aside at an earlier step-down that the new queue lacks go back; the
//   primary side (watcher, link, gate) starts before Postfix, so that the
//   first client Postfix accepts finds the gate open; Postfix starts; the
//   service address and the relay's route follow; the administrator is told.
//   Fatal: the epoch cannot be stored (nothing moved); the mirror cannot be
//   made live, or Postfix cannot start (the node is primary but does not
//   serve; the failure is told, with what to fix).
//
// Step-down (a primary learns of a newer one, or hands its role over):
//   the standby role and the newer epoch are stored first; the service
//   address goes (clients stop arriving; the relay sends new ones to the
//   new primary); the primary side stops (the gate
//   answers no more 250s, the link ends); Postfix stops (fence: no more
//   deliveries); what its queue holds is set aside for handover, never
//   delivered from here again; the administrator is told.
//   Nothing is fatal: a primary that must step down stops serving even if
//   its disk refuses the new state (RoleStore::AdoptUnsaved).
#pragma once

#include <array>
#include <functional>
#include <optional>
#include <span>
#include <string_view>

namespace mailtwin::transition {

enum class Step {
  kPersist,
  kDropFollower,
  kMakeMirrorLive,
  kRestoreSetAside,
  kStartPrimarySide,
  kStartPostfix,
  kTakeAddress,
  kReleaseAddress,
  kStopPrimarySide,
  kStopPostfix,
  kSetAsideQueue,
  kTell,
};
std::string_view StepName(Step s);

inline constexpr std::array kTakeOver{Step::kPersist,          Step::kDropFollower,
                                      Step::kMakeMirrorLive,   Step::kRestoreSetAside,
                                      Step::kStartPrimarySide, Step::kStartPostfix,
                                      Step::kTakeAddress,      Step::kTell};
inline constexpr std::array kTakeOverFatal{Step::kPersist, Step::kMakeMirrorLive,
                                           Step::kStartPostfix};

inline constexpr std::array kStepDown{Step::kPersist,         Step::kReleaseAddress,
                                      Step::kStopPrimarySide, Step::kStopPostfix,
                                      Step::kSetAsideQueue,   Step::kTell};
inline constexpr std::array<Step, 0> kStepDownFatal{};

// Runs steps in order with run (true: the step succeeded). A failed step
// listed in fatal ends the transition: returns it; nullopt when all ran.
std::optional<Step> Execute(std::span<const Step> steps, std::span<const Step> fatal,
                            const std::function<bool(Step)>& run);

}  // namespace mailtwin::transition
