#include "gate/dedup_table.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <unordered_set>

#include <fmt/format.h>

#include "common/queue_id.h"

namespace mailtwin::gate {
namespace {

// Version 2 adds orphan lines; a version 1 file (entries only) reads the same.
constexpr std::string_view kHeader = "mailtwin-dedup 2";
constexpr std::string_view kHeaderV1 = "mailtwin-dedup 1";
constexpr std::string_view kOrphanTag = "orphan ";

bool ParseInt(std::string_view s, std::int64_t& v) {
  if (s.empty() || s.size() > 19) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() && v >= 0;
}

bool ValidOrigin(std::string_view s) {
  if (s.empty() || s.size() > 255) return false;
  for (unsigned char c : s)
    if (c <= 0x20 || c >= 0x7f) return false;
  return true;
}

std::string WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::strerror(errno);
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

}  // namespace

std::int64_t WallSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string DedupTable::FormatLine(const DedupEntry& e) {
  return fmt::format("{} {} {} {} {}\n", DigestHex(e.digest), e.id, e.origin, e.added_s,
                     e.expires_s);
}

bool DedupTable::ParseLine(std::string_view line, std::int64_t now_s, DedupEntry& out) {
  std::string_view f[5];
  for (int i = 0; i < 5; ++i) {
    std::size_t sp = line.find(' ');
    if (i < 4) {
      if (sp == std::string_view::npos) return false;
      f[i] = line.substr(0, sp);
      line.remove_prefix(sp + 1);
    } else {
      if (sp != std::string_view::npos) return false;
      f[i] = line;
    }
  }
  DedupEntry e;
  if (!DigestFromHex(f[0], e.digest)) return false;
  if (f[1].size() > kMaxQueueIdLen || !IsValidQueueId(std::string(f[1]))) return false;
  if (!ValidOrigin(f[2])) return false;
  if (!ParseInt(f[3], e.added_s) || !ParseInt(f[4], e.expires_s)) return false;
  if (e.expires_s < e.added_s || e.expires_s - e.added_s > kMaxRetentionS) return false;
  if (e.expires_s > now_s + kMaxRetentionS) return false;  // no entry kept past any retention
  e.id = std::string(f[1]);
  e.origin = std::string(f[2]);
  out = std::move(e);
  return true;
}

std::string DedupTable::FormatOrphanLine(const OrphanEntry& o) {
  return fmt::format("orphan {} {} {}{}{}\n", DigestHex(o.digest), o.token, o.expires_s,
                     o.resent_as.empty() ? "" : " ", o.resent_as);
}

bool DedupTable::ParseOrphanLine(std::string_view line, std::int64_t now_s, OrphanEntry& out) {
  if (!line.starts_with(kOrphanTag)) return false;
  line.remove_prefix(kOrphanTag.size());
  std::string_view f[4];
  int n = 0;
  while (!line.empty() && n < 4) {
    std::size_t sp = line.find(' ');
    f[n++] = line.substr(0, sp);
    line.remove_prefix(sp == std::string_view::npos ? line.size() : sp + 1);
    if (sp != std::string_view::npos && line.empty()) return false;  // a trailing space
  }
  if (!line.empty() || n < 3) return false;
  OrphanEntry o;
  if (!DigestFromHex(f[0], o.digest) || !IsGateToken(f[1])) return false;
  if (!ParseInt(f[2], o.expires_s) || o.expires_s > now_s + kMaxRetentionS) return false;
  if (n == 4) {
    if (f[3].size() > kMaxQueueIdLen || !IsValidQueueId(std::string(f[3]))) return false;
    o.resent_as = std::string(f[3]);
  }
  o.token = std::string(f[1]);
  out = std::move(o);
  return true;
}

std::string DedupTable::Open(const std::string& path, std::int64_t now_s) {
  path_ = path;
  entries_.clear();
  orphans_.clear();
  orphan_tokens_.clear();
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return {};
    return fmt::format("dedup table {}: {}; starting with an empty table", path,
                       std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return fmt::format("dedup table {}: not a regular file; starting with an empty table", path);
  }
  if (static_cast<std::uintmax_t>(st.st_size) > kMaxFileBytes) {
    ::close(fd);
    return fmt::format("dedup table {}: {} bytes, over the cap of {}; starting with an empty table",
                       path, st.st_size, kMaxFileBytes);
  }
  std::string data;
  data.resize(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  data.resize(got);
  std::string_view rest(data);
  std::size_t nl = rest.find('\n');
  std::string_view header = rest.substr(0, nl);
  if (nl == std::string_view::npos || (header != kHeader && header != kHeaderV1))
    return fmt::format("dedup table {}: no '{}' header; starting with an empty table", path,
                       kHeader);
  rest.remove_prefix(nl + 1);
  std::size_t bad = 0, expired = 0, over = 0;
  while (!rest.empty()) {
    nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    if (nl == std::string_view::npos) {  // a torn last line
      ++bad;
      break;
    }
    if (line.starts_with(kOrphanTag)) {
      OrphanEntry o;
      if (!ParseOrphanLine(line, now_s, o)) {
        ++bad;
      } else if (o.expires_s <= now_s) {
        ++expired;
      } else if (orphan_tokens_.count(o.token)) {
        ++bad;  // one token, one orphan
      } else if (orphans_.size() >= kMaxEntries) {
        ++over;
      } else {
        PutOrphan(o.digest, Orphan{std::move(o.token), o.expires_s, std::move(o.resent_as)});
      }
      continue;
    }
    DedupEntry e;
    if (!ParseLine(line, now_s, e)) {
      ++bad;
      continue;
    }
    if (e.expires_s <= now_s) {
      ++expired;
      continue;
    }
    if (entries_.size() >= kMaxEntries && !entries_.count(Key(e.digest))) {
      ++over;
      continue;
    }
    auto& slot = entries_[Key(e.digest)];
    if (slot.expires_s < e.expires_s) slot = std::move(e);
  }
  if (bad || over)
    return fmt::format("dedup table {}: {} lines ignored (not valid entries), {} over the cap of "
                       "{} entries; {} entries and {} orphans kept",
                       path, bad, over, kMaxEntries, entries_.size(), orphans_.size());
  (void)expired;
  return {};
}

void DedupTable::Insert(const DedupEntry& e) {
  auto key = Key(e.digest);
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    if (it->second.expires_s < e.expires_s) {
      it->second = e;
      dirty_ = true;
    }
    return;
  }
  if (entries_.size() >= kMaxEntries) return;
  entries_.emplace(std::move(key), e);
  dirty_ = true;
}

std::string DedupTable::Add(const std::vector<DedupEntry>& entries) {
  for (const auto& e : entries) {
    auto key = Key(e.digest);
    auto it = entries_.find(key);
    if (it != entries_.end()) {
      if (it->second.expires_s < e.expires_s) it->second = e;
      continue;
    }
    if (entries_.size() >= kMaxEntries) break;
    entries_.emplace(std::move(key), e);
  }
  return Save();
}

const DedupEntry* DedupTable::Match(const Digest& d, std::int64_t now_s) const {
  if (entries_.empty()) return nullptr;
  auto it = entries_.find(Key(d));
  if (it == entries_.end() || it->second.expires_s <= now_s) return nullptr;
  return &it->second;
}

std::string DedupTable::Expire(std::int64_t now_s) {
  std::size_t n = std::erase_if(entries_, [&](const auto& kv) { return kv.second.expires_s <= now_s; });
  n += std::erase_if(orphans_, [&](const auto& kv) {
    if (kv.second.expires_s > now_s) return false;
    orphan_tokens_.erase(kv.second.token);
    return true;
  });
  return n ? Save() : std::string();
}

std::string DedupTable::Save() {
  dirty_ = false;
  if (path_.empty()) return {};
  std::string data(kHeader);
  data.push_back('\n');
  for (const auto& [k, e] : entries_) data += FormatLine(e);
  for (const auto& [k, o] : orphans_) {
    OrphanEntry line{o.token, {}, o.expires_s, o.resent_as};
    std::copy(k.begin(), k.end(), line.digest.begin());
    data += FormatOrphanLine(line);
  }
  std::string tmp = path_ + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return fmt::format("cannot write {}: {}", tmp, std::strerror(errno));
  std::string err = WriteAll(fd, data);
  if (err.empty() && ::fsync(fd) != 0) err = std::strerror(errno);
  ::close(fd);
  if (err.empty() && ::rename(tmp.c_str(), path_.c_str()) != 0) err = std::strerror(errno);
  if (!err.empty()) {
    ::unlink(tmp.c_str());
    return fmt::format("cannot save {}: {}", path_, err);
  }
  std::string dir = std::filesystem::path(path_).parent_path().string();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    int rc = ::fsync(dfd);
    ::close(dfd);
    if (rc != 0) return fmt::format("cannot sync {}: {}", dir, std::strerror(errno));
  }
  return {};
}

