#include "ha/events.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/durable_dir.h"
#include "common/process.h"

namespace mailtwin::ha {

nlohmann::json Event::ToJson() const {
  return {{"seq", seq},   {"kind", kind},     {"node", node},          {"role", role},
          {"epoch", epoch}, {"peer", peer}, {"reason", reason}, {"time", time_unix}};
}

Event Event::FromJson(const nlohmann::json& j) {
  Event e;
  e.seq = j.value("seq", std::uint64_t{0});
  e.kind = j.value("kind", "");
  e.node = j.value("node", "");
  e.role = j.value("role", "");
  e.epoch = j.value("epoch", std::uint64_t{0});
  e.peer = j.value("peer", "");
  e.reason = j.value("reason", "");
  e.time_unix = j.value("time", std::int64_t{0});
  return e;
}

std::string EventLog::Open(const std::string& state_dir) {
  std::lock_guard lk(mu_);
  dir_ = state_dir;
  if (std::string err = MakeDurableDir(dir_, 0700); !err.empty()) return err;
  // The log's own name durable before its first event is: an event is
  // fdatasynced before it is delivered, which is worth nothing if the file
  // it went to is gone after a power cut.
  std::string log = dir_ + "/events.jsonl";
  int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return fmt::format("cannot open {}: {}", log, std::strerror(errno));
  close(fd);
  if (std::string err = SyncDirectory(dir_); !err.empty()) return err;
  std::ifstream mark(dir_ + "/events.notified");
  if (mark) mark >> delivered_;
  std::ifstream in(dir_ + "/events.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      Event e = Event::FromJson(nlohmann::json::parse(line));
      seq_ = std::max(seq_, e.seq);
      recent_.push_back(std::move(e));
      while (recent_.size() > 50 && recent_.front().seq <= delivered_) recent_.pop_front();
    } catch (const std::exception&) {
      // A torn last line from a crash: the event was never delivered either.
      spdlog::warn("events: skipping a damaged line in {}/events.jsonl", dir_);
    }
  }
  return {};
}

Event EventLog::Append(Event e) {
  std::lock_guard lk(mu_);
  e.seq = ++seq_;
  e.time_unix = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  std::string line = e.ToJson().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::string path = dir_ + "/events.jsonl";
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()) ||
      fdatasync(fd) != 0)
    spdlog::error("events: cannot append to {}: {} (the event is still delivered)", path,
                  std::strerror(errno));
  if (fd >= 0) close(fd);
  recent_.push_back(e);
  while (recent_.size() > 50 && recent_.front().seq <= delivered_) recent_.pop_front();
  return e;
}

std::vector<Event> EventLog::Undelivered() const {
  std::lock_guard lk(mu_);
  std::vector<Event> out;
  for (const auto& e : recent_)
    if (e.seq > delivered_) out.push_back(e);
  return out;
}

std::vector<Event> EventLog::Recent(std::size_t n) const {
  std::lock_guard lk(mu_);
  std::size_t from = recent_.size() > n ? recent_.size() - n : 0;
  return {recent_.begin() + static_cast<std::ptrdiff_t>(from), recent_.end()};
}

std::uint64_t EventLog::last_seq() const {
  std::lock_guard lk(mu_);
  return seq_;
}

void EventLog::MarkDelivered(std::uint64_t seq) {
  std::lock_guard lk(mu_);
  if (seq <= delivered_) return;
  delivered_ = seq;
  std::string tmp = dir_ + "/events.notified.tmp", path = dir_ + "/events.notified";
  std::string text = fmt::format("{}\n", seq);
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool ok = fd >= 0 && write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            fsync(fd) == 0;
  if (fd >= 0) close(fd);
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0)
    spdlog::error("events: cannot record delivery in {}: {}", path, std::strerror(errno));
  else if (std::string err = SyncDirectory(dir_); !err.empty())
    spdlog::error("events: delivery mark may not survive a power cut: {}", err);
}

