// QueueWatcher against real inotify on a temp dir laid out like a Postfix queue,
// driven the way cleanup, qmgr, delivery agents and bounce touch it.
#include "repl/queue_watcher.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "repl/stats.h"
#include "test_util.h"

namespace mailtwin::repl {
namespace {

using mailtwin::testing::MakeQueueFile;
using mailtwin::testing::TempDir;
const std::string kWatchedId = "4jbphZ0BYjz1bYpH";

class WatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* d : {"incoming", "active", "deferred", "hold", "maildrop", "corrupt", "defer",
                          "bounce", "trace"})
      std::filesystem::create_directory(q_ + "/" + d);
    watcher_ = std::make_unique<QueueWatcher>(q_, model_, [this](const std::string&, ApplyResult&& r) {
      times_.push_back({r.seen_ns, r.observed_mtime_ns});
      for (auto& c : r.changes) out_.push_back(std::move(c));
    });
    ASSERT_EQ(watcher_->Start(), "");
    watcher_->Poll();
    out_.clear();
  }

  // What cleanup does: temp name 0600, rename to the ID, write, chmod 0700.
  void Commit(const std::string& bytes) {
    std::string tmp = q_ + "/incoming/12345.678";
    int fd = open(tmp.c_str(), O_CREAT | O_RDWR | O_EXCL, 0600);
    ASSERT_GE(fd, 0);
    rename(tmp.c_str(), (q_ + "/incoming/" + kWatchedId).c_str());
    ASSERT_EQ(write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    fchmod(fd, 0700);
    fsync(fd);
    close(fd);
  }

  std::vector<Message> Drain() {
    watcher_->Poll();
    return std::move(out_);
  }

  TempDir dir_;
  std::string q_ = dir_.path();
  QueueModel model_;
  std::unique_ptr<QueueWatcher> watcher_;
  std::vector<Message> out_;
  struct Times {
    std::int64_t seen_ns, observed_mtime_ns;
  };
  std::vector<Times> times_;  // of each emitted ApplyResult
};

TEST_F(WatcherTest, CommitIsShippedWholeOnce) {
  auto q = MakeQueueFile(2, 2000);
  Commit(q.bytes);
  auto out = Drain();
  std::string joined;
  for (auto& m : out) joined += std::get<msg::File>(m).data;
  EXPECT_EQ(joined, q.bytes);
  EXPECT_TRUE(Drain().empty());
}

// Postfix switched to short queue IDs at runtime: still replicated (it is
// mail), but counted and logged, never silently.
TEST_F(WatcherTest, ShortQueueIdIsNoticed) {
  auto q = MakeQueueFile(1, 100);
  std::string path = q_ + "/incoming/3F2A1B4C5D";
  int fd = open(path.c_str(), O_CREAT | O_RDWR | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, q.bytes.data(), q.bytes.size()), static_cast<ssize_t>(q.bytes.size()));
  fchmod(fd, 0700);
  close(fd);
  EXPECT_FALSE(Drain().empty());
  EXPECT_EQ(watcher_->stats().short_ids, 1u);
  Commit(q.bytes);  // a long ID is not counted
  Drain();
  EXPECT_EQ(watcher_->stats().short_ids, 1u);
}

TEST_F(WatcherTest, FileStillBeingWrittenIsNotShipped) {
  int fd = open((q_ + "/incoming/" + kWatchedId).c_str(), O_CREAT | O_RDWR, 0600);
  ASSERT_EQ(write(fd, "C", 1), 1);
  close(fd);
  EXPECT_TRUE(Drain().empty());
}

