// queue_file.h - what mailtwin needs to know about a Postfix queue file's bytes.
//
// After commit (mode 0700) Postfix never changes a queue file's size; it only
// rewrites bytes in place in the envelope and extracted segments (R->D, K, W).
// The message content between them never changes. Layout finds that immutable
// body from the leading 'C' (size) record, so a change can be found and shipped
// by re-reading only the small mutable regions, even for a 10 MB message.
// Files without a valid C record (maildrop files) are treated as all-mutable.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mailtwin::repl {

inline constexpr std::size_t kChunk = 64;  // patch granularity, bytes

struct Layout {
  std::uint64_t size = 0;
  std::uint64_t body_begin = 0;  // immutable region [body_begin, body_end)
  std::uint64_t body_end = 0;
  bool operator==(const Layout&) const = default;
};

// head: the file's first bytes (at least the C record; 256 bytes is plenty).
Layout ParseLayout(std::string_view head, std::uint64_t file_size);

// The mutable bytes of a file: [0, body_begin) followed by [body_end, size).
struct MutableBytes {
  std::string front;  // [0, body_begin)
  std::string back;   // [body_end, size)
};

// Hash of each kChunk-sized chunk of the mutable regions, front then back.
std::vector<std::uint64_t> ChunkHashes(const Layout& l, const MutableBytes& m);

// Digest of a queue file as both sides compute it: size + mutable bytes.
std::uint64_t DigestOf(const Layout& l, const MutableBytes& m);
// Digest of a whole log file.
std::uint64_t DigestOfLog(std::string_view content);

// Byte ranges (file offsets) whose chunk hash differs between two hash lists
// of the same layout; adjacent chunks are merged.
struct Range {
  std::uint64_t offset;
  std::uint64_t length;
  bool operator==(const Range&) const = default;
};
std::vector<Range> ChangedRanges(const Layout& l, const std::vector<std::uint64_t>& before,
                                 const std::vector<std::uint64_t>& after);

// The log_ident attribute of a queue file (Postfix's smtpd writes the
// XFORWARD IDENT it was given as the envelope record "A log_ident=..."),
// found among the envelope records at the head of the file; "" when there is
// none before the message content, or the head is malformed or truncated.
// head is hostile: record lengths are checked, at most kMaxIdentRecords
// records are read.
inline constexpr std::size_t kMaxIdentRecords = 64;
std::string LogIdentOf(std::string_view head);

// Reads the mutable regions of an open file (pread, no locks). Returns false
// on a short read (the file changed size or vanished under us).
bool ReadMutable(int fd, const Layout& l, MutableBytes& out);
// Reads a whole file of the given size. Returns false on a short read.
bool ReadAll(int fd, std::uint64_t size, std::string& out);
// Reads up to n bytes at offset 0.
bool ReadHead(int fd, std::size_t n, std::string& out);

}  // namespace mailtwin::repl
