// The power-loss model of lab/powerfs, without FUSE: after Cut() exactly
// what fsync (files) and directory fsync (names) made durable is left.
#include "power_tree.h"

#include <linux/fs.h>

#include <gtest/gtest.h>

namespace mailtwin::lab {
namespace {

class PowerTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(t_.Make("/q", S_IFDIR | 0700, 0, 0, 0, nullptr), 0);
    ASSERT_EQ(t_.Make("/q/a", S_IFDIR | 0700, 0, 0, 0, nullptr), 0);
    ASSERT_EQ(t_.Make("/q/b", S_IFDIR | 0700, 0, 0, 0, nullptr), 0);
    t_.SyncAll();  // the empty queue, durable (as after `sync` at set-up)
  }
  NodePtr Get(const char* p) {
    NodePtr n;
    return t_.Resolve(p, n) == 0 ? n : nullptr;
  }
  NodePtr Put(const char* p, const std::string& text) {
    NodePtr n;
    EXPECT_EQ(t_.Make(p, S_IFREG | 0600, 0, 0, 0, &n), 0);
    Tree::Write(*n, text.data(), text.size(), 0);
    return n;
  }
  void SyncDir(const char* p) { Tree::FsyncDir(*Get(p)); }
  std::string Text(const char* p) {
    NodePtr n = Get(p);
    return n ? n->data : "<none>";
  }

  Tree t_;
};

TEST_F(PowerTreeTest, AFileNeverSyncedIsGone) {
  Put("/q/a/f", "data");
  EXPECT_EQ(Text("/q/a/f"), "data");
  CutReport r = t_.Cut();
  EXPECT_EQ(Get("/q/a/f"), nullptr);
  EXPECT_EQ(r.inodes_lost, 1u);
}

TEST_F(PowerTreeTest, DataSyncedButNameNotIsGone) {
  Tree::Fsync(*Put("/q/a/f", "data"));
  t_.Cut();
  EXPECT_EQ(Get("/q/a/f"), nullptr);
}

TEST_F(PowerTreeTest, NameSyncedButDataNotComesBackEmpty) {
  Put("/q/a/f", "data");
  SyncDir("/q/a");
  t_.Cut();
  EXPECT_EQ(Text("/q/a/f"), "");
}

TEST_F(PowerTreeTest, DataAndNameSyncedSurvive) {
  NodePtr f = Put("/q/a/f", "data");
  Tree::Fsync(*f);
  SyncDir("/q/a");
  Tree::Write(*f, "XY", 2, 4);  // appended after the fsync: lost
  Tree::Write(*f, "D", 1, 0);   // overwritten after the fsync: rolled back
  EXPECT_EQ(Text("/q/a/f"), "DataXY");
  CutReport r = t_.Cut();
  EXPECT_EQ(Text("/q/a/f"), "data");
  EXPECT_EQ(r.inodes_lost, 0u);
  EXPECT_EQ(r.inodes_reverted, 1u);
}

TEST_F(PowerTreeTest, AttributesNeedTheFilesFsync) {
  NodePtr f = Put("/q/a/f", "x");
  Tree::Fsync(*f);
  SyncDir("/q/a");
  f->attrs.mode = S_IFREG | 0700;  // Postfix's commit mark, never synced
  t_.Cut();
  EXPECT_EQ(Get("/q/a/f")->attrs.mode, static_cast<mode_t>(S_IFREG | 0600));
  f = Get("/q/a/f");
  f->attrs.mode = S_IFREG | 0700;
  Tree::Fsync(*f);
  t_.Cut();
  EXPECT_EQ(Get("/q/a/f")->attrs.mode, static_cast<mode_t>(S_IFREG | 0700));
}

