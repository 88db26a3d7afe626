// The gate's fingerprints and the new primary's dedup table (docs/gate.md,
// "Duplicates after a failover").
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "common/config.h"
#include "common/queue_id.h"
#include "gate/dedup_table.h"
#include "gate/fingerprint.h"
#include "gate/smtp_stream.h"
#include "repl/frame_codec.h"
#include "repl/session_state.h"
#include "repl/wire.h"
#include "test_util.h"

namespace mailtwin::gate {
namespace {

constexpr std::string_view kBody =
    "From: <a@sender.test>\r\nTo: <b@dest.test>\r\nMessage-Id: <1.2@sender.test>\r\n"
    "Subject: hello\r\n\r\nline one\r\n..dot-stuffed\r\n.\r\n";

// What Postfix's public smtpd prepends: different on each node, each time.
std::string Received(std::string_view by, std::string_view when) {
  return fmt::format("Received: from sender.test (sender.test [10.0.0.30])\r\n\tby {} (Postfix) "
                     "with ESMTP\r\n\tfor <b@dest.test>; {}\r\n",
                     by, when);
}

Digest Print(std::string_view from, std::vector<std::string> rcpts, std::string_view data,
             std::size_t step = 0) {
  Fingerprinter fp;
  fp.Command(fmt::format("MAIL FROM:<{}> SIZE=1000 BODY=8BITMIME", from));
  for (const auto& r : rcpts) fp.Command(fmt::format("RCPT TO:<{}> ORCPT=rfc822;{}", r, r));
  fp.Command("DATA");
  if (step == 0) {
    fp.Data(data);
  } else {
    for (std::size_t i = 0; i < data.size(); i += step) fp.Data(data.substr(i, step));
  }
  return fp.Finish();
}

TEST(Fingerprint, TheResendThroughAnotherNodeMatches) {
  std::string lost = Received("main.lab.test", "Thu, 3 Dec 2026 11:00:00") + std::string(kBody);
  std::string resend = Received("backup.lab.test", "Thu, 3 Dec 2026 11:00:02") + std::string(kBody);
  EXPECT_EQ(Print("a@sender.test", {"b@dest.test", "c@dest.test"}, lost),
            Print("a@sender.test", {"c@dest.test", "b@dest.test"}, resend));
  // However the bytes are cut into reads.
  for (std::size_t step : {1, 2, 3, 7, 64})
    EXPECT_EQ(Print("a@sender.test", {"b@dest.test"}, lost),
              Print("a@sender.test", {"b@dest.test"}, resend, step))
        << step;
}

TEST(Fingerprint, AnyOtherDifferenceDoesNot) {
  std::string data = Received("main", "now") + std::string(kBody);
  Digest base = Print("a@sender.test", {"b@dest.test"}, data);
  EXPECT_NE(base, Print("x@sender.test", {"b@dest.test"}, data));
  EXPECT_NE(base, Print("a@sender.test", {"b@dest.test", "c@dest.test"}, data));
  EXPECT_NE(base, Print("a@sender.test", {"c@dest.test"}, data));
  EXPECT_NE(base, Print("", {"b@dest.test"}, data));
  std::string other = data;
  other[other.find("line one")] = 'L';
  EXPECT_NE(base, Print("a@sender.test", {"b@dest.test"}, other));
  // Only the first header, and only a Received: one, is the node's own.
  std::string second = std::string(kBody).insert(0, Received("x", "y"));
  EXPECT_NE(Print("a@sender.test", {"b@dest.test"}, std::string(kBody)),
            Print("a@sender.test", {"b@dest.test"}, Received("main", "t") + second));
  EXPECT_NE(Print("a@sender.test", {"b@dest.test"}, "X-A: 1\r\n" + std::string(kBody)),
            Print("a@sender.test", {"b@dest.test"}, "X-A: 2\r\n" + std::string(kBody)));
  // Sender and recipients cannot be shifted into each other.
  EXPECT_NE(Print("a", {"b", "c"}, data), Print("a", {"bc"}, data));
}

TEST(Fingerprint, FollowsTheSessionThroughSmtpStream) {
  SmtpStream s;
  Fingerprinter fp;
  s.SetObserver(&fp);
  std::vector<Reply> out;
  ASSERT_TRUE(s.FromServer("220 after-filter ESMTP\r\n", out));
  ASSERT_TRUE(s.FromClient("EHLO main\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n"));
  ASSERT_TRUE(s.FromServer("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n", out));
  std::string data = Received("main", "t") + std::string(kBody);
  std::string wire = data + "QUIT\r\n";
  std::size_t eod = std::string::npos;
  ASSERT_TRUE(s.FromClient(wire, &eod));
  EXPECT_EQ(eod, data.size());  // stops right after the final "."
  EXPECT_EQ(fp.Finish(), Print("a@sender.test", {"b@dest.test"}, data));
  std::size_t eod2 = std::string::npos;
  ASSERT_TRUE(s.FromClient(std::string_view(wire).substr(eod), &eod2));
  EXPECT_EQ(eod2, std::string::npos);
  EXPECT_EQ(s.outstanding(), 2u);  // the end of data and QUIT wait for replies
}

TEST(Fingerprint, HexRoundTrips) {
  Digest d = Print("a", {"b"}, "x\r\n.\r\n"), back{};
  ASSERT_TRUE(DigestFromHex(DigestHex(d), back));
  EXPECT_EQ(d, back);
  EXPECT_FALSE(DigestFromHex(DigestHex(d).substr(1), back));
  EXPECT_FALSE(DigestFromHex(std::string(64, 'g'), back));
}

DedupEntry Entry(int n, std::int64_t added, std::int64_t expires) {
  Digest d{};
  d[0] = static_cast<std::uint8_t>(n);
  d[31] = 0x5a;
  return DedupEntry{d, fmt::format("4jbphZ0BYjz1bYp{}", n % 10), "main", added, expires};
}

constexpr std::int64_t kNow = 1796300000;

TEST(DedupTable, MatchesUntilItsEntriesExpire) {
  testing::TempDir dir;
  DedupTable t;
  ASSERT_EQ(t.Open(dir.path() + "/dedup.table", kNow), "");
  EXPECT_EQ(t.Match(Entry(1, kNow, kNow + 100).digest, kNow), nullptr);
  ASSERT_EQ(t.Add({Entry(1, kNow, kNow + 100), Entry(2, kNow, kNow + 10)}), "");
  ASSERT_NE(t.Match(Entry(1, 0, 0).digest, kNow + 50), nullptr);
  EXPECT_EQ(t.Match(Entry(1, 0, 0).digest, kNow + 50)->id, "4jbphZ0BYjz1bYp1");
  EXPECT_EQ(t.Match(Entry(2, 0, 0).digest, kNow + 10), nullptr);  // expired, not yet dropped
  EXPECT_EQ(t.Match(Entry(3, 0, 0).digest, kNow), nullptr);
  ASSERT_EQ(t.Expire(kNow + 50), "");
  EXPECT_EQ(t.size(), 1u);
  ASSERT_EQ(t.Expire(kNow + 100), "");
  EXPECT_TRUE(t.empty());
}

TEST(DedupTable, SurvivesARestart) {
  testing::TempDir dir;
  std::string path = dir.path() + "/dedup.table";
  {
    DedupTable t;
    ASSERT_EQ(t.Open(path, kNow), "");
    ASSERT_EQ(t.Add({Entry(1, kNow, kNow + 100), Entry(2, kNow, kNow + 20)}), "");
  }
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  DedupTable again;
  ASSERT_EQ(again.Open(path, kNow + 30), "");
  EXPECT_EQ(again.size(), 1u);  // the other expired while the daemon was down
  const DedupEntry* e = again.Match(Entry(1, 0, 0).digest, kNow + 30);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(*e, Entry(1, kNow, kNow + 100));
}

TEST(DedupTable, AHostileFileYieldsOnlyValidEntries) {
  testing::TempDir dir;
  std::string path = dir.path() + "/dedup.table";
  std::string good = DedupTable::FormatLine(Entry(1, kNow, kNow + 100));
  std::string hex = DigestHex(Entry(2, 0, 0).digest);
  std::ofstream(path) << "mailtwin-dedup 1\n"
                      << good                                                    // kept
                      << hex << " ../../etc/passwd main 1 2\n"                     // not an ID
                      << hex << " 4jbphZ0BYjz1bYp2 ma\x01in " << kNow << " " << kNow + 5 << "\n"
                      << hex << " 4jbphZ0BYjz1bYp2 main " << kNow << " " << kNow + 400 * 86400 << "\n"
                      << hex << " 4jbphZ0BYjz1bYp2 main " << kNow + 9 << " " << kNow << "\n"
                      << hex << " 4jbphZ0BYjz1bYp2 main -5 " << kNow + 5 << "\n"
                      << hex << " 4jbphZ0BYjz1bYp2 main " << kNow << " " << kNow + 5 << " extra\n"
                      << "zz" << hex.substr(2) << " 4jbphZ0BYjz1bYp2 main 1 2\n"
                      << std::string(100000, 'A') << "\n"
                      << "\n"
                      << hex << " 4jbphZ0BYjz1bYp2 main " << kNow;  // torn: no newline
  DedupTable t;
  std::string w = t.Open(path, kNow);
  EXPECT_NE(w.find("10 lines ignored"), std::string::npos) << w;
  EXPECT_EQ(t.size(), 1u);
  EXPECT_NE(t.Match(Entry(1, 0, 0).digest, kNow), nullptr);
  EXPECT_EQ(t.Match(Entry(2, 0, 0).digest, kNow), nullptr);
}

TEST(DedupTable, RefusesWhatIsNotItsFile) {
  testing::TempDir dir;
  std::string path = dir.path() + "/dedup.table";
  DedupTable t;
  std::ofstream(path) << "something else\n" << DedupTable::FormatLine(Entry(1, kNow, kNow + 9));
  EXPECT_NE(t.Open(path, kNow).find("header"), std::string::npos);
  EXPECT_TRUE(t.empty());
  // Over the size cap: refused before it is read (a sparse file).
  std::filesystem::remove(path);
  std::ofstream(path) << "mailtwin-dedup 1\n";
  std::filesystem::resize_file(path, DedupTable::kMaxFileBytes + 1);
  EXPECT_NE(t.Open(path, kNow).find("over the cap"), std::string::npos);
  EXPECT_TRUE(t.empty());
  // A symlink is not followed.
  std::filesystem::remove(path);
  std::ofstream(dir.path() + "/other") << "mailtwin-dedup 1\n"
                                       << DedupTable::FormatLine(Entry(1, kNow, kNow + 9));
  std::filesystem::create_symlink(dir.path() + "/other", path);
  EXPECT_NE(t.Open(path, kNow), "");
  EXPECT_TRUE(t.empty());
  // A directory in its place.
  std::filesystem::remove(path);
  std::filesystem::create_directory(path);
  EXPECT_NE(t.Open(path, kNow), "");
  EXPECT_TRUE(t.empty());
}

TEST(RecentFingerprints, KeepsTheWindowAndHandsItOver) {
  using namespace std::chrono_literals;
  RecentFingerprints r(30s);
  auto t0 = RecentFingerprints::Clock::now();
  r.Add("4jbphZ0BYjz1bYp1", Entry(1, 0, 0).digest, "main", t0);
  r.Add("4jbphZ0BYjz1bYp2", Entry(2, 0, 0).digest, "main", t0 + 20s);
  r.Add("4jbphZ0BYjz1bYp3", Entry(3, 0, 0).digest, "main", t0 + 40s);
  EXPECT_EQ(r.size(), 2u);  // the first fell out of the window
  for (auto id : {"4jbphZ0BYjz1bYp2", "4jbphZ0BYjz1bYp3"}) r.FileWhole(id, t0 + 40s);
  auto got = r.Take(t0 + 45s, kNow, 3600);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].id, "4jbphZ0BYjz1bYp2");
  EXPECT_EQ(got[1].expires_s, kNow + 3600);
  EXPECT_EQ(r.size(), 0u);
  RecentFingerprints off(0ms);
  off.Add("4jbphZ0BYjz1bYp1", Entry(1, 0, 0).digest, "main", t0);
  EXPECT_EQ(off.size(), 0u);
}

