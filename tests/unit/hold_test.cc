// Strict durability's queue moves, on a real directory tree shaped like
// Postfix's queue (hold/, incoming/, active/, public/qmgr as a FIFO).
#include "postfix/hold.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <future>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "test_util.h"

namespace mailtwin::postfix {
namespace {

namespace fs = std::filesystem;
constexpr const char* kId = "4jbrwT63sJz1bYJB";

class HoldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* d : {"hold", "incoming", "active", "public"})
      fs::create_directories(q_ + "/" + d);
    ASSERT_EQ(mkfifo((q_ + "/public/qmgr").c_str(), 0622), 0);
    // The reader end, as qmgr holds it: what a trigger writes shows up here.
    fifo_ = open((q_ + "/public/qmgr").c_str(), O_RDONLY | O_NONBLOCK);
    ASSERT_GE(fifo_, 0);
  }
  void TearDown() override { close(fifo_); }
  void Put(const std::string& rel, mode_t mode = 0700) {
    std::ofstream(q_ + "/" + rel) << "queue file";
    chmod((q_ + "/" + rel).c_str(), mode);
  }
  bool Has(const std::string& rel) { return fs::exists(q_ + "/" + rel); }
  std::string Triggers() {
    char buf[16];
    ssize_t n = read(fifo_, buf, sizeof buf);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
  }

  testing::TempDir dir_;
  std::string q_ = dir_.path();
  repl::HashLayout flat_{1, {"deferred", "defer"}};
  int fifo_ = -1;
};

TEST_F(HoldTest, ReleaseMovesToIncomingKeepingTheFileAndWakesQmgr) {
  Put(std::string("hold/") + kId);
  struct stat before {};
  stat((q_ + "/hold/" + kId).c_str(), &before);
  HoldResult r = ReleaseHeld(q_, flat_, kId);
  EXPECT_EQ(r.outcome, HoldOutcome::kDone) << r.text;
  EXPECT_FALSE(Has(std::string("hold/") + kId));
  ASSERT_TRUE(Has(std::string("incoming/") + kId));
  struct stat after {};
  stat((q_ + "/incoming/" + kId).c_str(), &after);
  EXPECT_EQ(after.st_ino, before.st_ino);  // the same file: the queue ID names its inode
  EXPECT_EQ(after.st_mode & 07777, 0700u);
  EXPECT_EQ(Triggers(), "I");
  // Not on hold (any more): said so, nothing moved, qmgr not bothered.
  r = ReleaseHeld(q_, flat_, kId);
  EXPECT_EQ(r.outcome, HoldOutcome::kNotHeld);
  EXPECT_TRUE(Has(std::string("incoming/") + kId));
  EXPECT_EQ(Triggers(), "");
}

TEST_F(HoldTest, ReleaseIntoAHashedIncomingMakesTheSubdirectory) {
  repl::HashLayout hashed{2, {"incoming", "hold"}};
  std::string sub = "D/0";  // HashSubdir(kId, 2), as Postfix names it
  fs::create_directories(q_ + "/hold/" + sub);
  Put("hold/" + sub + "/" + kId);
  HoldResult r = ReleaseHeld(q_, hashed, kId);
  EXPECT_EQ(r.outcome, HoldOutcome::kDone) << r.text;
  EXPECT_TRUE(Has("incoming/" + sub + "/" + kId)) << r.text;
}

TEST_F(HoldTest, WithdrawDeletesFromHold) {
  Put(std::string("hold/") + kId);
  HoldResult r = WithdrawHeld(q_, flat_, kId);
  EXPECT_EQ(r.outcome, HoldOutcome::kDone) << r.text;
  EXPECT_FALSE(Has(std::string("hold/") + kId));
}

TEST_F(HoldTest, ReleaseThatCannotMoveIsAnErrorNotNotHeld) {
  // incoming/ hashed two deep and not makeable (a file where the directory
  // should be): the message is still on hold, and must not be called "not held".
  repl::HashLayout hashed{2, {"incoming"}};
  std::ofstream(q_ + "/incoming/D") << "not a directory";
  Put(std::string("hold/") + kId);
  HoldResult r = ReleaseHeld(q_, hashed, kId);
  EXPECT_EQ(r.outcome, HoldOutcome::kError) << r.text;
  EXPECT_TRUE(Has(std::string("hold/") + kId));
}

TEST_F(HoldTest, WithdrawTakesAReleasedMessageBackFromIncoming) {
  Put(std::string("incoming/") + kId);
  HoldResult r = WithdrawHeld(q_, flat_, kId);
  EXPECT_EQ(r.outcome, HoldOutcome::kDone) << r.text;
  EXPECT_FALSE(Has(std::string("incoming/") + kId));
  EXPECT_FALSE(Has(std::string("hold/") + kId));
}

TEST_F(HoldTest, WithdrawIsTooLateOnceQmgrHasIt) {
  Put(std::string("active/") + kId);  // qmgr moved it incoming/ -> active/ first
  HoldResult r = WithdrawHeld(q_, flat_, kId);
  EXPECT_EQ(r.outcome, HoldOutcome::kTooLate);
  EXPECT_TRUE(Has(std::string("active/") + kId));  // never touched: it is being delivered
}

TEST_F(HoldTest, TriggersQmgrThroughAUnixSocket) {
  // Debian's master.cf: "qmgr unix n - n 300 1 qmgr": public/qmgr is a socket.
  close(fifo_);
  fs::remove(q_ + "/public/qmgr");
  fifo_ = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = q_ + "/public/qmgr";
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(bind(fifo_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fifo_, 4), 0);
  Put(std::string("hold/") + kId);
  EXPECT_EQ(ReleaseHeld(q_, flat_, kId).outcome, HoldOutcome::kDone);
  int c = accept(fifo_, nullptr, nullptr);
  ASSERT_GE(c, 0);
  char buf[8];
  EXPECT_EQ(read(c, buf, sizeof buf), 1);
  EXPECT_EQ(buf[0], 'I');
  close(c);
}

// Runs TriggerQmgr in a thread; true if it returned within 2 s. A writer
// stuck in open() is released by opening the FIFO for reading, so a failed
// check fails the test instead of hanging it.
bool TriggerReturnsPromptly(const std::string& q) {
  auto done = std::async(std::launch::async, [&] { TriggerQmgr(q); });
  if (done.wait_for(std::chrono::seconds(2)) == std::future_status::ready) return true;
  int unblock = open((q + "/public/qmgr").c_str(), O_RDONLY | O_NONBLOCK);
  done.wait();
  if (unblock >= 0) close(unblock);
  return false;
}

TEST_F(HoldTest, NoQmgrFifoIsNotAnError) {
  // qmgr not running: a FIFO with no reader. open(O_NONBLOCK) fails with
  // ENXIO; a blocking open would hang the gate until qmgr came back.
  close(fifo_);
  fifo_ = -1;
  EXPECT_TRUE(TriggerReturnsPromptly(q_)) << "TriggerQmgr blocked on a FIFO nobody reads";
  struct stat st {};
  ASSERT_EQ(stat((q_ + "/public/qmgr").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode)) << "the FIFO was replaced";
  // No public/qmgr at all (Postfix stopped and its queue cleaned): nothing is
  // created in its place, which would stop Postfix's next start.
  fs::remove(q_ + "/public/qmgr");
  EXPECT_TRUE(TriggerReturnsPromptly(q_));
  EXPECT_FALSE(Has("public/qmgr"));
  fifo_ = open("/dev/null", O_RDONLY);
}

}  // namespace
}  // namespace mailtwin::postfix
