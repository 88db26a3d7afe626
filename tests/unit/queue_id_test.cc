#include "common/queue_id.h"

#include <gtest/gtest.h>

namespace mailtwin {
namespace {

TEST(QueueId, AcceptsPostfixIds) {
  EXPECT_TRUE(IsValidQueueId("4jbphZ0BYjz1bYpH"));
  EXPECT_TRUE(IsLongQueueId("4jbphZ0BYjz1bYpH"));
  EXPECT_TRUE(IsValidQueueId("00D01A72169"));
  EXPECT_FALSE(IsLongQueueId("00D01A72169"));
}

TEST(QueueId, RejectsTempNamesAndPaths) {
  for (const char* bad : {"28423.6769", "../x", "a/b", "", "abc", ".hidden", "4jbp-Z0BYjz"})
    EXPECT_FALSE(IsValidQueueId(bad)) << bad;
  EXPECT_FALSE(IsValidQueueId(std::string(33, 'a')));
}

TEST(QueueId, HashSubdirIsPostfixs) {
  // Observed on Postfix 3.7.11 (design/postfix-queue-facts.md): deferred/6, defer/D.
  EXPECT_EQ(HashSubdir("4jbpjT2xJmz1bYwQ", 1), "6");
  EXPECT_EQ(HashSubdir("4jbrwT63sJz1bYJB", 1), "D");
  EXPECT_EQ(HashSubdir("4jbrwT63sJz1bYJB", 2), "D/0");
  EXPECT_EQ(HashSubdir("00D01A72169", 1), "");  // short ID
  EXPECT_EQ(HashSubdir("4jbpjT2xJmz1bYwQ", 0), "");
}

TEST(QueueId, QueueNamesRoundTrip) {
  for (Queue q : kAllQueues) EXPECT_EQ(QueueFromName(QueueName(q)), q);
  for (LogKind k : kAllLogKinds) EXPECT_EQ(LogKindFromName(LogKindName(k)), k);
  EXPECT_FALSE(QueueFromByte(0));
  EXPECT_FALSE(QueueFromByte(7));
  EXPECT_FALSE(QueueFromName("flush"));
}

}  // namespace
}  // namespace mailtwin
