#include "repl/queue_file.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace mailtwin::repl {
namespace {

using mailtwin::testing::MakeQueueFile;

TEST(QueueFile, LayoutFindsTheImmutableBody) {
  auto q = MakeQueueFile(3, 10000);
  Layout l = ParseLayout(q.bytes.substr(0, 512), q.bytes.size());
  EXPECT_EQ(l.size, q.bytes.size());
  EXPECT_EQ(l.body_begin, q.body_begin);
  EXPECT_EQ(l.body_end, q.body_end);
}

TEST(QueueFile, FilesWithoutSizeRecordAreAllMutable) {
  std::string maildrop = "T\x11" "1795820330 190655" "A\x05hello";
  Layout l = ParseLayout(maildrop, maildrop.size());
  EXPECT_EQ(l.body_begin, maildrop.size());
  EXPECT_EQ(l.body_end, maildrop.size());
}

// One Postfix record: type, length (7 bits a byte, low first), data.
std::string Rec(char type, std::string_view data) {
  std::string r(1, type);
  std::size_t n = data.size();
  do {
    unsigned char b = n & 0x7f;
    n >>= 7;
    r.push_back(static_cast<char>(n ? b | 0x80 : b));
  } while (n);
  return r.append(data);
}

// As Postfix 3.7's smtpd and cleanup write it (postcat -v of a file the
// lab's after-filter queued with XFORWARD IDENT).
TEST(QueueFile, LogIdentIsFoundAmongTheEnvelopeRecords) {
  std::string head = Rec('C', "             180             635               1               0") +
                     Rec('T', "1796307860 123456") + Rec('F', "") +
                     Rec('A', "create_time=1796307860") +
                     Rec('A', "log_ident=mt-0123456789abcdef01234567") +
                     Rec('A', "rewrite_context=remote") + Rec('S', "a@x.example") +
                     Rec('A', "log_client_name=" + std::string(300, 'x')) + Rec('R', "b@y.example") +
                     Rec('M', "") + Rec('N', "Received: from x");
  EXPECT_EQ(LogIdentOf(head), "mt-0123456789abcdef01234567");
  // After a long (two-byte length) record too.
  std::string late = Rec('S', "a@x.example") + Rec('A', "log_client_name=" + std::string(300, 'x')) +
                     Rec('A', "log_ident=abc");
  EXPECT_EQ(LogIdentOf(late), "abc");
  // Not found: none before the content, a truncated or lying record, an
  // attribute that only looks like it, too many records before it.
  EXPECT_EQ(LogIdentOf(Rec('S', "a@x") + Rec('M', "") + Rec('A', "log_ident=abc")), "");
  EXPECT_EQ(LogIdentOf(head.substr(0, head.find("log_ident") + 12)), "");
  EXPECT_EQ(LogIdentOf(std::string("A\xff\xff\xff\xff\x0flog_ident=x")), "");
  EXPECT_EQ(LogIdentOf(Rec('A', "xlog_ident=abc") + Rec('N', "log_ident=abc")), "");
  std::string many;
  for (std::size_t i = 0; i < kMaxIdentRecords; ++i) many += Rec('A', "x=y");
  EXPECT_EQ(LogIdentOf(many + Rec('A', "log_ident=abc")), "");
  EXPECT_EQ(LogIdentOf(""), "");
}

TEST(QueueFile, LiesInTheSizeRecordAreIgnored) {
  auto q = MakeQueueFile(1, 100);
  // A data offset past the end of the file must not be believed.
  Layout l = ParseLayout(q.bytes, 50);
  EXPECT_EQ(l.body_begin, 50u);
  EXPECT_EQ(l.body_end, 50u);
}

TEST(QueueFile, ChangedRangesFindsOneRecipientByte) {
  auto q = MakeQueueFile(5, 50000);
  Layout l = ParseLayout(q.bytes, q.bytes.size());
  MutableBytes before{q.bytes.substr(0, l.body_begin), q.bytes.substr(l.body_end)};
  MutableBytes after = before;
  after.front[q.rcpt_offsets[3]] = 'D';
  auto ranges = ChangedRanges(l, ChunkHashes(l, before), ChunkHashes(l, after));
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_LE(ranges[0].offset, q.rcpt_offsets[3]);
  EXPECT_GT(ranges[0].offset + ranges[0].length, q.rcpt_offsets[3]);
  EXPECT_LE(ranges[0].length, kChunk);
  EXPECT_NE(DigestOf(l, before), DigestOf(l, after));
}

TEST(QueueFile, ChangesInTheExtractedSegmentAreFound) {
  auto q = MakeQueueFile(1, 5000);
  Layout l = ParseLayout(q.bytes, q.bytes.size());
  MutableBytes before{q.bytes.substr(0, l.body_begin), q.bytes.substr(l.body_end)};
  MutableBytes after = before;
  after.back[0] = 'Y';
  auto ranges = ChangedRanges(l, ChunkHashes(l, before), ChunkHashes(l, after));
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0].offset, l.body_end);
}

}  // namespace
}  // namespace mailtwin::repl
