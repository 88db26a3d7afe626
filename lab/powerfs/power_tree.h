// power_tree.h: the in-memory filesystem behind powerfs, a lab disk that can
// lose power.
//
// Every inode keeps two states: what processes see now (`current`) and what
// a disk would still hold after a power cut (`durable`). They meet only
// where POSIX promises durability:
//   - fsync/fdatasync of a file: its data and attributes become durable;
//   - fsync of a directory: its entries (names -> inodes) become durable;
//   - SyncAll() (the lab's `sync`): everything reachable becomes durable.
// Cut() is the power loss: every inode reachable through durable entries
// from the root goes back to its durable state, everything else is gone.
// A new inode starts durable as created (empty), so a name made durable by
// its directory's fsync before the file's own fsync comes back empty, as
// on a journalling filesystem. This is stricter than ext4 (whose journal
// commits other inodes' changes with an fsync), which is the point: it keeps
// only what POSIX promises.
//
// Not thread-safe: the caller (powerfs.cc) serialises every call. Functions
// that can fail return 0 or a negative errno, as FUSE wants.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace mailtwin::lab {

struct Attrs {
  mode_t mode = 0;  // type and permission bits
  uid_t uid = 0;
  gid_t gid = 0;
  dev_t rdev = 0;
  timespec atime{}, mtime{}, ctime{};
};

struct Node;
using NodePtr = std::shared_ptr<Node>;
using Entries = std::map<std::string, NodePtr, std::less<>>;

struct Node {
  std::uint64_t ino = 0;
  Attrs attrs, durable_attrs;
  std::string data, durable_data;        // regular files; symlink target
  Entries entries, durable_entries;      // directories
  nlink_t links = 0;                     // current names of this inode
  bool IsDir() const { return S_ISDIR(attrs.mode); }
};

// What a cut threw away, for the lab's log.
struct CutReport {
  std::uint64_t inodes_lost = 0;     // reachable before, unreachable after
  std::uint64_t inodes_reverted = 0; // data, attributes or entries rolled back
};

class Tree {
 public:
  Tree();

  // Looks up an absolute path ("/" is the root).
  int Resolve(std::string_view path, NodePtr& out) const;
  // Creates a regular file, directory, FIFO, socket or device node.
  int Make(std::string_view path, mode_t mode, dev_t rdev, uid_t uid, gid_t gid, NodePtr* out);
  int Symlink(std::string_view target, std::string_view path, uid_t uid, gid_t gid);
  int Unlink(std::string_view path);
  int Rmdir(std::string_view path);
  int Rename(std::string_view from, std::string_view to, unsigned flags);
  int Link(std::string_view from, std::string_view to);

  static int Read(const Node& n, char* buf, std::size_t size, off_t off);
  static int Write(Node& n, const char* buf, std::size_t size, off_t off);
  static int Truncate(Node& n, off_t size);
  static void Stat(const Node& n, struct stat* st);

  // The durability points.
  static void Fsync(Node& n);     // file: data + attributes
  static void FsyncDir(Node& n);  // directory: its entries + attributes
  void SyncAll();
  CutReport Cut();

  std::uint64_t bytes() const;  // current data held, for statfs

 private:
  int Parent(std::string_view path, NodePtr& dir, std::string& name) const;
  int Remove(std::string_view path, bool dir);
  NodePtr root_;
  std::uint64_t next_ino_ = 1;
};

timespec Now();

}  // namespace mailtwin::lab
