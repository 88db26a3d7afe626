// powerfs: a FUSE filesystem for the lab that can lose power.
//
//   powerfs MOUNTPOINT CONTROL_SOCKET     mounts (foreground), serves
//   powerfs --ctl CONTROL_SOCKET COMMAND  cut | sync | stats
//
// Files live in memory (power_tree.h): the powerfs process is the disk, and
// it outlives the "power cuts" it simulates. `cut` drops everything that was
// never made durable by fsync/fdatasync (file data and attributes) or by an
// fsync of its directory (names), exactly as a disk cache would lose it.
// `sync` makes everything durable (what sync(1) does on a real disk; the
// kernel does not pass sync(2)/syncfs(2) on to a FUSE filesystem, so the lab
// says it explicitly, e.g. after creating a Postfix queue). Cut only with
// every process that used the filesystem dead, as after a real power loss:
// their open files would see the old inodes.
//
// Mounted with allow_other and default_permissions (the kernel checks modes
// and owners, so Postfix's own checks work), every cache timeout at 0 and
// direct I/O, so that the kernel never shows what the cut took away. FIFOs
// and sockets (Postfix's public/ and private/) are kernel objects on top of
// an inode, as on any filesystem. Locks (flock, fcntl) stay in the kernel.
#define FUSE_USE_VERSION 35
#include <fuse.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "power_tree.h"