void RecentFingerprints::Prune(Clock::time_point now) {
  while (!recent_.empty() && (now - recent_.front().at > window_ || recent_.size() > kMaxEntries))
    recent_.pop_front();
  while (!unbound_.empty() &&
         (now - unbound_.front().first > window_ || unbound_.size() > kMaxEntries)) {
    auto& [at, token] = unbound_.front();
    // A token may have come back since (bound, then seen again): only the
    // entry of this arrival goes.
    if (auto t = tokens_.find(token); t != tokens_.end() && t->second.at <= at) tokens_.erase(t);
    if (auto f = files_.find(token); f != files_.end() && f->second.at <= at) files_.erase(f);
    unbound_.pop_front();
  }
  while (!whole_order_.empty() &&
         (now - whole_order_.front().first > window_ || whole_order_.size() > kMaxEntries)) {
    auto& [at, id] = whole_order_.front();
    if (auto w = whole_.find(id); w != whole_.end() && w->second <= at) whole_.erase(w);
    whole_order_.pop_front();
  }
}

void DedupTable::AddOrphans(const std::vector<std::pair<std::string, Digest>>& tokens,
                            std::int64_t expires_s) {
  for (const auto& [token, d] : tokens) {
    if (orphans_.size() >= kMaxEntries) break;
    PutOrphan(d, Orphan{token, expires_s, {}});
    dirty_ = true;
  }
}

