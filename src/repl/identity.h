// identity.h - who a node is on the replication link, and the Hello check
// both sides apply to their peer (docs/protocol.md §5).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "repl/messages.h"

namespace mailtwin::repl {

struct Identity {
  std::string cluster;
  std::string node;
  std::uint64_t epoch = 1;
  std::uint64_t incarnation = 0;  // random per daemon start

  msg::Hello HelloAs(Role role) const {
    return msg::Hello{kProtocolVersion, role, cluster, node, epoch, incarnation};
  }
};

// Checks a peer's Hello against this node: same protocol version and
// cluster, and the role the peer must have. Returns the Error to send back,
// or nothing when the peer is acceptable.
std::optional<msg::Error> CheckPeerHello(const msg::Hello& peer, const Identity& self,
                                         Role expected);

}  // namespace mailtwin::repl
