#include "node/handover.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/process.h"
#include "repl/queue_file.h"

namespace mailtwin {

namespace fs = std::filesystem;
using repl::msg::HandoverOutcome;

namespace {

// The queues a node sets aside at a step-down (postfix::SetAside).
constexpr Queue kSetAsideQueues[] = {Queue::kIncoming, Queue::kActive, Queue::kDeferred,
                                     Queue::kHold, Queue::kMaildrop};

std::string_view LiveQueueDir(Queue q) {
  switch (q) {
    case Queue::kHold: return "hold";
    case Queue::kMaildrop: return "maildrop";
    default: return "incoming";  // deferred and active start over from incoming
  }
}

}  // namespace

HandoverSink::HandoverSink(std::string queue_dir, repl::HashLayout hash, std::string config_dir,
                           ha::Ledger& ledger, std::function<bool(const std::string&)> queued,
                           ResentFn resent)
    : queue_dir_(std::move(queue_dir)), hash_(std::move(hash)), config_dir_(std::move(config_dir)),
      ledger_(ledger), queued_(std::move(queued)), resent_(std::move(resent)) {}

HandoverSink::~HandoverSink() {
  for (auto& [id, in] : in_)
    if (in.fd >= 0) close(in.fd);
  if (qfd_ >= 0) close(qfd_);
}

std::string HandoverSink::Init() {
  auto pc = Postconf(config_dir_, {"mail_owner", "setgid_group"});
  if (!pc.error.empty()) return pc.error;
  struct passwd* pw = getpwnam(pc.values["mail_owner"].c_str());
  if (!pw) return fmt::format("mail_owner {} is not a user here", pc.values["mail_owner"]);
  uid_ = pw->pw_uid;
  gid_ = pw->pw_gid;
  struct group* gr = getgrnam(pc.values["setgid_group"].c_str());
  drop_gid_ = gr ? gr->gr_gid : gid_;
  qfd_ = open(queue_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (qfd_ < 0) return fmt::format("cannot open {}: {}", queue_dir_, std::strerror(errno));
  return {};
}

HandoverSink::Incoming& HandoverSink::Get(const std::string& id) {
  auto [it, fresh] = in_.try_emplace(id);
  if (fresh) {
    // Decided once, at the first frame: queued here, finished here, or new.
    if (queued_(id)) it->second.verdict = HandoverOutcome::kQueued;
    else if (ledger_.Has(id)) it->second.verdict = HandoverOutcome::kFinished;
    else if (in_.size() > 64) Refuse(it->second, "too many handovers at once");
  }
  return it->second;
}

void HandoverSink::Refuse(Incoming& in, std::string why) {
  Discard(in, HandoverOutcome::kRefused, std::move(why));
}

void HandoverSink::Discard(Incoming& in, HandoverOutcome verdict, std::string why) {
  if (in.verdict) return;
  in.verdict = verdict;
  in.text = std::move(why);
  if (in.fd >= 0) {
    close(in.fd);
    in.fd = -1;
    unlinkat(qfd_, in.path.c_str(), 0);
  }
  for (const auto& l : in.logs) unlinkat(qfd_, l.c_str(), 0);
  in.logs.clear();
}

std::optional<repl::msg::HandoverResult> HandoverSink::OnMessage(const repl::Message& m) {
  if (const auto* f = std::get_if<repl::msg::HandoverFile>(&m)) {
    Incoming& in = Get(f->id);
    if (in.verdict) return std::nullopt;
    if (f->offset == 0) {
      if (in.fd >= 0) {
        Refuse(in, "queue file offered twice");
        return std::nullopt;
      }
      // Its sender got no 250 from the old primary and sent it again, here
      // (docs/gate.md, "Duplicates after a failover"): this copy would be a
      // second one.
      if (resent_)
        if (auto as = resent_(repl::LogIdentOf(f->data))) {
          ++stats_.resent;
          Discard(in, HandoverOutcome::kQueued,
                  fmt::format("its sender sent it again after the failover, queued here as {}",
                              *as));
          return std::nullopt;
        }
      in.queue = f->queue;
      in.mode = f->mode;
      in.size = f->total_size;
      std::vector<std::string> paths;
      hash_.Paths(LiveQueueDir(f->queue), f->id, paths);
      in.path = paths.front();
      fs::path parent = fs::path(in.path).parent_path();
      if (mkdirat(qfd_, parent.c_str(), 0700) == 0) fchownat(qfd_, parent.c_str(), uid_, gid_, 0);
      // Mode 0600 while writing: Postfix ignores a queue file until 0700.
      in.fd = openat(qfd_, in.path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (in.fd < 0) {
        if (errno == EEXIST) in.verdict = HandoverOutcome::kQueued;
        else Refuse(in, fmt::format("cannot create {}: {}", in.path, std::strerror(errno)));
        return std::nullopt;
      }
    }
    if (in.fd < 0 || f->total_size != in.size) {
      Refuse(in, "queue file chunk without its start");
      return std::nullopt;
    }
    if (pwrite(in.fd, f->data.data(), f->data.size(), static_cast<off_t>(f->offset)) !=
        static_cast<ssize_t>(f->data.size())) {
      Refuse(in, fmt::format("cannot write {}: {}", in.path, std::strerror(errno)));
      return std::nullopt;
    }
    in.written += f->data.size();
    return std::nullopt;
  }
  if (const auto* l = std::get_if<repl::msg::HandoverLog>(&m)) {
    Incoming& in = Get(l->id);
    if (in.verdict) return std::nullopt;
    std::string kind(LogKindName(l->kind));
    std::vector<std::string> paths;
    hash_.Paths(kind, l->id, paths);
    const std::string& rel = paths.front();
    fs::path parent = fs::path(rel).parent_path();
    if (mkdirat(qfd_, parent.c_str(), 0700) == 0) fchownat(qfd_, parent.c_str(), uid_, gid_, 0);
    int fd = openat(qfd_, rel.c_str(),
                    O_WRONLY | O_CREAT | O_CLOEXEC | (l->offset == 0 ? O_TRUNC : 0), 0600);
    bool ok = fd >= 0 && pwrite(fd, l->data.data(), l->data.size(), static_cast<off_t>(l->offset)) ==
                             static_cast<ssize_t>(l->data.size()) &&
              fchown(fd, uid_, gid_) == 0 && fsync(fd) == 0;
    int err = errno;
    if (fd >= 0) close(fd);
    if (!ok) {
      Refuse(in, fmt::format("cannot write {}: {}", rel, std::strerror(err)));
      return std::nullopt;
    }
    if (std::find(in.logs.begin(), in.logs.end(), rel) == in.logs.end()) in.logs.push_back(rel);
    return std::nullopt;
  }
  if (const auto* d = std::get_if<repl::msg::HandoverDone>(&m)) return Finish(d->id);
  return std::nullopt;
}

std::optional<repl::msg::HandoverResult> HandoverSink::Finish(const std::string& id) {
  Incoming& in = Get(id);
  if (!in.verdict && (in.fd < 0 || in.written != in.size))
    Refuse(in, fmt::format("incomplete: {} of {} bytes", in.written, in.size));
  if (!in.verdict) {
    // The commit, the way cleanup makes one: bytes durable, owner, then the
    // mode that tells Postfix the file is complete, then durable again.
    bool maildrop = in.queue == Queue::kMaildrop;
    std::uint32_t mode = maildrop ? (in.mode & 0777) | 0700 : 0700;
    bool ok = fsync(in.fd) == 0 && fchown(in.fd, uid_, maildrop ? drop_gid_ : gid_) == 0 &&
              fchmod(in.fd, mode) == 0 && fsync(in.fd) == 0;
    int err = errno;
    close(in.fd);
    in.fd = -1;
    if (!ok) {
      Refuse(in, fmt::format("cannot commit {}: {}", in.path, std::strerror(err)));
    } else {
      int dfd = openat(qfd_, std::string(fs::path(in.path).parent_path()).c_str(),
                       O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
      }
      ledger_.Record(id);
      in.verdict = HandoverOutcome::kImported;
      in.text = std::string(LiveQueueDir(in.queue));
      // Wake the service that picks it up; without this it waits for its
      // next periodic scan.
      RunCommand({"postkick", "-c", config_dir_, "public", maildrop ? "pickup" : "qmgr",
                  maildrop ? "W" : "I"});
    }
  }
  repl::msg::HandoverResult r{id, *in.verdict, in.text};
  switch (r.outcome) {
    case HandoverOutcome::kImported: ++stats_.imported; break;
    case HandoverOutcome::kQueued: ++stats_.queued; break;
    case HandoverOutcome::kFinished: ++stats_.finished; break;
    case HandoverOutcome::kRefused: ++stats_.refused; break;
  }
  in_.erase(id);
  return r;
}

bool HandoverSource::Next(const std::function<bool(const std::string&)>& have,
                          std::vector<repl::Message>& frames, std::string& id) {
  std::error_code ec;
  for (Queue q : kSetAsideQueues) {
    fs::path dir = fs::path(dir_) / std::string(QueueName(q));
    for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::end(it); it.increment(ec)) {
      std::string name = it->path().filename();
      if (!IsValidQueueId(name)) continue;
      if (std::find(skipped.begin(), skipped.end(), name) != skipped.end()) continue;
      if (have(name)) {
        Drop(name);
        ++dropped_;
        continue;
      }
      struct stat st;
      std::string content;
      {
        int fd = open(it->path().c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) != 0) {
          if (fd >= 0) close(fd);
          continue;
        }
        content.resize(static_cast<std::size_t>(st.st_size));
        ssize_t n = pread(fd, content.data(), content.size(), 0);
        close(fd);
        if (n != st.st_size) continue;
      }
      frames.clear();
      for (LogKind k : kAllLogKinds) {
        fs::path lp = fs::path(dir_) / std::string(LogKindName(k)) / name;
        std::string log;
        int fd = open(lp.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat ls;
        if (fstat(fd, &ls) == 0 && static_cast<std::uint64_t>(ls.st_size) <= repl::kMaxLogSize) {
          log.resize(static_cast<std::size_t>(ls.st_size));
          if (pread(fd, log.data(), log.size(), 0) != ls.st_size) log.clear();
        }
        close(fd);
        for (std::size_t off = 0; off < log.size(); off += repl::kMaxChunk)
          frames.push_back(repl::msg::HandoverLog{
              {k, name, off, log.substr(off, repl::kMaxChunk)}});
      }
      std::int64_t mtime_ns = std::int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
      std::size_t off = 0;
      do {
        frames.push_back(repl::msg::HandoverFile{{name, q, st.st_mode & 07777u, mtime_ns,
                                                  content.size(), off,
                                                  content.substr(off, repl::kMaxChunk)}});
        off += repl::kMaxChunk;
      } while (off < content.size());
      frames.push_back(repl::msg::HandoverDone{name});
      id = name;
      return true;
    }
  }
  return false;
}

void HandoverSource::Drop(const std::string& id) {
  std::error_code ec;
  for (Queue q : kSetAsideQueues)
    fs::remove(fs::path(dir_) / std::string(QueueName(q)) / id, ec);
  for (LogKind k : kAllLogKinds) fs::remove(fs::path(dir_) / std::string(LogKindName(k)) / id, ec);
}

}  // namespace mailtwin
