// identity.h - who a node is on the replication link, and the Hello check
// both sides apply to their peer (docs/protocol.md §5).
#pragma once

#include <cstdint>
#include <functional>
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
// expected = nullopt leaves roles to the caller (mailtwind judges them
// together with the epochs: ha/decide.h JudgePeer).
std::optional<msg::Error> CheckPeerHello(const msg::Hello& peer, const Identity& self,
                                         std::optional<Role> expected);

// How a node answers a peer's Hello: the Error to refuse it with, or nothing.
using HelloJudge = std::function<std::optional<msg::Error>(const msg::Hello& peer)>;

}  // namespace mailtwin::repl
