#include "repl/wire.h"

namespace mailtwin::repl {

void Writer::U16(std::uint16_t v) {
  U8(static_cast<std::uint8_t>(v >> 8));
  U8(static_cast<std::uint8_t>(v));
}
void Writer::U32(std::uint32_t v) {
  U16(static_cast<std::uint16_t>(v >> 16));
  U16(static_cast<std::uint16_t>(v));
}
void Writer::U64(std::uint64_t v) {
  U32(static_cast<std::uint32_t>(v >> 32));
  U32(static_cast<std::uint32_t>(v));
}
void Writer::Str(std::string_view s) {
  U16(static_cast<std::uint16_t>(s.size()));
  out_.append(s.substr(0, 0xffff));
}
void Writer::Blob(std::string_view s) {
  U32(static_cast<std::uint32_t>(s.size()));
  out_.append(s);
}

bool Reader::Take(std::size_t n, const char*& p) {
  if (!ok_ || in_.size() - pos_ < n) {
    ok_ = false;
    return false;
  }
  p = in_.data() + pos_;
  pos_ += n;
  return true;
}

bool Reader::U8(std::uint8_t& v) {
  const char* p;
  if (!Take(1, p)) return false;
  v = static_cast<std::uint8_t>(p[0]);
  return true;
}
bool Reader::U16(std::uint16_t& v) {
  const char* p;
  if (!Take(2, p)) return false;
  auto b = reinterpret_cast<const unsigned char*>(p);
  v = static_cast<std::uint16_t>((b[0] << 8) | b[1]);
  return true;
}
bool Reader::U32(std::uint32_t& v) {
  std::uint16_t hi, lo;
  if (!U16(hi) || !U16(lo)) return false;
  v = (static_cast<std::uint32_t>(hi) << 16) | lo;
  return true;
}
bool Reader::U64(std::uint64_t& v) {
  std::uint32_t hi, lo;
  if (!U32(hi) || !U32(lo)) return false;
  v = (static_cast<std::uint64_t>(hi) << 32) | lo;
  return true;
}
bool Reader::I64(std::int64_t& v) {
  std::uint64_t u;
  if (!U64(u)) return false;
  v = static_cast<std::int64_t>(u);
  return true;
}
bool Reader::Str(std::string& s, std::size_t max_len) {
  std::uint16_t n;
  const char* p;
  if (!U16(n)) return false;
  if (n > max_len) return ok_ = false;
  if (!Take(n, p)) return false;
  s.assign(p, n);
  return true;
}
bool Reader::Blob(std::string_view& s, std::size_t max_len) {
  std::uint32_t n;
  const char* p;
  if (!U32(n)) return false;
  if (n > max_len) return ok_ = false;
  if (!Take(n, p)) return false;
  s = std::string_view(p, n);
  return true;
}

}  // namespace mailtwin::repl
