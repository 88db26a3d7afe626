#include "repl/frame_codec.h"

#include <zlib.h>

#include <algorithm>

#include <fmt/format.h>

#include "repl/wire.h"

namespace mailtwin::repl {
namespace {

std::uint32_t Crc(std::string_view bytes) {
  uLong c = crc32(0L, Z_NULL, 0);
  return static_cast<std::uint32_t>(
      crc32(c, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(bytes.size())));
}

struct PayloadEncoder {
  Writer& w;
  void operator()(const msg::Hello& m) {
    w.U16(m.version);
    w.U8(static_cast<std::uint8_t>(m.role));
    w.Str(m.cluster);
    w.Str(m.node);
    w.U64(m.epoch);
    w.U64(m.incarnation);
  }
  void operator()(const msg::Error& m) {
    w.U16(static_cast<std::uint16_t>(m.code));
    w.Str(m.text.substr(0, kMaxName));
  }
  void operator()(const msg::Heartbeat& m) { w.I64(m.sent_ns); }
  void operator()(const msg::Manifest& m) {
    w.U8(m.last ? 1 : 0);
    w.U32(static_cast<std::uint32_t>(m.entries.size()));
    for (const auto& e : m.entries) {
      w.U8(e.kind);
      w.U8(static_cast<std::uint8_t>(e.queue));
      w.Str(e.id);
      w.U64(e.size);
      w.U32(e.mode);
      w.I64(e.mtime_ns);
      w.U64(e.digest);
    }
  }
  void operator()(const msg::SyncDone& m) { w.U64(m.messages); }
  void operator()(const msg::File& m) {
    w.Str(m.id);
    w.U8(static_cast<std::uint8_t>(m.queue));
    w.U32(m.mode);
    w.I64(m.mtime_ns);
    w.U64(m.total_size);
    w.U64(m.offset);
    w.Blob(m.data);
  }
  void operator()(const msg::Patch& m) {
    w.Str(m.id);
    w.U64(m.offset);
    w.Blob(m.data);
  }
  void operator()(const msg::Meta& m) {
    w.Str(m.id);
    w.U32(m.mode);
    w.I64(m.mtime_ns);
  }
  void operator()(const msg::Move& m) {
    w.Str(m.id);
    w.U8(static_cast<std::uint8_t>(m.queue));
  }
  void operator()(const msg::Delete& m) { w.Str(m.id); }
  void operator()(const msg::LogData& m) {
    w.U8(static_cast<std::uint8_t>(m.kind));
    w.Str(m.id);
    w.U64(m.offset);
    w.Blob(m.data);
  }
  void operator()(const msg::LogDelete& m) {
    w.U8(static_cast<std::uint8_t>(m.kind));
    w.Str(m.id);
  }
  void operator()(const msg::Ack& m) { w.U64(m.seq); }
  void operator()(const msg::Fingerprint& m) {
    w.Str(m.id);
    w.Blob(std::string_view(reinterpret_cast<const char*>(m.digest.data()), m.digest.size()));
    w.U32(m.keep_s);
    w.Str(m.origin.substr(0, kMaxName));
  }
  void operator()(const msg::HandoverFile& m) { (*this)(static_cast<const msg::File&>(m)); }
  void operator()(const msg::HandoverLog& m) { (*this)(static_cast<const msg::LogData&>(m)); }
  void operator()(const msg::HandoverDone& m) { w.Str(m.id); }
  void operator()(const msg::Switchover& m) {
    w.U64(m.epoch);
    w.Str(m.reason.substr(0, kMaxName));
  }
  void operator()(const msg::SwitchoverRequest& m) { w.Str(m.reason.substr(0, kMaxName)); }
  void operator()(const msg::NodeStatus& m) {
    w.U8(static_cast<std::uint8_t>(m.role));
    w.U64(m.epoch);
    w.U8(m.flags);
    for (auto n : m.queues) w.U32(n);
    w.I64(m.queue_free_mb);
    w.Str(m.decision.substr(0, kMaxName));
  }
  void operator()(const msg::HandoverResult& m) {
    w.Str(m.id);
    w.U8(static_cast<std::uint8_t>(m.outcome));
    w.Str(m.text.substr(0, kMaxName));
  }
};

// Field readers that validate as they go; each returns false with why_ set.
class PayloadDecoder {
 public:
  explicit PayloadDecoder(std::string_view p) : r_(p) {}