std::string NotificationMail(const Config& cfg, const Event& e) {
  std::string when = fmt::format("{}", e.time_unix);
  char date[64];
  std::time_t t = e.time_unix;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return fmt::format(
      "From: mailtwin on {node} <{from}>\n"
      "To: {to}\n"
      "Subject: [mailtwin {cluster}] {kind} on {node} (epoch {epoch})\n"
      "Date: {date}\n"
      "Message-ID: <{seq}.{node}.{cluster}@mailtwin>\n"
      "Auto-Submitted: auto-generated\n"
      "X-Mailtwin-Event: {kind}\n"
      "X-Mailtwin-Event-Seq: {seq}\n"
      "\n"
      "Event:   {kind} (#{seq})\n"
      "Node:    {node} of cluster {cluster}, now {role} at epoch {epoch}\n"
      "Peer:    {peer}\n"
      "Reason:  {reason}\n"
      "Time:    {date}\n"
      "\n"
      "Run `mailtwin status` on {node} for the current state.\n",
      fmt::arg("node", e.node), fmt::arg("from", cfg.notify_mail_from),
      fmt::arg("to", cfg.notify_mail_to), fmt::arg("cluster", cfg.cluster),
      fmt::arg("kind", e.kind), fmt::arg("epoch", e.epoch), fmt::arg("date", date),
      fmt::arg("seq", e.seq), fmt::arg("role", e.role), fmt::arg("peer", e.peer),
      fmt::arg("reason", e.reason));
}

Notifier::Notifier(const Config& cfg, EventLog& log) : cfg_(cfg), log_(log) {}

Notifier::~Notifier() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Notifier::Start() {
  {
    std::lock_guard lk(mu_);
    for (auto& e : log_.Undelivered()) queue_.push_back(e);
  }
  thread_ = std::thread([this] { Run(); });
}

void Notifier::Post(const Event& e) {
  {
    std::lock_guard lk(mu_);
    queue_.push_back(e);
  }
  cv_.notify_one();
}

void Notifier::Run() {
  for (;;) {
    Event e;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, all delivered
      e = std::move(queue_.front());
      queue_.pop_front();
    }
    Deliver(e);
    log_.MarkDelivered(e.seq);
  }
}

void Notifier::Deliver(const Event& e) {
  spdlog::warn("EVENT #{} {}: {} (node {}, {} at epoch {})", e.seq, e.kind, e.reason, e.node,
               e.role, e.epoch);
  if (!cfg_.notify_hook.empty()) {
    CommandOptions opt;
    opt.timeout = std::chrono::seconds(30);
    opt.env = {"MAILTWIN_EVENT=" + e.kind,
               fmt::format("MAILTWIN_EVENT_SEQ={}", e.seq),
               "MAILTWIN_NODE=" + e.node,
               "MAILTWIN_CLUSTER=" + cfg_.cluster,
               "MAILTWIN_ROLE=" + e.role,
               fmt::format("MAILTWIN_EPOCH={}", e.epoch),
               "MAILTWIN_PEER=" + e.peer,
               "MAILTWIN_REASON=" + e.reason,
               fmt::format("MAILTWIN_TIME={}", e.time_unix)};
    auto r = RunCommand({cfg_.notify_hook, e.kind}, opt);
    if (!r.ok())
      spdlog::error("events: hook {} failed for event #{} (exit {}): {}", cfg_.notify_hook, e.seq,
                    r.status, r.output);
  }
  if (!cfg_.notify_mail_to.empty()) {
    // Postfix's sendmail: queued by this node's Postfix (maildrop), sent by
    // pickup once Postfix runs here - at once on a primary.
    CommandOptions opt;
    opt.timeout = std::chrono::seconds(30);
    opt.input = NotificationMail(cfg_, e);
    auto r = RunCommand({"sendmail", "-C", cfg_.postfix_config_dir, "-f", cfg_.notify_mail_from,
                         "-t", "-i"},
                        opt);
    if (!r.ok())
      spdlog::error("events: sendmail failed for event #{} (exit {}): {}", e.seq, r.status,
                    r.output);
  }
}

}  // namespace mailtwin::ha
