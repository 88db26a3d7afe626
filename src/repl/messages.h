// messages.h - the typed messages of the replication protocol.
//
// docs/protocol.md is the single source of truth for the bytes; this header
// recaps it: every frame carries exactly one of these messages. Change
// messages (File .. LogDelete) are idempotent and name a message by queue ID
// only, never by path, so the standby decides where bytes land.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "common/queue_id.h"

namespace mailtwin::repl {

inline constexpr std::uint16_t kProtocolVersion = 1;

// Caps checked before anything is allocated (docs/protocol.md §4).
inline constexpr std::size_t kMaxPayload = 4u << 20;        // one frame's payload
inline constexpr std::size_t kMaxChunk = 1u << 20;          // File / LogData bytes per frame
inline constexpr std::size_t kMaxPatch = 64u << 10;         // Patch bytes per frame
inline constexpr std::uint64_t kMaxFileSize = 2ull << 30;   // one queue file
inline constexpr std::uint64_t kMaxLogSize = 64ull << 20;   // one defer/bounce/trace log
inline constexpr std::size_t kMaxManifestEntries = 16384;   // per Manifest frame
inline constexpr std::size_t kMaxName = 255;                // cluster/node names, error text
inline constexpr std::uint32_t kMaxFingerprintKeep = 31 * 86400;  // Fingerprint keep_s

enum class Role : std::uint8_t { kPrimary = 1, kStandby = 2 };

enum class MsgType : std::uint8_t {
  kHello = 1,
  kError = 2,
  kHeartbeat = 3,
  kManifest = 10,
  kSyncDone = 11,
  kFile = 20,
  kPatch = 21,
  kMeta = 22,
  kMove = 23,
  kDelete = 24,
  kLogData = 25,
  kLogDelete = 26,
  kFingerprint = 27,
  kAck = 30,
  kHandoverFile = 40,
  kHandoverLog = 41,
  kHandoverDone = 42,
  kHandoverResult = 43,
  kSwitchover = 50,
  kSwitchoverRequest = 51,
  kNodeStatus = 52,
};

namespace msg {

struct Hello {
  std::uint16_t version = kProtocolVersion;
  Role role = Role::kPrimary;
  std::string cluster;
  std::string node;
  std::uint64_t epoch = 0;
  std::uint64_t incarnation = 0;  // random per daemon start
  bool operator==(const Hello&) const = default;
};

enum class ErrorCode : std::uint16_t {
  kProtocol = 1,      // malformed frame or unexpected message
  kWrongCluster = 2,  // peer belongs to another cluster
  kRoleConflict = 3,  // both sides claim the same role
  kStaleEpoch = 4,    // peer's epoch is older than ours
  kApply = 5,         // the standby could not apply a change (disk full, ...)
  kShutdown = 6,
};

struct Error {
  ErrorCode code = ErrorCode::kProtocol;
  std::string text;
  bool operator==(const Error&) const = default;
};

struct Heartbeat {
  std::int64_t sent_ns = 0;
  bool operator==(const Heartbeat&) const = default;
};

// One thing the standby holds: a queue file (kind 0) or a per-message log.
struct ManifestEntry {
  std::uint8_t kind = 0;  // 0 = queue file, else LogKind
  Queue queue = Queue::kIncoming;  // queue files only
  std::string id;
  std::uint64_t size = 0;
  std::uint32_t mode = 0;
  std::int64_t mtime_ns = 0;
  std::uint64_t digest = 0;  // queue_file.h: DigestOf
  bool operator==(const ManifestEntry&) const = default;
};

struct Manifest {
  bool last = false;
  std::vector<ManifestEntry> entries;
  bool operator==(const Manifest&) const = default;
};

struct SyncDone {
  std::uint64_t messages = 0;  // queue files the primary holds at this point
  bool operator==(const SyncDone&) const = default;
};

// A committed queue file, sent in chunks; the file is published when the
// chunk ending at total_size is durable.
struct File {
  std::string id;
  Queue queue = Queue::kIncoming;
  std::uint32_t mode = 0;
  std::int64_t mtime_ns = 0;
  std::uint64_t total_size = 0;
  std::uint64_t offset = 0;
  std::string data;
  bool operator==(const File&) const = default;
};

// In-place update of a committed queue file (R->D, K, W records).
struct Patch {
  std::string id;
  std::uint64_t offset = 0;
  std::string data;
  bool operator==(const Patch&) const = default;
};

struct Meta {
  std::string id;
  std::uint32_t mode = 0;
  std::int64_t mtime_ns = 0;
  bool operator==(const Meta&) const = default;
};

struct Move {
  std::string id;
  Queue queue = Queue::kIncoming;
  bool operator==(const Move&) const = default;
};

struct Delete {
  std::string id;
  bool operator==(const Delete&) const = default;
};

// Log bytes at offset; offset 0 replaces the log, otherwise it must equal the
// standby's current length (an append).
struct LogData {
  LogKind kind = LogKind::kDefer;
  std::string id;
  std::uint64_t offset = 0;
  std::string data;
  bool operator==(const LogData&) const = default;
};

struct LogDelete {
  LogKind kind = LogKind::kDefer;
  std::string id;
  bool operator==(const LogDelete&) const = default;
};

// The gate's fingerprint of a message it accepted (docs/gate.md,
// "Duplicates after a failover"): SHA-256 of envelope and content. A change
// message (it has a sequence number, so the gate can wait for its Ack), but
// it changes nothing in the mirror. Sent only to a standby whose NodeStatus
// carries kFingerprints: an older standby would call type 27 a protocol
// error.
struct Fingerprint {
  // The queue ID; or, for a message not yet committed (keep_s 0), the gate's
  // token that its queue file will carry as log_ident (common/queue_id.h):
  // sent before the after-filter can commit it, only to a standby whose
  // NodeStatus carries kGateTokens.
  std::string id;
  std::array<std::uint8_t, 32> digest{};
  // 0: a message the primary just accepted. Else an entry of the primary's
  // dedup table (a message inherited at an earlier failover), to keep this
  // many seconds from its arrival, and the node it came from: so the table
  // follows the role through the next failover.
  std::uint32_t keep_s = 0;
  std::string origin;
  bool operator==(const Fingerprint&) const = default;
};

struct Ack {
  std::uint64_t seq = 0;  // every change frame up to seq is durable
  bool operator==(const Ack&) const = default;
};

// Handover (docs/failover.md "Rejoin"): a node that stepped down gives the
// new primary the messages only it has. Standby -> primary: the logs, then
// the queue file (chunked like File), then Done; the primary answers with a
// Result once the message is committed in its queue (or why it was not
// taken: already queued there, or already finished according to its ledger).
struct HandoverFile : File {
  bool operator==(const HandoverFile&) const = default;
};
struct HandoverLog : LogData {
  bool operator==(const HandoverLog&) const = default;
};
struct HandoverDone {
  std::string id;
  bool operator==(const HandoverDone&) const = default;
};
enum class HandoverOutcome : std::uint8_t {
  kImported = 1,  // committed in the primary's queue: drop your copy
  kQueued = 2,    // the primary already has this message queued: drop yours
  kFinished = 3,  // the primary's ledger says it was delivered/removed: drop yours
  kRefused = 4,   // could not take it (text says why): keep yours
};
struct HandoverResult {
  std::string id;
  HandoverOutcome outcome = HandoverOutcome::kRefused;
  std::string text;
  bool operator==(const HandoverResult&) const = default;
};

// Switchover (docs/failover.md): the primary has stopped its Postfix and the
// standby has acknowledged every change; primary -> standby: take over at
// this epoch. The standby may ask for one (failback to the preferred node).
struct Switchover {
  std::uint64_t epoch = 0;  // the epoch the standby takes over at
  std::string reason;
  bool operator==(const Switchover&) const = default;
};
struct SwitchoverRequest {
  std::string reason;
  bool operator==(const SwitchoverRequest&) const = default;
};

// Each side's own view of itself, about once a second on a live link (both
// directions, no sequence number): `mailtwin status` shows both nodes, and
// Decide learns whether the peer's queue filesystem is healthy.
struct NodeStatus {
  static constexpr std::uint8_t kPaused = 1, kPostfixRunning = 2, kQueueWritable = 4,
                                kEpochConfirmed = 8, kVipHeld = 16,
                                kFingerprints = 32,  // takes Fingerprint frames
                                kGateTokens = 64;    // ... also under a gate token
  static constexpr std::uint8_t kKnownFlags = 127;
  Role role = Role::kStandby;
  std::uint64_t epoch = 0;
  std::uint8_t flags = 0;
  // Queue files by queue: maildrop, incoming, active, deferred, hold, corrupt
  // (a standby counts its mirror).
  std::array<std::uint32_t, 6> queues{};
  std::int64_t queue_free_mb = -1;  // -1: unknown
  std::string decision;             // the last decision's reason
  bool operator==(const NodeStatus&) const = default;
};

}  // namespace msg

using Message = std::variant<msg::Hello, msg::Error, msg::Heartbeat, msg::Manifest, msg::SyncDone,
                             msg::File, msg::Patch, msg::Meta, msg::Move, msg::Delete,
                             msg::LogData, msg::LogDelete, msg::Ack, msg::HandoverFile,
                             msg::HandoverLog, msg::HandoverDone, msg::HandoverResult,
                             msg::Switchover, msg::SwitchoverRequest, msg::NodeStatus,
                             msg::Fingerprint>;

MsgType TypeOf(const Message& m);
// True for the messages that change the mirror and carry a sequence number.
bool IsChange(const Message& m);
// Queue ID a change message is about ("" for the others).
const std::string& ChangeId(const Message& m);

}  // namespace mailtwin::repl
