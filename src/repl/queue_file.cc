#include "repl/queue_file.h"

#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <charconv>

namespace mailtwin::repl {

Layout ParseLayout(std::string_view head, std::uint64_t file_size) {
  Layout all{file_size, file_size, file_size};  // no immutable body
  if (head.size() < 2 || head[0] != 'C') return all;
  // Record length: 7 bits per byte, low-order first, high bit = more follows
  // (Postfix global/record.c).
  std::uint64_t len = 0;
  std::size_t i = 1;
  for (int shift = 0; i < head.size() && shift < 28; shift += 7, ++i) {
    auto b = static_cast<unsigned char>(head[i]);
    len |= std::uint64_t{b & 0x7fu} << shift;
    if (!(b & 0x80)) {
      ++i;
      break;
    }
  }
  if (len == 0 || i + len > head.size()) return all;
  std::string_view text = head.substr(i, len);
  // "%15ld %15ld ...": message segment length, then data offset.
  std::uint64_t fields[2];
  const char* p = text.data();
  const char* end = text.data() + text.size();
  for (auto& f : fields) {
    while (p < end && *p == ' ') ++p;
    auto [q, ec] = std::from_chars(p, end, f);
    if (ec != std::errc()) return all;
    p = q;
  }
  std::uint64_t seg_len = fields[0], data_offset = fields[1];
  if (data_offset < i + len || data_offset > file_size || seg_len > file_size - data_offset)
    return all;
  return Layout{file_size, data_offset, data_offset + seg_len};
}

std::string LogIdentOf(std::string_view head) {
  static constexpr std::string_view kAttr = "log_ident=";
  std::size_t pos = 0;
  for (std::size_t n = 0; n < kMaxIdentRecords && pos < head.size(); ++n) {
    char type = head[pos++];
    // REC_TYPE_MESG, REC_TYPE_END: the envelope is over.
    if (type == 'M' || type == 'E') return {};
    std::uint64_t len = 0;
    bool done = false;
    for (int shift = 0; pos < head.size() && shift < 28; shift += 7) {
      auto b = static_cast<unsigned char>(head[pos++]);
      len |= std::uint64_t{b & 0x7fu} << shift;
      if (!(b & 0x80)) {
        done = true;
        break;
      }
    }
    if (!done || len > head.size() - pos) return {};
    std::string_view data = head.substr(pos, len);
    pos += len;
    if (type == 'A' && data.substr(0, kAttr.size()) == kAttr)
      return std::string(data.substr(kAttr.size()));
  }
  return {};
}

namespace {
void HashChunks(std::string_view bytes, std::vector<std::uint64_t>& out) {
  for (std::size_t off = 0; off < bytes.size(); off += kChunk)
    out.push_back(XXH3_64bits(bytes.data() + off, std::min(kChunk, bytes.size() - off)));
}
std::size_t NumChunks(std::uint64_t n) { return (n + kChunk - 1) / kChunk; }
}  // namespace

std::vector<std::uint64_t> ChunkHashes(const Layout& l, const MutableBytes& m) {
  std::vector<std::uint64_t> out;
  out.reserve(NumChunks(m.front.size()) + NumChunks(m.back.size()));
  HashChunks(m.front, out);
  HashChunks(m.back, out);
  return out;
}

std::uint64_t DigestOf(const Layout& l, const MutableBytes& m) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  std::uint64_t size = l.size;
  XXH3_64bits_update(st, &size, sizeof size);
  XXH3_64bits_update(st, m.front.data(), m.front.size());
  XXH3_64bits_update(st, m.back.data(), m.back.size());
  std::uint64_t d = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return d;
}

std::uint64_t DigestOfLog(std::string_view content) {
  return XXH3_64bits(content.data(), content.size());
}

std::vector<Range> ChangedRanges(const Layout& l, const std::vector<std::uint64_t>& before,
                                 const std::vector<std::uint64_t>& after) {
  std::vector<Range> out;
  std::size_t front_chunks = NumChunks(l.body_begin);
  auto add = [&](std::uint64_t off, std::uint64_t len) {
    if (!out.empty() && out.back().offset + out.back().length == off)
      out.back().length += len;
    else
      out.push_back({off, len});
  };
  for (std::size_t c = 0; c < after.size(); ++c) {
    if (c < before.size() && before[c] == after[c]) continue;
    std::uint64_t off, region_end;
    if (c < front_chunks) {
      off = c * kChunk;
      region_end = l.body_begin;
    } else {
      off = l.body_end + (c - front_chunks) * kChunk;
      region_end = l.size;
    }
    add(off, std::min<std::uint64_t>(kChunk, region_end - off));
  }
  return out;
}

namespace {
bool PreadFull(int fd, char* buf, std::size_t n, off_t off) {
  while (n > 0) {
    ssize_t r = pread(fd, buf, n, off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    buf += r;
    n -= static_cast<std::size_t>(r);
    off += r;
  }
  return true;
}
}  // namespace

bool ReadMutable(int fd, const Layout& l, MutableBytes& out) {
  out.front.resize(l.body_begin);
  out.back.resize(l.size - l.body_end);
  return PreadFull(fd, out.front.data(), out.front.size(), 0) &&
         PreadFull(fd, out.back.data(), out.back.size(), static_cast<off_t>(l.body_end));
}

bool ReadAll(int fd, std::uint64_t size, std::string& out) {
  out.resize(size);
  return PreadFull(fd, out.data(), size, 0);
}

bool ReadHead(int fd, std::size_t n, std::string& out) {
  out.resize(n);
  std::size_t got = 0;
  while (got < n) {
    ssize_t r = pread(fd, out.data() + got, n - got, static_cast<off_t>(got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return false;
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  out.resize(got);
  return true;
}

}  // namespace mailtwin::repl