namespace mailtwin::lab {
namespace {

struct State {
  std::mutex mu;  // every operation, the control thread's included
  Tree tree;
  std::unordered_map<std::uint64_t, NodePtr> handles;  // open files and directories
  std::uint64_t next_handle = 1;
  std::uint64_t fsyncs = 0, dir_fsyncs = 0, cuts = 0;
};
State* g = nullptr;

using Lock = std::lock_guard<std::mutex>;

// The inode of an open file handle if there is one (it may have no name any
// more), else of the path.
int Find(const char* path, fuse_file_info* fi, NodePtr& out) {
  if (fi && fi->fh) {
    auto it = g->handles.find(fi->fh);
    if (it == g->handles.end()) return -EBADF;
    out = it->second;
    return 0;
  }
  if (!path) return -ENOENT;
  return g->tree.Resolve(path, out);
}

std::uint64_t Open(NodePtr n) {
  std::uint64_t h = g->next_handle++;
  g->handles.emplace(h, std::move(n));
  return h;
}

void* Init(fuse_conn_info*, fuse_config* cfg) {
  cfg->use_ino = 1;         // our inode numbers: Postfix's long queue IDs carry them
  cfg->hard_remove = 1;     // no .fuse_hidden files: handles keep unlinked inodes
  cfg->nullpath_ok = 1;
  cfg->entry_timeout = cfg->attr_timeout = cfg->negative_timeout = 0;
  cfg->direct_io = 1;       // no page cache that would outlive a cut
  cfg->kernel_cache = 0;
  return nullptr;
}

int GetAttr(const char* path, struct stat* st, fuse_file_info* fi) {
  Lock l(g->mu);
  NodePtr n;
  if (int r = Find(path, fi, n); r != 0) return r;
  Tree::Stat(*n, st);
  return 0;
}

int ReadLink(const char* path, char* buf, size_t size) {
  Lock l(g->mu);
  NodePtr n;
  if (int r = g->tree.Resolve(path, n); r != 0) return r;
  if (!S_ISLNK(n->attrs.mode)) return -EINVAL;
  std::snprintf(buf, size, "%s", n->data.c_str());
  return 0;
}

int MakeNode(const char* path, mode_t mode, dev_t rdev) {
  Lock l(g->mu);
  const fuse_context* c = fuse_get_context();
  return g->tree.Make(path, mode, rdev, c->uid, c->gid, nullptr);
}

int MakeDir(const char* path, mode_t mode) { return MakeNode(path, S_IFDIR | (mode & 07777), 0); }

int Create(const char* path, mode_t mode, fuse_file_info* fi) {
  Lock l(g->mu);
  const fuse_context* c = fuse_get_context();
  NodePtr n;
  if (int r = g->tree.Make(path, S_IFREG | (mode & 07777), 0, c->uid, c->gid, &n); r != 0) return r;
  fi->fh = Open(n);
  return 0;
}

int Unlink(const char* path) {
  Lock l(g->mu);
  return g->tree.Unlink(path);
}

int RemoveDir(const char* path) {
  Lock l(g->mu);
  return g->tree.Rmdir(path);
}

int Symlink(const char* target, const char* path) {
  Lock l(g->mu);
  const fuse_context* c = fuse_get_context();
  return g->tree.Symlink(target, path, c->uid, c->gid);
}

int Rename(const char* from, const char* to, unsigned flags) {
  Lock l(g->mu);
  return g->tree.Rename(from, to, flags);
}

int Link(const char* from, const char* to) {
  Lock l(g->mu);
  return g->tree.Link(from, to);
}

int Chmod(const char* path, mode_t mode, fuse_file_info* fi) {
  Lock l(g->mu);
  NodePtr n;
  if (int r = Find(path, fi, n); r != 0) return r;
  n->attrs.mode = (n->attrs.mode & S_IFMT) | (mode & 07777);
  n->attrs.ctime = Now();
  return 0;
}

int Chown(const char* path, uid_t uid, gid_t gid, fuse_file_info* fi) {
  Lock l(g->mu);
  NodePtr n;
  if (int r = Find(path, fi, n); r != 0) return r;
  if (uid != static_cast<uid_t>(-1)) n->attrs.uid = uid;
  if (gid != static_cast<gid_t>(-1)) n->attrs.gid = gid;
  n->attrs.ctime = Now();
  return 0;
}

int Truncate(const char* path, off_t size, fuse_file_info* fi) {
  Lock l(g->mu);
  NodePtr n;
  if (int r = Find(path, fi, n); r != 0) return r;
  return Tree::Truncate(*n, size);
}

int UpdateTimes(const char* path, const timespec tv[2], fuse_file_info* fi) {
  Lock l(g->mu);
  NodePtr n;
  if (int r = Find(path, fi, n); r != 0) return r;
  timespec now = Now();
  auto set = [&](timespec& field, const timespec& v) {
    if (v.tv_nsec == UTIME_OMIT) return;
    field = v.tv_nsec == UTIME_NOW ? now : v;
  };
  set(n->attrs.atime, tv ? tv[0] : timespec{0, UTIME_NOW});
  set(n->attrs.mtime, tv ? tv[1] : timespec{0, UTIME_NOW});
  n->attrs.ctime = now;
  return 0;
}

int OpenFile(const char* path, fuse_file_info* fi) {
  Lock l(g->mu);
  NodePtr n;
  if (int r = g->tree.Resolve(path, n); r != 0) return r;
  if ((fi->flags & O_TRUNC) && !n->IsDir()) Tree::Truncate(*n, 0);
  fi->fh = Open(n);
  return 0;
}

int Read(const char* path, char* buf, size_t size, off_t off, fuse_file_info* fi) {
  Lock l(g->mu);
  NodePtr n;
  if (int r = Find(path, fi, n); r != 0) return r;
  return Tree::Read(*n, buf, size, off);
}

int Write(const char* path, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
  Lock l(g->mu);
  NodePtr n;
  if (int r = Find(path, fi, n); r != 0) return r;
  if (fi && (fi->flags & O_APPEND)) off = static_cast<off_t>(n->data.size());
  return Tree::Write(*n, buf, size, off);
}

int StatFs(const char*, struct statvfs* s) {
  Lock l(g->mu);
  *s = {};
  s->f_bsize = s->f_frsize = 4096;
  s->f_blocks = 1u << 22;  // 16 GiB: Postfix checks queue_minfree against it
  std::uint64_t used = (g->tree.bytes() + 4095) / 4096;
  s->f_bfree = s->f_bavail = s->f_blocks > used ? s->f_blocks - used : 0;
  s->f_files = s->f_ffree = s->f_favail = 1u << 20;
  s->f_namemax = 255;
  return 0;
}

int Release(const char*, fuse_file_info* fi) {
  Lock l(g->mu);
  g->handles.erase(fi->fh);
  return 0;
}

int Fsync(const char* path, int, fuse_file_info* fi) {
  Lock l(g->mu);
  NodePtr n;
  if (int r = Find(path, fi, n); r != 0) return r;
  Tree::Fsync(*n);
  g->fsyncs++;
  return 0;
}

int OpenDir(const char* path, fuse_file_info* fi) {
  Lock l(g->mu);
  NodePtr n;
  if (int r = g->tree.Resolve(path, n); r != 0) return r;
  if (!n->IsDir()) return -ENOTDIR;
  fi->fh = Open(n);
  return 0;
}

int ReadDir(const char* path, void* buf, fuse_fill_dir_t fill, off_t, fuse_file_info* fi,
            fuse_readdir_flags) {
  Lock l(g->mu);
  NodePtr n;
  if (int r = Find(path, fi, n); r != 0) return r;
  fill(buf, ".", nullptr, 0, FUSE_FILL_DIR_PLUS);
  fill(buf, "..", nullptr, 0, FUSE_FILL_DIR_PLUS);
  for (auto& [name, c] : n->entries) {
    struct stat st;
    Tree::Stat(*c, &st);
    fill(buf, name.c_str(), &st, 0, FUSE_FILL_DIR_PLUS);
  }
  return 0;
}

int FsyncDir(const char* path, int, fuse_file_info* fi) {
  Lock l(g->mu);
  NodePtr n;
  if (int r = Find(path, fi, n); r != 0) return r;
  Tree::FsyncDir(*n);
  g->dir_fsyncs++;
  return 0;
}

fuse_operations Operations() {
  fuse_operations o{};
  o.init = Init;
  o.getattr = GetAttr;
  o.readlink = ReadLink;
  o.mknod = MakeNode;
  o.mkdir = MakeDir;
  o.unlink = Unlink;
  o.rmdir = RemoveDir;
  o.symlink = Symlink;
  o.rename = Rename;
  o.link = Link;
  o.chmod = Chmod;
  o.chown = Chown;
  o.truncate = Truncate;
  o.open = OpenFile;
  o.read = Read;
  o.write = Write;
  o.statfs = StatFs;
  o.release = Release;
  o.fsync = Fsync;
  o.opendir = OpenDir;
  o.readdir = ReadDir;
  o.releasedir = Release;
  o.fsyncdir = FsyncDir;
  o.create = Create;
  o.utimens = UpdateTimes;
  return o;
}

// One command per connection: a line in, a line out.
std::string Command(const std::string& cmd) {
  Lock l(g->mu);
  char out[200];
  if (cmd == "cut") {
    CutReport r = g->tree.Cut();
    g->cuts++;
    std::snprintf(out, sizeof out, "ok cut: %llu inodes lost, %llu rolled back\n",
                  static_cast<unsigned long long>(r.inodes_lost),
                  static_cast<unsigned long long>(r.inodes_reverted));
  } else if (cmd == "sync") {
    g->tree.SyncAll();
    std::snprintf(out, sizeof out, "ok sync\n");
  } else if (cmd == "stats") {
    std::snprintf(out, sizeof out, "ok fsyncs=%llu dir_fsyncs=%llu cuts=%llu open=%zu\n",
                  static_cast<unsigned long long>(g->fsyncs),
                  static_cast<unsigned long long>(g->dir_fsyncs),
                  static_cast<unsigned long long>(g->cuts), g->handles.size());
  } else {
    std::snprintf(out, sizeof out, "error: unknown command (cut, sync, stats)\n");
  }
  return out;
}

sockaddr_un Address(const char* path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  return a;
}

void Serve(int lfd) {
  for (;;) {
    int c = accept(lfd, nullptr, nullptr);
    if (c < 0) continue;
    char buf[64] = {};
    ssize_t n = read(c, buf, sizeof buf - 1);
    std::string cmd(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
    while (!cmd.empty() && (cmd.back() == '\n' || cmd.back() == '\r')) cmd.pop_back();
    std::string reply = Command(cmd);
    [[maybe_unused]] ssize_t w = write(c, reply.data(), reply.size());
    close(c);
  }
}

// The client side: sends COMMAND, prints the reply; exit status 0 on "ok".
int Control(const char* path, const char* cmd) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a = Address(path);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::fprintf(stderr, "powerfs: cannot reach %s: %s\n", path, std::strerror(errno));
    return 2;
  }
  std::string line = std::string(cmd) + "\n";
  [[maybe_unused]] ssize_t w = write(fd, line.data(), line.size());
  std::string reply;
  char buf[256];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) reply.append(buf, static_cast<std::size_t>(n));
  close(fd);
  std::fputs(reply.c_str(), stdout);
  return reply.rfind("ok", 0) == 0 ? 0 : 1;
}

