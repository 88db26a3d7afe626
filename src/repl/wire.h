// wire.h - bounded big-endian encoding of frame payloads (see docs/protocol.md §3).
//
// Writer appends; Reader consumes and never reads past the end: every getter
// returns false (and poisons the reader) on truncation or a length over its cap,
// so a decoder written with it cannot over-read or over-allocate on peer input.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mailtwin::repl {

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  void U8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U16(std::uint16_t v);
  void U32(std::uint32_t v);
  void U64(std::uint64_t v);
  void I64(std::int64_t v) { U64(static_cast<std::uint64_t>(v)); }
  // u16 length + bytes (short strings: names, IDs).
  void Str(std::string_view s);
  // u32 length + bytes (blobs: file data, log data).
  void Blob(std::string_view s);

 private:
  std::string& out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool U8(std::uint8_t& v);
  bool U16(std::uint16_t& v);
  bool U32(std::uint32_t& v);
  bool U64(std::uint64_t& v);
  bool I64(std::int64_t& v);
  bool Str(std::string& s, std::size_t max_len);
  // Returns a view into the input (valid while the input lives).
  bool Blob(std::string_view& s, std::size_t max_len);
  bool ok() const { return ok_; }
  bool AtEnd() const { return ok_ && pos_ == in_.size(); }
  std::size_t remaining() const { return in_.size() - pos_; }

 private:
  bool Take(std::size_t n, const char*& p);
  std::string_view in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace mailtwin::repl