  bool Id(std::string& id) {
    if (!r_.Str(id, kMaxQueueIdLen)) return Fail("truncated or oversized queue ID");
    if (!IsValidQueueId(id)) return Fail("invalid queue ID");
    return true;
  }
  bool Name(std::string& s) {
    if (!r_.Str(s, kMaxName)) return Fail("truncated or oversized name");
    for (unsigned char c : s)
      if (c < 0x20 || c == 0x7f) return Fail("control character in name");
    return true;
  }
  bool QueueField(Queue& q) {
    std::uint8_t b;
    if (!r_.U8(b)) return Fail("truncated");
    auto v = QueueFromByte(b);
    if (!v) return Fail(fmt::format("unknown queue {}", b));
    q = *v;
    return true;
  }
  bool LogKindField(LogKind& k) {
    std::uint8_t b;
    if (!r_.U8(b)) return Fail("truncated");
    auto v = LogKindFromByte(b);
    if (!v) return Fail(fmt::format("unknown log kind {}", b));
    k = *v;
    return true;
  }
  bool Mode(std::uint32_t& m) {
    if (!r_.U32(m)) return Fail("truncated");
    if (m & ~07777u) return Fail("invalid file mode");
    return true;
  }
  bool Data(std::string& out, std::size_t cap) {
    std::string_view v;
    if (!r_.Blob(v, cap)) return Fail("truncated or oversized data");
    out.assign(v);
    return true;
  }
  bool Fail(std::string why) {
    if (why_.empty()) why_ = std::move(why);
    return false;
  }
  bool Done() { return r_.AtEnd() ? true : Fail("trailing or missing bytes in payload"); }

