// events.h - what the administrator is told, exactly once per event.
//
// Every event (promotion, primary lost, standby lost, fencing, split brain,
// ...) is appended to <state_dir>/events.jsonl with the next sequence number
// and fsynced before anything is sent. A notifier thread then delivers it to
// the log, the hook command and the administrator's mailbox, and records the
// highest delivered sequence number in <state_dir>/events.notified. After a
// crash, events past that mark are delivered again at start: at least once,
// and the mail's Message-ID (<SEQ.NODE.CLUSTER@mailtwin>) and the hook's
// MAILTWIN_EVENT_SEQ let a receiver drop the rare repeat.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/config.h"

namespace mailtwin::ha {

struct Event {
  std::uint64_t seq = 0;
  std::string kind;  // promotion, primary-lost, standby-lost, fencing, split-brain, ...
  std::string node;
  std::string role;
  std::uint64_t epoch = 0;
  std::string peer;
  std::string reason;
  std::int64_t time_unix = 0;
  nlohmann::json ToJson() const;
  static Event FromJson(const nlohmann::json& j);
};

class EventLog {
 public:
  // Loads the log's last sequence number and the delivered mark.
  std::string Open(const std::string& state_dir);
  // Appends durably; returns the event with its sequence number.
  Event Append(Event e);
  std::vector<Event> Undelivered() const;
  std::vector<Event> Recent(std::size_t n) const;
  void MarkDelivered(std::uint64_t seq);
  std::uint64_t last_seq() const;

 private:
  mutable std::mutex mu_;
  std::string dir_;
  std::uint64_t seq_ = 0;
  std::uint64_t delivered_ = 0;
  std::deque<Event> recent_;  // the last few, and all undelivered ones
};

// Delivers events on its own thread (a hook or sendmail may be slow).
class Notifier {
 public:
  Notifier(const Config& cfg, EventLog& log);
  ~Notifier();
  void Start();  // delivers what the last run left undelivered, then waits
  void Post(const Event& e);

 private:
  void Run();
  void Deliver(const Event& e);

  const Config& cfg_;
  EventLog& log_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> queue_;
  bool stop_ = false;
  std::thread thread_;
};

// The mail sent for e (headers and body), for sendmail -t.
std::string NotificationMail(const Config& cfg, const Event& e);

}  // namespace mailtwin::ha
