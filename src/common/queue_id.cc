#include "common/queue_id.h"

#include <cstdio>

namespace mailtwin {

std::string_view QueueName(Queue q) {
  switch (q) {
    case Queue::kMaildrop: return "maildrop";
    case Queue::kIncoming: return "incoming";
    case Queue::kActive: return "active";
    case Queue::kDeferred: return "deferred";
    case Queue::kHold: return "hold";
    case Queue::kCorrupt: return "corrupt";
  }
  return "?";
}

std::string_view LogKindName(LogKind k) {
  switch (k) {
    case LogKind::kDefer: return "defer";
    case LogKind::kBounce: return "bounce";
    case LogKind::kTrace: return "trace";
  }
  return "?";
}

std::optional<Queue> QueueFromByte(std::uint8_t b) {
  if (b >= 1 && b <= 6) return static_cast<Queue>(b);
  return std::nullopt;
}

std::optional<Queue> QueueFromName(std::string_view name) {
  for (Queue q : kAllQueues)
    if (QueueName(q) == name) return q;
  return std::nullopt;
}

std::optional<LogKind> LogKindFromByte(std::uint8_t b) {
  if (b >= 1 && b <= 3) return static_cast<LogKind>(b);
  return std::nullopt;
}

std::optional<LogKind> LogKindFromName(std::string_view name) {
  for (LogKind k : kAllLogKinds)
    if (LogKindName(k) == name) return k;
  return std::nullopt;
}

bool IsValidQueueId(std::string_view id) {
  // Short IDs are at least 6 hex digits (5 usec + inode); long IDs are longer.
  if (id.size() < 6 || id.size() > kMaxQueueIdLen) return false;
  for (char c : id) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    if (!ok) return false;
  }
  return true;
}

std::string HashSubdir(std::string_view id, int depth) {
  // Postfix's "safe" alphabet: digits, then consonants upper and lower case.
  static constexpr std::string_view kAlphabet =
      "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";
  auto z = id.rfind('z');
  if (!IsValidQueueId(id) || z == std::string_view::npos || z < 10 || depth < 1 || depth > 5)
    return {};
  unsigned long usec = 0;
  for (char c : id.substr(z - 4, 4)) {
    auto v = kAlphabet.find(c);
    if (v == std::string_view::npos) return {};
    usec = usec * 52 + v;
  }
  char hex[16];
  std::snprintf(hex, sizeof hex, "%05lX", usec);
  std::string out;
  for (int i = 0; i < depth; ++i) {
    if (i) out += '/';
    out += hex[i];
  }
  return out;
}

bool IsGateToken(std::string_view s) {
  if (s.size() != kGateTokenLen || s.substr(0, kGateTokenPrefix.size()) != kGateTokenPrefix)
    return false;
  for (char c : s.substr(kGateTokenPrefix.size()))
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

bool IsLongQueueId(std::string_view id) {
  // Long IDs: base-52 seconds, 'z', then microseconds and inode in base 51 (no 'z').
  // Short IDs are upper-case hex only, so any lower-case 'z' marks the long form.
  return IsValidQueueId(id) && id.find('z') != std::string_view::npos;
}

}  // namespace mailtwin