void DedupTable::PutOrphan(const Digest& d, Orphan o) {
  std::string key = Key(d);
  if (auto old = orphans_.find(key); old != orphans_.end()) orphan_tokens_.erase(old->second.token);
  orphan_tokens_[o.token] = key;
  orphans_[key] = std::move(o);
}

void DedupTable::NoteQueued(const Digest& d, const std::string& id) {
  if (orphans_.empty()) return;
  if (auto o = orphans_.find(Key(d)); o != orphans_.end() && o->second.resent_as.empty()) {
    o->second.resent_as = id;
    dirty_ = true;
  }
}

std::optional<std::string> DedupTable::ResentAs(std::string_view token, std::int64_t now_s) const {
  auto t = orphan_tokens_.find(std::string(token));
  if (t == orphan_tokens_.end()) return std::nullopt;
  auto o = orphans_.find(t->second);
  if (o == orphans_.end() || o->second.resent_as.empty() || o->second.expires_s <= now_s)
    return std::nullopt;
  return o->second.resent_as;
}

std::vector<std::pair<std::string, Digest>> RecentFingerprints::UnboundTokens() const {
  std::vector<std::pair<std::string, Digest>> out;
  out.reserve(tokens_.size());
  for (const auto& [token, t] : tokens_) out.emplace_back(token, t.digest);
  return out;
}

void RecentFingerprints::FileWhole(const std::string& id, Clock::time_point now) {
  if (window_.count() <= 0) return;
  whole_[id] = now;
  whole_order_.emplace_back(now, id);
  Prune(now);
}

void RecentFingerprints::Add(const std::string& id, const Digest& d, const std::string& origin,
                             Clock::time_point now) {
  if (window_.count() <= 0) return;
  if (IsGateToken(id)) {
    if (auto f = files_.find(id); f != files_.end()) {
      recent_.push_back(Item{now, f->second.id, origin, d});
      files_.erase(f);
      ++bound_;
    } else {
      tokens_[id] = Token{now, origin, d};
      unbound_.emplace_back(now, id);
    }
  } else {
    recent_.push_back(Item{now, id, origin, d});
  }
  Prune(now);
}

void RecentFingerprints::AddFile(const std::string& id, std::string_view ident,
                                 Clock::time_point now) {
  if (window_.count() <= 0 || !IsGateToken(ident) || !IsValidQueueId(id)) return;
  std::string token(ident);
  if (auto t = tokens_.find(token); t != tokens_.end()) {
    recent_.push_back(Item{now, id, std::move(t->second.origin), t->second.digest});
    tokens_.erase(t);
    ++bound_;
  } else {
    files_[token] = File{now, id};
    unbound_.emplace_back(now, std::move(token));
  }
  Prune(now);
}

std::vector<DedupEntry> RecentFingerprints::Take(Clock::time_point now, std::int64_t now_s,
                                                 std::int64_t retention_s) {
  Prune(now);
  std::vector<DedupEntry> out;
  out.reserve(recent_.size());
  // A message's fingerprint can come twice: the primary sends the recent
  // ones again to each new session's standby.
  std::unordered_set<std::string> taken;
  for (auto& it : recent_)
    if (whole_.contains(it.id) && taken.insert(it.id).second)
      out.push_back(DedupEntry{it.digest, std::move(it.id), std::move(it.origin), now_s,
                               now_s + retention_s});
  recent_.clear();
  tokens_.clear();
  files_.clear();
  unbound_.clear();
  whole_.clear();
  whole_order_.clear();
  return out;
}

}  // namespace mailtwin::gate
