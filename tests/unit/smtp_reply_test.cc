#include "ha/smtp_reply.h"

#include <gtest/gtest.h>

using mailtwin::ha::ReplyParser;

TEST(SmtpReply, MultiLineRepliesSplitAnywhere) {
  std::string bytes = "220 mx ESMTP ready\r\n250-mx.lab\r\n250-PIPELINING\r\n250 8BITMIME\r\n";
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    ReplyParser p;
    ASSERT_TRUE(p.Feed(bytes.substr(0, cut)));
    ASSERT_TRUE(p.Feed(bytes.substr(cut)));
    auto a = p.Next();
    auto b = p.Next();
    ASSERT_TRUE(a && b) << "cut " << cut;
    EXPECT_EQ(a->code, 220);
    EXPECT_EQ(a->text, "mx ESMTP ready");
    EXPECT_EQ(b->code, 250);
    EXPECT_EQ(b->text, "8BITMIME");
    EXPECT_FALSE(p.Next());
  }
}

TEST(SmtpReply, BareCodeAndLfOnly) {
  ReplyParser p;
  ASSERT_TRUE(p.Feed("221\n"));
  auto r = p.Next();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, 221);
  EXPECT_EQ(r->text, "");
}

TEST(SmtpReply, MalformedInputIsAnErrorAndFinal) {
  for (std::string bad : {"HTTP/1.1 400 Bad Request\r\n", "250-a\r\n251 b\r\n", "2500 x\r\n",
                          "99 x\r\n", "650 x\r\n", "250x\r\n"}) {
    ReplyParser p;
    EXPECT_FALSE(p.Feed(bad)) << bad;
    EXPECT_FALSE(p.error().empty());
    EXPECT_FALSE(p.Feed("250 ok\r\n")) << "an error must be final";
  }
}

TEST(SmtpReply, LinesAndRepliesAreCapped) {
  ReplyParser p;
  EXPECT_FALSE(p.Feed(std::string(ReplyParser::kMaxLine + 10, '2')));  // no newline, too long
  ReplyParser q;
  std::string many;
  for (std::size_t i = 0; i <= ReplyParser::kMaxLines; ++i) many += "250-x\r\n";
  EXPECT_FALSE(q.Feed(many));
  EXPECT_NE(q.error().find("lines"), std::string::npos);
}
