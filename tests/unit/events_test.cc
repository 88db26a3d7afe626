#include "ha/events.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"

using namespace mailtwin;
using namespace mailtwin::ha;
using mailtwin::testing::TempDir;

TEST(Events, DurableSequenceAndRedeliveryAfterRestart) {
  TempDir dir;
  {
    EventLog log;
    ASSERT_EQ(log.Open(dir.path()), "");
    Event a = log.Append(Event{0, "promotion", "b", "primary", 2, "a", "primary down", 0});
    Event b = log.Append(Event{0, "standby-lost", "b", "primary", 2, "a", "no standby", 0});
    EXPECT_EQ(a.seq, 1u);
    EXPECT_EQ(b.seq, 2u);
    EXPECT_GT(a.time_unix, 0);
    log.MarkDelivered(1);
  }
  // A crash before #2 was delivered: it is delivered again, #1 is not.
  EventLog log;
  ASSERT_EQ(log.Open(dir.path()), "");
  auto pending = log.Undelivered();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].seq, 2u);
  EXPECT_EQ(pending[0].kind, "standby-lost");
  EXPECT_EQ(log.Append(Event{0, "fencing", "b", "standby", 3, "a", "x", 0}).seq, 3u);
  // A torn last line (crash mid-write) is skipped, not fatal.
  std::ofstream(dir.path() + "/events.jsonl", std::ios::app) << "{\"seq\": 4, \"ki";
  EventLog again;
  EXPECT_EQ(again.Open(dir.path()), "");
  EXPECT_EQ(again.last_seq(), 3u);
}

TEST(Events, MailNamesTheEventAndIsUniquePerSeq) {
  Config cfg;
  cfg.cluster = "lab";
  cfg.notify_mail_to = "admin@example.org";
  Event e{17, "promotion", "backup", "primary", 5, "main", "primary down: 3 probes", 1764300000};
  std::string m = NotificationMail(cfg, e);
  EXPECT_NE(m.find("To: admin@example.org\n"), std::string::npos);
  EXPECT_NE(m.find("Subject: [mailtwin lab] promotion on backup (epoch 5)"), std::string::npos);
  EXPECT_NE(m.find("Message-ID: <17.backup.lab@mailtwin>"), std::string::npos);
  EXPECT_NE(m.find("Reason:  primary down: 3 probes"), std::string::npos);
  EXPECT_NE(m.find("Auto-Submitted: auto-generated"), std::string::npos);
}
