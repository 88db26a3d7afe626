#include "repl/queue_model.h"

#include <map>
#include <utility>

namespace mailtwin::repl {
namespace {

std::size_t Idx(LogKind k) { return static_cast<std::size_t>(k) - 1; }

void AppendLogData(LogKind kind, const std::string& id, std::uint64_t offset,
                   std::string_view bytes, std::vector<Message>& out) {
  // offset 0 replaces the log on the standby, so an empty replacement is sent too.
  if (bytes.empty() && offset != 0) return;
  do {
    std::size_t n = std::min(bytes.size(), kMaxChunk);
    out.push_back(msg::LogData{kind, id, offset, std::string(bytes.substr(0, n))});
    offset += n;
    bytes.remove_prefix(n);
  } while (!bytes.empty());
}

// The bytes at [off, off+len) of the file, taken from its mutable regions.
std::string_view MutableSlice(const Layout& l, const MutableBytes& m, std::uint64_t off,
                              std::uint64_t len) {
  if (off < l.body_begin) return std::string_view(m.front).substr(off, len);
  return std::string_view(m.back).substr(off - l.body_end, len);
}

LogState LogStateOf(const LogObservation& o) {
  return LogState{o.relpath, o.content.size(), DigestOfLog(o.content)};
}

// Ships the difference between a log the model knew (or not) and what was read.
void ApplyLog(LogKind k, const std::string& id, const LogObservation& lo,
              std::optional<LogState>& known, std::vector<Message>& out) {
  LogState now = LogStateOf(lo);
  if (known && known->size == now.size && known->digest == now.digest) {
    known->relpath = lo.relpath;
    return;
  }
  bool append = known && lo.content.size() > known->size &&
                DigestOfLog(std::string_view(lo.content).substr(0, known->size)) == known->digest;
  if (append)
    AppendLogData(k, id, known->size, std::string_view(lo.content).substr(known->size), out);
  else
    AppendLogData(k, id, 0, lo.content, out);
  known = now;
}

FileState StateOf(const FileObservation& f) {
  return FileState{f.queue,    f.relpath, f.mode, f.mtime_ns, f.ctime_ns, f.layout,
                   ChunkHashes(f.layout, f.mut), DigestOf(f.layout, f.mut)};
}

}  // namespace

void AppendFileChunks(const std::string& id, const FileState& f, const std::string& content,
                      std::vector<Message>& out) {
  std::uint64_t off = 0;
  do {
    std::size_t n = std::min<std::size_t>(content.size() - off, kMaxChunk);
    out.push_back(msg::File{id, f.queue, f.mode, f.mtime_ns, content.size(), off,
                            content.substr(off, n)});
    off += n;
  } while (off < content.size());
}

bool QueueModel::NeedsFull(const std::string& id, std::uint64_t size) const {
  auto it = entries_.find(id);
  return it == entries_.end() || it->second.file.layout.size != size;
}

const MessageState* QueueModel::Find(const std::string& id) const {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second;
}

ApplyResult QueueModel::Apply(const Observation& obs, bool allow_deletes, bool full) {
  ApplyResult r;
  const FileObservation& fo = obs.file;
  auto it = entries_.find(obs.id);
  bool committed = fo.found && (fo.mode & 0100);

  if (it == entries_.end()) {
    // Only committed files exist for the model; a 0600 file is still being written.
    if (!committed || !fo.full) return r;
    full = true;
  }

  if (!fo.found) {
    if (!allow_deletes) {
      // The file was not where we looked (moved on, or gone). Its logs were
      // seen all the same: record and ship them, or they could be missed.
      r.maybe_gone = true;
      for (LogKind k : kAllLogKinds) {
        const LogObservation& lo = obs.logs[Idx(k)];
        if (lo.found) ApplyLog(k, obs.id, lo, it->second.logs[Idx(k)], r.changes);
      }
      return r;
    }
    // Logs go first: a standby that lost the file but kept a log is harmless,
    // and Postfix removes the logs before the file too.
    for (LogKind k : kAllLogKinds)
      if (it->second.logs[Idx(k)]) r.changes.push_back(msg::LogDelete{k, obs.id});
    r.changes.push_back(msg::Delete{obs.id});
    entries_.erase(it);
    return r;
  }

  if (full || fo.layout.size != it->second.file.layout.size) {
    if (!fo.full) return r;  // the watcher always supplies it when NeedsFull
    MessageState st{StateOf(fo), {}};
    for (LogKind k : kAllLogKinds) {
      const LogObservation& lo = obs.logs[Idx(k)];
      if (lo.found) {
        AppendLogData(k, obs.id, 0, lo.content, r.changes);
        st.logs[Idx(k)] = LogStateOf(lo);
      } else if (it != entries_.end() && it->second.logs[Idx(k)]) {
        if (allow_deletes) r.changes.push_back(msg::LogDelete{k, obs.id});
        else {
          st.logs[Idx(k)] = it->second.logs[Idx(k)];
          r.maybe_gone = true;
        }
      }
    }
    AppendFileChunks(obs.id, st.file, *fo.full, r.changes);
    entries_[obs.id] = std::move(st);
    r.new_file = true;
    return r;
  }

  MessageState& st = it->second;
  // 1. Logs.
  for (LogKind k : kAllLogKinds) {
    const LogObservation& lo = obs.logs[Idx(k)];
    std::optional<LogState>& known = st.logs[Idx(k)];
    if (!lo.found) {
      if (!known) continue;
      if (!allow_deletes) {
        r.maybe_gone = true;
        continue;
      }
      r.changes.push_back(msg::LogDelete{k, obs.id});
      known.reset();
      continue;
    }
    ApplyLog(k, obs.id, lo, known, r.changes);
  }

  // 2. In-place byte changes of the queue file.
  FileState now = StateOf(fo);
  if (now.digest != st.file.digest) {
    for (const Range& rg : ChangedRanges(fo.layout, st.file.chunks, now.chunks)) {
      for (std::uint64_t off = rg.offset; off < rg.offset + rg.length; off += kMaxPatch) {
        std::uint64_t n = std::min<std::uint64_t>(kMaxPatch, rg.offset + rg.length - off);
        r.changes.push_back(
            msg::Patch{obs.id, off, std::string(MutableSlice(fo.layout, fo.mut, off, n))});
      }
    }
  }
  // 3. Queue, mode, mtime.
  if (now.queue != st.file.queue) r.changes.push_back(msg::Move{obs.id, now.queue});
  // The mtime of a file in active/ is whatever the last 'D' write left: qmgr
  // sets it again (retry time) whenever the file leaves active/, and a
  // promoted standby puts active files into incoming/ where any past mtime
  // means "now". So it is not shipped: one frame and one fsync less per
  // delivered message. The standby keeps the mtime it had.
  bool mtime_matters = now.queue != Queue::kActive;
  if (now.mode != st.file.mode || (mtime_matters && now.mtime_ns != st.file.mtime_ns))
    r.changes.push_back(msg::Meta{obs.id, now.mode, now.mtime_ns});
  if (!mtime_matters) now.mtime_ns = st.file.mtime_ns;  // what the standby has
  st.file = std::move(now);
  return r;
}

msg::ManifestEntry QueueModel::EntryOf(const std::string& id, const FileState& f) {
  return msg::ManifestEntry{0, f.queue, id, f.layout.size, f.mode, f.mtime_ns, f.digest};
}

QueueModel::ReconcileResult QueueModel::Reconcile(
    const std::vector<msg::ManifestEntry>& standby) const {
  ReconcileResult r;
  std::unordered_map<std::string, const msg::ManifestEntry*> files;
  std::map<std::pair<std::uint8_t, std::string>, const msg::ManifestEntry*> logs;
  for (const auto& e : standby) {
    if (e.kind == 0) files[e.id] = &e;
    else logs[{e.kind, e.id}] = &e;
  }
  std::vector<Message> deletes;
  for (const auto& [id, st] : entries_) {
    auto fit = files.find(id);
    bool resend = fit == files.end() || fit->second->size != st.file.layout.size ||
                  fit->second->digest != st.file.digest;
    for (LogKind k : kAllLogKinds) {
      auto lit = logs.find({static_cast<std::uint8_t>(k), id});
      const auto& mine = st.logs[Idx(k)];
      if (mine) {
        if (lit == logs.end() || lit->second->size != mine->size ||
            lit->second->digest != mine->digest)
          resend = true;
      } else if (lit != logs.end()) {
        deletes.push_back(msg::LogDelete{k, id});
      }
    }
    if (resend) {
      r.resend.push_back(id);
      continue;
    }
    const auto& e = *fit->second;
    if (e.queue != st.file.queue) r.changes.push_back(msg::Move{id, st.file.queue});
    if (e.mode != st.file.mode || e.mtime_ns != st.file.mtime_ns)
      r.changes.push_back(msg::Meta{id, st.file.mode, st.file.mtime_ns});
  }
  for (const auto& [key, e] : logs)
    if (!entries_.count(key.second))
      deletes.push_back(msg::LogDelete{static_cast<LogKind>(key.first), key.second});
  for (const auto& [id, e] : files)
    if (!entries_.count(id)) deletes.push_back(msg::Delete{id});
  for (auto& d : deletes) r.changes.push_back(std::move(d));
  return r;
}

}  // namespace mailtwin::repl
