// QueueModel: what changes an observation turns into, and in which order.
#include "repl/queue_model.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace mailtwin::repl {
namespace {

using mailtwin::testing::MakeQueueFile;
const std::string kId = "4jbphZ0BYjz1bYpH";

Observation Obs(const std::string& bytes, Queue q, std::uint32_t mode = 0700,
                std::int64_t mtime = 100, bool full = true) {
  Observation o;
  o.id = kId;
  o.file.found = true;
  o.file.queue = q;
  o.file.relpath = std::string(QueueName(q)) + "/" + kId;
  o.file.mode = mode;
  o.file.mtime_ns = mtime;
  o.file.layout = ParseLayout(bytes, bytes.size());
  o.file.mut.front = bytes.substr(0, o.file.layout.body_begin);
  o.file.mut.back = bytes.substr(o.file.layout.body_end);
  if (full) o.file.full = bytes;
  return o;
}

template <typename T>
std::vector<T> All(const std::vector<Message>& v) {
  std::vector<T> out;
  for (const auto& m : v)
    if (auto* p = std::get_if<T>(&m)) out.push_back(*p);
  return out;
}

TEST(QueueModel, UncommittedFileIsIgnored) {
  QueueModel m;
  auto q = MakeQueueFile(1, 100);
  auto r = m.Apply(Obs(q.bytes, Queue::kIncoming, 0600), false);
  EXPECT_TRUE(r.changes.empty());
  EXPECT_EQ(m.size(), 0u);
}

TEST(QueueModel, CommitShipsTheWholeFileInChunks) {
  QueueModel m;
  auto q = MakeQueueFile(2, 3 * kMaxChunk);
  auto r = m.Apply(Obs(q.bytes, Queue::kIncoming), false);
  auto files = All<msg::File>(r.changes);
  ASSERT_EQ(files.size(), 4u);
  std::string joined;
  for (const auto& f : files) {
    EXPECT_EQ(f.offset, joined.size());
    EXPECT_EQ(f.total_size, q.bytes.size());
    joined += f.data;
  }
  EXPECT_EQ(joined, q.bytes);
  EXPECT_TRUE(r.new_file);
}

TEST(QueueModel, DoneRecipientOnABigMessageIsASmallPatch) {
  QueueModel m;
  auto q = MakeQueueFile(3, 10u << 20);  // 10 MB body
  m.Apply(Obs(q.bytes, Queue::kActive), false);
  std::string after = q.bytes;
  after[q.rcpt_offsets[1]] = 'D';
  auto r = m.Apply(Obs(after, Queue::kActive, 0700, 100, false), false);
  ASSERT_EQ(r.changes.size(), 1u);
  auto p = std::get<msg::Patch>(r.changes[0]);
  EXPECT_LE(p.data.size(), kChunk);
  EXPECT_EQ(after.substr(p.offset, p.data.size()), p.data);
}

TEST(QueueModel, BounceLogIsShippedBeforeTheDoneMark) {
  QueueModel m;
  auto q = MakeQueueFile(2, 100);
  m.Apply(Obs(q.bytes, Queue::kActive), false);
  std::string after = q.bytes;
  after[q.rcpt_offsets[0]] = 'D';
  Observation o = Obs(after, Queue::kActive, 0700, 100, false);
  o.logs[static_cast<int>(LogKind::kBounce) - 1] = {true, "bounce/" + kId, "recipient=x\n"};
  auto r = m.Apply(o, false);
  ASSERT_EQ(r.changes.size(), 2u);
  EXPECT_TRUE(std::holds_alternative<msg::LogData>(r.changes[0]));
  EXPECT_TRUE(std::holds_alternative<msg::Patch>(r.changes[1]));
}

TEST(QueueModel, LogGrowthIsAnAppendAndRewriteIsAReplace) {
  QueueModel m;
  auto q = MakeQueueFile(1, 100);
  Observation o = Obs(q.bytes, Queue::kDeferred);
  auto& log = o.logs[static_cast<int>(LogKind::kDefer) - 1];
  log = {true, "defer/6/" + kId, "first\n"};
  m.Apply(o, false);
  o.file.full.reset();
  log.content = "first\nsecond\n";
  auto r = m.Apply(o, false);
  auto ld = All<msg::LogData>(r.changes);
  ASSERT_EQ(ld.size(), 1u);
  EXPECT_EQ(ld[0].offset, 6u);
  EXPECT_EQ(ld[0].data, "second\n");
  log.content = "other\n";  // qmgr removed it, a new deferral wrote a new one
  r = m.Apply(o, false);
  ld = All<msg::LogData>(r.changes);
  ASSERT_EQ(ld.size(), 1u);
  EXPECT_EQ(ld[0].offset, 0u);
  EXPECT_EQ(ld[0].data, "other\n");
}

TEST(QueueModel, TheMtimeOfAnActiveFileIsNotShipped) {
  // A 'D' write moves the mtime of an active file; qmgr resets it anyway when
  // the file leaves active/, so only the patch travels.
  QueueModel m;
  auto q = MakeQueueFile(2, 100);
  m.Apply(Obs(q.bytes, Queue::kActive, 0700, 100), false);
  std::string after = q.bytes;
  after[q.rcpt_offsets[0]] = 'D';
  auto r = m.Apply(Obs(after, Queue::kActive, 0700, 555, false), false);
  ASSERT_EQ(r.changes.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<msg::Patch>(r.changes[0]));
  EXPECT_EQ(m.Find(kId)->file.mtime_ns, 100);  // what the standby has
}

TEST(QueueModel, MoveAndRetryTimeAreShippedAsMetadata) {
  QueueModel m;
  auto q = MakeQueueFile(1, 100);
  m.Apply(Obs(q.bytes, Queue::kActive), false);
  auto r = m.Apply(Obs(q.bytes, Queue::kDeferred, 0700, 999, false), false);
  ASSERT_EQ(r.changes.size(), 2u);
  EXPECT_EQ(std::get<msg::Move>(r.changes[0]).queue, Queue::kDeferred);
  EXPECT_EQ(std::get<msg::Meta>(r.changes[1]).mtime_ns, 999);
}

TEST(QueueModel, AMissingFileIsOnlySuspectedUntilConfirmed) {
  QueueModel m;
  auto q = MakeQueueFile(1, 100);
  Observation o = Obs(q.bytes, Queue::kActive);
  o.logs[static_cast<int>(LogKind::kTrace) - 1] = {true, "trace/" + kId, "x"};
  m.Apply(o, false);
  Observation gone;
  gone.id = kId;
  auto r = m.Apply(gone, false);
  EXPECT_TRUE(r.maybe_gone);
  EXPECT_TRUE(r.changes.empty());
  EXPECT_EQ(m.size(), 1u);
  r = m.Apply(gone, true);
  ASSERT_EQ(r.changes.size(), 2u);
  EXPECT_TRUE(std::holds_alternative<msg::LogDelete>(r.changes[0]));
  EXPECT_TRUE(std::holds_alternative<msg::Delete>(r.changes[1]));
  EXPECT_EQ(m.size(), 0u);
}

TEST(QueueModel, ALogSeenWhileTheFileIsInTransitIsShipped) {
  // The defer log's event came first; the queue file was not where the model
  // had it (qmgr was moving it to deferred/). The log must not be lost.
  QueueModel m;
  auto q = MakeQueueFile(1, 100);
  m.Apply(Obs(q.bytes, Queue::kActive), false);
  Observation o;
  o.id = kId;
  o.logs[static_cast<int>(LogKind::kDefer) - 1] = {true, "defer/0/" + kId, "recipient=x\n"};
  auto r = m.Apply(o, false);
  EXPECT_TRUE(r.maybe_gone);
  ASSERT_EQ(r.changes.size(), 1u);
  EXPECT_EQ(std::get<msg::LogData>(r.changes[0]).data, "recipient=x\n");
  ASSERT_TRUE(m.Find(kId)->logs[static_cast<int>(LogKind::kDefer) - 1]);
}

TEST(QueueModel, ReconcileSendsOnlyTheDifference) {
  QueueModel m;
  auto q = MakeQueueFile(1, 100);
  for (const char* id : {"4jbphZ0BYjz1bYp1", "4jbphZ0BYjz1bYp2", "4jbphZ0BYjz1bYp3"}) {
    Observation o = Obs(q.bytes, Queue::kIncoming);
    o.id = id;
    m.Apply(o, false);
  }
  std::vector<msg::ManifestEntry> standby;
  // p1: identical; p2: in another queue with an old mtime; p3: missing; p9: extra.
  standby.push_back(QueueModel::EntryOf("4jbphZ0BYjz1bYp1", m.Find("4jbphZ0BYjz1bYp1")->file));
  auto e2 = QueueModel::EntryOf("4jbphZ0BYjz1bYp2", m.Find("4jbphZ0BYjz1bYp2")->file);
  e2.queue = Queue::kActive;
  e2.mtime_ns = 1;
  standby.push_back(e2);
  auto e9 = e2;
  e9.id = "4jbphZ0BYjz1bYp9";
  standby.push_back(e9);
  standby.push_back({static_cast<std::uint8_t>(LogKind::kDefer), Queue::kIncoming,
                     "4jbphZ0BYjz1bYp1", 3, 0, 0, 1});
  auto r = m.Reconcile(standby);
  EXPECT_EQ(r.resend, std::vector<std::string>{"4jbphZ0BYjz1bYp3"});
  ASSERT_EQ(r.changes.size(), 4u);
  EXPECT_EQ(std::get<msg::Move>(r.changes[0]).id, "4jbphZ0BYjz1bYp2");
  EXPECT_EQ(std::get<msg::Meta>(r.changes[1]).id, "4jbphZ0BYjz1bYp2");
  EXPECT_EQ(std::get<msg::LogDelete>(r.changes[2]).id, "4jbphZ0BYjz1bYp1");
  EXPECT_EQ(std::get<msg::Delete>(r.changes[3]).id, "4jbphZ0BYjz1bYp9");
}

TEST(QueueModel, ReconcileResendsAPatchedFile) {
  QueueModel m;
  auto q = MakeQueueFile(2, 100);
  m.Apply(Obs(q.bytes, Queue::kActive), false);
  auto e = QueueModel::EntryOf(kId, m.Find(kId)->file);
  std::string after = q.bytes;
  after[q.rcpt_offsets[0]] = 'D';
  m.Apply(Obs(after, Queue::kActive, 0700, 100, false), false);
  auto r = m.Reconcile({e});  // the standby never got the 'D'
  EXPECT_EQ(r.resend, std::vector<std::string>{kId});
}

}  // namespace
}  // namespace mailtwin::repl
