// dedup_table.h - messages a new primary inherited whose 250 may have been
// lost with the old one, so that their senders' resends are answered 250
// without being queued a second time (docs/gate.md, "Duplicates after a
// failover").
//
// RecentFingerprints: on a standby, the fingerprints the primary sent with
// its messages (protocol.md, Fingerprint) over the last `dedup_window`,
// in memory. At a take-over they go into the DedupTable of the new
// primary, each kept for `dedup_retention`, but only those whose queue file
// arrived whole: a fingerprint can reach the standby ahead of its file, and
// if the primary dies in between, the message is not in the new primary's
// queue and its resend must be queued (an entry would lose it). A
// fingerprint the gate sent under its token, before the message was
// committed, is bound to the queue file that carries the token (log_ident),
// in whichever order the two arrive; a token without its file is a message
// that was never queued.
//
// DedupTable: durable, one text file (<state_dir>/dedup.table: entries, and
// orphans on lines of their own), rewritten
// whole (temporary file, fsync, rename, fsync of the directory) when
// entries are added or expire. Read back as hostile input: a line that is
// not exactly a valid entry is skipped and counted, the file's size and the
// number of entries are capped, an expiry further ahead than the longest
// retention is refused. Times are the node's own wall clock (seconds since
// the epoch): a clock step only lengthens or shortens a retention.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "gate/fingerprint.h"

namespace mailtwin::gate {

struct DedupEntry {
  Digest digest{};
  std::string id;      // the queue ID the old primary gave it
  std::string origin;  // the node it came from (the primary that failed)
  std::int64_t added_s = 0;
  std::int64_t expires_s = 0;
  bool operator==(const DedupEntry&) const = default;
};

class DedupTable {
 public:
  static constexpr std::size_t kMaxEntries = 1000000;
  static constexpr std::uintmax_t kMaxFileBytes = 256ull << 20;
  static constexpr std::int64_t kMaxRetentionS = 31 * 86400;

  // Reads path if it exists (expired entries dropped). Returns "" or a
  // warning: what was wrong with the file; the table then holds whatever
  // valid entries it had (or none). Never fails the caller.
  std::string Open(const std::string& path, std::int64_t now_s);
  // Adds entries (an entry for a digest already present keeps the later
  // expiry) and saves. Returns "" or why it could not be saved.
  std::string Add(const std::vector<DedupEntry>& entries);
  // The entry whose fingerprint is d and that has not expired.
  const DedupEntry* Match(const Digest& d, std::int64_t now_s) const;
  // Drops expired entries; saves if any went. Returns "" or a save error.
  std::string Expire(std::int64_t now_s);
  std::string Save();
  // Adds entries without saving (many arrive one frame at a time); dirty()
  // until the next Save.
  void Insert(const DedupEntry& e);
  bool dirty() const { return dirty_; }
  const std::unordered_map<std::string, DedupEntry>& entries() const { return entries_; }
  // Resends recognised since this daemon started (the gate counts them).
  void CountDuplicate() { ++duplicates_; }
  std::uint64_t duplicates() const { return duplicates_; }
  std::size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }

  // Orphans: messages the old primary's gate sent under a token whose queue
  // file never reached this node (RecentFingerprints::UnboundTokens at the
  // take-over). Their sender got no 250 and may send them again, to this
  // node, which queues the resend (it does not have the message); if the
  // old primary committed its copy before it died, it offers that copy at
  // its rejoin, and the two would both be delivered. So the gate notes a
  // message it queues whose fingerprint is an orphan's (NoteQueued), and the
  // handover drops a copy whose log_ident names an orphan that was resent
  // (ResentAs). Never consulted on intake: an orphan must never make the
  // gate drop a message. Saved in the table's file beside the entries
  // (dirty() until the next Save: a crash in between turns the case back
  // into a duplicate, never a loss); at most kMaxEntries, for the table's
  // retention.
  void AddOrphans(const std::vector<std::pair<std::string, Digest>>& tokens,
                  std::int64_t expires_s);
  void NoteQueued(const Digest& d, const std::string& id);
  // The queue ID of the resend of the message named token; nullopt when it
  // was not resent here (or token is not an orphan, or expired).
  std::optional<std::string> ResentAs(std::string_view token, std::int64_t now_s) const;
  std::size_t orphans() const { return orphans_.size(); }
  const std::string& path() const { return path_; }