TEST_F(WatcherTest, LifecycleOfADeferredMessageWithABounce) {
  auto q = MakeQueueFile(2, 2000);
  Commit(q.bytes);
  Drain();
  // qmgr: incoming -> active
  rename((q_ + "/incoming/" + kWatchedId).c_str(), (q_ + "/active/" + kWatchedId).c_str());
  // bounce daemon appends (and fsyncs) before the agent marks the recipient done
  std::ofstream(q_ + "/bounce/" + kWatchedId) << "recipient=user0\noffset=" << q.rcpt_offsets[0] << "\n";
  int fd = open((q_ + "/active/" + kWatchedId).c_str(), O_WRONLY);
  ASSERT_EQ(pwrite(fd, "D", 1, static_cast<off_t>(q.rcpt_offsets[0])), 1);
  close(fd);
  // the other recipient is deferred into a hash directory that does not exist yet
  std::filesystem::create_directory(q_ + "/defer/6");
  std::ofstream(q_ + "/defer/6/" + kWatchedId) << "recipient=user1\n";
  std::filesystem::create_directory(q_ + "/deferred/6");
  struct timespec t[2] = {{2000000000, 0}, {2000000000, 0}};
  utimensat(AT_FDCWD, (q_ + "/active/" + kWatchedId).c_str(), t, 0);
  rename((q_ + "/active/" + kWatchedId).c_str(), (q_ + "/deferred/6/" + kWatchedId).c_str());
  auto out = Drain();
  // Logs come before the queue file's changes.
  std::vector<int> kinds;
  for (auto& m : out) kinds.push_back(static_cast<int>(TypeOf(m)));
  auto first_patch = std::find(kinds.begin(), kinds.end(), static_cast<int>(MsgType::kPatch));
  ASSERT_NE(first_patch, kinds.end());
  int logs_before = 0;
  for (auto it = kinds.begin(); it != first_patch; ++it)
    logs_before += *it == static_cast<int>(MsgType::kLogData);
  EXPECT_EQ(logs_before, 2);
  const MessageState* st = model_.Find(kWatchedId);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->file.queue, Queue::kDeferred);
  EXPECT_EQ(st->file.relpath, "deferred/6/" + kWatchedId);
  EXPECT_EQ(st->file.mtime_ns, 2000000000ll * 1000000000);
  ASSERT_TRUE(st->logs[0]);
  EXPECT_EQ(st->logs[0]->relpath, "defer/6/" + kWatchedId);
}

TEST_F(WatcherTest, DeletionIsConfirmedAndLogsGoFirst) {
  auto q = MakeQueueFile(1, 100);
  Commit(q.bytes);
  std::ofstream(q_ + "/trace/" + kWatchedId) << "x\n";
  Drain();
  unlink((q_ + "/trace/" + kWatchedId).c_str());
  unlink((q_ + "/incoming/" + kWatchedId).c_str());
  auto out = Drain();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(std::holds_alternative<msg::LogDelete>(out[0]));
  EXPECT_TRUE(std::holds_alternative<msg::Delete>(out[1]));
  EXPECT_EQ(model_.size(), 0u);
}

// The link measures how long a finished delivery takes to reach the standby
// (status: replication.done_lag_*) from these: when the watcher first heard
// of the change, and the file's own mtime (a 'D' write sets it; the model
// keeps the standby's mtime for files in active/, so it cannot tell).
TEST_F(WatcherTest, DoneMarkAndRemovalSayWhenTheyHappened) {
  auto q = MakeQueueFile(1, 100);
  Commit(q.bytes);
  Drain();
  rename((q_ + "/incoming/" + kWatchedId).c_str(), (q_ + "/active/" + kWatchedId).c_str());
  Drain();
  usleep(30000);  // the 'D' comes well after the commit
  times_.clear();
  std::int64_t before = WallClockNs();
  int fd = open((q_ + "/active/" + kWatchedId).c_str(), O_WRONLY);
  ASSERT_EQ(pwrite(fd, "D", 1, static_cast<off_t>(q.rcpt_offsets[0])), 1);
  close(fd);
  usleep(20000);  // the watcher reads the event late
  std::int64_t written = WallClockNs();
  auto out = Drain();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(std::holds_alternative<msg::Patch>(out[0]));
  ASSERT_EQ(times_.size(), 1u);
  // Seen when the watcher read the event, after the wait; the mtime is the
  // write's (file timestamps are coarse: a few ms of slack), not the commit's.
  EXPECT_GE(times_[0].seen_ns, written);
  EXPECT_GT(times_[0].observed_mtime_ns, before - 10'000'000);
  EXPECT_LT(times_[0].observed_mtime_ns, written);

  // A removal is confirmed only when the queue is quiet; its time is still
  // that of its first event.
  times_.clear();
  std::int64_t unlinked = WallClockNs();
  unlink((q_ + "/active/" + kWatchedId).c_str());
  out = Drain();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(std::holds_alternative<msg::Delete>(out[0]));
  ASSERT_EQ(times_.size(), 1u);
  EXPECT_GE(times_.back().seen_ns, unlinked);
  EXPECT_LE(times_.back().seen_ns, WallClockNs());
}

