// Mirror: durability rules and refusal of inconsistent changes, on a real filesystem.
#include "repl/mirror.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <set>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "repl/queue_model.h"
#include "test_util.h"

namespace mailtwin::repl {
namespace {

using mailtwin::testing::MakeQueueFile;
using mailtwin::testing::TempDir;
const std::string kMirroredId = "4jbphZ0BYjz1bYpH";

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct stat Stat(const std::string& path) {
  struct stat st{};
  stat(path.c_str(), &st);
  return st;
}

std::vector<Message> FileChanges(const std::string& bytes, Queue q, std::int64_t mtime_ns) {
  std::vector<Message> out;
  FileState f{q, "", 0700, mtime_ns, 0, {}, {}, 0};
  AppendFileChunks(kMirroredId, f, bytes, out);
  return out;
}

TEST(Mirror, CommittedFileHasItsBytesModeAndMtime) {
  TempDir dir;
  Mirror m(dir.path() + "/mirror");
  ASSERT_EQ(m.Open(), "");
  auto q = MakeQueueFile(2, 3u << 20);
  for (auto& c : FileChanges(q.bytes, Queue::kDeferred, 1795820330123000000)) ASSERT_EQ(m.Apply(c), "");
  std::string path = dir.path() + "/mirror/deferred/" + kMirroredId;
  // Complete, but not durable yet: it has no name in the queue directory.
  EXPECT_FALSE(std::filesystem::exists(path));
  ASSERT_EQ(m.Commit(), "");
  auto st = Stat(path);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1795820330);
  EXPECT_EQ(st.st_mtim.tv_nsec, 123000000);
  EXPECT_EQ(Slurp(path), q.bytes);
  // The commit is counted in the status's commit_p50_ms/commit_p99_ms; one
  // with nothing to do is not.
  EXPECT_EQ(m.commit_latency().count(), 1u);
  EXPECT_GT(m.commit_latency().Quantile(0.99), 0.0);
  ASSERT_EQ(m.Commit(), "");
  EXPECT_EQ(m.commit_latency().count(), 1u);
}

TEST(Mirror, PartialAndUncommittedFilesAreDroppedOnReopen) {
  TempDir dir;
  auto q = MakeQueueFile(1, 3u << 20);
  auto chunks = FileChanges(q.bytes, Queue::kIncoming, 0);
  auto small = MakeQueueFile(1, 100);
  {
    Mirror m(dir.path() + "/mirror");
    ASSERT_EQ(m.Open(), "");
    ASSERT_EQ(m.Apply(chunks[0]), "");  // only the first chunk arrived
    std::vector<Message> whole;
    AppendFileChunks("4jbphZ0BYjz1bYpX", FileState{Queue::kIncoming, "", 0700, 0, 0, {}, {}, 0},
                     small.bytes, whole);
    ASSERT_EQ(m.Apply(whole[0]), "");  // complete, but the process dies before Commit
    ASSERT_FALSE(std::filesystem::is_empty(dir.path() + "/mirror/tmp"));
    // (no Commit: the destructor only closes)
  }
  Mirror m(dir.path() + "/mirror");
  ASSERT_EQ(m.Open(), "");
  EXPECT_TRUE(m.files().empty());
  EXPECT_TRUE(std::filesystem::is_empty(dir.path() + "/mirror/incoming"));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path() + "/mirror/tmp"));
}

