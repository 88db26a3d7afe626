// LocalPostfix::KeepStopped: mailtwind holds the lock Postfix's master
// takes, so that nothing else can start Postfix on a node that must not
// serve. The lab (t-19) shows it against real Postfix; this shows the lock
// and the file's contents.
#include "node/postfix_control.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "postfix/processes.h"
#include "test_util.h"

namespace mailtwin {
namespace {

namespace fs = std::filesystem;

// What Postfix's master does at start: open pid/master.pid and take an
// exclusive flock without waiting.
bool MasterCouldLock(const std::string& queue_dir) {
  int fd = open((queue_dir + "/pid/master.pid").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok = flock(fd, LOCK_EX | LOCK_NB) == 0;
  close(fd);
  return ok;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(PostfixGuard, HoldsMastersLockUntilStartIsAllowed) {
  testing::TempDir dir;
  fs::create_directories(dir.path() + "/pid");
  // The last master left its PID: `postfix stop` would kill that number.
  { std::ofstream(dir.path() + "/pid/master.pid") << "             4242\n"; }
  LocalPostfix pf(dir.path() + "/etc", dir.path());
  EXPECT_TRUE(MasterCouldLock(dir.path()));
  pf.KeepStopped();
  EXPECT_TRUE(pf.KeptStopped());
  EXPECT_FALSE(MasterCouldLock(dir.path()));
  EXPECT_EQ(ReadAll(dir.path() + "/pid/master.pid"), kKeptStoppedLine);
  EXPECT_EQ(postfix::RunningMaster(dir.path()), 0);
  pf.KeepStopped();  // again: nothing changes
  EXPECT_FALSE(MasterCouldLock(dir.path()));
  pf.AllowStart();
  EXPECT_FALSE(pf.KeptStopped());
  EXPECT_TRUE(MasterCouldLock(dir.path()));
}

TEST(PostfixGuard, LeavesARunningMasterAlone) {
  testing::TempDir dir;
  fs::create_directories(dir.path() + "/pid");
  int master = open((dir.path() + "/pid/master.pid").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(master, 0);
  ASSERT_EQ(flock(master, LOCK_EX | LOCK_NB), 0);
  ASSERT_EQ(write(master, "  77\n", 5), 5);
  LocalPostfix pf(dir.path() + "/etc", dir.path());
  pf.KeepStopped();
  EXPECT_FALSE(pf.KeptStopped());
  EXPECT_EQ(ReadAll(dir.path() + "/pid/master.pid"), "  77\n");
  close(master);
}

TEST(PostfixGuard, WithoutPidDirectorySaysSoAndHoldsNothing) {
  testing::TempDir dir;
  LocalPostfix pf(dir.path() + "/etc", dir.path() + "/missing");
  pf.KeepStopped();
  EXPECT_FALSE(pf.KeptStopped());
}

// postfix-script runs `kill $(sed 1q pid/master.pid)` for stop, reload and
// abort: no word of the line may be a number (a PID, or 0: the caller's
// process group), an option (-1: every process) or a job (%1).
TEST(PostfixGuard, LineCannotBeMistakenForAProcess) {
  std::istringstream words(kKeptStoppedLine);
  int n = 0;
  for (std::string w; words >> w; ++n) {
    for (char c : w) EXPECT_FALSE(std::isdigit(static_cast<unsigned char>(c))) << w;
    EXPECT_NE(w.front(), '-') << w;
    EXPECT_NE(w.front(), '%') << w;
  }
  EXPECT_GT(n, 3);
  std::string line = kKeptStoppedLine;
  EXPECT_EQ(line.find('\n'), line.size() - 1);
}

}  // namespace
}  // namespace mailtwin
