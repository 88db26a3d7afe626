#include "node/transitions.h"

#include <algorithm>

namespace mailtwin::transition {

std::string_view StepName(Step s) {
  switch (s) {
    case Step::kPersist: return "persist";
    case Step::kDropFollower: return "drop-follower";
    case Step::kMakeMirrorLive: return "make-mirror-live";
    case Step::kRestoreSetAside: return "restore-set-aside";
    case Step::kStartPrimarySide: return "start-primary-side";
    case Step::kStartPostfix: return "start-postfix";
    case Step::kTakeAddress: return "take-address";
    case Step::kReleaseAddress: return "release-address";
    case Step::kStopPrimarySide: return "stop-primary-side";
    case Step::kStopPostfix: return "stop-postfix";
    case Step::kSetAsideQueue: return "set-aside-queue";
    case Step::kTell: return "tell";
  }
  return "?";
}

std::optional<Step> Execute(std::span<const Step> steps, std::span<const Step> fatal,
                            const std::function<bool(Step)>& run) {
  for (Step s : steps)
    if (!run(s) && std::find(fatal.begin(), fatal.end(), s) != fatal.end()) return s;
  return std::nullopt;
}

}  // namespace mailtwin::transition
