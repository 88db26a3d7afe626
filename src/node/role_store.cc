#include "node/role_store.h"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

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
  if (std::string err = SaveNodeState(dir_, next); !err.empty()) return err;
  state_ = next;
  return {};
}

std::optional<std::uint64_t> RoleStore::NextEpoch(std::uint64_t at_least) const {
  if (state_.epoch == std::numeric_limits<std::uint64_t>::max()) return std::nullopt;
  return std::max(at_least, state_.epoch + 1);
}

}  // namespace mailtwin