// The primary sends its recent fingerprints again to each new session's
// standby: one that came twice is one entry.
TEST(RecentFingerprints, AFingerprintSentAgainIsOneEntry) {
  using namespace std::chrono_literals;
  RecentFingerprints r(30s);
  auto t0 = RecentFingerprints::Clock::now();
  r.Add("4jbphZ0BYjz1bYp1", Entry(1, 0, 0).digest, "main", t0);
  r.Add("4jbphZ0BYjz1bYp2", Entry(2, 0, 0).digest, "main", t0);
  r.FileWhole("4jbphZ0BYjz1bYp1", t0 + 1ms);
  r.FileWhole("4jbphZ0BYjz1bYp2", t0 + 1ms);
  r.Add("4jbphZ0BYjz1bYp1", Entry(1, 0, 0).digest, "main", t0 + 5s);  // the new session
  r.Add("4jbphZ0BYjz1bYp2", Entry(2, 0, 0).digest, "main", t0 + 5s);
  auto got = r.Take(t0 + 6s, kNow, 3600);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].id, "4jbphZ0BYjz1bYp1");
  EXPECT_EQ(got[1].id, "4jbphZ0BYjz1bYp2");
}

// A fingerprint can arrive before its queue file; if the primary dies in
// between, the new primary does not have the message, and an entry would
// make it drop the resend: only messages whose file arrived whole count.
TEST(RecentFingerprints, CountsOnlyMessagesWhoseFileArrivedWhole) {
  using namespace std::chrono_literals;
  RecentFingerprints r(30s);
  auto t0 = RecentFingerprints::Clock::now();
  r.Add("4jbphZ0BYjz1bYp1", Entry(1, 0, 0).digest, "main", t0);  // file whole after
  r.Add("4jbphZ0BYjz1bYp2", Entry(2, 0, 0).digest, "main", t0);  // only its head came
  r.Add("4jbphZ0BYjz1bYp3", Entry(3, 0, 0).digest, "main", t0);  // no file at all
  r.FileWhole("4jbphZ0BYjz1bYp1", t0 + 1ms);
  r.AddFile("4jbphZ0BYjz1bYp2", "", t0 + 1ms);
  auto got = r.Take(t0 + 1s, kNow, 3600);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, "4jbphZ0BYjz1bYp1");
}