TEST(Mirror, ChangesToAFileWaitingForCommitLandInIt) {
  TempDir dir;
  Mirror m(dir.path() + "/mirror");
  ASSERT_EQ(m.Open(), "");
  auto q = MakeQueueFile(2, 1000);
  for (auto& c : FileChanges(q.bytes, Queue::kIncoming, 0)) ASSERT_EQ(m.Apply(c), "");
  // Same batch: delivered to one recipient, moved to deferred with a retry time.
  ASSERT_EQ(m.Apply(msg::Patch{kMirroredId, q.rcpt_offsets[0], "D"}), "");
  ASSERT_EQ(m.Apply(msg::Move{kMirroredId, Queue::kDeferred}), "");
  ASSERT_EQ(m.Apply(msg::Meta{kMirroredId, 0700, 3000000000}), "");
  ASSERT_EQ(m.Commit(), "");
  std::string expect = q.bytes;
  expect[q.rcpt_offsets[0]] = 'D';
  std::string path = dir.path() + "/mirror/deferred/" + kMirroredId;
  EXPECT_EQ(Slurp(path), expect);
  EXPECT_EQ(Stat(path).st_mtim.tv_sec, 3);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path() + "/mirror/incoming"));
  // A file committed and deleted in the same batch leaves nothing behind.
  for (auto& c : FileChanges(q.bytes, Queue::kIncoming, 0)) ASSERT_EQ(m.Apply(c), "");
  ASSERT_EQ(m.Apply(msg::Delete{kMirroredId}), "");
  ASSERT_EQ(m.Commit(), "");
  EXPECT_TRUE(std::filesystem::is_empty(dir.path() + "/mirror/deferred"));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path() + "/mirror/tmp"));
}

