// ProbeStreak on a simulated clock: overlapping probes of a silently dead
// primary, of a slow one, and of one that answers again; each row is a
// timeline of probe begins and ends and the counts it must leave.
#include "ha/probe_streak.h"

#include <gtest/gtest.h>

using namespace mailtwin::ha;
using namespace std::chrono_literals;

namespace {

const ProbeStreak::Time kStreakT0{};

// One probe every `every`, each ending after `lasts` with `ok`, as the
// daemon starts them at its ticks, simulated up to `until` (inclusive).
void Probes(ProbeStreak& s, std::chrono::milliseconds every, std::chrono::milliseconds lasts,
            bool ok, std::chrono::milliseconds until) {
  std::vector<std::pair<std::chrono::milliseconds, std::uint64_t>> pending;
  for (auto t = 0ms; t <= until; t += 1ms) {
    for (auto it = pending.begin(); it != pending.end();) {
      if (it->first == t) {
        s.End(it->second, ok, ok ? "" : "no answer within 700 ms", kStreakT0 + t);
        it = pending.erase(it);
      } else {
        ++it;
      }
    }
    if (t % every == 0ms) pending.emplace_back(t + lasts, s.Begin(kStreakT0 + t));
  }
}

}  // namespace

TEST(ProbeStreak, SilentDeathCountsOverlappingProbesAsTheyTimeOut) {
  // Every 250 ms a probe; each hangs for probe_timeout (700 ms). One at a
  // time, three failures take 2.1 s; overlapping, the third ends at
  // 0.5 + 0.7 = 1.2 s.
  struct Row {
    std::chrono::milliseconds until;
    int failures, serial;
  };
  for (auto r : {Row{699ms, 0, 0}, Row{700ms, 1, 1}, Row{950ms, 2, 1}, Row{1199ms, 2, 1},
                 Row{1200ms, 3, 1}, Row{1450ms, 4, 2}, Row{2200ms, 7, 3}}) {
    ProbeStreak s;
    Probes(s, 250ms, 700ms, false, r.until);
    EXPECT_EQ(s.failures(), r.failures) << "at " << r.until.count() << " ms";
    EXPECT_EQ(s.serial_failures(), r.serial) << "at " << r.until.count() << " ms";
    EXPECT_EQ(s.error(), r.failures ? "no answer within 700 ms" : "");
  }
}

TEST(ProbeStreak, RefusedProbesCountTheSameEitherWay) {
  // A host whose kernel lives refuses at once: nothing overlaps.
  ProbeStreak s;
  Probes(s, 250ms, 1ms, false, 2751ms);
  EXPECT_EQ(s.failures(), 12);
  EXPECT_EQ(s.serial_failures(), 12);
}

TEST(ProbeStreak, ASuccessResetsAndOlderFailuresAreDropped) {
  ProbeStreak s;
  auto a = s.Begin(kStreakT0);            // hangs
  auto b = s.Begin(kStreakT0 + 250ms);    // answers
  EXPECT_TRUE(s.End(b, true, "", kStreakT0 + 300ms));
  // a began before the success: the primary is known alive since.
  EXPECT_FALSE(s.End(a, false, "no answer", kStreakT0 + 700ms));
  EXPECT_EQ(s.failures(), 0);
  auto c = s.Begin(kStreakT0 + 500ms);
  EXPECT_TRUE(s.End(c, false, "connect: refused", kStreakT0 + 501ms));
  EXPECT_EQ(s.failures(), 1);
  EXPECT_EQ(s.error(), "connect: refused");
  auto d = s.Begin(kStreakT0 + 750ms);
  EXPECT_TRUE(s.End(d, true, "", kStreakT0 + 760ms));
  EXPECT_EQ(s.failures(), 0);
  EXPECT_EQ(s.serial_failures(), 0);
  EXPECT_EQ(s.error(), "");
  EXPECT_EQ(s.in_flight(), 0u);
}

TEST(ProbeStreak, ResetForgetsProbesOfTheOldPrimary) {
  ProbeStreak s;
  auto a = s.Begin(kStreakT0);
  auto b = s.Begin(kStreakT0 + 250ms);
  EXPECT_TRUE(s.End(a, false, "x", kStreakT0 + 700ms));
  s.Reset();  // a primary (re)introduced itself
  EXPECT_EQ(s.failures(), 0);
  EXPECT_FALSE(s.End(b, false, "x", kStreakT0 + 950ms));
  EXPECT_EQ(s.failures(), 0);
  EXPECT_EQ(s.in_flight(), 0u);
  auto c = s.Begin(kStreakT0 + 1000ms);
  EXPECT_TRUE(s.End(c, false, "x", kStreakT0 + 1700ms));
  EXPECT_EQ(s.failures(), 1);
  EXPECT_FALSE(s.End(c, false, "x", kStreakT0 + 1800ms));  // ended twice: ignored
}
