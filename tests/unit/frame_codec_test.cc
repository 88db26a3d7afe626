// Frame codec: round trips, and corrupt input case by case (after leveldb's log_test).
#include "repl/frame_codec.h"

#include <gtest/gtest.h>

namespace mailtwin::repl {
namespace {

std::vector<Message> Samples() {
  return {
      msg::Hello{kProtocolVersion, Role::kPrimary, "lab", "main", 7, 0x1234567890abcdefull},
      msg::Error{msg::ErrorCode::kWrongCluster, "wrong cluster"},
      msg::Heartbeat{1795820330123456789},
      msg::Manifest{true,
                    {{0, Queue::kDeferred, "4jbpjT2xJmz1bYwQ", 1040, 0700, 1795820330000000000, 42},
                     {1, Queue::kIncoming, "4jbpjT2xJmz1bYwQ", 250, 0, 0, 7}}},
      msg::SyncDone{12},
      msg::File{"4jbphZ0BYjz1bYpH", Queue::kIncoming, 0700, 1795820330, 10, 0, "0123456789"},
      msg::Patch{"4jbphZ0BYjz1bYpH", 624, "D"},
      msg::Meta{"4jbphZ0BYjz1bYpH", 0700, 1795820630000000000},
      msg::Move{"4jbphZ0BYjz1bYpH", Queue::kActive},
      msg::Delete{"4jbphZ0BYjz1bYpH"},
      msg::LogData{LogKind::kBounce, "4jbphZ0BYjz1bYpH", 0, "recipient=x\noffset=649\n"},
      msg::LogDelete{LogKind::kTrace, "4jbphZ0BYjz1bYpH"},
      msg::Ack{99},
      msg::HandoverFile{{"4jbphZ0BYjz1bYpH", Queue::kDeferred, 0700, 1795820330, 4, 0, "abcd"}},
      msg::HandoverLog{{LogKind::kDefer, "4jbphZ0BYjz1bYpH", 0, "recipient=y\n"}},
      msg::HandoverDone{"4jbphZ0BYjz1bYpH"},
      msg::HandoverResult{"4jbphZ0BYjz1bYpH", msg::HandoverOutcome::kFinished, "in the ledger"},
      msg::Switchover{8, "failback to the preferred node"},
      msg::SwitchoverRequest{"mailtwin failback"},
      msg::NodeStatus{Role::kPrimary, 3, msg::NodeStatus::kPostfixRunning | msg::NodeStatus::kVipHeld,
                      {0, 1, 2, 30, 4, 0}, 12034, "serving at epoch 3"},
      msg::Fingerprint{"4jbphZ0BYjz1bYpH", {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                           17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
                                           30, 31, 32}, 0, ""},
      msg::Fingerprint{"4jbphZ0BYjz1bYpH", {9}, 432000, "main"},
      msg::Fingerprint{"mt-0123456789abcdef01234567", {7}, 0, ""},
  };
}

TEST(FrameCodec, NodeStatusIsChecked) {
  // Unknown role, negative free space, control characters: refused, with
  // a reason. Unknown flags (a later version's) are dropped.
  {
    FrameDecoder d;
    d.Feed(EncodeFrame(0, msg::NodeStatus{Role::kStandby, 1, 128 | 2, {}, 5, ""}));
    Frame f;
    ASSERT_EQ(d.Next(f), FrameDecoder::Status::kFrame);
    EXPECT_EQ(std::get<msg::NodeStatus>(f.msg).flags, 2);
  }
  for (Message m : {Message(msg::NodeStatus{Role(7), 1, 0, {}, 5, ""}),
                    Message(msg::NodeStatus{Role::kStandby, 1, 0, {}, -5, ""}),
                    Message(msg::NodeStatus{Role::kStandby, 1, 0, {}, 5, "bad\x01text"})}) {
    FrameDecoder d;
    d.Feed(EncodeFrame(0, m));
    Frame f;
    EXPECT_EQ(d.Next(f), FrameDecoder::Status::kError);
    EXPECT_FALSE(d.error().empty());
  }
}

TEST(FrameCodec, HandoverChecksLikeChanges) {
  // A handover file chunk outside its file, a bad ID, an unknown outcome.
  for (Message m : {Message(msg::HandoverFile{{"4jbphZ0BYjz1bYpH", Queue::kIncoming, 0700, 0, 2, 1, "xyz"}}),
                    Message(msg::HandoverDone{"../../etc"}),
                    Message(msg::HandoverResult{"4jbphZ0BYjz1bYpH", msg::HandoverOutcome(9), ""})}) {
    FrameDecoder d;
    d.Feed(EncodeFrame(0, m));
    Frame f;
    EXPECT_EQ(d.Next(f), FrameDecoder::Status::kError);
    EXPECT_FALSE(d.error().empty());
  }
}

TEST(FrameCodec, RoundTripsEveryMessage) {
  std::string wire;
  auto samples = Samples();
  for (std::size_t i = 0; i < samples.size(); ++i) EncodeFrame(i + 1, samples[i], wire);
  FrameDecoder d;
  d.Feed(wire);
  Frame f;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    ASSERT_EQ(d.Next(f), FrameDecoder::Status::kFrame) << d.error();
    EXPECT_EQ(f.seq, i + 1);
    EXPECT_EQ(f.msg, samples[i]) << "message " << i;
  }
  EXPECT_EQ(d.Next(f), FrameDecoder::Status::kNeedMore);
}

TEST(FrameCodec, ByteByByteFeedingYieldsTheSameFrames) {
  std::string wire;
  for (const auto& m : Samples()) EncodeFrame(5, m, wire);
  FrameDecoder d;
  Frame f;
  std::size_t got = 0;
  for (char c : wire) {
    d.Feed(std::string_view(&c, 1));
    while (d.Next(f) == FrameDecoder::Status::kFrame) ++got;
  }
  EXPECT_EQ(got, Samples().size());
}

TEST(FrameCodec, EveryFlippedByteIsRejectedOrNeedsMore) {
  // Any single corrupted byte must never yield a frame equal to... anything
  // but an error, or (for a grown length field) a wait for more bytes.
  for (const auto& m : Samples()) {
    std::string wire = EncodeFrame(3, m);
    for (std::size_t i = 0; i < wire.size(); ++i) {
      std::string bad = wire;
      bad[i] = static_cast<char>(bad[i] ^ 0x5a);
      FrameDecoder d;
      d.Feed(bad);
      Frame f;
      auto st = d.Next(f);
      EXPECT_NE(st, FrameDecoder::Status::kFrame) << "byte " << i << " of type "
                                                  << static_cast<int>(TypeOf(m));
    }
  }
}

TEST(FrameCodec, TruncatedFrameWaits) {
  std::string wire = EncodeFrame(1, msg::Ack{1});
  FrameDecoder d;
  d.Feed(wire.substr(0, wire.size() - 1));
  Frame f;
  EXPECT_EQ(d.Next(f), FrameDecoder::Status::kNeedMore);
}

TEST(FrameCodec, OversizedLengthIsRefusedBeforeBuffering) {
  std::string wire = EncodeFrame(1, msg::Ack{1});
  wire[0] = '\x7f';  // ~2 GB payload claimed
  FrameDecoder d;
  d.Feed(wire.substr(0, kFrameHeaderSize));
  Frame f;
  EXPECT_EQ(d.Next(f), FrameDecoder::Status::kError);
  EXPECT_NE(d.error().find("over the cap"), std::string::npos) << d.error();
}

// Re-encodes a payload with a valid checksum, so only payload validation can catch it.
std::string WithPayload(MsgType t, const std::string& payload) {
  Message m;
  std::string err = DecodePayload(t, payload, m);
  return err;
}

TEST(FrameCodec, PathsCannotEscapeTheQueueLayout) {
  std::string payload;
  auto put_str = [&](const std::string& s) {
    payload.push_back(static_cast<char>(s.size() >> 8));
    payload.push_back(static_cast<char>(s.size()));
    payload += s;
  };
  for (std::string id : std::vector<std::string>{"../../etc/passwd", "abc/def", "", "4jbp.6769", std::string("4jbp\0zz", 7),
                         std::string(40, 'a')}) {
    payload.clear();
    put_str(id);
    EXPECT_NE(WithPayload(MsgType::kDelete, payload), "") << "accepted id " << id;
  }
  payload.clear();
  put_str("4jbphZ0BYjz1bYpH");
  EXPECT_EQ(WithPayload(MsgType::kDelete, payload), "");
  payload.push_back(9);  // unknown queue
  EXPECT_NE(WithPayload(MsgType::kMove, payload), "");
}

TEST(FrameCodec, FileChunkMustLieInsideTheFile) {
  Message ok = msg::File{"4jbphZ0BYjz1bYpH", Queue::kIncoming, 0700, 0, 10, 8, "ab"};
  Message bad = msg::File{"4jbphZ0BYjz1bYpH", Queue::kIncoming, 0700, 0, 10, 9, "ab"};
  Message badmode = msg::File{"4jbphZ0BYjz1bYpH", Queue::kIncoming, 010700, 0, 2, 0, "ab"};
  FrameDecoder d1, d2, d3;
  Frame f;
  d1.Feed(EncodeFrame(1, ok));
  EXPECT_EQ(d1.Next(f), FrameDecoder::Status::kFrame);
  d2.Feed(EncodeFrame(1, bad));
  EXPECT_EQ(d2.Next(f), FrameDecoder::Status::kError);
  d3.Feed(EncodeFrame(1, badmode));
  EXPECT_EQ(d3.Next(f), FrameDecoder::Status::kError);
}

TEST(FrameCodec, ManifestCountMustFitThePayload) {
  std::string payload = {1, 0, 0, 0x40, 0};  // last=1, 16384 entries, no bytes
  Message m;
  EXPECT_NE(DecodePayload(MsgType::kManifest, payload, m), "");
}

TEST(FrameCodec, NonzeroReservedBytesAreRejected) {
  std::string wire = EncodeFrame(1, msg::Ack{1});
  wire[6] = 1;
  FrameDecoder d;
  d.Feed(wire);
  Frame f;
  EXPECT_EQ(d.Next(f), FrameDecoder::Status::kError);
}

TEST(FrameCodec, ErrorIsSticky) {
  std::string wire = EncodeFrame(1, msg::Ack{1});
  std::string bad = wire;
  bad[kFrameHeaderSize] ^= 1;
  FrameDecoder d;
  d.Feed(bad + wire);
  Frame f;
  EXPECT_EQ(d.Next(f), FrameDecoder::Status::kError);
  EXPECT_EQ(d.Next(f), FrameDecoder::Status::kError);
}

}  // namespace
}  // namespace mailtwin::repl