TEST_F(WatcherTest, OverflowRescanFindsEverything) {
  auto q = MakeQueueFile(1, 100);
  Commit(q.bytes);
  Drain();
  // Without reading events, remove the file and add another behind inotify's back.
  watcher_->Rescan();
  unlink((q_ + "/incoming/" + kWatchedId).c_str());
  auto out = Drain();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<msg::Delete>(out[0]));
}

TEST_F(WatcherTest, FindsFilesInPostfixsHashDirectoriesWithoutEvents) {
  // What the watcher reads for a message must not depend on having seen the
  // event that put it there: it knows where Postfix hashes each ID.
  auto q = MakeQueueFile(1, 100);
  Commit(q.bytes);
  Drain();
  std::string sub = HashSubdir(kWatchedId, 1);
  std::filesystem::create_directories(q_ + "/deferred/" + sub);
  std::filesystem::create_directories(q_ + "/defer/" + sub);
  std::ofstream(q_ + "/defer/" + sub + "/" + kWatchedId) << "recipient=x\n";
  rename((q_ + "/incoming/" + kWatchedId).c_str(), (q_ + "/deferred/" + sub + "/" + kWatchedId).c_str());
  ApplyResult r = watcher_->Snapshot(kWatchedId);  // no hints: only the known layout
  ASSERT_FALSE(r.changes.empty());
  EXPECT_EQ(std::get<msg::LogData>(r.changes[0]).data, "recipient=x\n");
  EXPECT_EQ(model_.Find(kWatchedId)->file.relpath, "deferred/" + sub + "/" + kWatchedId);
}

TEST_F(WatcherTest, MaildropFileIsShippedWhenComplete) {
  std::string path = q_ + "/maildrop/" + kWatchedId;
  int fd = open(path.c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_EQ(write(fd, "T\x03" "123", 5), 5);
  EXPECT_TRUE(Drain().empty());
  fchmod(fd, 0744);
  close(fd);
  auto out = Drain();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(std::get<msg::File>(out[0]).queue, Queue::kMaildrop);
  EXPECT_EQ(std::get<msg::File>(out[0]).mode, 0744u);
}


TEST_F(WatcherTest, StartUpScanReadsEveryLogAlsoOnesMadeAfterIt) {
  // A queue that already holds mail when the daemon starts: the start-up
  // drain looks logs up only where the scan saw them, so a log made between
  // the scan and the drain must still end up in the model (its event).
  const std::string with_logs = "4jbphZ0BYjz1bYpA", late_log = "4jbphZ0BYjz1bYpB";
  auto q = MakeQueueFile(2, 500);
  for (const auto& id : {with_logs, late_log}) {
    std::ofstream f(q_ + "/deferred/" + id);
    f << q.bytes;
    f.close();
    chmod((q_ + "/deferred/" + id).c_str(), 0700);
  }
  std::ofstream(q_ + "/defer/" + with_logs) << "recipient=a\n";
  std::ofstream(q_ + "/bounce/" + with_logs) << "recipient=b\n";
  QueueModel model;
  int shipped = 0;
  QueueWatcher w(q_, model, [&](const std::string&, ApplyResult&&) { ++shipped; });
  ASSERT_EQ(w.Start(), "");
  std::ofstream(q_ + "/defer/" + late_log) << "recipient=c\n";
  while (!w.Poll()) {
  }
  EXPECT_GT(shipped, 0);
  const MessageState* a = model.Find(with_logs);
  const MessageState* b = model.Find(late_log);
  ASSERT_TRUE(a && b);
  EXPECT_TRUE(a->logs[static_cast<int>(LogKind::kDefer) - 1]);
  EXPECT_TRUE(a->logs[static_cast<int>(LogKind::kBounce) - 1]);
  EXPECT_FALSE(a->logs[static_cast<int>(LogKind::kTrace) - 1]);
  EXPECT_TRUE(b->logs[static_cast<int>(LogKind::kDefer) - 1]);
}

TEST_F(WatcherTest, SnapshotAtTheModelsPathReadsNewLogs) {
  auto q = MakeQueueFile(1, 100);
  Commit(q.bytes);
  Drain();
  std::ofstream(q_ + "/trace/" + kWatchedId) << "trace\n";
  ApplyResult r = watcher_->Snapshot(kWatchedId);
  ASSERT_FALSE(r.changes.empty());
  EXPECT_EQ(std::get<msg::LogData>(r.changes[0]).data, "trace\n");
  EXPECT_EQ(model_.Find(kWatchedId)->file.relpath, "incoming/" + kWatchedId);
}

}  // namespace
}  // namespace mailtwin::repl