int Listen(const char* path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a = Address(path);
  unlink(path);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 8) != 0) {
    std::fprintf(stderr, "powerfs: cannot listen on %s: %s\n", path, std::strerror(errno));
    return -1;
  }
  chmod(path, 0600);
  return fd;
}

}  // namespace
}  // namespace mailtwin::lab

int main(int argc, char** argv) {
  using namespace mailtwin::lab;
  if (argc == 4 && std::strcmp(argv[1], "--ctl") == 0) return Control(argv[2], argv[3]);
  if (argc != 3) {
    std::fprintf(stderr, "usage: powerfs MOUNTPOINT CONTROL_SOCKET | powerfs --ctl CONTROL_SOCKET cut|sync|stats\n");
    return 2;
  }
  State state;
  g = &state;
  int lfd = Listen(argv[2]);
  if (lfd < 0) return 1;
  std::thread(Serve, lfd).detach();
  // Single-threaded (-s): every operation takes the one lock anyway.
  char prog[] = "powerfs", fg[] = "-f", st[] = "-s", o[] = "-o",
       opts[] = "allow_other,default_permissions,fsname=powerfs,subtype=powerfs";
  char* fargv[] = {prog, fg, st, o, opts, argv[1], nullptr};
  fuse_operations ops = Operations();
  return fuse_main(6, fargv, &ops, nullptr);
}