// The gate sends a fingerprint under its token before the after-filter
// commits the message; the queue file carries the token as log_ident. The
// two are bound in whichever order they arrive, and count once the file is
// whole. A token whose file never came is a message never queued.
TEST(RecentFingerprints, BindsATokenToTheFileThatCarriesIt) {
  using namespace std::chrono_literals;
  const std::string tok1 = "mt-000000000000000000000001", tok2 = "mt-000000000000000000000002",
                    tok3 = "mt-000000000000000000000003", tok4 = "mt-000000000000000000000004";
  RecentFingerprints r(30s);
  auto t0 = RecentFingerprints::Clock::now();
  // token first (the usual order), then the file's head, then its end
  r.Add(tok1, Entry(1, 0, 0).digest, "main", t0);
  EXPECT_EQ(r.unbound_tokens(), 1u);
  r.AddFile("4jbphZ0BYjz1bYp1", tok1, t0 + 1ms);
  r.FileWhole("4jbphZ0BYjz1bYp1", t0 + 2ms);
  // the file first (after a reconnect), then the token
  r.AddFile("4jbphZ0BYjz1bYp2", tok2, t0 + 3ms);
  r.FileWhole("4jbphZ0BYjz1bYp2", t0 + 3ms);
  r.Add(tok2, Entry(2, 0, 0).digest, "main", t0 + 4ms);
  // a token without a file, and a file whose end never came
  r.Add(tok3, Entry(3, 0, 0).digest, "main", t0 + 5ms);
  r.Add(tok4, Entry(4, 0, 0).digest, "main", t0 + 5ms);
  r.AddFile("4jbphZ0BYjz1bYp4", tok4, t0 + 6ms);
  // a file whose log_ident is not a token binds nothing
  r.AddFile("4jbphZ0BYjz1bYp5", "[UNAVAILABLE]", t0 + 6ms);
  EXPECT_EQ(r.bound(), 3u);
  EXPECT_EQ(r.unbound_tokens(), 1u);  // tok3
  auto got = r.Take(t0 + 1s, kNow, 3600);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].id, "4jbphZ0BYjz1bYp1");
  EXPECT_EQ(got[0].digest, Entry(1, 0, 0).digest);
  EXPECT_EQ(got[1].id, "4jbphZ0BYjz1bYp2");
  EXPECT_EQ(got[1].digest, Entry(2, 0, 0).digest);
  EXPECT_EQ(r.unbound_tokens(), 0u);
  // Unbound tokens and files leave with the window.
  r.Add(tok3, Entry(3, 0, 0).digest, "main", t0);
  r.AddFile("4jbphZ0BYjz1bYp6", "mt-00000000000000000000000f", t0);
  r.Add("4jbphZ0BYjz1bYp7", Entry(7, 0, 0).digest, "main", t0 + 31s);
  EXPECT_EQ(r.unbound_tokens(), 0u);
  EXPECT_EQ(r.unbound_files(), 0u);
}

