// The gate's view of an SMTP session: which reply answers which command.
#include "gate/smtp_stream.h"

#include <gtest/gtest.h>

namespace mailtwin::gate {
namespace {

std::vector<Reply> Server(SmtpStream& s, std::string_view bytes) {
  std::vector<Reply> out;
  EXPECT_TRUE(s.FromServer(bytes, out)) << s.error();
  return out;
}

TEST(SmtpStream, PlainTransactionHoldsOnlyTheEndOfDataReply) {
  SmtpStream s;
  auto r = Server(s, "220 after.lab ESMTP\r\n");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].answers, Answers::kGreeting);
  ASSERT_TRUE(s.FromClient("EHLO front\r\n"));
  r = Server(s, "250-after.lab\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n");
  ASSERT_EQ(r.size(), 1u);  // one multi-line reply
  EXPECT_EQ(r[0].code, 250);
  EXPECT_EQ(r[0].text, "250-after.lab\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n");
  ASSERT_TRUE(s.FromClient("MAIL FROM:<a@b>\r\n"));
  ASSERT_EQ(Server(s, "250 2.1.0 Ok\r\n").size(), 1u);
  ASSERT_TRUE(s.FromClient("RCPT TO:<c@d>\r\n"));
  ASSERT_EQ(Server(s, "250 2.1.5 Ok\r\n").size(), 1u);
  ASSERT_TRUE(s.FromClient("DATA\r\n"));
  EXPECT_FALSE(s.in_data());  // not before the 354
  r = Server(s, "354 End data with <CR><LF>.<CR><LF>\r\n");
  EXPECT_EQ(r[0].answers, Answers::kData);
  EXPECT_TRUE(s.in_data());
  // Commands inside the message are data, dot-stuffed lines too.
  ASSERT_TRUE(s.FromClient("Subject: x\r\n\r\nQUIT\r\n..\r\n.x\r\n"));
  EXPECT_TRUE(s.in_data());
  EXPECT_EQ(s.outstanding(), 0u);
  ASSERT_TRUE(s.FromClient(".\r\n"));
  EXPECT_FALSE(s.in_data());
  r = Server(s, "250 2.0.0 Ok: queued as 4jbpr156tpz1bYhF\r\n");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_TRUE(r[0].EndsMessage());
  EXPECT_EQ(r[0].queue_id, "4jbpr156tpz1bYhF");
  ASSERT_TRUE(s.FromClient("QUIT\r\n"));
  r = Server(s, "221 2.0.0 Bye\r\n");
  EXPECT_EQ(r[0].answers, Answers::kQuit);
  EXPECT_FALSE(r[0].EndsMessage());
}

TEST(SmtpStream, EndOfDataSplitAcrossEveryByteBoundary) {
  const std::string msg = "Subject: x\r\n\r\nbody\r\n.\r\n";
  for (std::size_t cut = 0; cut <= msg.size(); ++cut) {
    SmtpStream s;
    Server(s, "220 x\r\n");
    ASSERT_TRUE(s.FromClient("DATA\r\n"));
    Server(s, "354 go\r\n");
    ASSERT_TRUE(s.FromClient(msg.substr(0, cut)));
    EXPECT_EQ(s.in_data(), cut < msg.size()) << cut;
    ASSERT_TRUE(s.FromClient(msg.substr(cut)));
    EXPECT_FALSE(s.in_data()) << cut;
    auto r = Server(s, "250 2.0.0 Ok: queued as 4jbpr156tpz1bYhF\r\n");
    EXPECT_TRUE(r[0].EndsMessage()) << cut;
  }
}

