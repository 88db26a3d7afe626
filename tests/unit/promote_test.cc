// MakeLive: a file that cannot be moved into the queue stops the promotion
// with what to fix; it is never counted as "already queued". The mirror is
// put on another filesystem (tmpfs /dev/shm) than the queue (/tmp), so the
// rename fails with EXDEV for real. A Postfix configuration of our own
// (postconf -c) names the queue; no system-wide Postfix is touched.
#include "postfix/promote.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "repl/mirror.h"
#include "repl/queue_model.h"
#include "test_util.h"

namespace mailtwin::postfix {
namespace {

const std::string kId = "4jbphZ0BYjz1bYpH";

// A temporary directory on /dev/shm (tmpfs).
class ShmDir {
 public:
  ShmDir() {
    char tmpl[] = "/dev/shm/mailtwin-test-XXXXXX";
    path_ = mkdtemp(tmpl) ? tmpl : "";
  }
  ~ShmDir() {
    if (!path_.empty()) std::filesystem::remove_all(path_);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

dev_t DeviceOf(const std::string& path) {
  struct stat st{};
  stat(path.c_str(), &st);
  return st.st_dev;
}

TEST(MakeLive, AFileThatCannotBeMovedStopsThePromotion) {
  mailtwin::testing::TempDir tmp;
  ShmDir shm;
  ASSERT_FALSE(shm.path().empty());
  if (DeviceOf(tmp.path()) == DeviceOf(shm.path())) GTEST_SKIP() << "/tmp and /dev/shm share a filesystem";
  std::string queue = tmp.path() + "/spool", conf = tmp.path() + "/etc";
  for (const char* d : {"incoming", "active", "deferred", "hold", "maildrop", "corrupt", "defer",
                        "bounce", "trace"})
    std::filesystem::create_directories(queue + "/" + d);
  std::filesystem::create_directories(conf);
  std::ofstream(conf + "/main.cf") << "queue_directory = " << queue
                                   << "\nmail_owner = postfix\nsetgid_group = postdrop\n"
                                      "compatibility_level = 3.6\n";
  std::ofstream(conf + "/master.cf") << "";

  repl::Mirror mirror(shm.path() + "/mirror");
  ASSERT_EQ(mirror.Open(), "");
  auto q = mailtwin::testing::MakeQueueFile(1, 1000);
  std::vector<repl::Message> chunks;
  repl::FileState f{Queue::kDeferred, "", 0700, 0, 0, {}, {}, 0};
  repl::AppendFileChunks(kId, f, q.bytes, chunks);
  for (auto& c : chunks) ASSERT_EQ(mirror.Apply(c), "");
  ASSERT_EQ(mirror.Commit(), "");

  PromoteReport rep = MakeLive(mirror, queue, conf);
  EXPECT_NE(rep.error.find("promotion stopped: cannot move"), std::string::npos) << rep.error;
  EXPECT_NE(rep.error.find("not on the queue's filesystem"), std::string::npos) << rep.error;
  EXPECT_EQ(rep.files, 0u);
  EXPECT_TRUE(rep.conflicts.empty()) << "a failed move reported as already queued";
  for (const auto& s : rep.steps) EXPECT_EQ(s.find("already queued"), std::string::npos) << s;
  // The mail is where it was, not lost between the two.
  EXPECT_TRUE(std::filesystem::exists(shm.path() + "/mirror/deferred/" + kId));
  EXPECT_FALSE(std::filesystem::exists(queue + "/deferred/" + kId));
}

}  // namespace
}  // namespace mailtwin::postfix
