// queue_watcher.h - turns inotify events on a Postfix queue into message changes.
//
// Guarantees (docs/replication.md):
// - never locks or writes a queue file; reads with pread only;
// - a message is picked up when its file is committed (owner-execute bit set:
//   0700 in incoming/, 0744 in maildrop/), never while cleanup still writes it;
// - every event only marks a queue ID dirty; the ID's whole state is then read
//   (queue file first, then its logs) and diffed in QueueModel, so a file that
//   moved or vanished meanwhile is handled by what is on disk, not by the event;
// - a new hash subdirectory is watched and scanned at once (inotify misses
//   files created before the watch exists); IN_Q_OVERFLOW triggers a rescan;
// - deletions are confirmed only after inotify has been drained once more, so
//   a file caught mid-rename is never reported deleted, and a message created
//   before another one was deleted (an NDR and its original) reaches the
//   standby first.
// Single-threaded: call Poll() when fd() is readable.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "repl/queue_model.h"

namespace mailtwin::repl {

// Postfix's hash_queue_depth and hash_queue_names: where it puts queue files
// and logs of hashed queues (deferred/6/ID), so the watcher can find a file
// whatever events it has or has not seen.
struct HashLayout {
  int depth = 1;
  std::vector<std::string> names{"deferred", "defer"};
  bool Hashed(std::string_view queue) const;
  // Candidate relative paths of id in queue: hashed first, then flat.
  void Paths(std::string_view queue, const std::string& id, std::vector<std::string>& out) const;
};

class QueueWatcher {
 public:
  using Emit = std::function<void(const std::string& id, ApplyResult&& result)>;

  QueueWatcher(std::string queue_dir, QueueModel& model, Emit emit, HashLayout hash = {});
  ~QueueWatcher();
  QueueWatcher(const QueueWatcher&) = delete;
  QueueWatcher& operator=(const QueueWatcher&) = delete;

  // Creates the inotify instance and watches, then scans the whole queue.
  // Returns an error message, or "" on success.
  std::string Start();
  int fd() const { return ifd_; }

  // Processes events until inotify is drained (or max_rounds rounds ran).
  // Returns true when it stopped because the queue was drained.
  bool Poll(int max_rounds = 64);

  // Reads id's whole current state and returns it as full-state changes,
  // updating the model (the resend pump of the link uses this).
  ApplyResult Snapshot(const std::string& id);

  // Forgets nothing, re-reads everything (also run on IN_Q_OVERFLOW).
  void Rescan();

  struct Stats {
    std::uint64_t events = 0;
    std::uint64_t syncs = 0;
    std::uint64_t overflows = 0;
    std::uint64_t rescans = 0;
    std::uint64_t read_races = 0;
    std::uint64_t short_ids = 0;  // messages seen with a short queue ID (logged once)
  };
  const Stats& stats() const { return stats_; }
  const QueueModel& model() const { return model_; }

 private:
  enum class DirKind { kQueue, kLog };
  struct Dir {
    std::string relpath;  // "deferred/6"
    DirKind kind;
  };

  bool ReadEvents();
  void AddWatchTree(const std::string& relpath, int depth);
  void ScanDir(const std::string& relpath, int depth);
  // seen_ns: when the change was first noticed (0: now).
  void MarkDirty(const std::string& id, const std::string& relpath, std::int64_t seen_ns = 0);
  void NoteShortId(const std::string& id, const std::string& relpath);
  void SyncDirty();
  void ConfirmSuspects();
  // Reads id's state from disk. Returns false when a read raced with a change.
  // probe_all: look in every queue (and log) directory, not only where the
  // events and the model say it is: for snapshots, where no event guides us.
  // probe_logs: look for the logs at every path, also during the start-up
  // drain (implied by probe_all).
  bool Observe(const std::string& id, const std::vector<std::string>& hints, bool full,
               Observation& obs, bool probe_all = false, bool probe_logs = false);

  std::string queue_dir_;
  QueueModel& model_;
  Emit emit_;
  HashLayout hash_;
  int ifd_ = -1;
  int qfd_ = -1;  // O_PATH descriptor of queue_dir
  std::unordered_map<int, Dir> watches_;
  bool overflow_ = false;
  std::vector<std::string> dirty_order_;
  struct Dirty {
    std::vector<std::string> hints;  // where events said the file went
    std::int64_t seen_ns = 0;        // wall clock of the first event
  };
  std::unordered_map<std::string, Dirty> dirty_;
  std::unordered_map<std::string, std::int64_t> suspects_;  // id -> seen_ns
  // Until the first Poll() that drains everything (the start-up scan, before
  // any link exists to ship to), a changed file's logs are looked up only
  // where an event or the scan of the log directories named one (its hints):
  // 100 000 queued messages would otherwise cost six failed opens each. A log
  // made after the scan has its event pending, which marks the message dirty
  // again with that hint, so the model is whole when the initial drain ends.
  // Afterwards every changed file probes every log path: a log append must
  // be read before the 'D' that follows it, even if its event is unread.
  // (This relies on Postfix writing no defer/bounce/trace record for a
  // message before cleanup commits it: a log made for a file still seen
  // uncommitted during the drain would lose its hint.)
  bool initial_ = true;
  Stats stats_;
};

// "deferred/6/ID" -> Queue::kDeferred (nullopt for log dirs and unknown dirs).
std::optional<Queue> QueueOfRelpath(std::string_view relpath);
std::optional<LogKind> LogKindOfRelpath(std::string_view relpath);

}  // namespace mailtwin::repl
