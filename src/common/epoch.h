// epoch.h - the bounds every epoch obeys (docs/failover.md, "Epochs and fencing").
//
// An epoch grows by exactly one per promotion. A node believes a peer's
// epoch only within kMaxEpochLead of its own (without a witness, a larger
// claim cannot be verified: it is a corrupt or hostile peer, never a real
// history), and no epoch ever reaches kMaxEpoch, so "epoch + 1" never wraps.
#pragma once

#include <cstdint>
#include <optional>

namespace mailtwin {

inline constexpr std::uint64_t kMaxEpochLead = 1000;
inline constexpr std::uint64_t kMaxEpoch = UINT64_MAX / 2;

// The epoch a takeover stores after `epoch`, or nothing at the bound (the
// caller refuses to promote and says so, instead of wrapping to 0).
inline std::optional<std::uint64_t> NextEpoch(std::uint64_t epoch) {
  if (epoch >= kMaxEpoch) return std::nullopt;
  return epoch + 1;
}

// A peer's epoch this node may adopt: not behind ours is for the caller to
// judge; far ahead of ours, or at the bound, never.
inline bool EpochBelievable(std::uint64_t ours, std::uint64_t theirs) {
  return theirs < kMaxEpoch && (theirs <= ours || theirs - ours <= kMaxEpochLead);
}

}  // namespace mailtwin