  // Parses one line of the file; false if it is not a valid entry.
  static bool ParseLine(std::string_view line, std::int64_t now_s, DedupEntry& out);
  static std::string FormatLine(const DedupEntry& e);
  // An orphan's line: "orphan DIGEST TOKEN EXPIRES [RESENT_AS]".
  struct OrphanEntry {
    std::string token;
    Digest digest{};
    std::int64_t expires_s = 0;
    std::string resent_as;
  };
  static bool ParseOrphanLine(std::string_view line, std::int64_t now_s, OrphanEntry& out);
  static std::string FormatOrphanLine(const OrphanEntry& o);

 private:
  static std::string Key(const Digest& d) { return std::string(d.begin(), d.end()); }
  std::string path_;
  std::unordered_map<std::string, DedupEntry> entries_;
  struct Orphan {
    std::string token;
    std::int64_t expires_s = 0;
    std::string resent_as;  // queue ID here, once resent
  };
  // Stores o under its digest (a previous orphan of that digest goes, and
  // its token with it).
  void PutOrphan(const Digest& d, Orphan o);
  std::unordered_map<std::string, Orphan> orphans_;   // by digest (Key)
  std::unordered_map<std::string, std::string> orphan_tokens_;  // token -> digest key
  std::uint64_t duplicates_ = 0;
  bool dirty_ = false;
};

class RecentFingerprints {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::size_t kMaxEntries = 1000000;
  explicit RecentFingerprints(std::chrono::milliseconds window) : window_(window) {}

  // id: a queue ID, or a gate token (common/queue_id.h) waiting for its file.
  void Add(const std::string& id, const Digest& d, const std::string& origin, Clock::time_point now);
  // A queue file arrived; ident is its log_ident (repl::LogIdentOf), used
  // only when it is a gate token.
  void AddFile(const std::string& id, std::string_view ident, Clock::time_point now);
  // The last bytes of queue file id arrived: the mirror holds it whole.
  void FileWhole(const std::string& id, Clock::time_point now);
  // What arrived within the window before now, bound to a queue ID whose
  // file arrived whole, oldest first; forgets everything.
  std::vector<DedupEntry> Take(Clock::time_point now, std::int64_t now_s,
                               std::int64_t retention_s);
  std::size_t size() const { return recent_.size(); }
  // Tokens still waiting for their file, files for their token.
  std::size_t unbound_tokens() const { return tokens_.size(); }
  std::size_t unbound_files() const { return files_.size(); }
  // The tokens still waiting for their file, with their fingerprints.
  std::vector<std::pair<std::string, Digest>> UnboundTokens() const;
  std::uint64_t bound() const { return bound_; }  // tokens bound to a file so far

 private:
  struct Item {
    Clock::time_point at;
    std::string id;
    std::string origin;
    Digest digest;
  };
  struct Token {
    Clock::time_point at;
    std::string origin;
    Digest digest;
  };
  struct File {
    Clock::time_point at;
    std::string id;
  };
  void Prune(Clock::time_point now);
  std::chrono::milliseconds window_;
  std::deque<Item> recent_;
  std::unordered_map<std::string, Token> tokens_;  // token -> fingerprint, no file yet
  std::unordered_map<std::string, File> files_;    // token -> queue ID, no fingerprint yet
  std::deque<std::pair<Clock::time_point, std::string>> unbound_;  // tokens by arrival
  std::unordered_map<std::string, Clock::time_point> whole_;  // queue IDs whose file is whole
  std::deque<std::pair<Clock::time_point, std::string>> whole_order_;
  std::uint64_t bound_ = 0;
};

std::int64_t WallSeconds();

}  // namespace mailtwin::gate