// A token without its file at the take-over: the old primary may have
// committed the message and died before shipping it. If its sender sends it
// again here, the resend is queued (an orphan never makes the gate drop
// anything), and the old primary's copy, offered at its rejoin, is named
// as resent, so that the handover drops it.
TEST(DedupTable, OrphansAreNeverMatchedOnlyNotedAndNamed) {
  using namespace std::chrono_literals;
  RecentFingerprints r(30s);
  auto t0 = RecentFingerprints::Clock::now();
  const std::string tok1 = "mt-00000000000000000000000a", tok2 = "mt-00000000000000000000000b";
  r.Add(tok1, Entry(1, 0, 0).digest, "main", t0);
  r.Add(tok2, Entry(2, 0, 0).digest, "main", t0);
  auto orphans = r.UnboundTokens();
  ASSERT_EQ(orphans.size(), 2u);
  DedupTable t;
  t.AddOrphans(orphans, kNow + 100);
  EXPECT_EQ(t.orphans(), 2u);
  EXPECT_EQ(t.Match(Entry(1, 0, 0).digest, kNow), nullptr);  // intake never drops it
  EXPECT_EQ(t.ResentAs(tok1, kNow), std::nullopt);             // not resent yet
  t.NoteQueued(Entry(1, 0, 0).digest, "4jbphZ0BYjz1bYr1");     // its resend, queued here
  t.NoteQueued(Entry(3, 0, 0).digest, "4jbphZ0BYjz1bYr3");     // another message
  EXPECT_EQ(t.ResentAs(tok1, kNow), "4jbphZ0BYjz1bYr1");
  EXPECT_EQ(t.ResentAs(tok2, kNow), std::nullopt);
  EXPECT_EQ(t.ResentAs("mt-00000000000000000000000c", kNow), std::nullopt);
  // A second resend keeps the first ID; orphans expire with the retention.
  t.NoteQueued(Entry(1, 0, 0).digest, "4jbphZ0BYjz1bYr9");
  EXPECT_EQ(t.ResentAs(tok1, kNow), "4jbphZ0BYjz1bYr1");
  EXPECT_EQ(t.ResentAs(tok1, kNow + 100), std::nullopt);
  EXPECT_EQ(t.Expire(kNow + 100), "");
  EXPECT_EQ(t.orphans(), 0u);
  EXPECT_EQ(t.ResentAs(tok1, kNow), std::nullopt);
}

