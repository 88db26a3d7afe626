// powerfs mounted for real (root and /dev/fuse needed, else skipped): what
// the kernel's fsync, fdatasync and directory fsync reach, what a cut leaves,
// and the filesystem features Postfix and mailtwind use on the standby
// (FIFOs, UNIX sockets, chown, utimens, hard links, flock, O_EXCL, statfs).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "common/durable_dir.h"
#include "ha/events.h"
#include "ha/ledger.h"

namespace mailtwin::lab {
namespace {

namespace fs = std::filesystem;
constexpr long kFuseMagic = 0x65735546;

class PowerFsMountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0 || access("/dev/fuse", R_OK | W_OK) != 0)
      GTEST_SKIP() << "needs root and /dev/fuse";
    char tmpl[] = "/tmp/powerfs-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    mnt_ = dir_ + "/mnt";
    ctl_ = dir_ + "/ctl.sock";
    fs::create_directory(mnt_);
    pid_ = fork();
    if (pid_ == 0) {
      execl(POWERFS_BIN, "powerfs", mnt_.c_str(), ctl_.c_str(), nullptr);
      _exit(127);
    }
    for (int i = 0; i < 100 && !Mounted(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_TRUE(Mounted()) << "powerfs did not mount on " << mnt_;
  }
  void TearDown() override {
    if (pid_ <= 0) return;
    umount2(mnt_.c_str(), MNT_DETACH);
    int status = 0;
    waitpid(pid_, &status, 0);  // fuse_main returns once unmounted
    fs::remove_all(dir_);
  }
  bool Mounted() {
    struct statfs s {};
    return statfs(mnt_.c_str(), &s) == 0 && s.f_type == kFuseMagic;
  }
  std::string P(const std::string& rel) { return mnt_ + "/" + rel; }
  // Writes rel; with sync, fsyncs it (fdatasync when datasync).
  void Write(const std::string& rel, const std::string& text, bool sync, bool datasync = false,
             int flags = O_CREAT | O_TRUNC) {
    int fd = open(P(rel).c_str(), O_WRONLY | flags, 0600);
    ASSERT_GE(fd, 0) << rel << ": " << std::strerror(errno);
    ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    if (sync) {
      ASSERT_EQ(datasync ? fdatasync(fd) : fsync(fd), 0);
    }
    close(fd);
  }
  void SyncDir(const std::string& rel) {
    int fd = open(P(rel).c_str(), O_RDONLY | O_DIRECTORY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(fsync(fd), 0);
    close(fd);
  }
  std::string Read(const std::string& rel) {
    int fd = open(P(rel).c_str(), O_RDONLY);
    if (fd < 0) return "<none>";
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
    close(fd);
    return out;
  }
  std::string Ctl(const std::string& cmd) {
    std::string line = std::string(POWERFS_BIN) + " --ctl " + ctl_ + " " + cmd;
    FILE* p = popen(line.c_str(), "r");
    std::string out;
    char buf[256];
    while (p && fgets(buf, sizeof buf, p)) out += buf;
    if (p) pclose(p);
    return out;
  }
  bool Exists(const std::string& rel) { return access(P(rel).c_str(), F_OK) == 0; }

  std::string dir_, mnt_, ctl_;
  pid_t pid_ = -1;
};

TEST_F(PowerFsMountTest, ACutKeepsExactlyWhatFsyncMadeDurable) {
  ASSERT_EQ(mkdir(P("q").c_str(), 0700), 0);
  SyncDir("");
  Write("q/both", "durable", true);
  Write("q/data-only", "x", true);
  Write("q/nothing", "x", false);
  Write("q/fdatasync", "durable too", true, true);
  Write("q/name-only", "x", false);
  SyncDir("q");  // names of all five durable now...
  Write("q/data-only2", "x", true);  // ...but not this one's
  Write("q/both", "+lost", false, false, O_APPEND);
  EXPECT_EQ(Read("q/both"), "durable+lost");
  ASSERT_EQ(Ctl("cut").rfind("ok cut", 0), 0u);
  EXPECT_EQ(Read("q/both"), "durable");  // (and no page cache shows the old bytes)
  EXPECT_EQ(Read("q/fdatasync"), "durable too");
  EXPECT_EQ(Read("q/data-only"), "x");   // its name was synced after its data
  EXPECT_EQ(Read("q/nothing"), "");      // the name survived, the data did not
  EXPECT_EQ(Read("q/name-only"), "");
  EXPECT_FALSE(Exists("q/data-only2"));
}

TEST_F(PowerFsMountTest, TheMirrorsCommitPatternSurvives) {
  // temp file, fsync, rename into the queue, fsync of both directories
  for (const char* d : {"tmp", "incoming"}) ASSERT_EQ(mkdir(P(d).c_str(), 0700), 0);
  SyncDir("");
  Write("tmp/4jbrwT63sJz1bYJB", "queue file", true);
  Write("tmp/4jbrwT63sJz1bYJC", "queue file 2", true);
  ASSERT_EQ(rename(P("tmp/4jbrwT63sJz1bYJB").c_str(), P("incoming/4jbrwT63sJz1bYJB").c_str()), 0);
  ASSERT_EQ(rename(P("tmp/4jbrwT63sJz1bYJC").c_str(), P("incoming/4jbrwT63sJz1bYJC").c_str()), 0);
  SyncDir("incoming");
  SyncDir("tmp");
  ASSERT_EQ(chmod(P("incoming/4jbrwT63sJz1bYJC").c_str(), 0700), 0);  // never synced
  Ctl("cut");
  EXPECT_EQ(Read("incoming/4jbrwT63sJz1bYJB"), "queue file");
  EXPECT_FALSE(Exists("tmp/4jbrwT63sJz1bYJB"));
  struct stat st {};
  ASSERT_EQ(stat(P("incoming/4jbrwT63sJz1bYJC").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(PowerFsMountTest, SyncCommandMakesEverythingDurable) {
  ASSERT_EQ(mkdir(P("a").c_str(), 0755), 0);
  Write("a/f", "setup", false);
  EXPECT_EQ(Ctl("sync"), "ok sync\n");
  Ctl("cut");
  EXPECT_EQ(Read("a/f"), "setup");
  EXPECT_NE(Ctl("stats").find("cuts=1"), std::string::npos);
}

TEST_F(PowerFsMountTest, WhatPostfixNeeds) {
  ASSERT_EQ(mkdir(P("public").c_str(), 0710), 0);
  ASSERT_EQ(mkfifo(P("public/pickup").c_str(), 0622), 0);
  // A FIFO works: a reader and a writer meet through it.
  int r = open(P("public/pickup").c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(r, 0);
  int w = open(P("public/pickup").c_str(), O_WRONLY | O_NONBLOCK);
  ASSERT_GE(w, 0);
  EXPECT_EQ(write(w, "W", 1), 1);
  char c = 0;
  EXPECT_EQ(read(r, &c, 1), 1);
  EXPECT_EQ(c, 'W');
  close(w);
  close(r);
  // A UNIX socket: bind, connect.
  int srv = socket(AF_UNIX, SOCK_STREAM, 0), cli = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", P("public/qmgr").c_str());
  ASSERT_EQ(bind(srv, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
  ASSERT_EQ(listen(srv, 1), 0);
  EXPECT_EQ(connect(cli, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
  close(cli);
  close(srv);
  // Owners, modes, times, links, exclusive create, locks, free space.
  Write("f", "x", false);
  ASSERT_EQ(chown(P("f").c_str(), 65534, 65534), 0);
  ASSERT_EQ(chmod(P("f").c_str(), 0700), 0);
  timespec tv[2] = {{0, UTIME_OMIT}, {1000000000, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, P("f").c_str(), tv, 0), 0);
  struct stat st {};
  ASSERT_EQ(stat(P("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 65534u);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1000000000);
  ASSERT_EQ(link(P("f").c_str(), P("g").c_str()), 0);
  ASSERT_EQ(stat(P("g").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 2u);
  EXPECT_LT(open(P("g").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600), 0);
  EXPECT_EQ(errno, EEXIST);
  int l1 = open(P("f").c_str(), O_RDONLY), l2 = open(P("f").c_str(), O_RDONLY);
  EXPECT_EQ(flock(l1, LOCK_EX | LOCK_NB), 0);
  EXPECT_NE(flock(l2, LOCK_EX | LOCK_NB), 0);
  close(l1);
  close(l2);
  struct statfs s {};
  ASSERT_EQ(statfs(mnt_.c_str(), &s), 0);
  EXPECT_GT(static_cast<double>(s.f_bavail) * static_cast<double>(s.f_bsize), 1e9);
  // An unlinked file stays readable through its open descriptor.
  int fd = open(P("f").c_str(), O_RDONLY);
  ASSERT_EQ(unlink(P("f").c_str()), 0);
  ASSERT_EQ(unlink(P("g").c_str()), 0);
  EXPECT_EQ(read(fd, &c, 1), 1);
  close(fd);
}

TEST_F(PowerFsMountTest, ModesAreEnforcedForOtherUsers) {
  Write("secret", "x", false);  // 0600 root
  pid_t p = fork();
  if (p == 0) {
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
    _exit(open(P("secret").c_str(), O_RDONLY) < 0 && errno == EACCES ? 0 : 1);
  }
  int status = 0;
  waitpid(p, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

// mailtwin's own directories (mirror, state): a plain mkdir loses its name at
// a power cut, files and all; MakeDurableDir keeps it.
TEST_F(PowerFsMountTest, MakeDurableDirSurvivesACutAPlainMkdirDoesNot) {
  ASSERT_EQ(MakeDurableDir(P("durable"), 0700), "");  // (first: it syncs the parent)
  ASSERT_EQ(mkdir(P("plain").c_str(), 0700), 0);
  for (const char* d : {"plain", "durable"}) {
    Write(std::string(d) + "/f", "acknowledged", true);
    SyncDir(d);
  }
  Ctl("cut");
  EXPECT_FALSE(Exists("plain"));
  EXPECT_EQ(Read("durable/f"), "acknowledged");
  EXPECT_EQ(MakeDurableDir(P("durable"), 0700), "");  // an existing one is fine
}

// The node's own records: the ledger (which IDs this node held: a
// forgotten one lets a rejoining node's leftover in twice) and the event
// log (an event appended is delivered, after a cut too; a delivered one is
// not delivered again).
TEST_F(PowerFsMountTest, LedgerAndEventLogKeepWhatTheyAcknowledgedAcrossACut) {
  std::string state = P("state");
  ASSERT_EQ(MakeDurableDir(state, 0700), "");  // as the daemon's role store does first
  auto event = [](const char* kind) {
    ha::Event e;
    e.kind = kind;
    return e;
  };
  {
    ha::Ledger ledger;
    ASSERT_EQ(ledger.Open(state), "");
    ledger.Record("4jgBv01V0hz1c71f");
    ledger.Record("4jgBv01V0hz1c72g");
    ledger.Flush();  // what the daemon does at every tick
    ledger.Record("4jgBv01V0hz1c73h");  // not flushed yet: may be forgotten
    ha::EventLog log;
    ASSERT_EQ(log.Open(state), "");
    log.Append(event("promotion"));
    Ctl("cut");
  }
  {
    ha::Ledger ledger;
    ASSERT_EQ(ledger.Open(state), "");
    EXPECT_TRUE(ledger.Has("4jgBv01V0hz1c71f"));
    EXPECT_TRUE(ledger.Has("4jgBv01V0hz1c72g"));
    ha::EventLog log;
    ASSERT_EQ(log.Open(state), "");
    auto undelivered = log.Undelivered();
    ASSERT_EQ(undelivered.size(), 1u);  // appended, so delivered after the cut
    EXPECT_EQ(undelivered[0].kind, "promotion");
    log.MarkDelivered(undelivered[0].seq);
    log.Append(event("fencing"));
    Ctl("cut");
  }
  ha::EventLog log;
  ASSERT_EQ(log.Open(state), "");
  EXPECT_EQ(log.last_seq(), 2u);
  auto undelivered = log.Undelivered();
  ASSERT_EQ(undelivered.size(), 1u);  // the delivered one is not delivered again
  EXPECT_EQ(undelivered[0].kind, "fencing");
}

}  // namespace
}  // namespace mailtwin::lab
