#include "repl/identity.h"

#include <fmt/format.h>

namespace mailtwin::repl {

std::optional<msg::Error> CheckPeerHello(const msg::Hello& peer, const Identity& self,
                                         std::optional<Role> expected) {
  if (peer.version != kProtocolVersion)
    return msg::Error{msg::ErrorCode::kProtocol,
                      fmt::format("peer {} speaks protocol version {}, this node {}", peer.node,
                                  peer.version, kProtocolVersion)};
  if (peer.cluster != self.cluster)
    return msg::Error{msg::ErrorCode::kWrongCluster,
                      fmt::format("peer {} belongs to cluster '{}', not '{}'", peer.node,
                                  peer.cluster, self.cluster)};
  if (expected && peer.role != *expected)
    return msg::Error{msg::ErrorCode::kRoleConflict,
                      fmt::format("peer {} is a {}, this node expects a {}", peer.node,
                                  peer.role == Role::kPrimary ? "primary" : "standby",
                                  *expected == Role::kPrimary ? "primary" : "standby")};
  return std::nullopt;
}

}  // namespace mailtwin::repl
