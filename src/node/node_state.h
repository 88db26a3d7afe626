// node_state.h - what a node must remember across restarts: its role and epoch.
//
// Stored as JSON in <state_dir>/state.json, replaced atomically (temp file,
// fsync, rename, directory fsync), so a crash leaves the old or the new state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/config.h"

namespace mailtwin {

struct NodeState {
  NodeRole role = NodeRole::kStandby;
  std::uint64_t epoch = 1;
  bool paused = false;  // `mailtwin pause`: no automatic action until resume
};

// nullopt + empty error: no state yet (first start).
std::optional<NodeState> LoadNodeState(const std::string& state_dir, std::string& error);
std::string SaveNodeState(const std::string& state_dir, const NodeState& st);
std::string_view RoleName(NodeRole r);

}  // namespace mailtwin