  Reader r_;
  std::string why_;
};

bool Decode(PayloadDecoder& d, msg::Hello& m) {
  std::uint8_t role;
  if (!d.r_.U16(m.version) || !d.r_.U8(role)) return d.Fail("truncated");
  if (role != 1 && role != 2) return d.Fail("unknown role");
  m.role = static_cast<Role>(role);
  return d.Name(m.cluster) && d.Name(m.node) && d.r_.U64(m.epoch) && d.r_.U64(m.incarnation);
}
bool Decode(PayloadDecoder& d, msg::Error& m) {
  std::uint16_t code;
  if (!d.r_.U16(code)) return d.Fail("truncated");
  m.code = static_cast<msg::ErrorCode>(code);
  return d.Name(m.text);
}
bool Decode(PayloadDecoder& d, msg::Heartbeat& m) { return d.r_.I64(m.sent_ns); }
bool Decode(PayloadDecoder& d, msg::Manifest& m) {
  std::uint8_t last;
  std::uint32_t n;
  if (!d.r_.U8(last) || !d.r_.U32(n)) return d.Fail("truncated");
  if (last > 1) return d.Fail("invalid flag");
  if (n > kMaxManifestEntries) return d.Fail("too many manifest entries");
  // Each entry is at least 34 bytes: refuse counts the payload cannot hold
  // before reserving memory for them.
  if (static_cast<std::size_t>(n) * 34 > d.r_.remaining()) return d.Fail("truncated manifest");
  m.last = last == 1;
  m.entries.resize(n);
  for (auto& e : m.entries) {
    if (!d.r_.U8(e.kind)) return d.Fail("truncated");
    if (e.kind > 3) return d.Fail("unknown manifest entry kind");
    if (!d.QueueField(e.queue) || !d.Id(e.id) || !d.r_.U64(e.size) || !d.Mode(e.mode) ||
        !d.r_.I64(e.mtime_ns) || !d.r_.U64(e.digest))
      return d.Fail("truncated");
  }
  return true;
}
bool Decode(PayloadDecoder& d, msg::SyncDone& m) { return d.r_.U64(m.messages); }
bool Decode(PayloadDecoder& d, msg::File& m) {
  if (!d.Id(m.id) || !d.QueueField(m.queue) || !d.Mode(m.mode) || !d.r_.I64(m.mtime_ns) ||
      !d.r_.U64(m.total_size) || !d.r_.U64(m.offset) || !d.Data(m.data, kMaxChunk))
    return d.Fail("truncated");
  if (m.total_size > kMaxFileSize) return d.Fail("file over the size cap");
  if (m.offset > m.total_size || m.data.size() > m.total_size - m.offset)
    return d.Fail("file chunk outside the file");
  return true;
}
bool Decode(PayloadDecoder& d, msg::Patch& m) {
  if (!d.Id(m.id) || !d.r_.U64(m.offset) || !d.Data(m.data, kMaxPatch)) return d.Fail("truncated");
  if (m.data.empty()) return d.Fail("empty patch");
  if (m.offset > kMaxFileSize || m.data.size() > kMaxFileSize - m.offset)
    return d.Fail("patch outside the size cap");
  return true;
}
bool Decode(PayloadDecoder& d, msg::Meta& m) {
  return d.Id(m.id) && d.Mode(m.mode) && d.r_.I64(m.mtime_ns);
}
bool Decode(PayloadDecoder& d, msg::Move& m) { return d.Id(m.id) && d.QueueField(m.queue); }
bool Decode(PayloadDecoder& d, msg::Delete& m) { return d.Id(m.id); }
bool Decode(PayloadDecoder& d, msg::LogData& m) {
  if (!d.LogKindField(m.kind) || !d.Id(m.id) || !d.r_.U64(m.offset) || !d.Data(m.data, kMaxChunk))
    return d.Fail("truncated");
  if (m.offset > kMaxLogSize || m.data.size() > kMaxLogSize - m.offset)
    return d.Fail("log over the size cap");
  return true;
}
bool Decode(PayloadDecoder& d, msg::LogDelete& m) { return d.LogKindField(m.kind) && d.Id(m.id); }
bool Decode(PayloadDecoder& d, msg::Ack& m) { return d.r_.U64(m.seq); }
bool Decode(PayloadDecoder& d, msg::Fingerprint& m) {
  // A queue ID, or the gate's token for a message not yet committed (only
  // with keep_s 0): never a path either way.
  if (!d.r_.Str(m.id, kMaxQueueIdLen)) return d.Fail("truncated or oversized queue ID");
  bool token = IsGateToken(m.id);
  if (!token && !IsValidQueueId(m.id)) return d.Fail("invalid queue ID or gate token");
  std::string_view v;
  if (!d.r_.Blob(v, m.digest.size())) return d.Fail("truncated or oversized digest");
  if (v.size() != m.digest.size()) return d.Fail("a fingerprint digest is 32 bytes");
  std::copy(v.begin(), v.end(), reinterpret_cast<char*>(m.digest.data()));
  if (!d.r_.U32(m.keep_s)) return d.Fail("truncated");
  if (m.keep_s > kMaxFingerprintKeep) return d.Fail("fingerprint kept longer than 31 days");
  if (token && m.keep_s != 0) return d.Fail("a gate token's fingerprint is not a table entry");
  return d.Name(m.origin);
}
bool Decode(PayloadDecoder& d, msg::HandoverFile& m) {
  return Decode(d, static_cast<msg::File&>(m));
}
bool Decode(PayloadDecoder& d, msg::HandoverLog& m) {
  return Decode(d, static_cast<msg::LogData&>(m));
}
bool Decode(PayloadDecoder& d, msg::HandoverDone& m) { return d.Id(m.id); }
bool Decode(PayloadDecoder& d, msg::Switchover& m) {
  if (!d.r_.U64(m.epoch)) return d.Fail("truncated");
  return d.Name(m.reason);
}
bool Decode(PayloadDecoder& d, msg::SwitchoverRequest& m) { return d.Name(m.reason); }
bool Decode(PayloadDecoder& d, msg::NodeStatus& m) {
  std::uint8_t role;
  if (!d.r_.U8(role) || !d.r_.U64(m.epoch) || !d.r_.U8(m.flags)) return d.Fail("truncated");
  if (role != 1 && role != 2) return d.Fail("unknown role");
  m.flags &= msg::NodeStatus::kKnownFlags;  // flags a later version adds are ignored
  m.role = static_cast<Role>(role);
  for (auto& n : m.queues)
    if (!d.r_.U32(n)) return d.Fail("truncated");
  if (!d.r_.I64(m.queue_free_mb)) return d.Fail("truncated");
  if (m.queue_free_mb < -1) return d.Fail("negative free space");
  return d.Name(m.decision);
}
bool Decode(PayloadDecoder& d, msg::HandoverResult& m) {
  std::uint8_t o;
  if (!d.Id(m.id) || !d.r_.U8(o)) return d.Fail("truncated");
  if (o < 1 || o > 4) return d.Fail("unknown handover outcome");
  m.outcome = static_cast<msg::HandoverOutcome>(o);
  return d.Name(m.text);
}

template <typename T>
std::string DecodeAs(std::string_view payload, Message& out) {
  PayloadDecoder d(payload);
  T m;
  if (!Decode(d, m) || !d.Done()) return d.why_.empty() ? "malformed payload" : d.why_;
  out = std::move(m);
  return {};
}

std::uint32_t LoadU32(const char* p) {
  auto b = reinterpret_cast<const unsigned char*>(p);
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
         b[3];
}

}  // namespace

MsgType TypeOf(const Message& m) {
  static constexpr MsgType kTypes[] = {
      MsgType::kHello, MsgType::kError,   MsgType::kHeartbeat, MsgType::kManifest,
      MsgType::kSyncDone, MsgType::kFile, MsgType::kPatch,     MsgType::kMeta,
      MsgType::kMove,  MsgType::kDelete,  MsgType::kLogData,   MsgType::kLogDelete,
      MsgType::kAck,   MsgType::kHandoverFile, MsgType::kHandoverLog, MsgType::kHandoverDone,
      MsgType::kHandoverResult, MsgType::kSwitchover, MsgType::kSwitchoverRequest,
      MsgType::kNodeStatus, MsgType::kFingerprint};
  return kTypes[m.index()];
}

bool IsChange(const Message& m) {
  auto t = static_cast<int>(TypeOf(m));
  return t >= 20 && t <= 27;
}

const std::string& ChangeId(const Message& m) {
  static const std::string kNone;
  return std::visit(
      [](const auto& v) -> const std::string& {
        if constexpr (requires { v.id; }) return v.id;
        else return kNone;
      },
      m);
}

void EncodeFrame(std::uint64_t seq, const Message& m, std::string& out) {
  std::size_t start = out.size();
  Writer w(out);
  w.U32(0);  // payload length, patched below
  w.U8(static_cast<std::uint8_t>(TypeOf(m)));
  w.U8(0);
  w.U16(0);
  w.U64(seq);
  std::size_t payload_start = out.size();
  std::visit(PayloadEncoder{w}, m);
  auto len = static_cast<std::uint32_t>(out.size() - payload_start);
  for (int i = 0; i < 4; ++i) out[start + i] = static_cast<char>(len >> (24 - 8 * i));
  w.U32(Crc(std::string_view(out).substr(start + 4)));
}

std::string EncodeFrame(std::uint64_t seq, const Message& m) {
  std::string out;
  EncodeFrame(seq, m, out);
  return out;
}

std::string DecodePayload(MsgType type, std::string_view payload, Message& out) {
  switch (type) {
    case MsgType::kHello: return DecodeAs<msg::Hello>(payload, out);
    case MsgType::kError: return DecodeAs<msg::Error>(payload, out);
    case MsgType::kHeartbeat: return DecodeAs<msg::Heartbeat>(payload, out);
    case MsgType::kManifest: return DecodeAs<msg::Manifest>(payload, out);
    case MsgType::kSyncDone: return DecodeAs<msg::SyncDone>(payload, out);
    case MsgType::kFile: return DecodeAs<msg::File>(payload, out);
    case MsgType::kPatch: return DecodeAs<msg::Patch>(payload, out);
    case MsgType::kMeta: return DecodeAs<msg::Meta>(payload, out);
    case MsgType::kMove: return DecodeAs<msg::Move>(payload, out);
    case MsgType::kDelete: return DecodeAs<msg::Delete>(payload, out);
    case MsgType::kLogData: return DecodeAs<msg::LogData>(payload, out);
    case MsgType::kLogDelete: return DecodeAs<msg::LogDelete>(payload, out);
    case MsgType::kAck: return DecodeAs<msg::Ack>(payload, out);
    case MsgType::kHandoverFile: return DecodeAs<msg::HandoverFile>(payload, out);
    case MsgType::kHandoverLog: return DecodeAs<msg::HandoverLog>(payload, out);
    case MsgType::kHandoverDone: return DecodeAs<msg::HandoverDone>(payload, out);
    case MsgType::kHandoverResult: return DecodeAs<msg::HandoverResult>(payload, out);
    case MsgType::kSwitchover: return DecodeAs<msg::Switchover>(payload, out);
    case MsgType::kSwitchoverRequest: return DecodeAs<msg::SwitchoverRequest>(payload, out);
    case MsgType::kNodeStatus: return DecodeAs<msg::NodeStatus>(payload, out);
    case MsgType::kFingerprint: return DecodeAs<msg::Fingerprint>(payload, out);
  }
  return fmt::format("unknown frame type {}", static_cast<int>(type));
}

void FrameDecoder::Feed(std::string_view bytes) {
  if (!error_.empty()) return;
  // Compact before growing so a long-lived link does not keep consumed bytes.
  if (pos_ > 0 && pos_ >= buf_.size() / 2) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(bytes);
}

FrameDecoder::Status FrameDecoder::Next(Frame& frame) {
  if (!error_.empty()) return Status::kError;
  std::string_view avail(buf_.data() + pos_, buf_.size() - pos_);
  if (avail.size() < kFrameHeaderSize) return Status::kNeedMore;
  std::uint32_t len = LoadU32(avail.data());
  if (len > kMaxPayload) {
    error_ = fmt::format("frame payload of {} bytes is over the cap of {}", len, kMaxPayload);
    return Status::kError;
  }
  auto type = static_cast<std::uint8_t>(avail[4]);
  if (avail[5] != 0 || avail[6] != 0 || avail[7] != 0) {
    error_ = "nonzero flags or reserved bytes in frame header";
    return Status::kError;
  }
  std::size_t total = kFrameHeaderSize + len + kFrameTrailerSize;
  if (avail.size() < total) return Status::kNeedMore;
  std::uint32_t want = LoadU32(avail.data() + kFrameHeaderSize + len);
  std::uint32_t got = Crc(avail.substr(4, kFrameHeaderSize - 4 + len));
  if (want != got) {
    error_ = fmt::format("frame checksum mismatch (type {}, {} bytes)", type, len);
    return Status::kError;
  }
  std::uint64_t seq = (std::uint64_t{LoadU32(avail.data() + 8)} << 32) | LoadU32(avail.data() + 12);
  std::string why =
      DecodePayload(static_cast<MsgType>(type), avail.substr(kFrameHeaderSize, len), frame.msg);
  if (!why.empty()) {
    error_ = fmt::format("bad frame (type {}): {}", type, why);
    return Status::kError;
  }
  frame.seq = seq;
  pos_ += total;
  return Status::kFrame;
}

}  // namespace mailtwin::repl
