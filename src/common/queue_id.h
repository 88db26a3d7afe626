// queue_id.h - names that may cross the wire: queue IDs, queue names, log kinds.
//
// Everything a peer sends is turned into a path only through these types, so a
// hostile or corrupt frame can never name a file outside the queue layout:
// a QueueId is 1..kMaxLen characters of [0-9A-Za-z] (no '/', no '.', no NUL),
// and queues and log kinds are closed enums.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mailtwin {

// Postfix message queues that hold queue files (Postfix's own names).
enum class Queue : std::uint8_t {
  kMaildrop = 1,
  kIncoming = 2,
  kActive = 3,
  kDeferred = 4,
  kHold = 5,
  kCorrupt = 6,
};
inline constexpr Queue kAllQueues[] = {Queue::kMaildrop, Queue::kIncoming, Queue::kActive,
                                       Queue::kDeferred, Queue::kHold,     Queue::kCorrupt};

// Per-message logs that Postfix keeps beside the queue file (defer/, bounce/, trace/).
enum class LogKind : std::uint8_t { kDefer = 1, kBounce = 2, kTrace = 3 };
inline constexpr LogKind kAllLogKinds[] = {LogKind::kDefer, LogKind::kBounce, LogKind::kTrace};

std::string_view QueueName(Queue q);
std::string_view LogKindName(LogKind k);
std::optional<Queue> QueueFromByte(std::uint8_t b);
std::optional<Queue> QueueFromName(std::string_view name);
std::optional<LogKind> LogKindFromByte(std::uint8_t b);
std::optional<LogKind> LogKindFromName(std::string_view name);

// True for a syntactically valid Postfix queue ID (long or short form).
// Temporary names such as "28423.6769" are not IDs and are rejected.
bool IsValidQueueId(std::string_view id);

// True for a long queue ID (enable_long_queue_ids = yes): it contains the
// 'z' separator between the seconds and the microseconds/inode fields.
bool IsLongQueueId(std::string_view id);

inline constexpr std::size_t kMaxQueueIdLen = 32;

// The gate's name for a message it relays, given to the after-filter as
// XFORWARD IDENT before the message is committed, so that its queue file
// carries it (log_ident) and a fingerprint sent under it can be bound to the
// queue ID on the standby (docs/gate.md): "mt-" and 24 lower-case hex digits.
inline constexpr std::string_view kGateTokenPrefix = "mt-";
inline constexpr std::size_t kGateTokenLen = 27;
bool IsGateToken(std::string_view s);

// The hash subdirectory Postfix uses for a long queue ID in a hashed queue
// (hash_queue_names, default "deferred, defer"), hash_queue_depth levels deep:
// e.g. "6" or "6/5". Postfix takes the four base-52 microsecond digits before
// the 'z', writes them as five hex digits, and uses the first `depth` of them
// (global/mail_queue.c, mail_queue_dir). "" for an ID that is not long.
std::string HashSubdir(std::string_view id, int depth);

}  // namespace mailtwin
