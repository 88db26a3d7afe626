// mirror.h - the standby's durable twin of the primary's queue.
//
// Layout: <root>/{maildrop,incoming,active,deferred,hold,corrupt}/ID for queue
// files (flat: no hash subdirectories), <root>/{defer,bounce,trace}/ID for logs,
// <root>/tmp for files still arriving. <root> must be on the same filesystem as
// the standby's queue_directory so that promotion is a rename.
//
// Durability: Apply() changes files without syncing; Commit() makes everything
// applied since the last Commit durable (fsync of each touched file and
// directory, or one syncfs() for a large batch: group commit). Only then may
// the caller acknowledge. A new queue file is written in tmp/ with its real
// mode and mtime, and Commit renames it into its queue directory only after
// its bytes are durable: a queue file in the mirror always has every byte.
// At Open(), tmp/ is emptied (the primary resends what was in flight).
//
// Inodes are recycled: a removed queue file or log (at most kMaxSpareSize)
// is renamed into spare/ (up to kMaxSpare of them) and, once a commit has
// made that removal durable, a new queue file takes one from there
// (overwritten in tmp/ like any new file) instead of a fresh inode. A mail
// queue creates and frees an inode per message; on ext4 without a journal,
// allocating one scans past every inode freed in the last minutes
// (recently_deleted()), which was 40 % of the standby's CPU at 200 msg/s
// (docs/benchmarks.md). Logs always get fresh inodes: they take their final
// name at once. spare/ holds no data anyone reads: it is never in the index;
// Open() syncs the filesystem, then keeps what spare/ holds.
//
// Errors are values: a bad change (a patch outside the file, a log append
// with a gap) or a disk error returns a message; the caller drops the link
// and reconciliation repairs the difference.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/queue_id.h"
#include "repl/messages.h"
#include "repl/stats.h"

namespace mailtwin::repl {

// How Commit makes changes durable. Normal use knows only kNormal; the other
// two exist for the lab's power-cut tests (docs/powercut.md) and are chosen
// only by the environment variable MAILTWIN_TEST_MIRROR_SYNC:
//   "fsync-only": per-file and per-directory fsyncs, never syncfs (a FUSE
//                 test filesystem never sees syncfs, so it could not tell
//                 what syncfs made durable);
//   "none":       no fsync and no syncfs at all: acknowledgements without
//                 durability, the negative control that must lose mail.
enum class MirrorSync { kNormal, kFsyncOnly, kNone };
// The mode the environment asks for; an unknown value is an error.
std::string MirrorSyncFromEnv(MirrorSync& out);

class Mirror {
 public:
  explicit Mirror(std::string root);
  ~Mirror();
  Mirror(const Mirror&) = delete;
  Mirror& operator=(const Mirror&) = delete;

  // Creates the layout if needed, discards partial files, builds the index.
  std::string Open();

  // Applies one change message (File .. LogDelete). Not yet durable.
  std::string Apply(const Message& change);
  // Makes every change applied so far durable.
  std::string Commit();
  // Abandons partially received files (link lost mid-file).
  void DropPartial();

  // What the mirror holds, for the manifest (digests computed lazily).
  std::vector<msg::ManifestEntry> Manifest();

  struct FileEntry {
    Queue queue;
    std::uint64_t size;
    std::uint32_t mode;
    std::int64_t mtime_ns;
    std::optional<std::uint64_t> digest;  // cached; reset by patches
  };
  struct LogEntry {
    std::uint64_t size;
    std::optional<std::uint64_t> digest;
  };
  const std::unordered_map<std::string, FileEntry>& files() const { return files_; }
  const std::map<std::pair<LogKind, std::string>, LogEntry>& logs() const { return logs_; }
  const std::string& root() const { return root_; }
  int root_fd() const { return rootfd_; }

  struct Stats {
    std::uint64_t applied = 0;
    std::uint64_t commits = 0;
    std::uint64_t fsyncs = 0;
    std::uint64_t syncfs = 0;
    std::uint64_t recycled = 0;  // new files that reused a spare inode
    double commit_ms_max = 0;
  };
  const Stats& stats() const { return stats_; }
  MirrorSync sync_mode() const { return sync_; }
  // How long each Commit() took (its fsyncs, renames and syncfs), in ms;
  // its sum() is the total time spent committing.
  const LatencyStats& commit_latency() const { return commit_latency_; }

 private:
  struct Partial {
    int fd;
    msg::File meta;
    std::uint64_t written;
    std::uint64_t stale_size;  // bytes of a recycled inode's old content
    std::string rel;           // tmp/ID, or tmp/ID.resend beside a Ready copy
  };
  struct Ready {  // complete in tmp/, renamed into its queue by Commit
    int fd;
    std::string old_rel;  // a previous copy to remove once this one has its name
  };

  std::string ApplyFile(const msg::File& m);
  std::string ApplyPatch(const msg::Patch& m);
  std::string ApplyMeta(const msg::Meta& m);
  std::string ApplyMove(const msg::Move& m);
  std::string ApplyDelete(const msg::Delete& m);
  std::string ApplyLogData(const msg::LogData& m);
  std::string ApplyLogDelete(const msg::LogDelete& m);
  std::string Scan();
  int OpenFile(const std::string& rel, int flags);
  void TouchDir(const std::string& rel);
  void TouchFd(int fd);  // takes ownership
  // An fd open for writing on rel, kept until Commit (one fsync per file).
  int BatchFd(const std::string& rel);
  std::string FilePath(const std::string& id) const;
  // Removes rel (a file in the index's layout), of size bytes: into spare/
  // when there is room and it is at most kMaxSpareSize (spare/ must not hold
  // much disk: at most 1024 x 64 KiB). Returns false (errno set) only when it
  // could do neither.
  bool Remove(const std::string& rel, std::uint64_t size);
  static constexpr std::uint64_t kMaxSpareSize = 64 * 1024;
  static constexpr std::uint64_t kUnknownSize = ~std::uint64_t{0};
  // Creates rel (in tmp/) for writing from a spare inode when one is ready,
  // else a new one. A spare keeps its old bytes, to be overwritten (no blocks
  // freed and allocated again, no discard); stale_size says how many there
  // are: cut them off once the new content is written.
  int CreateFile(const std::string& rel, std::uint64_t& stale_size);
  static constexpr std::size_t kMaxSpare = 1024;

  std::string SyncEverything();  // what Open() makes durable before use

  std::string root_;
  MirrorSync sync_ = MirrorSync::kNormal;
  int rootfd_ = -1;
  std::unordered_map<std::string, FileEntry> files_;
  std::map<std::pair<LogKind, std::string>, LogEntry> logs_;
  std::unordered_map<std::string, Partial> partial_;
  std::unordered_map<std::string, Ready> ready_;
  std::vector<int> dirty_fds_;
  std::unordered_map<std::string, int> batch_fds_;  // rel -> fd in dirty_fds_
  std::vector<std::string> dirty_dirs_;
  std::unordered_map<std::string, int> dir_fds_;  // open for fsync, kept across commits
  int DirFd(const std::string& rel);
  std::vector<std::string> spare_;          // names in spare/, ready for reuse
  std::vector<std::string> spare_pending_;  // put there since the last Commit()
  std::uint64_t spare_serial_ = 0;
  Stats stats_;
  LatencyStats commit_latency_;
};

// Relative path of the mirror's directory for a queue or a log kind.
std::string MirrorDir(Queue q);
std::string MirrorDir(LogKind k);

}  // namespace mailtwin::repl