TEST(SmtpStream, EmptyMessageAndBareLineFeeds) {
  SmtpStream s;
  Server(s, "220 x\r\n");
  ASSERT_TRUE(s.FromClient("DATA\r\n"));
  Server(s, "354 go\r\n");
  ASSERT_TRUE(s.FromClient(".\r\n"));  // the "." right after 354 ends it
  EXPECT_FALSE(s.in_data());
  EXPECT_TRUE(Server(s, "250 2.0.0 Ok: queued as 4jbpr156tpz1bYhF\r\n")[0].EndsMessage());
  // Postfix's smtpd also ends lines at a bare LF: so must we, or we would
  // take its 250 for the reply to something else.
  ASSERT_TRUE(s.FromClient("DATA\n"));
  Server(s, "354 go\r\n");
  ASSERT_TRUE(s.FromClient("a\n.\n"));
  EXPECT_FALSE(s.in_data());
  EXPECT_TRUE(Server(s, "250 2.0.0 Ok: queued as 4jbpr156tpz1bYhG\r\n")[0].EndsMessage());
  // ".x" and ".." lines, and "\r.\r\n" (CR not followed by LF), are not the end.
  ASSERT_TRUE(s.FromClient("DATA\r\n"));
  Server(s, "354 go\r\n");
  ASSERT_TRUE(s.FromClient("a\r.\r\n..\r\n. \r\n"));
  EXPECT_TRUE(s.in_data());
  ASSERT_TRUE(s.FromClient(".\r\n"));
  EXPECT_FALSE(s.in_data());
}

TEST(SmtpStream, PipelinedCommandsAreMatchedInOrder) {
  SmtpStream s;
  Server(s, "220 x\r\n");
  ASSERT_TRUE(s.FromClient("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n"));
  EXPECT_EQ(s.outstanding(), 4u);
  auto r = Server(s, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 no\r\n354 go\r\n");
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[2].code, 550);
  EXPECT_EQ(r[3].answers, Answers::kData);
  EXPECT_TRUE(s.in_data());
  // The end of the message and the QUIT after it in one read.
  ASSERT_TRUE(s.FromClient("hi\r\n.\r\nQUIT\r\n"));
  r = Server(s, "250 2.0.0 Ok: queued as 4jbpr156tpz1bYhF\r\n221 2.0.0 Bye\r\n");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_TRUE(r[0].EndsMessage());
  EXPECT_EQ(r[1].answers, Answers::kQuit);
}

TEST(SmtpStream, RefusedDataDoesNotEnterTheDataPhase) {
  SmtpStream s;
  Server(s, "220 x\r\n");
  ASSERT_TRUE(s.FromClient("DATA\r\n"));
  Server(s, "554 5.5.1 Error: no valid recipients\r\n");
  EXPECT_FALSE(s.in_data());
  ASSERT_TRUE(s.FromClient("RSET\r\n"));
  EXPECT_EQ(Server(s, "250 2.0.0 Ok\r\n")[0].answers, Answers::kCommand);
}

TEST(SmtpStream, BdatChunksAreRawBytesAndLastEndsTheMessage) {
  SmtpStream s;
  Server(s, "220 x\r\n");
  // Chunk bytes look like commands and like an end of data: they are neither.
  std::string chunk1 = "QUIT\r\n.\r\nDATA\r\n";
  std::string chunk2 = "BDAT 5\r\n";
  ASSERT_TRUE(s.FromClient("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT " +
                           std::to_string(chunk1.size()) + "\r\n" + chunk1.substr(0, 3)));
  ASSERT_TRUE(s.FromClient(chunk1.substr(3) + "BDAT " + std::to_string(chunk2.size()) +
                           " LAST\r\n" + chunk2));
  EXPECT_EQ(s.outstanding(), 4u);
  auto r = Server(s,
                  "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: 15 bytes\r\n"
                  "250 2.0.0 Ok: 23 bytes queued as 4jbpr156tpz1bYhF\r\n");
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[2].answers, Answers::kBdat);
  EXPECT_FALSE(r[2].EndsMessage());
  EXPECT_TRUE(r[3].EndsMessage());
  EXPECT_EQ(r[3].queue_id, "4jbpr156tpz1bYhF");
  // BDAT 0 LAST: no bytes follow.
  ASSERT_TRUE(s.FromClient("BDAT 0 LAST\r\nQUIT\r\n"));
  EXPECT_EQ(s.outstanding(), 2u);
}

