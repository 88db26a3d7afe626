// The pieces a switchover uses to stop Postfix without cutting a delivery.
#include "postfix/processes.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include <gtest/gtest.h>

namespace mailtwin::postfix {
namespace {

TEST(ProcStat, ParsesCommWithSpacesAndParentheses) {
  ProcStat st;
  ASSERT_TRUE(ParseProcStat("4242 (qmgr) S 4200 4200 4200 0 -1 4194624 ...", st));
  EXPECT_EQ(st.comm, "qmgr");
  EXPECT_EQ(st.state, 'S');
  EXPECT_EQ(st.pgrp, 4200);
  ASSERT_TRUE(ParseProcStat("7 (a (b) c) T 1 77 77 0", st));
  EXPECT_EQ(st.comm, "a (b) c");
  EXPECT_EQ(st.state, 'T');
  EXPECT_EQ(st.pgrp, 77);
}

TEST(ProcStat, RefusesMalformed) {
  ProcStat st;
  EXPECT_FALSE(ParseProcStat("", st));
  EXPECT_FALSE(ParseProcStat("12 qmgr S 1 2", st));
  EXPECT_FALSE(ParseProcStat("12 (qmgr)", st));
  EXPECT_FALSE(ParseProcStat("12 (qmgr) S", st));
  EXPECT_FALSE(ParseProcStat("12 (qmgr) S x y", st));
}

TEST(Deliveries, AnAgentHasEndedWhenItsReplyWaitsInTheQueueManagersSocket) {
  // Queue manager sockets 10 (peer 20, agent A) and 11 (peer 21, agent B);
  // 12 is its connection to trivial-rewrite (peer 30), unread bytes too.
  std::unordered_map<std::uint32_t, UnixSocket> table{
      {10, {20, 64}}, {11, {21, 0}}, {12, {30, 17}}, {20, {10, 0}}, {21, {11, 0}}, {30, {12, 0}}};
  std::vector<std::uint32_t> qmgr{10, 11, 12};
  // A replied (64 bytes unread by the stopped qmgr); B still delivers.
  EXPECT_EQ(CountStillDelivering({{20, 99}, {21}}, qmgr, table), 1u);
  // An agent whose only busy socket is some other service's does not count
  // as done.
  EXPECT_EQ(CountStillDelivering({{30}}, {10, 11}, table), 1u);
  EXPECT_EQ(CountStillDelivering({}, qmgr, table), 0u);
  // B's reply arrives.
  table[11].rqueue = 40;
  EXPECT_EQ(CountStillDelivering({{20}, {21}}, qmgr, table), 0u);
}

TEST(Deliveries, SockDiagShowsPeersAndUnreadBytes) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  ASSERT_EQ(write(sv[1], "status", 6), 6);
  std::string err;
  auto table = UnixSockets(err);
  ASSERT_EQ(err, "");
  auto mine = SocketInodes(getpid());
  ASSERT_GE(mine.size(), 2u);
  // Find our pair: two of our sockets that are each other's peer.
  std::uint32_t reader = 0, writer = 0;
  for (auto a : mine)
    for (auto b : mine)
      if (a != b && table.count(a) && table[a].peer == b && table[b].peer == a) {
        if (table[a].rqueue == 6) reader = a, writer = b;
      }
  ASSERT_NE(reader, 0u) << "the socket with 6 unread bytes was not found";
  EXPECT_EQ(table[writer].rqueue, 0u);
  // The agent (writer) has replied to the queue manager (reader).
  EXPECT_EQ(CountStillDelivering({{writer}}, {reader}, table), 0u);
  char buf[8];
  ASSERT_EQ(read(sv[0], buf, sizeof buf), 6);
  table = UnixSockets(err);
  EXPECT_EQ(CountStillDelivering({{writer}}, {reader}, table), 1u);
  close(sv[0]);
  close(sv[1]);
}

}  // namespace
}  // namespace mailtwin::postfix
