#include "node/role_store.h"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

#include "common/epoch.h"

namespace mailtwin {

std::string RoleStore::Load(NodeRole configured) {
  std::string err;
  auto st = LoadNodeState(dir_, err);
  if (!err.empty()) return err;
  if (st) {
    state_ = *st;
    return {};
  }
  NodeState first{configured, 1, false};
  if (err = SaveNodeState(dir_, first); !err.empty()) return err;
  state_ = first;
  return {};
}

std::string RoleStore::Commit(const NodeState& next) {
  if (next.epoch < state_.epoch)
    return fmt::format("refusing to move the epoch back from {} to {}", state_.epoch, next.epoch);
  if (next.epoch >= kMaxEpoch)
    return fmt::format("refusing epoch {}: at or beyond the bound {} (a poisoned claim)", next.epoch,
                       kMaxEpoch);
  if (std::string err = SaveNodeState(dir_, next); !err.empty()) return err;
  state_ = next;
  return {};
}

std::optional<std::uint64_t> RoleStore::NextEpoch(std::uint64_t at_least) const {
  auto next = mailtwin::NextEpoch(state_.epoch);
  if (!next) return std::nullopt;
  std::uint64_t e = std::max(at_least, *next);
  if (e >= kMaxEpoch) return std::nullopt;  // Commit would refuse it
  return e;
}

}  // namespace mailtwin