TEST(SmtpStream, MalformedInputIsAnErrorWithAReason) {
  {
    SmtpStream s;
    std::vector<Reply> out;
    EXPECT_FALSE(s.FromServer("hello\r\n", out));
    EXPECT_NE(s.error().find("malformed server reply"), std::string::npos);
    EXPECT_FALSE(s.FromServer("220 x\r\n", out));  // stays failed
  }
  {
    SmtpStream s;
    std::vector<Reply> out;
    EXPECT_FALSE(s.FromServer("250-a\r\n251 b\r\n", out));
    EXPECT_NE(s.error().find("multi-line"), std::string::npos);
  }
  {
    SmtpStream s;
    Server(s, "220 x\r\n");
    std::vector<Reply> out;
    EXPECT_FALSE(s.FromServer("250 who asked\r\n", out));
    EXPECT_NE(s.error().find("no command"), std::string::npos);
  }
  for (const char* bad : {"BDAT\r\n", "BDAT x\r\n", "BDAT 5 FIRST\r\n", "BDAT -1\r\n",
                          "BDAT 99999999999999999999\r\n"}) {
    SmtpStream s;
    EXPECT_FALSE(s.FromClient(bad)) << bad;
    EXPECT_NE(s.error().find("BDAT"), std::string::npos) << bad;
  }
  {
    SmtpStream s;
    EXPECT_FALSE(s.FromClient(std::string(SmtpStream::kMaxLine + 1, 'a')));
    EXPECT_NE(s.error().find("longer than"), std::string::npos);
  }
  {
    SmtpStream s;
    std::vector<Reply> out;
    std::string big = "220 x\r\n";
    ASSERT_TRUE(s.FromServer(big, out));
    ASSERT_TRUE(s.FromClient("EHLO x\r\n"));
    std::string line = "250-" + std::string(1000, 'k') + "\r\n";
    std::string huge;
    while (huge.size() <= SmtpStream::kMaxReply) huge += line;
    EXPECT_FALSE(s.FromServer(huge, out));
  }
}

TEST(SmtpStream, UnsolicitedShutdownAndStartTls) {
  SmtpStream s;
  Server(s, "220 x\r\n");
  auto r = Server(s, "421 4.4.2 timeout\r\n");
  EXPECT_EQ(r[0].answers, Answers::kUnsolicited);
  SmtpStream t;
  Server(t, "220 x\r\n");
  ASSERT_TRUE(t.FromClient("STARTTLS\r\n"));
  Server(t, "220 2.0.0 Ready to start TLS\r\n");
  EXPECT_TRUE(t.opaque());
  std::vector<Reply> out;
  EXPECT_TRUE(t.FromServer("\x16\x03\x01 binary", out));
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(t.FromClient("\x16\x03\x01 more binary\n\n"));
}

TEST(SmtpStream, QueuedAsAcceptsOnlyQueueIds) {
  EXPECT_EQ(QueuedAs("250 2.0.0 Ok: queued as 4jbpr156tpz1bYhF\r\n"), "4jbpr156tpz1bYhF");
  EXPECT_EQ(QueuedAs("250 2.0.0 Ok: 1234 bytes queued as 4jbpr156tpz1bYhF"), "4jbpr156tpz1bYhF");
  EXPECT_EQ(QueuedAs("250 2.0.0 Ok: queued as 3F2A81C0B2\r\n"), "3F2A81C0B2");
  EXPECT_EQ(QueuedAs("250 2.0.0 Ok\r\n"), "");
  EXPECT_EQ(QueuedAs("250 2.0.0 Ok: queued as ../../etc\r\n"), "");
  EXPECT_EQ(QueuedAs("250 queued as " + std::string(40, 'A')), "");
}

}  // namespace
}  // namespace mailtwin::gate
