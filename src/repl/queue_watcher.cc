#include "repl/queue_watcher.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <tuple>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "repl/stats.h"

namespace mailtwin::repl {
namespace {

constexpr std::uint32_t kDirMask = IN_CREATE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE |
                                   IN_ATTRIB | IN_MODIFY | IN_DELETE_SELF | IN_ONLYDIR;
constexpr int kMaxDepth = 3;  // hash_queue_depth is at most 2 in practice
constexpr std::size_t kHeadBytes = 512;

std::string_view TopOf(std::string_view relpath) {
  return relpath.substr(0, relpath.find('/'));
}

std::int64_t Ns(const struct timespec& ts) {
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// Appends rel to a candidate list unless it is empty or already there.
void AddCandidate(std::vector<std::string>& out, std::string rel) {
  if (!rel.empty() && std::find(out.begin(), out.end(), rel) == out.end())
    out.push_back(std::move(rel));
}

// Opens rel under dirfd for reading if it is a regular file (no locks, no
// symlinks); fills st. Returns -1 otherwise.
int OpenRegular(int dirfd, const std::string& rel, struct stat& st) {
  int fd = openat(dirfd, rel.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
    close(fd);
    fd = -1;
  }
  return fd;
}

}  // namespace

std::optional<Queue> QueueOfRelpath(std::string_view relpath) {
  return QueueFromName(TopOf(relpath));
}

std::optional<LogKind> LogKindOfRelpath(std::string_view relpath) {
  return LogKindFromName(TopOf(relpath));
}

bool HashLayout::Hashed(std::string_view queue) const {
  for (const auto& n : names)
    if (n == queue) return true;
  return false;
}

void HashLayout::Paths(std::string_view queue, const std::string& id,
                       std::vector<std::string>& out) const {
  if (Hashed(queue)) {
    std::string sub = HashSubdir(id, depth);
    if (!sub.empty()) AddCandidate(out, fmt::format("{}/{}/{}", queue, sub, id));
  }
  AddCandidate(out, fmt::format("{}/{}", queue, id));
}

QueueWatcher::QueueWatcher(std::string queue_dir, QueueModel& model, Emit emit, HashLayout hash)
    : queue_dir_(std::move(queue_dir)), model_(model), emit_(std::move(emit)), hash_(std::move(hash)) {}

QueueWatcher::~QueueWatcher() {
  if (ifd_ >= 0) close(ifd_);
  if (qfd_ >= 0) close(qfd_);
}

std::string QueueWatcher::Start() {
  qfd_ = open(queue_dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (qfd_ < 0)
    return fmt::format("cannot open queue directory {}: {}", queue_dir_, std::strerror(errno));
  ifd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (ifd_ < 0) return fmt::format("inotify_init1: {}", std::strerror(errno));
  Rescan();
  if (watches_.empty())
    return fmt::format("{} has none of Postfix's queue directories (incoming, active, ...): "
                       "is this the right queue_directory?",
                       queue_dir_);
  return {};
}

void QueueWatcher::AddWatchTree(const std::string& relpath, int depth) {
  std::string path = queue_dir_ + "/" + relpath;
  int wd = inotify_add_watch(ifd_, path.c_str(), kDirMask);
  if (wd < 0) {
    if (errno != ENOENT && errno != ENOTDIR)
      spdlog::warn("watcher: cannot watch {}: {}", path, std::strerror(errno));
    return;
  }
  DirKind kind = QueueOfRelpath(relpath) ? DirKind::kQueue : DirKind::kLog;
  watches_[wd] = Dir{relpath, kind};
  ScanDir(relpath, depth);
}

void QueueWatcher::ScanDir(const std::string& relpath, int depth) {
  int dfd = openat(qfd_, relpath.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return;
  DIR* d = fdopendir(dfd);
  if (!d) {
    close(dfd);
    return;
  }
  std::vector<std::string> subdirs;
  while (struct dirent* e = readdir(d)) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    bool is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st;
      is_dir = fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
    }
    if (is_dir) {
      if (depth < kMaxDepth) subdirs.emplace_back(name);
    } else if (IsValidQueueId(name)) {
      MarkDirty(std::string(name), relpath + "/" + std::string(name));
    }
  }
  closedir(d);
  for (const auto& s : subdirs) AddWatchTree(relpath + "/" + s, depth + 1);
}

void QueueWatcher::Rescan() {
  ++stats_.rescans;
  for (Queue q : kAllQueues) AddWatchTree(std::string(QueueName(q)), 1);
  for (LogKind k : kAllLogKinds) AddWatchTree(std::string(LogKindName(k)), 1);
  // Everything the model knows is re-read too: that is how a deletion missed
  // in an overflow is found.
  for (const auto& [id, st] : model_.entries()) MarkDirty(id, st.file.relpath);
}

void QueueWatcher::MarkDirty(const std::string& id, const std::string& relpath,
                             std::int64_t seen_ns) {
  auto [it, fresh] = dirty_.try_emplace(id);
  if (fresh) {
    dirty_order_.push_back(id);
    it->second.seen_ns = seen_ns ? seen_ns : WallClockNs();
  } else if (seen_ns && seen_ns < it->second.seen_ns) {
    it->second.seen_ns = seen_ns;
  }
  if (fresh && !IsLongQueueId(id)) NoteShortId(id, relpath);
  auto& hints = it->second.hints;
  if (!relpath.empty() && std::find(hints.begin(), hints.end(), relpath) == hints.end())
    hints.push_back(relpath);
}

void QueueWatcher::NoteShortId(const std::string& id, const std::string& relpath) {
  // Replicated all the same (it is mail), but never silently: once per
  // watcher, loudly, with what to do.
  if (stats_.short_ids++ > 0) return;
  spdlog::error(
      "watcher: {} has a short queue ID ({}): Postfix in {} was switched to short queue IDs "
      "(enable_long_queue_ids = no) while mailtwind runs. Short IDs are inode numbers and change "
      "when a file is copied to the standby, which then cannot tell its copies apart. Run: "
      "postconf enable_long_queue_ids=yes; postfix reload",
      relpath, id, queue_dir_);
}

bool QueueWatcher::ReadEvents() {
  alignas(struct inotify_event) char buf[64 * 1024];
  bool got = false;
  for (;;) {
    ssize_t n = read(ifd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got = true;
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<struct inotify_event*>(p);
      p += sizeof(struct inotify_event) + ev->len;
      ++stats_.events;
      if (ev->mask & IN_Q_OVERFLOW) {
        overflow_ = true;
        continue;
      }
      auto wit = watches_.find(ev->wd);
      if (wit == watches_.end()) continue;
      if (ev->mask & IN_IGNORED) {
        watches_.erase(wit);
        continue;
      }
      if (ev->len == 0) continue;  // event on the directory itself
      const Dir& dir = wit->second;
      std::string_view name(ev->name);
      std::string relpath = dir.relpath + "/" + std::string(name);
      if (ev->mask & IN_ISDIR) {
        if (ev->mask & (IN_CREATE | IN_MOVED_TO)) {
          int depth = static_cast<int>(std::count(relpath.begin(), relpath.end(), '/')) + 1;
          if (depth <= kMaxDepth) AddWatchTree(relpath, depth);
        }
        continue;
      }
      if (!IsValidQueueId(name)) continue;  // temporary names like USEC.PID
      std::string id(name);
      // A committed file announces itself by IN_ATTRIB (the 0700 chmod) or by
      // a rename into place; other events matter only for messages we know.
      bool wanted = dir.kind == DirKind::kQueue && (ev->mask & (IN_ATTRIB | IN_MOVED_TO));
      if (wanted || model_.Find(id) || dirty_.count(id)) MarkDirty(id, relpath);
    }
  }
  return got;
}

bool QueueWatcher::Poll(int max_rounds) {
  for (int round = 0; round < max_rounds; ++round) {
    bool got = ReadEvents();
    if (overflow_) {
      overflow_ = false;
      ++stats_.overflows;
      spdlog::warn("watcher: inotify queue overflowed; rescanning {}", queue_dir_);
      Rescan();
    }
    if (!dirty_order_.empty()) {
      SyncDirty();
      continue;
    }
    if (got) continue;
    if (suspects_.empty()) {
      initial_ = false;
      return true;
    }
    ConfirmSuspects();
  }
  return false;
}

void QueueWatcher::SyncDirty() {
  std::vector<std::string> order;
  order.swap(dirty_order_);
  auto dirty = std::move(dirty_);
  dirty_.clear();
  for (const std::string& id : order) {
    ++stats_.syncs;
    const Dirty& d = dirty[id];
    Observation obs;
    if (!Observe(id, d.hints, false, obs)) {
      ++stats_.read_races;
      MarkDirty(id, {}, d.seen_ns);
      for (const std::string& h : d.hints) MarkDirty(id, h);  // (see initial_)
      continue;
    }
    ApplyResult r = model_.Apply(obs, /*allow_deletes=*/false);
    r.seen_ns = d.seen_ns;
    r.observed_mtime_ns = obs.file.mtime_ns;
    if (r.maybe_gone) suspects_.try_emplace(id, d.seen_ns);
    if (!r.changes.empty()) emit_(id, std::move(r));
  }
}

void QueueWatcher::ConfirmSuspects() {
  auto suspects = std::move(suspects_);
  suspects_.clear();
  std::vector<std::tuple<std::string, Observation, std::int64_t>> gone;
  for (const auto& [id, seen_ns] : suspects) {
    Observation obs;
    if (!Observe(id, {}, false, obs)) {
      MarkDirty(id, {}, seen_ns);
      continue;
    }
    gone.emplace_back(id, std::move(obs), seen_ns);
  }
  // A file renamed into a place we did not look (a new hash directory) just
  // before we looked has its events queued by now: read them, and let any ID
  // they name be synced again instead of being declared deleted.
  ReadEvents();
  for (auto& [id, obs, seen_ns] : gone) {
    if (dirty_.count(id)) continue;
    ApplyResult r = model_.Apply(obs, /*allow_deletes=*/true);
    r.seen_ns = seen_ns;
    if (!r.changes.empty()) emit_(id, std::move(r));
  }
}

ApplyResult QueueWatcher::Snapshot(const std::string& id) {
  Observation obs;
  // Where the model says the file is, first: a catch-up of 100 000 messages
  // would otherwise cost ~10 failed lookups each. Only a file not found there
  // (moved since the model saw it) is looked for everywhere.
  if (model_.Find(id) && Observe(id, {}, true, obs, false, /*probe_logs=*/true) && obs.file.found)
    return model_.Apply(obs, /*allow_deletes=*/true, true);
  for (int attempt = 0; attempt < 3; ++attempt)
    if (Observe(id, {}, true, obs, /*probe_all=*/true))
      return model_.Apply(obs, /*allow_deletes=*/true, true);
  // Still changing under us: let the watcher pick it up from its events.
  MarkDirty(id, {});
  return {};
}

bool QueueWatcher::Observe(const std::string& id, const std::vector<std::string>& hints,
                           bool full, Observation& obs, bool probe_all, bool probe_logs) {
  probe_logs |= probe_all;
  obs = Observation{};
  obs.id = id;
  const MessageState* known = model_.Find(id);

  // Where the queue file may be: the newest event first, then where it was.
  std::vector<std::string> cands;
  for (auto it = hints.rbegin(); it != hints.rend(); ++it)
    if (QueueOfRelpath(*it)) AddCandidate(cands, *it);
  if (known) AddCandidate(cands, known->file.relpath);
  // Every rename into a queue reports where the file went (a new hash
  // directory is scanned when it appears, an overflow rescans everything),
  // so events and the model suffice; probing every queue directory costs
  // ~10 failed lookups per message and is kept for snapshots. A new ID whose
  // event named no queue file is looked for in incoming/ and maildrop/.
  if (probe_all) {
    for (Queue q : kAllQueues) hash_.Paths(QueueName(q), id, cands);
  } else if (cands.empty()) {
    AddCandidate(cands, fmt::format("incoming/{}", id));
    AddCandidate(cands, fmt::format("maildrop/{}", id));
  }

  FileObservation& f = obs.file;
  for (const std::string& rel : cands) {
    struct stat st;
    Fd fd{OpenRegular(qfd_, rel, st)};
    if (fd.fd < 0) continue;
    f.found = true;
    f.queue = *QueueOfRelpath(rel);
    f.relpath = rel;
    f.mode = st.st_mode & 07777;
    f.mtime_ns = Ns(st.st_mtim);
    f.ctime_ns = Ns(st.st_ctim);
    if (!known && !(f.mode & 0100)) return true;  // not committed yet: nothing to read
    auto size = static_cast<std::uint64_t>(st.st_size);
    if (size > kMaxFileSize) {
      spdlog::error("watcher: {} is {} bytes, over the {} byte cap; not replicated", rel, size,
                    kMaxFileSize);
      f.found = false;
      return true;
    }
    std::string head;
    if (!ReadHead(fd.fd, kHeadBytes, head)) return false;
    f.layout = ParseLayout(head, size);
    if (!ReadMutable(fd.fd, f.layout, f.mut)) return false;
    if (full || model_.NeedsFull(id, size)) {
      f.full.emplace();
      if (!ReadAll(fd.fd, size, *f.full)) return false;
    }
    break;
  }

  // Logs are read after the queue file: see queue_model.h. They matter only
  // when an event named one, when the model knows one (it may have changed or
  // gone), or when the queue file changed (a 'D' must never travel without
  // the bounce/trace record written before it). Otherwise skip the lookups.
  bool log_hint = false;
  for (const auto& h : hints) log_hint |= LogKindOfRelpath(h).has_value();
  bool known_logs = known && (known->logs[0] || known->logs[1] || known->logs[2]);
  // A move counts too: the defer log appears just before qmgr moves the
  // message to deferred/, and its event may have been read before the
  // message's own (then the ID was not found where the model had it).
  bool file_changed = !known || full ||
                      (f.found && (f.relpath != known->file.relpath ||
                                   f.layout.size != known->file.layout.size ||
                                   DigestOf(f.layout, f.mut) != known->file.digest));
  if (!log_hint && !known_logs && !file_changed) return true;
  // (during the start-up drain the hints name every log: see initial_)
  probe_logs |= file_changed && !initial_;
  for (LogKind k : kAllLogKinds) {
    std::vector<std::string> lc;
    for (auto it = hints.rbegin(); it != hints.rend(); ++it)
      if (LogKindOfRelpath(*it) == k) AddCandidate(lc, *it);
    if (known && known->logs[static_cast<int>(k) - 1])
      AddCandidate(lc, known->logs[static_cast<int>(k) - 1]->relpath);
    if (probe_logs) hash_.Paths(LogKindName(k), id, lc);
    LogObservation& lo = obs.logs[static_cast<int>(k) - 1];
    for (const std::string& rel : lc) {
      struct stat st;
      Fd fd{OpenRegular(qfd_, rel, st)};
      if (fd.fd < 0) continue;
      auto size = std::min<std::uint64_t>(static_cast<std::uint64_t>(st.st_size), kMaxLogSize);
      if (!ReadHead(fd.fd, size, lo.content)) return false;
      lo.found = true;
      lo.relpath = rel;
      break;
    }
  }
  return true;
}

}  // namespace mailtwin::repl