// Orphans are saved with the entries: a restart of the new primary before
// the old one rejoins still drops the old primary's copy of a resent one.
TEST(DedupTable, OrphansSurviveARestart) {
  testing::TempDir dir;
  std::string path = dir.path() + "/dedup.table";
  const std::string tok1 = "mt-00000000000000000000000a", tok2 = "mt-00000000000000000000000b";
  {
    DedupTable t;
    ASSERT_EQ(t.Open(path, kNow), "");
    t.AddOrphans({{tok1, Entry(1, 0, 0).digest}, {tok2, Entry(2, 0, 0).digest}}, kNow + 100);
    EXPECT_TRUE(t.dirty());
    ASSERT_EQ(t.Save(), "");
    t.NoteQueued(Entry(1, 0, 0).digest, "4jbphZ0BYjz1bYr1");
    EXPECT_TRUE(t.dirty());  // the resend's ID must reach the file too
    ASSERT_EQ(t.Save(), "");
  }
  DedupTable again;
  ASSERT_EQ(again.Open(path, kNow + 10), "");
  EXPECT_EQ(again.orphans(), 2u);
  EXPECT_TRUE(again.empty());  // orphans are not entries: never matched on intake
  EXPECT_EQ(again.Match(Entry(1, 0, 0).digest, kNow + 10), nullptr);
  EXPECT_EQ(again.ResentAs(tok1, kNow + 10), "4jbphZ0BYjz1bYr1");
  EXPECT_EQ(again.ResentAs(tok2, kNow + 10), std::nullopt);
  again.NoteQueued(Entry(2, 0, 0).digest, "4jbphZ0BYjz1bYr2");  // still noted after the restart
  EXPECT_EQ(again.ResentAs(tok2, kNow + 10), "4jbphZ0BYjz1bYr2");
  // Expired while the daemon was down: gone.
  DedupTable late;
  ASSERT_EQ(late.Open(path, kNow + 100), "");
  EXPECT_EQ(late.orphans(), 0u);
}