TEST(Mirror, PatchMoveMetaDelete) {
  TempDir dir;
  Mirror m(dir.path() + "/mirror");
  ASSERT_EQ(m.Open(), "");
  auto q = MakeQueueFile(2, 1000);
  for (auto& c : FileChanges(q.bytes, Queue::kIncoming, 0)) ASSERT_EQ(m.Apply(c), "");
  ASSERT_EQ(m.Commit(), "");
  ASSERT_EQ(m.Apply(msg::Patch{kMirroredId, q.rcpt_offsets[1], "D"}), "");
  ASSERT_EQ(m.Apply(msg::Move{kMirroredId, Queue::kDeferred}), "");
  ASSERT_EQ(m.Apply(msg::Meta{kMirroredId, 0700, 2000000000}), "");
  ASSERT_EQ(m.Commit(), "");
  std::string expect = q.bytes;
  expect[q.rcpt_offsets[1]] = 'D';
  std::string path = dir.path() + "/mirror/deferred/" + kMirroredId;
  EXPECT_EQ(Slurp(path), expect);
  EXPECT_EQ(Stat(path).st_mtim.tv_sec, 2);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/mirror/incoming/" + kMirroredId));
  ASSERT_EQ(m.Apply(msg::Delete{kMirroredId}), "");
  ASSERT_EQ(m.Apply(msg::Delete{kMirroredId}), "");  // idempotent
  ASSERT_EQ(m.Commit(), "");
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(Mirror, InconsistentChangesAreRefused) {
  TempDir dir;
  Mirror m(dir.path() + "/mirror");
  ASSERT_EQ(m.Open(), "");
  auto q = MakeQueueFile(1, 100);
  EXPECT_NE(m.Apply(msg::Patch{kMirroredId, 0, "D"}), "");  // unknown message
  for (auto& c : FileChanges(q.bytes, Queue::kIncoming, 0)) ASSERT_EQ(m.Apply(c), "");
  EXPECT_NE(m.Apply(msg::Patch{kMirroredId, q.bytes.size() - 1, "DD"}), "");  // past the end
  EXPECT_NE(m.Apply(msg::LogData{LogKind::kDefer, kMirroredId, 10, "gap"}), "");
  EXPECT_NE(m.Apply(msg::File{kMirroredId, Queue::kIncoming, 0700, 0, 10, 5, "12345"}), "");
}

TEST(Mirror, LogsAppendAndReplace) {
  TempDir dir;
  Mirror m(dir.path() + "/mirror");
  ASSERT_EQ(m.Open(), "");
  ASSERT_EQ(m.Apply(msg::LogData{LogKind::kDefer, kMirroredId, 0, "one\n"}), "");
  ASSERT_EQ(m.Apply(msg::LogData{LogKind::kDefer, kMirroredId, 4, "two\n"}), "");
  ASSERT_EQ(m.Commit(), "");
  EXPECT_EQ(Slurp(dir.path() + "/mirror/defer/" + kMirroredId), "one\ntwo\n");
  ASSERT_EQ(m.Apply(msg::LogData{LogKind::kDefer, kMirroredId, 0, "x\n"}), "");
  ASSERT_EQ(m.Commit(), "");
  EXPECT_EQ(Slurp(dir.path() + "/mirror/defer/" + kMirroredId), "x\n");
  ASSERT_EQ(m.Apply(msg::LogDelete{LogKind::kDefer, kMirroredId}), "");
  ASSERT_EQ(m.Commit(), "");
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/mirror/defer/" + kMirroredId));
}

TEST(Mirror, RemovedFilesLendTheirInodesToNewOnesWithoutStaleBytes) {
  TempDir dir;
  std::string root = dir.path() + "/mirror";
  const std::string other = "4jbphZ0BYjz1bYpX";
  auto m = std::make_unique<Mirror>(root);
  ASSERT_EQ(m->Open(), "");
  auto big = MakeQueueFile(2, 20000);
  for (auto& c : FileChanges(big.bytes, Queue::kActive, 0)) ASSERT_EQ(m->Apply(c), "");
  ASSERT_EQ(m->Commit(), "");
  ino_t big_ino = Stat(root + "/active/" + kMirroredId).st_ino;
  ASSERT_EQ(m->Apply(msg::Delete{kMirroredId}), "");
  ASSERT_EQ(m->Commit(), "");
  EXPECT_FALSE(std::filesystem::exists(root + "/active/" + kMirroredId));
  EXPECT_EQ(m->files().size(), 0u);
  // A restart keeps the spare inode and indexes nothing of it.
  m = std::make_unique<Mirror>(root);
  ASSERT_EQ(m->Open(), "");
  EXPECT_EQ(m->files().size(), 0u);
  EXPECT_EQ(m->logs().size(), 0u);
  // A smaller message takes it: exactly its own bytes (the old tail cut off).
  auto small = MakeQueueFile(1, 100);
  for (auto& c : FileChanges(small.bytes, Queue::kIncoming, 0)) ASSERT_EQ(m->Apply(c), "");
  ASSERT_EQ(m->Commit(), "");
  EXPECT_EQ(m->stats().recycled, 1u);
  std::string path = root + "/incoming/" + kMirroredId;
  EXPECT_EQ(Stat(path).st_ino, big_ino);
  EXPECT_EQ(Slurp(path), small.bytes);
  EXPECT_EQ(Stat(path).st_mode & 07777, 0700u);
  EXPECT_TRUE(std::filesystem::is_empty(root + "/spare"));
  // Removed and needed again in one batch: the inode may not be taken before
  // a commit has made its old name's removal durable (after a crash without
  // a journal, incoming/ID could still name it, holding the new bytes).
  ASSERT_EQ(m->Apply(msg::Delete{kMirroredId}), "");
  for (auto& c : FileChanges(small.bytes, Queue::kIncoming, 0)) {
    auto f = std::get<msg::File>(c);
    f.id = other;
    ASSERT_EQ(m->Apply(f), "");
  }
  ASSERT_EQ(m->Commit(), "");
  EXPECT_EQ(m->stats().recycled, 1u);
  EXPECT_NE(Stat(root + "/incoming/" + other).st_ino, big_ino);
  // A log never takes one (it has its final name at once).
  ASSERT_EQ(m->Apply(msg::LogData{LogKind::kDefer, other, 0, "x\n"}), "");
  ASSERT_EQ(m->Commit(), "");
  EXPECT_EQ(m->stats().recycled, 1u);
  std::string log = root + "/defer/" + other;
  EXPECT_NE(Stat(log).st_ino, big_ino);
  EXPECT_EQ(Slurp(log), "x\n");
  EXPECT_EQ(Stat(log).st_mode & 07777, 0600u);
  // After that commit it is free to take.
  for (auto& c : FileChanges(small.bytes, Queue::kIncoming, 0)) ASSERT_EQ(m->Apply(c), "");
  ASSERT_EQ(m->Commit(), "");
  EXPECT_EQ(m->stats().recycled, 2u);
  EXPECT_EQ(Stat(path).st_ino, big_ino);
  EXPECT_EQ(Slurp(path), small.bytes);
  ASSERT_EQ(m->Apply(msg::Delete{kMirroredId}), "");
  ASSERT_EQ(m->Commit(), "");
  // A large file is not kept: spare/ must not hold much disk.
  auto huge = MakeQueueFile(1, 3u << 20);
  for (auto& c : FileChanges(huge.bytes, Queue::kActive, 0)) ASSERT_EQ(m->Apply(c), "");
  ASSERT_EQ(m->Commit(), "");
  ASSERT_EQ(m->Apply(msg::Delete{kMirroredId}), "");
  ASSERT_EQ(m->Commit(), "");
  EXPECT_TRUE(std::filesystem::is_empty(root + "/spare"));
}

TEST(Mirror, AResendMidWayLeavesTheWaitingCopyWhole) {
  // A complete copy waits for its commit when a resend of the same message
  // starts, and the link drops mid-resend: the standby commits what it has
  // (StandbyServer::OnClosed), and that must be the whole waiting copy.
  TempDir dir;
  std::string root = dir.path() + "/mirror";
  Mirror m(root);
  ASSERT_EQ(m.Open(), "");
  auto v1 = MakeQueueFile(2, 3000);
  for (auto& c : FileChanges(v1.bytes, Queue::kIncoming, 0)) ASSERT_EQ(m.Apply(c), "");
  ASSERT_EQ(m.Commit(), "");
  std::string v2 = v1.bytes;
  v2[v1.rcpt_offsets[0]] = 'D';
  for (auto& c : FileChanges(v2, Queue::kActive, 0)) ASSERT_EQ(m.Apply(c), "");
  auto resend = FileChanges(v2, Queue::kActive, 0);
  ASSERT_GT(resend.size(), 0u);
  auto first = std::get<msg::File>(resend[0]);
  first.data.resize(first.data.size() / 2);  // only part of it arrives
  ASSERT_EQ(m.Apply(first), "");
  ASSERT_EQ(m.Commit(), "");
  m.DropPartial();
  EXPECT_EQ(Slurp(root + "/active/" + kMirroredId), v2);
  EXPECT_FALSE(std::filesystem::exists(root + "/incoming/" + kMirroredId));
  EXPECT_TRUE(std::filesystem::is_empty(root + "/tmp"));
  // And a resend that completes replaces the waiting copy, patches after it
  // landing in the new one.
  for (auto& c : FileChanges(v1.bytes, Queue::kActive, 0)) ASSERT_EQ(m.Apply(c), "");
  ASSERT_EQ(m.Apply(msg::Meta{kMirroredId, 0700, 3000000000}), "");
  for (auto& c : FileChanges(v2, Queue::kActive, 0)) ASSERT_EQ(m.Apply(c), "");
  ASSERT_EQ(m.Apply(msg::Patch{kMirroredId, v1.rcpt_offsets[1], "D"}), "");
  ASSERT_EQ(m.Commit(), "");
  std::string v3 = v2;
  v3[v1.rcpt_offsets[1]] = 'D';
  EXPECT_EQ(Slurp(root + "/active/" + kMirroredId), v3);
}

TEST(Mirror, ASecondNameLeftByACrashIsNeitherRemovedNorReused) {
  // Without a journal a crash can leave an inode named both in spare/ (or
  // tmp/) and in a queue directory. Open() must not unlink that name (it
  // would free a file in use) nor hand the inode to a new file.
  TempDir dir;
  std::string root = dir.path() + "/mirror";
  auto m = std::make_unique<Mirror>(root);
  ASSERT_EQ(m->Open(), "");
  auto q = MakeQueueFile(1, 500);
  for (auto& c : FileChanges(q.bytes, Queue::kDeferred, 0)) ASSERT_EQ(m->Apply(c), "");
  ASSERT_EQ(m->Commit(), "");
  std::string path = root + "/deferred/" + kMirroredId;
  ASSERT_EQ(link(path.c_str(), (root + "/spare/77").c_str()), 0);
  ASSERT_EQ(link(path.c_str(), (root + "/tmp/" + kMirroredId).c_str()), 0);
  m = std::make_unique<Mirror>(root);
  ASSERT_EQ(m->Open(), "");
  EXPECT_TRUE(std::filesystem::exists(root + "/spare/77"));
  EXPECT_TRUE(std::filesystem::exists(root + "/tmp/" + kMirroredId));
  const std::string other = "4jbphZ0BYjz1bYpX";
  for (auto& c : FileChanges(std::string(100, 'x'), Queue::kIncoming, 0)) {
    auto f = std::get<msg::File>(c);
    f.id = other;
    ASSERT_EQ(m->Apply(f), "");
  }
  ASSERT_EQ(m->Commit(), "");
  EXPECT_EQ(m->stats().recycled, 0u);
  EXPECT_EQ(Slurp(path), q.bytes);
}

TEST(Mirror, ManifestDigestMatchesThePrimarysModel) {
  TempDir dir;
  Mirror m(dir.path() + "/mirror");
  ASSERT_EQ(m.Open(), "");
  auto q = MakeQueueFile(3, 5000);
  for (auto& c : FileChanges(q.bytes, Queue::kActive, 5)) ASSERT_EQ(m.Apply(c), "");
  ASSERT_EQ(m.Commit(), "");
  QueueModel model;
  Observation o;
  o.id = kMirroredId;
  o.file = {true, Queue::kActive, "active/" + kMirroredId, 0700, 5, 0,
            ParseLayout(q.bytes, q.bytes.size()), {}, q.bytes};
  o.file.mut = {q.bytes.substr(0, o.file.layout.body_begin), q.bytes.substr(o.file.layout.body_end)};
  model.Apply(o, false);
  auto rec = model.Reconcile(m.Manifest());
  EXPECT_TRUE(rec.resend.empty());
  EXPECT_TRUE(rec.changes.empty());
  // Reopening (a restart) computes the same digest from disk.
  Mirror again(dir.path() + "/mirror");
  ASSERT_EQ(again.Open(), "");
  rec = model.Reconcile(again.Manifest());
  EXPECT_TRUE(rec.resend.empty());
  EXPECT_TRUE(rec.changes.empty());
}

// --- MAILTWIN_TEST_MIRROR_SYNC (test-only sync modes) ---

// Commits n new files; returns the mirror's stats.
Mirror::Stats CommitMany(const std::string& root, int n) {
  Mirror m(root);
  EXPECT_EQ(m.Open(), "");
  auto q = MakeQueueFile(1, 2048);
  for (int i = 0; i < n; ++i) {
    std::vector<Message> out;
    FileState f{Queue::kIncoming, "", 0700, 1795820330000000000, 0, {}, {}, 0};
    AppendFileChunks("4jbphZ0BYjz1bY" + std::to_string(10 + i), f, q.bytes, out);
    for (auto& c : out) EXPECT_EQ(m.Apply(c), "");
  }
  EXPECT_EQ(m.Commit(), "");
  EXPECT_EQ(m.files().size(), static_cast<std::size_t>(n));
  return m.stats();
}

struct Env {  // MAILTWIN_TEST_MIRROR_SYNC for one test
  explicit Env(const char* v) { setenv("MAILTWIN_TEST_MIRROR_SYNC", v, 1); }
  ~Env() { unsetenv("MAILTWIN_TEST_MIRROR_SYNC"); }
};

TEST(MirrorSyncModes, NormalUsesSyncfsForABigCommit) {
  TempDir dir;
  auto st = CommitMany(dir.path() + "/m", 30);
  EXPECT_GE(st.syncfs, 1u);
}

TEST(MirrorSyncModes, FsyncOnlyNeverUsesSyncfs) {
  Env env("fsync-only");
  TempDir dir;
  auto st = CommitMany(dir.path() + "/m", 30);
  EXPECT_EQ(st.syncfs, 0u);
  EXPECT_GE(st.fsyncs, 31u);  // every file and its directory
}

TEST(MirrorSyncModes, NoneSyncsNothingButStillNamesTheFiles) {
  Env env("none");
  TempDir dir;
  auto st = CommitMany(dir.path() + "/m", 3);
  EXPECT_EQ(st.syncfs + st.fsyncs, 0u);
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/m/incoming/4jbphZ0BYjz1bY10"));
}

TEST(MirrorSyncModes, AnUnknownValueIsRefused) {
  Env env("fast");
  TempDir dir;
  Mirror m(dir.path() + "/m");
  EXPECT_NE(m.Open().find("MAILTWIN_TEST_MIRROR_SYNC=fast"), std::string::npos);
}

}  // namespace
}  // namespace mailtwin::repl
