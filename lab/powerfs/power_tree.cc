// power_tree.cc: the in-memory filesystem of powerfs and its power cut
// (see power_tree.h for what is durable when).
#include "power_tree.h"

#include <linux/fs.h>  // RENAME_NOREPLACE, RENAME_EXCHANGE

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <functional>
#include <unordered_set>
#include <vector>

namespace mailtwin::lab {

timespec Now() {
  timespec t{};
  clock_gettime(CLOCK_REALTIME, &t);
  return t;
}

namespace {

// Splits "/a/b/c" into its components; empty components are skipped.
std::vector<std::string_view> Components(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < path.size()) {
    std::size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) out.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

void Touch(Node& dir) { dir.attrs.mtime = dir.attrs.ctime = Now(); }

// Calls fn(node) once for every inode reachable from root through the
// entries chosen by `durable`.
void Walk(const NodePtr& root, bool durable, const std::function<void(Node&)>& fn) {
  std::unordered_set<Node*> seen;
  std::vector<Node*> todo{root.get()};
  while (!todo.empty()) {
    Node* n = todo.back();
    todo.pop_back();
    if (!seen.insert(n).second) continue;
    fn(*n);
    for (auto& [name, child] : durable ? n->durable_entries : n->entries) todo.push_back(child.get());
  }
}

bool SameTime(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

bool SameAttrs(const Attrs& a, const Attrs& b) {
  return a.mode == b.mode && a.uid == b.uid && a.gid == b.gid && a.rdev == b.rdev &&
         SameTime(a.mtime, b.mtime) && SameTime(a.ctime, b.ctime);
}

}  // namespace

Tree::Tree() : root_(std::make_shared<Node>()) {
  root_->ino = next_ino_++;
  root_->attrs.mode = S_IFDIR | 0755;
  root_->attrs.atime = root_->attrs.mtime = root_->attrs.ctime = Now();
  root_->durable_attrs = root_->attrs;
  root_->links = 1;
}

int Tree::Resolve(std::string_view path, NodePtr& out) const {
  NodePtr n = root_;
  for (auto c : Components(path)) {
    if (!n->IsDir()) return -ENOTDIR;
    auto it = n->entries.find(c);
    if (it == n->entries.end()) return -ENOENT;
    n = it->second;
  }
  out = n;
  return 0;
}

int Tree::Parent(std::string_view path, NodePtr& dir, std::string& name) const {
  auto parts = Components(path);
  if (parts.empty()) return -EBUSY;  // the root itself
  name = std::string(parts.back());
  if (name.size() > 255) return -ENAMETOOLONG;
  std::size_t cut = path.rfind('/');
  int r = Resolve(path.substr(0, cut == std::string_view::npos ? 0 : cut), dir);
  if (r != 0) return r;
  return dir->IsDir() ? 0 : -ENOTDIR;
}

int Tree::Make(std::string_view path, mode_t mode, dev_t rdev, uid_t uid, gid_t gid,
               NodePtr* out) {
  NodePtr dir;
  std::string name;
  if (int r = Parent(path, dir, name); r != 0) return r;
  if (dir->entries.count(name)) return -EEXIST;
  auto n = std::make_shared<Node>();
  n->ino = next_ino_++;
  n->attrs.mode = mode;
  n->attrs.uid = uid;
  // BSD group semantics under a set-group-ID directory, as ext4 does.
  n->attrs.gid = (dir->attrs.mode & S_ISGID) ? dir->attrs.gid : gid;
  if (S_ISDIR(mode) && (dir->attrs.mode & S_ISGID)) n->attrs.mode |= S_ISGID;
  n->attrs.rdev = rdev;
  n->attrs.atime = n->attrs.mtime = n->attrs.ctime = Now();
  n->durable_attrs = n->attrs;  // a new inode exists, empty, once its name is durable
  n->links = 1;
  dir->entries.emplace(name, n);
  Touch(*dir);
  if (out) *out = n;
  return 0;
}

int Tree::Symlink(std::string_view target, std::string_view path, uid_t uid, gid_t gid) {
  NodePtr n;
  if (int r = Make(path, S_IFLNK | 0777, 0, uid, gid, &n); r != 0) return r;
  n->data = n->durable_data = std::string(target);  // (a symlink's target is written with it)
  return 0;
}

int Tree::Unlink(std::string_view path) { return Remove(path, false); }

int Tree::Rmdir(std::string_view path) { return Remove(path, true); }

// unlink (dir false) or rmdir (dir true): the name goes; the inode lives on
// while a handle, a durable entry or another name holds it.
int Tree::Remove(std::string_view path, bool dir) {
  NodePtr parent;
  std::string name;
  if (int r = Parent(path, parent, name); r != 0) return r;
  auto it = parent->entries.find(name);
  if (it == parent->entries.end()) return -ENOENT;
  Node& n = *it->second;
  if (n.IsDir() != dir) return dir ? -ENOTDIR : -EISDIR;
  if (dir && !n.entries.empty()) return -ENOTEMPTY;
  n.links = dir ? 0 : n.links - 1;
  n.attrs.ctime = Now();
  parent->entries.erase(it);
  Touch(*parent);
  return 0;
}

int Tree::Rename(std::string_view from, std::string_view to, unsigned flags) {
  if (flags & RENAME_EXCHANGE) return -EINVAL;  // nobody in the lab needs it
  NodePtr fdir, tdir;
  std::string fname, tname;
  if (int r = Parent(from, fdir, fname); r != 0) return r;
  if (int r = Parent(to, tdir, tname); r != 0) return r;
  auto src = fdir->entries.find(fname);
  if (src == fdir->entries.end()) return -ENOENT;
  NodePtr n = src->second;
  if (auto dst = tdir->entries.find(tname); dst != tdir->entries.end()) {
    if (flags & RENAME_NOREPLACE) return -EEXIST;
    NodePtr old = dst->second;
    if (old == n) return 0;  // two names of one inode: POSIX says do nothing
    if (n->IsDir() && !old->IsDir()) return -ENOTDIR;
    if (!n->IsDir() && old->IsDir()) return -EISDIR;
    if (old->IsDir() && !old->entries.empty()) return -ENOTEMPTY;
    old->links = old->IsDir() ? 0 : old->links - 1;
    old->attrs.ctime = Now();
  }
  fdir->entries.erase(fname);  // (src is invalid from here)
  tdir->entries[tname] = n;
  n->attrs.ctime = Now();
  Touch(*fdir);
  Touch(*tdir);
  return 0;
}

int Tree::Link(std::string_view from, std::string_view to) {
  NodePtr n, dir;
  std::string name;
  if (int r = Resolve(from, n); r != 0) return r;
  if (n->IsDir()) return -EPERM;
  if (int r = Parent(to, dir, name); r != 0) return r;
  if (dir->entries.count(name)) return -EEXIST;
  dir->entries.emplace(name, n);
  n->links++;
  n->attrs.ctime = Now();
  Touch(*dir);
  return 0;
}

int Tree::Read(const Node& n, char* buf, std::size_t size, off_t off) {
  if (off < 0) return -EINVAL;
  auto o = static_cast<std::size_t>(off);
  if (o >= n.data.size()) return 0;
  std::size_t len = std::min(size, n.data.size() - o);
  std::copy_n(n.data.data() + o, len, buf);
  return static_cast<int>(len);
}

int Tree::Write(Node& n, const char* buf, std::size_t size, off_t off) {
  if (off < 0) return -EINVAL;
  auto o = static_cast<std::size_t>(off);
  if (o + size > n.data.size()) n.data.resize(o + size);
  std::copy_n(buf, size, n.data.data() + o);
  n.attrs.mtime = n.attrs.ctime = Now();
  return static_cast<int>(size);
}

int Tree::Truncate(Node& n, off_t size) {
  if (n.IsDir()) return -EISDIR;
  if (size < 0) return -EINVAL;
  n.data.resize(static_cast<std::size_t>(size));
  n.attrs.mtime = n.attrs.ctime = Now();
  return 0;
}

void Tree::Stat(const Node& n, struct stat* st) {
  *st = {};
  st->st_ino = n.ino;
  st->st_mode = n.attrs.mode;
  st->st_uid = n.attrs.uid;
  st->st_gid = n.attrs.gid;
  st->st_rdev = n.attrs.rdev;
  st->st_atim = n.attrs.atime;
  st->st_mtim = n.attrs.mtime;
  st->st_ctim = n.attrs.ctime;
  st->st_blksize = 4096;
  if (n.IsDir()) {
    st->st_nlink = 2;
    for (auto& [name, c] : n.entries) st->st_nlink += c->IsDir();
    st->st_size = 4096;
  } else {
    st->st_nlink = n.links;
    st->st_size = static_cast<off_t>(n.data.size());
  }
  st->st_blocks = (st->st_size + 511) / 512;
}

void Tree::Fsync(Node& n) {
  n.durable_data = n.data;
  n.durable_attrs = n.attrs;
}

void Tree::FsyncDir(Node& n) {
  n.durable_entries = n.entries;
  n.durable_attrs = n.attrs;
}

void Tree::SyncAll() {
  Walk(root_, false, [](Node& n) {
    Fsync(n);
    if (n.IsDir()) FsyncDir(n);
  });
}

CutReport Tree::Cut() {
  CutReport rep;
  std::unordered_set<Node*> before;
  Walk(root_, false, [&](Node& n) { before.insert(&n); });
  std::vector<Node*> after;
  Walk(root_, true, [&](Node& n) { after.push_back(&n); });
  for (Node* n : after) {
    before.erase(n);
    bool same = n->data == n->durable_data && SameAttrs(n->attrs, n->durable_attrs) &&
                n->entries == n->durable_entries;
    rep.inodes_reverted += !same;
    n->data = n->durable_data;
    n->attrs = n->durable_attrs;
    n->entries = n->durable_entries;
    n->links = 0;
  }
  rep.inodes_lost = before.size();
  for (Node* n : after)  // link counts as the surviving names say
    for (auto& [name, c] : n->entries) c->links++;
  root_->links = 1;
  return rep;
}

std::uint64_t Tree::bytes() const {
  std::uint64_t sum = 0;
  Walk(root_, false, [&](Node& n) { sum += n.data.size(); });
  return sum;
}

}  // namespace mailtwin::lab