TEST(DedupTable, HostileOrphanLinesAreSkipped) {
  testing::TempDir dir;
  std::string path = dir.path() + "/dedup.table";
  const std::string tok = "mt-00000000000000000000000a";
  std::string hex = DigestHex(Entry(1, 0, 0).digest);
  std::ofstream(path) << "mailtwin-dedup 2\n"
                      << DedupTable::FormatOrphanLine({tok, Entry(1, 0, 0).digest, kNow + 50, "4jbphZ0BYjz1bYr1"})
                      << "orphan " << hex << " 4jbphZ0BYjz1bYr1 " << kNow + 50 << "\n"   // not a token
                      << "orphan " << hex << " " << tok << " " << kNow + 50 << "\n"      // its token again
                      << "orphan " << hex << " mt-00000000000000000000000b " << kNow + 400 * 86400 << "\n"
                      << "orphan " << hex << " mt-00000000000000000000000c " << kNow << " ../x\n"
                      << "orphan " << hex << " mt-00000000000000000000000d " << kNow << " a b\n"
                      << "orphan " << hex << " mt-00000000000000000000000e " << kNow + 50 << " \n"
                      << "orphan " << hex << " mt-00000000000000000000000f\n"
                      << "orphan  " << hex << " mt-000000000000000000000010 " << kNow + 50 << "\n";
  DedupTable t;
  std::string w = t.Open(path, kNow);
  EXPECT_NE(w.find("8 lines ignored"), std::string::npos) << w;
  EXPECT_EQ(t.orphans(), 1u);
  EXPECT_EQ(t.ResentAs(tok, kNow), "4jbphZ0BYjz1bYr1");
  // A file of the first version (entries only) still reads.
  std::ofstream(path) << "mailtwin-dedup 1\n" << DedupTable::FormatLine(Entry(2, kNow, kNow + 9));
  DedupTable v1;
  EXPECT_EQ(v1.Open(path, kNow), "");
  EXPECT_EQ(v1.size(), 1u);
}

TEST(GateToken, FreshTokensAreValidAndDistinct) {
  std::string a = NewGateToken(), b = NewGateToken();
  EXPECT_TRUE(IsGateToken(a)) << a;
  EXPECT_NE(a, b);
  EXPECT_FALSE(IsValidQueueId(a));  // never a path
  for (std::string_view bad : {"mt-00000000000000000000000", "mt-0000000000000000000000000",
                               "mt-00000000000000000000000G", "xx-000000000000000000000000",
                               "4jbphZ0BYjz1bYp1", ""})
    EXPECT_FALSE(IsGateToken(bad)) << bad;
}

// Postfix's smtpd hands the gate "IDENT=[UNAVAILABLE]"; the gate puts its
// token there, leaving every other byte alone.
TEST(GateToken, XforwardIdentIsReplaced) {
  EXPECT_EQ(WithXforwardIdent("XFORWARD NAME=[UNAVAILABLE] ADDR=10.0.0.1 PORT=46900 "
                              "HELO=[127.0.0.1] IDENT=[UNAVAILABLE] PROTO=ESMTP SOURCE=LOCAL",
                              "mt-1"),
            "XFORWARD NAME=[UNAVAILABLE] ADDR=10.0.0.1 PORT=46900 HELO=[127.0.0.1] IDENT=mt-1 "
            "PROTO=ESMTP SOURCE=LOCAL");
  EXPECT_EQ(WithXforwardIdent("xforward ident=abc", "mt-2"), "xforward ident=mt-2");
  EXPECT_EQ(WithXforwardIdent("XFORWARD  IDENT=", "mt-3"), "XFORWARD  IDENT=mt-3");
  EXPECT_EQ(WithXforwardIdent("XFORWARD NAME=x PROTO=ESMTP", "mt-4"), std::nullopt);
  EXPECT_EQ(WithXforwardIdent("XFORWARD NAME=IDENT=x", "mt-4"), std::nullopt);
  EXPECT_EQ(WithXforwardIdent("MAIL FROM:<a@b> IDENT=x", "mt-5"), std::nullopt);
  EXPECT_EQ(WithXforwardIdent("XFORWARDX IDENT=x", "mt-6"), std::nullopt);
}

