// session_state.h - the standby's side of one replication connection, as a
// pure state machine: which frames are legal in which state (docs/protocol.md
// §5, "Connection states"). No sockets, no mirror: StandbyServer asks Step()
// before it touches anything, so a frame Step() calls illegal is never
// applied, and the session fuzzer (fuzz/session_fuzz.cc) drives it in-process.
//
//   hello --Hello (version, cluster, node, role, epoch judged)--> catchup
//   catchup --SyncDone--> live            live --SyncDone--> live (resync)
//   any --Error from the peer, or any illegal frame--> closed (final)
//
// Guarantees: nothing but Hello, Heartbeat and Error is legal before a Hello
// was accepted; nothing at all is legal once closed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/epoch.h"
#include "repl/messages.h"

namespace mailtwin::repl {

enum class SessionState : std::uint8_t {
  kHello,    // TLS is up; waiting for the dialer's Hello
  kCatchup,  // Hello accepted, manifest sent; changes apply until SyncDone
  kLive,     // in sync: changes, status, handover results, switchover
  kClosed,   // refused or failed: nothing more is applied
};
std::string_view SessionStateName(SessionState s);

struct SessionStep {
  SessionState next;
  bool legal;  // false: a protocol error; the connection fails, next is kClosed
};

// The transition for a frame of type t arriving in state s. A legal Hello
// moves to kCatchup only tentatively: the caller still judges it and closes
// the session if it refuses.
SessionStep Step(SessionState s, MsgType t);

// A Switchover names the epoch the standby takes over at: exactly one above
// the epoch the primary announced in its Hello of this session (the primary
// stores nothing new before the standby confirms). Returns why not, or nothing.
std::optional<std::string> CheckSwitchoverEpoch(std::uint64_t hello_epoch,
                                                std::uint64_t switchover_epoch);

}  // namespace mailtwin::repl
