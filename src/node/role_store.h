// role_store.h - the node's role, epoch and pause flag, and the one way
// they change: durably first, then in memory (docs/failover.md).
//
// Every role transition (take-over, step-down, following a newer primary,
// promote --force, pause/resume) goes through Commit: the new state is in
// <state_dir>/state.json (node_state.h: temp file, fsync, rename, directory
// fsync) before anything acts on it, so a node that crashes mid-transition
// restarts in the new role at the new epoch, never in an older one. A failed
// write changes nothing and says why.
//
// Epochs only grow: Commit refuses an epoch below the stored one or at the
// bound of common/epoch.h, and NextEpoch stops there instead of wrapping
// (an epoch near 2^64 is a poisoned claim, not a history).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "node/node_state.h"

namespace mailtwin {

class RoleStore {
 public:
  explicit RoleStore(std::string state_dir) : dir_(std::move(state_dir)) {}
  // Reads the stored state; at first start stores {configured, epoch 1}.
  std::string Load(NodeRole configured);
  const NodeState& state() const { return state_; }
  NodeRole role() const { return state_.role; }
  std::uint64_t epoch() const { return state_.epoch; }
  bool primary() const { return state_.role == NodeRole::kPrimary; }

  // Stores next, then adopts it; "" or why nothing changed.
  std::string Commit(const NodeState& next);
  std::string Become(NodeRole role, std::uint64_t epoch) {
    return Commit(NodeState{role, epoch, state_.paused});
  }
  // A step-down whose write failed still stops serving: the node adopts the
  // standby role in memory (on restart it is a primary at the old epoch,
  // which serves only once a peer confirms that epoch: it will not be).
  void AdoptUnsaved(const NodeState& next) { state_ = next; }
  std::string SetPaused(bool paused) { return Commit(NodeState{state_.role, state_.epoch, paused}); }
  // The epoch a take-over moves to: at least epoch + 1 and at least at_least;
  // nullopt when it would wrap.
  std::optional<std::uint64_t> NextEpoch(std::uint64_t at_least = 0) const;

 private:
  std::string dir_;
  NodeState state_;
};

}  // namespace mailtwin
