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
