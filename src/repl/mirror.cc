#include "repl/mirror.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <unordered_set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/durable_dir.h"
#include "repl/queue_file.h"

namespace mailtwin::repl {
namespace {

// Files touched in one commit above which one syncfs() replaces their fsyncs.
// syncfs flushes the whole filesystem, but measured here (docs/benchmarks.md)
// one syncfs beats a few dozen fsyncs already: with 256 instead of 24 the
// standby's CPU per message doubled under load. On a dedicated standby host
// the filesystem holds little else that is dirty.
constexpr std::size_t kSyncfsThreshold = 24;

std::string Errno(std::string_view what, const std::string& path) {
  return fmt::format("{} {}: {}", what, path, std::strerror(errno));
}

bool PwriteFull(int fd, std::string_view data, std::uint64_t off) {
  while (!data.empty()) {
    ssize_t n = pwrite(fd, data.data(), data.size(), static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
    off += static_cast<std::uint64_t>(n);
  }
  return true;
}

struct timespec Ts(std::int64_t ns) {
  struct timespec ts;
  ts.tv_sec = ns / 1000000000;
  ts.tv_nsec = ns % 1000000000;
  if (ts.tv_nsec < 0) {
    ts.tv_nsec += 1000000000;
    --ts.tv_sec;
  }
  return ts;
}

}  // namespace

std::string MirrorSyncFromEnv(MirrorSync& out) {
  const char* v = std::getenv("MAILTWIN_TEST_MIRROR_SYNC");
  std::string_view s = v ? v : "";
  if (s.empty()) out = MirrorSync::kNormal;
  else if (s == "fsync-only") out = MirrorSync::kFsyncOnly;
  else if (s == "none") out = MirrorSync::kNone;
  else return fmt::format("MAILTWIN_TEST_MIRROR_SYNC={}: expected fsync-only or none (tests only)", s);
  return {};
}

std::string MirrorDir(Queue q) { return std::string(QueueName(q)); }
std::string MirrorDir(LogKind k) { return std::string(LogKindName(k)); }

Mirror::Mirror(std::string root) : root_(std::move(root)) {}

Mirror::~Mirror() {
  DropPartial();
  for (int fd : dirty_fds_) close(fd);
  for (auto& [id, r] : ready_) close(r.fd);
  for (auto& [rel, fd] : dir_fds_) close(fd);
  if (rootfd_ >= 0) close(rootfd_);
}

int Mirror::DirFd(const std::string& rel) {
  if (auto it = dir_fds_.find(rel); it != dir_fds_.end()) return it->second;
  int fd = openat(rootfd_, rel.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) dir_fds_[rel] = fd;
  return fd;
}

std::string Mirror::Open() {
  for (auto& [rel, fd] : dir_fds_) close(fd);
  dir_fds_.clear();
  if (rootfd_ >= 0) close(rootfd_);
  if (std::string err = MirrorSyncFromEnv(sync_); !err.empty()) return err;
  if (sync_ == MirrorSync::kFsyncOnly)
    spdlog::warn("mirror: MAILTWIN_TEST_MIRROR_SYNC=fsync-only: no syncfs (a test setting)");
  if (sync_ == MirrorSync::kNone)
    spdlog::error("mirror: MAILTWIN_TEST_MIRROR_SYNC=none: NOTHING IS MADE DURABLE; "
                  "acknowledged mail is lost on a power cut (a negative control for tests only)");
  if (std::string err = MakeDurableDir(root_, 0700); !err.empty()) return err;
  rootfd_ = open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (rootfd_ < 0) return Errno("cannot open", root_);
  std::vector<std::string> dirs{"tmp", "spare"};
  for (Queue q : kAllQueues) dirs.push_back(MirrorDir(q));
  for (LogKind k : kAllLogKinds) dirs.push_back(MirrorDir(k));
  for (const auto& d : dirs)
    if (mkdirat(rootfd_, d.c_str(), 0700) != 0 && errno != EEXIST)
      return Errno("cannot create", root_ + "/" + d);
  if (std::string err = SyncEverything(); !err.empty()) return err;
  return Scan();
}

// Whatever an earlier run left in the page cache is made durable before
// spare/ inodes are handed out again (their old names must be gone on disk).
std::string Mirror::SyncEverything() {
  if (sync_ == MirrorSync::kNone) return {};
  if (fsync(rootfd_) != 0) return Errno("fsync", root_);
  if (sync_ == MirrorSync::kNormal)
    return syncfs(rootfd_) == 0 ? std::string() : Errno("syncfs", root_);
  // fsync-only: the names are what matters (every file was fsynced before it
  // got its name; an append not yet committed was never acknowledged).
  std::vector<std::string> dirs{"tmp", "spare"};
  for (Queue q : kAllQueues) dirs.push_back(MirrorDir(q));
  for (LogKind k : kAllLogKinds) dirs.push_back(MirrorDir(k));
  for (const auto& d : dirs) {
    int dfd = DirFd(d);
    if (dfd < 0 || fsync(dfd) != 0) return Errno("fsync", root_ + "/" + d);
  }
  return {};
}

std::string Mirror::Scan() {
  files_.clear();
  logs_.clear();
  auto list = [&](const std::string& rel, auto&& fn) -> std::string {
    int dfd = openat(rootfd_, rel.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return Errno("cannot open", root_ + "/" + rel);
    DIR* d = fdopendir(dfd);
    if (!d) {
      close(dfd);
      return Errno("cannot read", root_ + "/" + rel);
    }
    std::vector<std::string> names;
    while (struct dirent* e = readdir(d))
      if (e->d_name[0] != '.') names.emplace_back(e->d_name);
    closedir(d);
    for (const auto& n : names) fn(n);
    return {};
  };
  std::unordered_set<ino_t> named;  // inodes of the queue files and logs
  std::string err;
  for (Queue q : kAllQueues) {
    err = list(MirrorDir(q), [&](const std::string& n) {
      std::string rel = MirrorDir(q) + "/" + n;
      struct stat st;
      if (!IsValidQueueId(n) || fstatat(rootfd_, rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
          !S_ISREG(st.st_mode))
        return;
      auto [it, fresh] = files_.try_emplace(n);
      if (!fresh) {  // a crash between the rename and the unlink of the old copy
        std::string older = MirrorDir(it->second.queue) + "/" + n;
        unlinkat(rootfd_, older.c_str(), 0);
      }
      named.insert(st.st_ino);
      it->second = FileEntry{q, static_cast<std::uint64_t>(st.st_size), st.st_mode & 07777u,
                             static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 +
                                 st.st_mtim.tv_nsec,
                             std::nullopt};
    });
    if (!err.empty()) return err;
  }
  for (LogKind k : kAllLogKinds) {
    err = list(MirrorDir(k), [&](const std::string& n) {
      struct stat st;
      std::string rel = MirrorDir(k) + "/" + n;
      if (!IsValidQueueId(n) || fstatat(rootfd_, rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
          !S_ISREG(st.st_mode))
        return;
      named.insert(st.st_ino);
      logs_[{k, n}] = LogEntry{static_cast<std::uint64_t>(st.st_size), std::nullopt};
    });
    if (!err.empty()) return err;
  }
  // On a filesystem without a journal, a crash can leave a rename half done:
  // the same inode named in tmp/ or spare/ and in a queue or log directory.
  // Unlinking that second name would free a file still in use, and reusing
  // it would overwrite one: leave it alone (fsck repairs the link count).
  auto second_name = [&](const std::string& rel, struct stat& st) {
    if (fstatat(rootfd_, rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return true;
    if (!named.count(st.st_ino)) return false;
    spdlog::warn("mirror: {}/{} is a second name of a mirrored file (an interrupted rename); "
                 "left alone", root_, rel);
    return true;
  };
  // Files still arriving (or not yet durable) when we stopped are worthless:
  // the primary resends them.
  err = list("tmp", [&](const std::string& n) {
    std::string rel = "tmp/" + n;
    struct stat st;
    if (!second_name(rel, st)) unlinkat(rootfd_, rel.c_str(), 0);
  });
  if (!err.empty()) return err;
  spare_.clear();
  spare_pending_.clear();
  err = list("spare", [&](const std::string& n) {
    std::string rel = "spare/" + n;
    struct stat st;
    if (second_name(rel, st)) return;
    if (spare_.size() < kMaxSpare && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
        static_cast<std::uint64_t>(st.st_size) <= kMaxSpareSize) {
      spare_.push_back(n);
      spare_serial_ = std::max<std::uint64_t>(spare_serial_, std::strtoull(n.c_str(), nullptr, 10));
    } else {
      unlinkat(rootfd_, rel.c_str(), 0);
    }
  });
  if (!err.empty()) return err;
  spdlog::info("mirror: {} holds {} queue files and {} logs", root_, files_.size(), logs_.size());
  return {};
}

std::string Mirror::FilePath(const std::string& id) const {
  if (ready_.count(id)) return "tmp/" + id;
  auto it = files_.find(id);
  return it == files_.end() ? std::string() : MirrorDir(it->second.queue) + "/" + id;
}

int Mirror::OpenFile(const std::string& rel, int flags) {
  return openat(rootfd_, rel.c_str(), flags | O_CLOEXEC | O_NOFOLLOW, 0600);
}

bool Mirror::Remove(const std::string& rel, std::uint64_t size) {
  batch_fds_.erase(rel);  // its fd must not write into the inode's next life
  if (spare_.size() + spare_pending_.size() < kMaxSpare && size <= kMaxSpareSize) {
    std::string name = std::to_string(++spare_serial_);
    if (renameat2(rootfd_, rel.c_str(), rootfd_, ("spare/" + name).c_str(), RENAME_NOREPLACE) == 0) {
      // Reusable only once Commit() has made the removal of rel durable.
      spare_pending_.push_back(std::move(name));
      return true;
    }
    if (errno == ENOENT) return false;
  }
  return unlinkat(rootfd_, rel.c_str(), 0) == 0;
}

int Mirror::CreateFile(const std::string& rel, std::uint64_t& stale_size) {
  stale_size = 0;
  if (!spare_.empty()) {
    std::string name = std::move(spare_.back());
    spare_.pop_back();
    std::string from = "spare/" + name;
    if (renameat2(rootfd_, from.c_str(), rootfd_, rel.c_str(), RENAME_NOREPLACE) == 0) {
      int fd = OpenFile(rel, O_WRONLY);
      struct stat st;
      if (fd >= 0 && fstat(fd, &st) == 0) {
        stale_size = static_cast<std::uint64_t>(st.st_size);
        ++stats_.recycled;
        return fd;
      }
      if (fd >= 0) close(fd);
      unlinkat(rootfd_, rel.c_str(), 0);
    } else if (errno == EEXIST) {
      spare_.push_back(std::move(name));
    }
  }
  return OpenFile(rel, O_WRONLY | O_CREAT | O_TRUNC);
}

void Mirror::TouchDir(const std::string& rel) {
  for (const auto& d : dirty_dirs_)
    if (d == rel) return;
  dirty_dirs_.push_back(rel);
}

void Mirror::TouchFd(int fd) { dirty_fds_.push_back(fd); }

int Mirror::BatchFd(const std::string& rel) {
  if (auto it = batch_fds_.find(rel); it != batch_fds_.end()) return it->second;
  int fd = OpenFile(rel, O_WRONLY);
  if (fd < 0) return fd;
  TouchFd(fd);
  batch_fds_[rel] = fd;
  return fd;
}

std::string Mirror::Apply(const Message& change) {
  ++stats_.applied;
  return std::visit(
      [&](const auto& m) -> std::string {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, msg::File>) return ApplyFile(m);
        else if constexpr (std::is_same_v<T, msg::Patch>) return ApplyPatch(m);
        else if constexpr (std::is_same_v<T, msg::Meta>) return ApplyMeta(m);
        else if constexpr (std::is_same_v<T, msg::Move>) return ApplyMove(m);
        else if constexpr (std::is_same_v<T, msg::Delete>) return ApplyDelete(m);
        else if constexpr (std::is_same_v<T, msg::LogData>) return ApplyLogData(m);
        else if constexpr (std::is_same_v<T, msg::LogDelete>) return ApplyLogDelete(m);
        else return "not a change message";
      },
      change);
}

std::string Mirror::ApplyFile(const msg::File& m) {
  auto pit = partial_.find(m.id);
  if (m.offset == 0) {
    std::string rel;
    std::uint64_t stale = 0;
    int fd;
    if (pit != partial_.end()) {  // a resend restarts the file where it was
      rel = pit->second.rel;
      close(pit->second.fd);
      partial_.erase(pit);
      fd = OpenFile(rel, O_WRONLY | O_TRUNC);
    } else {
      // A complete copy waiting in tmp/ID for its commit stays whole while a
      // resend arrives beside it: should the link drop mid-resend, Commit()
      // still gives the waiting copy its name.
      rel = ready_.count(m.id) ? "tmp/" + m.id + ".resend" : "tmp/" + m.id;
      fd = CreateFile(rel, stale);
    }
    if (fd < 0) return Errno("cannot create", root_ + "/" + rel);
    pit = partial_.emplace(m.id, Partial{fd, m, 0, stale, rel}).first;
    pit->second.meta.data.clear();
  } else if (pit == partial_.end() || pit->second.written != m.offset ||
             pit->second.meta.total_size != m.total_size) {
    return fmt::format("file chunk for {} at offset {} does not follow what was received", m.id,
                       m.offset);
  }
  Partial& p = pit->second;
  if (!PwriteFull(p.fd, m.data, m.offset)) return Errno("cannot write", root_ + "/" + p.rel);
  p.written += m.data.size();
  if (p.written < p.meta.total_size) return {};

  // Complete: give it its real mode and time now; Commit() makes the bytes
  // durable and only then renames it into its queue directory.
  int fd = p.fd;
  msg::File meta = std::move(p.meta);
  std::string rel = std::move(p.rel);
  bool stale_tail = p.stale_size > meta.total_size;
  partial_.erase(pit);
  auto fail = [&](std::string_view what) {
    std::string e = Errno(what, root_ + "/" + rel);
    close(fd);
    unlinkat(rootfd_, rel.c_str(), 0);
    return e;
  };
  if (stale_tail && ftruncate(fd, static_cast<off_t>(meta.total_size)) != 0)
    return fail("cannot truncate");
  struct timespec times[2] = {Ts(meta.mtime_ns), Ts(meta.mtime_ns)};
  if (fchmod(fd, meta.mode) != 0 || futimens(fd, times) != 0) return fail("cannot set mode/time of");
  std::string tmp = "tmp/" + meta.id;
  std::string old;
  if (auto rit = ready_.find(meta.id); rit != ready_.end()) {
    old = rit->second.old_rel;  // a resend within one batch replaces the first copy
    close(rit->second.fd);
    ready_.erase(rit);
  } else {
    old = FilePath(meta.id);
  }
  if (rel != tmp) {
    if (renameat(rootfd_, rel.c_str(), rootfd_, tmp.c_str()) != 0) return fail("cannot rename");
    batch_fds_.erase(tmp);  // it wrote to the copy just replaced
  }
  ready_[meta.id] = Ready{fd, old};
  files_[meta.id] = FileEntry{meta.queue, meta.total_size, meta.mode, meta.mtime_ns, std::nullopt};
  return {};
}

std::string Mirror::ApplyPatch(const msg::Patch& m) {
  auto it = files_.find(m.id);
  if (it == files_.end()) return fmt::format("patch for unknown message {}", m.id);
  if (m.offset + m.data.size() > it->second.size)
    return fmt::format("patch for {} at {}+{} is outside its {} bytes", m.id, m.offset,
                       m.data.size(), it->second.size);
  std::string rel = FilePath(m.id);
  int fd = BatchFd(rel);
  if (fd < 0) return Errno("cannot open", root_ + "/" + rel);
  if (!PwriteFull(fd, m.data, m.offset)) return Errno("cannot write", root_ + "/" + rel);
  // pwrite moved the mtime; the primary's mtime follows in a Meta or stays.
  struct timespec times[2] = {Ts(it->second.mtime_ns), Ts(it->second.mtime_ns)};
  futimens(fd, times);
  it->second.digest.reset();
  return {};
}

std::string Mirror::ApplyMeta(const msg::Meta& m) {
  auto it = files_.find(m.id);
  if (it == files_.end()) return fmt::format("mode/time change for unknown message {}", m.id);
  std::string rel = FilePath(m.id);
  int fd = BatchFd(rel);
  if (fd < 0) return Errno("cannot open", root_ + "/" + rel);
  struct timespec times[2] = {Ts(m.mtime_ns), Ts(m.mtime_ns)};
  if (fchmod(fd, m.mode) != 0 || futimens(fd, times) != 0)
    return Errno("cannot set mode/time of", root_ + "/" + rel);
  it->second.mode = m.mode;
  it->second.mtime_ns = m.mtime_ns;
  return {};
}

std::string Mirror::ApplyMove(const msg::Move& m) {
  auto it = files_.find(m.id);
  if (it == files_.end()) return fmt::format("move of unknown message {}", m.id);
  if (it->second.queue == m.queue) return {};
  if (ready_.count(m.id)) {  // not in a queue directory yet: Commit puts it in the new one
    it->second.queue = m.queue;
    return {};
  }
  std::string from = FilePath(m.id);
  std::string to = MirrorDir(m.queue) + "/" + m.id;
  if (renameat(rootfd_, from.c_str(), rootfd_, to.c_str()) != 0)
    return Errno("cannot move", root_ + "/" + from);
  TouchDir(MirrorDir(it->second.queue));
  TouchDir(MirrorDir(m.queue));
  it->second.queue = m.queue;
  return {};
}

std::string Mirror::ApplyDelete(const msg::Delete& m) {
  if (auto pit = partial_.find(m.id); pit != partial_.end()) {
    close(pit->second.fd);
    unlinkat(rootfd_, pit->second.rel.c_str(), 0);
    partial_.erase(pit);
  }
  auto it = files_.find(m.id);
  if (it == files_.end()) return {};  // idempotent
  std::string rel = FilePath(m.id);
  if (auto rit = ready_.find(m.id); rit != ready_.end()) {
    close(rit->second.fd);
    if (!rit->second.old_rel.empty()) {
      Remove(rit->second.old_rel, kUnknownSize);
      TouchDir(rit->second.old_rel.substr(0, rit->second.old_rel.find('/')));
    }
    ready_.erase(rit);
  }
  if (!Remove(rel, it->second.size) && errno != ENOENT)
    return Errno("cannot remove", root_ + "/" + rel);
  if (rel.rfind("tmp/", 0) != 0) TouchDir(MirrorDir(it->second.queue));
  files_.erase(it);
  return {};
}

std::string Mirror::ApplyLogData(const msg::LogData& m) {
  std::string rel = MirrorDir(m.kind) + "/" + m.id;
  auto key = std::make_pair(m.kind, m.id);
  auto it = logs_.find(key);
  int fd;
  if (m.offset == 0) {
    // (always a fresh inode: a log takes its final name at once, so a
    // recycled one could be seen with old bytes after a crash)
    fd = OpenFile(rel, O_WRONLY | O_CREAT | O_TRUNC);
    if (fd < 0) return Errno("cannot create", root_ + "/" + rel);
    if (it == logs_.end()) TouchDir(MirrorDir(m.kind));
  } else {
    if (it == logs_.end() || it->second.size < m.offset)
      return fmt::format("{} log append for {} at {} leaves a gap", LogKindName(m.kind), m.id,
                         m.offset);
    fd = OpenFile(rel, O_WRONLY);
    if (fd < 0) return Errno("cannot open", root_ + "/" + rel);
  }
  if (!PwriteFull(fd, m.data, m.offset)) {
    close(fd);
    return Errno("cannot write", root_ + "/" + rel);
  }
  TouchFd(fd);
  std::uint64_t end = m.offset + m.data.size();
  LogEntry& e = logs_[key];
  e.size = m.offset == 0 ? end : std::max(e.size, end);
  e.digest.reset();
  return {};
}

std::string Mirror::ApplyLogDelete(const msg::LogDelete& m) {
  auto it = logs_.find({m.kind, m.id});
  if (it == logs_.end()) return {};
  std::string rel = MirrorDir(m.kind) + "/" + m.id;
  if (!Remove(rel, it->second.size) && errno != ENOENT)
    return Errno("cannot remove", root_ + "/" + rel);
  TouchDir(MirrorDir(m.kind));
  logs_.erase(it);
  return {};
}

std::string Mirror::Commit() {
  if (dirty_fds_.empty() && dirty_dirs_.empty() && ready_.empty()) return {};
  ++stats_.commits;
  auto t0 = std::chrono::steady_clock::now();
  std::string err;
  bool many = sync_ == MirrorSync::kNormal && dirty_fds_.size() + ready_.size() > kSyncfsThreshold;
  auto sync_fd = [&](int fd, const std::string& what) {
    if (sync_ == MirrorSync::kNone) return;  // (the negative control)
    ++stats_.fsyncs;
    if (fsync(fd) != 0 && err.empty()) err = Errno("fsync", what);
  };
  auto sync_fs = [&]() {
    ++stats_.syncfs;
    if (syncfs(rootfd_) != 0 && err.empty()) err = Errno("syncfs", root_);
  };
  // Phase 1: every byte durable. One syncfs beats thousands of fsyncs in a
  // bulk transfer; a few fsyncs beat flushing the whole filesystem.
  if (many) {
    sync_fs();
  } else {
    for (int fd : dirty_fds_) sync_fd(fd, "file in " + root_);
    for (auto& [id, r] : ready_) sync_fd(r.fd, root_ + "/tmp/" + id);
  }
  // Phase 2: durable files take their names in the queue directories. A queue
  // file therefore never has a name in the mirror before all its bytes are on disk.
  if (err.empty()) {
    for (auto& [id, r] : ready_) {
      std::string tmp = "tmp/" + id;
      std::string dst = MirrorDir(files_[id].queue) + "/" + id;
      if (renameat(rootfd_, tmp.c_str(), rootfd_, dst.c_str()) != 0) {
        if (err.empty()) err = Errno("cannot rename into", root_ + "/" + dst);
        continue;
      }
      TouchDir(dst.substr(0, dst.find('/')));
      if (!r.old_rel.empty() && r.old_rel != dst) {
        Remove(r.old_rel, kUnknownSize);
        TouchDir(r.old_rel.substr(0, r.old_rel.find('/')));
      }
    }
  }
  // Phase 3: the names durable.
  if (err.empty()) {
    if (many && !dirty_dirs_.empty()) {
      sync_fs();
    } else {
      for (const auto& d : dirty_dirs_) {
        int dfd = DirFd(d);
        if (dfd < 0) {
          if (err.empty()) err = Errno("cannot open", root_ + "/" + d);
          continue;
        }
        sync_fd(dfd, root_ + "/" + d);
      }
    }
  }
  for (int fd : dirty_fds_) close(fd);
  dirty_fds_.clear();
  batch_fds_.clear();
  dirty_dirs_.clear();
  for (auto& [id, r] : ready_) close(r.fd);
  ready_.clear();
  // The removals that put inodes in spare/ are durable now (their directories
  // were synced above): only now may new files take them. After a failed
  // commit they wait for the next Open(), which syncs everything first.
  if (err.empty())
    for (auto& n : spare_pending_) spare_.push_back(std::move(n));
  spare_pending_.clear();
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  stats_.commit_ms_max = std::max(stats_.commit_ms_max, ms);
  commit_latency_.Add(ms);
  return err;
}

void Mirror::DropPartial() {
  for (auto& [id, p] : partial_) {
    close(p.fd);
    if (rootfd_ >= 0) unlinkat(rootfd_, p.rel.c_str(), 0);
  }
  partial_.clear();
}

std::vector<msg::ManifestEntry> Mirror::Manifest() {
  std::vector<msg::ManifestEntry> out;
  out.reserve(files_.size() + logs_.size());
  for (auto& [id, e] : files_) {
    if (!e.digest) {
      std::string rel = MirrorDir(e.queue) + "/" + id;
      int fd = OpenFile(rel, O_RDONLY);
      std::string head;
      MutableBytes mut;
      if (fd >= 0 && ReadHead(fd, 512, head)) {
        Layout l = ParseLayout(head, e.size);
        if (ReadMutable(fd, l, mut)) e.digest = DigestOf(l, mut);
      }
      if (fd >= 0) close(fd);
      if (!e.digest) e.digest = 0;  // unreadable: a mismatch makes the primary resend
    }
    out.push_back(msg::ManifestEntry{0, e.queue, id, e.size, e.mode, e.mtime_ns, *e.digest});
  }
  for (auto& [key, e] : logs_) {
    if (!e.digest) {
      std::string rel = MirrorDir(key.first) + "/" + key.second;
      int fd = OpenFile(rel, O_RDONLY);
      std::string content;
      if (fd >= 0 && ReadHead(fd, e.size, content)) e.digest = DigestOfLog(content);
      if (fd >= 0) close(fd);
      if (!e.digest) e.digest = 0;
    }
    out.push_back(msg::ManifestEntry{static_cast<std::uint8_t>(key.first), Queue::kIncoming,
                                     key.second, e.size, 0, 0, *e.digest});
  }
  return out;
}

}  // namespace mailtwin::repl
