// queue_model.h - the primary's model of every committed message's state.
//
// Pure logic, no I/O: the watcher reads the disk into an Observation, and
// QueueModel::Apply turns the difference between what it knew and what was
// observed into change messages, in the order that keeps the standby safe:
//
//   logs (defer/bounce/trace appends) first, then the queue file's changes.
//
// Postfix fsyncs a bounce/trace record before it writes the 'D' that follows
// it; because the watcher reads the queue file *before* the logs, any 'D' it
// sees has its log record visible too, and shipping logs first keeps that
// order on the standby (otherwise a promoted standby could drop an NDR).
//
// Deletions are never emitted by a plain Apply: the file may only have moved
// (rename race). The watcher confirms them after draining inotify and calls
// Apply with allow_deletes.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/queue_id.h"
#include "repl/messages.h"
#include "repl/queue_file.h"

namespace mailtwin::repl {

struct FileObservation {
  bool found = false;
  Queue queue = Queue::kIncoming;
  std::string relpath;  // relative to queue_directory, e.g. "deferred/6/ID"
  std::uint32_t mode = 0;
  std::int64_t mtime_ns = 0;
  std::int64_t ctime_ns = 0;
  Layout layout;
  MutableBytes mut;
  std::optional<std::string> full;  // whole content, when the model asked for it
};

struct LogObservation {
  bool found = false;
  std::string relpath;
  std::string content;
};

struct Observation {
  std::string id;
  FileObservation file;
  std::array<LogObservation, 3> logs;  // indexed by LogKind - 1
};

struct FileState {
  Queue queue;
  std::string relpath;
  std::uint32_t mode;
  std::int64_t mtime_ns;
  std::int64_t ctime_ns;
  Layout layout;
  std::vector<std::uint64_t> chunks;
  std::uint64_t digest;
};

struct LogState {
  std::string relpath;
  std::uint64_t size;
  std::uint64_t digest;
};

struct MessageState {
  FileState file;
  std::array<std::optional<LogState>, 3> logs;
};

// What one Apply produced.
struct ApplyResult {
  std::vector<Message> changes;
  bool new_file = false;     // the message was shipped whole (commit or full resync)
  bool maybe_gone = false;   // something known was not found; confirm later
  // Wall-clock ns of the first inotify event that led to these changes (set
  // by the watcher; 0 for snapshots): how long a change waited in the
  // watcher, and where a removal's clock starts (it has no mtime).
  std::int64_t seen_ns = 0;
  // The file's mtime as observed (the model keeps the standby's for files in
  // active/): after a 'D' write in active/, when Postfix made it.
  std::int64_t observed_mtime_ns = 0;
};

class QueueModel {
 public:
  // True when Apply needs obs.file.full for a file of this size: the message is
  // new to the model or changed size (never happens after commit in Postfix,
  // but then only a full copy is safe).
  bool NeedsFull(const std::string& id, std::uint64_t size) const;

  // full = ship the whole state (reconcile) even if the model knew it.
  ApplyResult Apply(const Observation& obs, bool allow_deletes, bool full = false);

  const MessageState* Find(const std::string& id) const;
  const std::unordered_map<std::string, MessageState>& entries() const { return entries_; }
  std::size_t size() const { return entries_.size(); }

  // Reconciliation against the standby's manifest (docs/protocol.md §6):
  // `resend` gets the IDs whose content must be sent whole; `changes` the
  // cheap fixes (Move, Meta, Delete, LogDelete).
  struct ReconcileResult {
    std::vector<std::string> resend;
    std::vector<Message> changes;
  };
  ReconcileResult Reconcile(const std::vector<msg::ManifestEntry>& standby) const;

  // The manifest entries this model would have (used by tests and by status).
  static msg::ManifestEntry EntryOf(const std::string& id, const FileState& f);

 private:
  std::unordered_map<std::string, MessageState> entries_;
};

// Splits a whole file into File chunk messages.
void AppendFileChunks(const std::string& id, const FileState& f, const std::string& content,
                      std::vector<Message>& out);

}  // namespace mailtwin::repl
