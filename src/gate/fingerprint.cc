#include "gate/fingerprint.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/queue_id.h"

namespace mailtwin::gate {
namespace {

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i)
    if (std::toupper(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

// "FROM:<a@b> SIZE=1" -> "a@b"; "TO: <x>" -> "x"; "FROM:a@b" -> "a@b".
std::string PathArg(std::string_view rest) {
  std::size_t lt = rest.find('<');
  if (lt != std::string_view::npos) {
    std::size_t gt = rest.find('>', lt + 1);
    if (gt != std::string_view::npos) return std::string(rest.substr(lt + 1, gt - lt - 1));
  }
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  return std::string(rest.substr(0, rest.find(' ')));
}

void PutLen(EVP_MD_CTX* ctx, std::string_view s) {
  std::uint8_t n[4] = {static_cast<std::uint8_t>(s.size() >> 24),
                       static_cast<std::uint8_t>(s.size() >> 16),
                       static_cast<std::uint8_t>(s.size() >> 8), static_cast<std::uint8_t>(s.size())};
  EVP_DigestUpdate(ctx, n, 4);
  EVP_DigestUpdate(ctx, s.data(), s.size());
}

}  // namespace

std::string NewGateToken() {
  static constexpr char kHex[] = "0123456789abcdef";
  std::array<unsigned char, (kGateTokenLen - kGateTokenPrefix.size()) / 2> r{};
  if (RAND_bytes(r.data(), static_cast<int>(r.size())) != 1) {
    // No randomness (never seen): a token that cannot repeat in this process
    // is enough, since tokens live for dedup_window.
    static std::uint64_t n = 0;
    std::uint64_t v = ++n ^ static_cast<std::uint64_t>(::getpid()) << 40;
    for (auto& b : r) b = static_cast<unsigned char>(v), v >>= 8;
  }
  std::string out(kGateTokenPrefix);
  for (unsigned char b : r) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

std::string DigestHex(const Digest& d) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  s.reserve(64);
  for (auto b : d) {
    s.push_back(kHex[b >> 4]);
    s.push_back(kHex[b & 15]);
  }
  return s;
}

bool DigestFromHex(std::string_view hex, Digest& out) {
  if (hex.size() != 64) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < 32; ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return true;
}

Fingerprinter::Fingerprinter() : ctx_(EVP_MD_CTX_new()) {}
Fingerprinter::~Fingerprinter() { EVP_MD_CTX_free(ctx_); }

void Fingerprinter::Reset() {
  sender_.clear();
  rcpts_.clear();
  in_data_ = false;
  head_ = Head::kBody;
  first_.clear();
}

void Fingerprinter::Command(std::string_view line) {
  if (StartsWithNoCase(line, "MAIL FROM:")) {
    Reset();
    sender_ = PathArg(line.substr(10));
  } else if (StartsWithNoCase(line, "RCPT TO:")) {
    if (rcpts_.size() < kMaxRecipients) rcpts_.push_back(PathArg(line.substr(8)));
  } else if (StartsWithNoCase(line, "RSET")) {
    Reset();
  } else if (StartsWithNoCase(line, "DATA") && (line.size() == 4 || line[4] == ' ')) {
    BeginData();
  }
}

void Fingerprinter::BeginData() {
  EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr);
  in_data_ = true;
  head_ = Head::kFirstLine;
  first_.clear();
}

void Fingerprinter::Hash(std::string_view bytes) {
  if (!bytes.empty()) EVP_DigestUpdate(ctx_, bytes.data(), bytes.size());
}

void Fingerprinter::Data(std::string_view b) {
  if (!in_data_) return;
  while (!b.empty()) {
    switch (head_) {
      case Head::kBody:
        Hash(b);
        return;
      case Head::kFirstLine: {
        std::size_t nl = b.find('\n');
        std::size_t take = nl == std::string_view::npos ? b.size() : nl + 1;
        first_.append(b.substr(0, take));
        b.remove_prefix(take);
        if (nl == std::string_view::npos && first_.size() < kMaxHeadLine) break;
        if (nl != std::string_view::npos && StartsWithNoCase(first_, "RECEIVED:")) {
          head_ = Head::kLineStart;  // skip it, and its continuation lines
        } else {
          Hash(first_);
          head_ = Head::kBody;
        }
        first_.clear();
        break;
      }
      case Head::kLineStart:
        if (b.front() == ' ' || b.front() == '\t') {
          head_ = Head::kSkipLine;
        } else {
          head_ = Head::kBody;
        }
        break;
      case Head::kSkipLine: {
        std::size_t nl = b.find('\n');
        if (nl == std::string_view::npos) return;
        b.remove_prefix(nl + 1);
        head_ = Head::kLineStart;
        break;
      }
    }
  }
}

Digest Fingerprinter::Finish() {
  Digest data{};
  if (!in_data_) EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr);
  if (head_ == Head::kFirstLine) Hash(first_);
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx_, data.data(), &n);
  std::vector<std::string> rcpts = rcpts_;
  std::sort(rcpts.begin(), rcpts.end());
  EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr);
  static constexpr std::string_view kTag = "mailtwin-fp-1";
  EVP_DigestUpdate(ctx_, kTag.data(), kTag.size());
  PutLen(ctx_, sender_);
  PutLen(ctx_, std::to_string(rcpts.size()));
  for (const auto& r : rcpts) PutLen(ctx_, r);
  EVP_DigestUpdate(ctx_, data.data(), data.size());
  Digest out{};
  EVP_DigestFinal_ex(ctx_, out.data(), &n);
  in_data_ = false;
  head_ = Head::kBody;
  first_.clear();
  return out;
}

}  // namespace mailtwin::gate