TEST(DedupProtocol, FingerprintIsAChangeWithAFixedSizeDigest) {
  repl::Message m = repl::msg::Fingerprint{"4jbphZ0BYjz1bYpH", {}, 0, ""};
  EXPECT_TRUE(repl::IsChange(m));
  EXPECT_TRUE(repl::Step(repl::SessionState::kLive, repl::MsgType::kFingerprint).legal);
  EXPECT_TRUE(repl::Step(repl::SessionState::kCatchup, repl::MsgType::kFingerprint).legal);
  EXPECT_FALSE(repl::Step(repl::SessionState::kHello, repl::MsgType::kFingerprint).legal);
  // A digest of another length, or a bad ID, is refused.
  std::string payload;
  repl::Writer w(payload);
  w.Str("4jbphZ0BYjz1bYpH");
  w.Blob(std::string(31, 'x'));
  w.U32(0);
  w.Str("");
  repl::Message out;
  EXPECT_NE(repl::DecodePayload(repl::MsgType::kFingerprint, payload, out), "");
  payload.clear();
  w.Str("../x");
  w.Blob(std::string(32, 'x'));
  w.U32(0);
  w.Str("");
  EXPECT_NE(repl::DecodePayload(repl::MsgType::kFingerprint, payload, out), "");
  payload.clear();
  w.Str("4jbphZ0BYjz1bYpH");
  w.Blob(std::string(32, 'x'));
  w.U32(0);
  w.Str("");
  EXPECT_EQ(repl::DecodePayload(repl::MsgType::kFingerprint, payload, out), "");
  // A table entry kept longer than any retention, or with a control
  // character in its origin, is refused.
  for (auto [keep, origin] : {std::pair<std::uint32_t, std::string>{repl::kMaxFingerprintKeep + 1, "main"},
                              {60, "ma\nin"}}) {
    payload.clear();
    w.Str("4jbphZ0BYjz1bYpH");
    w.Blob(std::string(32, 'x'));
    w.U32(keep);
    w.Str(origin);
    EXPECT_NE(repl::DecodePayload(repl::MsgType::kFingerprint, payload, out), "") << keep;
  }
  // A gate token in place of the ID: only for a message just accepted
  // (keep_s 0), never as a table entry.
  for (std::uint32_t keep : {0u, 60u}) {
    payload.clear();
    w.Str("mt-0123456789abcdef01234567");
    w.Blob(std::string(32, 'x'));
    w.U32(keep);
    w.Str(keep ? "main" : "");
    EXPECT_EQ(repl::DecodePayload(repl::MsgType::kFingerprint, payload, out) == "", keep == 0)
        << keep;
  }
}

TEST(DedupTable, EntriesFromThePrimaryAreSavedOnce) {
  testing::TempDir dir;
  DedupTable t;
  ASSERT_EQ(t.Open(dir.path() + "/dedup.table", kNow), "");
  t.Insert(Entry(1, kNow, kNow + 100));
  t.Insert(Entry(2, kNow, kNow + 100));
  EXPECT_TRUE(t.dirty());
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/dedup.table"));
  ASSERT_EQ(t.Save(), "");
  EXPECT_FALSE(t.dirty());
  t.Insert(Entry(1, kNow, kNow + 50));  // an earlier expiry changes nothing
  EXPECT_FALSE(t.dirty());
  DedupTable again;
  ASSERT_EQ(again.Open(dir.path() + "/dedup.table", kNow), "");
  EXPECT_EQ(again.size(), 2u);
}

}  // namespace
}  // namespace mailtwin::gate