TEST_F(PowerTreeTest, ARenameIsDurableOnlyWithBothDirectories) {
  NodePtr f = Put("/q/a/f", "data");
  Tree::Fsync(*f);
  SyncDir("/q/a");
  ASSERT_EQ(t_.Rename("/q/a/f", "/q/b/f", 0), 0);
  t_.Cut();  // neither directory synced: the old name only
  EXPECT_EQ(Text("/q/a/f"), "data");
  EXPECT_EQ(Get("/q/b/f"), nullptr);

  ASSERT_EQ(t_.Rename("/q/a/f", "/q/b/f", 0), 0);
  SyncDir("/q/b");
  t_.Cut();  // the new name durable, the removal of the old one not: both
  EXPECT_EQ(Get("/q/a/f"), Get("/q/b/f"));
  EXPECT_EQ(Get("/q/b/f")->links, 2u);

  ASSERT_EQ(t_.Unlink("/q/a/f"), 0);
  SyncDir("/q/a");
  t_.Cut();
  EXPECT_EQ(Get("/q/a/f"), nullptr);
  EXPECT_EQ(Text("/q/b/f"), "data");
  EXPECT_EQ(Get("/q/b/f")->links, 1u);
}

TEST_F(PowerTreeTest, AnUnlinkNotSyncedIsUndone) {
  Tree::Fsync(*Put("/q/a/f", "data"));
  SyncDir("/q/a");
  ASSERT_EQ(t_.Unlink("/q/a/f"), 0);
  EXPECT_EQ(Get("/q/a/f"), nullptr);
  t_.Cut();
  EXPECT_EQ(Text("/q/a/f"), "data");
}

TEST_F(PowerTreeTest, ANewDirectoryNeedsItsParentsFsync) {
  ASSERT_EQ(t_.Make("/q/a/6", S_IFDIR | 0700, 0, 0, 0, nullptr), 0);
  NodePtr f = Put("/q/a/6/f", "data");
  Tree::Fsync(*f);
  SyncDir("/q/a/6");  // its own entries, but its name in /q/a is not durable
  t_.Cut();
  EXPECT_EQ(Get("/q/a/6"), nullptr);
}

TEST_F(PowerTreeTest, SyncAllMakesEverythingDurable) {
  Put("/q/a/f", "data");
  ASSERT_EQ(t_.Make("/q/fifo", S_IFIFO | 0622, 0, 0, 0, nullptr), 0);
  ASSERT_EQ(t_.Rename("/q/a/f", "/q/b/g", 0), 0);
  t_.SyncAll();
  CutReport r = t_.Cut();
  EXPECT_EQ(r.inodes_lost, 0u);
  EXPECT_EQ(r.inodes_reverted, 0u);
  EXPECT_EQ(Text("/q/b/g"), "data");
  EXPECT_EQ(Get("/q/a/f"), nullptr);
  EXPECT_TRUE(S_ISFIFO(Get("/q/fifo")->attrs.mode));
}

TEST_F(PowerTreeTest, RenameRules) {
  Put("/q/a/f", "1");
  Put("/q/a/g", "2");
  EXPECT_EQ(t_.Rename("/q/a/f", "/q/a/g", RENAME_NOREPLACE), -EEXIST);
  EXPECT_EQ(t_.Rename("/q/a/f", "/q/b", 0), -EISDIR);
  EXPECT_EQ(t_.Rename("/q/a/nothing", "/q/a/x", 0), -ENOENT);
  EXPECT_EQ(t_.Rename("/q/a", "/q/b", 0), 0);  // an empty directory may be replaced
  EXPECT_EQ(Text("/q/b/g"), "2");
  EXPECT_EQ(t_.Rename("/q/b/f", "/q/b/g", 0), 0);
  EXPECT_EQ(Text("/q/b/g"), "1");
  EXPECT_EQ(t_.Rmdir("/q/b"), -ENOTEMPTY);
}

TEST_F(PowerTreeTest, HardLinksShareOneInode) {
  NodePtr f = Put("/q/a/f", "data");
  ASSERT_EQ(t_.Link("/q/a/f", "/q/b/f"), 0);
  EXPECT_EQ(f->links, 2u);
  ASSERT_EQ(t_.Unlink("/q/a/f"), 0);
  EXPECT_EQ(Text("/q/b/f"), "data");
  EXPECT_EQ(t_.Link("/q/a", "/q/x"), -EPERM);
}

}  // namespace
}  // namespace mailtwin::lab
