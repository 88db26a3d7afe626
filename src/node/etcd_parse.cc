// etcd_parse.cc - what the witness reads from etcd, checked (etcd_parse.h).
#include "node/etcd_parse.h"

#include <cctype>
#include <charconv>
#include <climits>

#include <fmt/format.h>
#include <openssl/evp.h>

#include "common/epoch.h"

namespace mailtwin::etcd {

namespace {

constexpr std::size_t kMaxValue = 512;
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

bool EtcdNodeName(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
  return true;
}

}  // namespace

std::string Base64Encode(std::string_view in) {
  std::string out((in.size() + 2) / 3 * 4 + 1, '\0');  // EVP_EncodeBlock adds a NUL
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
  return out;
}

std::optional<std::string> Base64Decode(std::string_view in) {
  // OpenSSL's EVP_DecodeBlock skips leading and trailing white space and
  // counts padding as zero bytes: an answer from etcd is held to the strict
  // form first (the alphabet only, '=' only in the last two places).
  if (in.size() % 4 || in.size() > INT_MAX / 2) return std::nullopt;
  std::size_t pad = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '=') {
      if (i + 2 < in.size()) return std::nullopt;
      ++pad;
    } else if (pad || !std::char_traits<char>::find(kB64, 64, c)) {
      return std::nullopt;
    }
  }
  std::string out(in.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0 || static_cast<std::size_t>(n) != out.size()) return std::nullopt;
  out.resize(out.size() - pad);
  return out;
}

std::optional<std::int64_t> Int64Field(const nlohmann::json& obj, const char* key, bool& ok) {
  if (!obj.is_object()) {
    ok = false;
    return std::nullopt;
  }
  auto it = obj.find(key);
  if (it == obj.end()) return std::nullopt;
  if (it->is_number_integer()) return it->get<std::int64_t>();
  if (it->is_number_unsigned()) {
    auto u = it->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(INT64_MAX)) ok = false;
    return ok ? std::optional<std::int64_t>(static_cast<std::int64_t>(u)) : std::nullopt;
  }
  if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    std::int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (!s.empty() && s.size() <= 20 && ec == std::errc() && p == s.data() + s.size()) return v;
  }
  ok = false;
  return std::nullopt;
}

std::string LeaderValue(const std::string& node, std::uint64_t epoch) {
  return nlohmann::json{{"node", node}, {"epoch", epoch}}.dump();
}

std::string ParseLeaderValue(std::string_view value, ha::LeaderKey& out) {
  if (value.size() > kMaxValue) return fmt::format("the leader value is {} bytes long", value.size());
  auto j = nlohmann::json::parse(value, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return "the leader value is not a JSON object";
  auto n = j.find("node");
  auto e = j.find("epoch");
  if (n == j.end() || !n->is_string() || !EtcdNodeName(n->get<std::string>()))
    return "the leader value names no valid node";
  if (e == j.end() || !e->is_number_unsigned() || e->get<std::uint64_t>() == 0 ||
      e->get<std::uint64_t>() >= kMaxEpoch)
    return "the leader value has no valid epoch";
  out.holder = n->get<std::string>();
  out.epoch = e->get<std::uint64_t>();
  return {};
}

std::string ParseEpoch(std::string_view value, std::uint64_t& out) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (value.empty() || value.size() > 20 || ec != std::errc() || p != value.data() + value.size() ||
      v >= kMaxEpoch)
    return "the epoch key holds no valid epoch";
  out = v;
  return {};
}

std::string ParseRange(const nlohmann::json& body, const std::string& key, KeyValue& out) {
  out = KeyValue{};
  if (!body.is_object()) return "the range answer is not an object";
  auto kvs = body.find("kvs");
  if (kvs == body.end()) return {};  // no such key
  if (!kvs->is_array() || kvs->size() > 1) return "the range answer's kvs is not one key";
  if (kvs->empty()) return {};
  const auto& kv = (*kvs)[0];
  if (!kv.is_object() || !kv.contains("key") || !kv["key"].is_string())
    return "the range answer has a key without a name";
  auto name = Base64Decode(kv["key"].get<std::string>());
  if (!name || *name != key) return "the range answer is about another key";
  std::string value;
  if (kv.contains("value")) {
    if (!kv["value"].is_string()) return "the range answer's value is not a string";
    auto v = Base64Decode(kv["value"].get<std::string>());
    if (!v) return "the range answer's value is not base64";
    if (v->size() > kMaxValue) return "the range answer's value is too long";
    value = *v;
  }
  bool ok = true;
  auto mod = Int64Field(kv, "mod_revision", ok);
  auto lease = Int64Field(kv, "lease", ok);
  if (!ok || !mod || *mod <= 0 || (lease && *lease < 0))
    return "the range answer has malformed revisions or lease";
  out.exists = true;
  out.value = std::move(value);
  out.mod_revision = *mod;
  out.lease = lease.value_or(0);
  return {};
}

std::string ParseLease(const nlohmann::json& body, std::int64_t& id, std::int64_t& ttl_s) {
  const nlohmann::json* b = &body;
  if (body.is_object() && body.contains("result")) b = &body["result"];
  if (body.is_object() && body.contains("error")) return "etcd answered an error";
  if (!b->is_object()) return "the lease answer is not an object";
  bool ok = true;
  auto i = Int64Field(*b, "ID", ok);
  auto t = Int64Field(*b, "TTL", ok);
  if (!ok || !i || *i <= 0) return "the lease answer has no valid ID";
  if (t && (*t < -1 || *t > 1000000)) return "the lease answer has an unbelievable TTL";
  id = *i;
  ttl_s = t && *t > 0 ? *t : 0;
  return {};
}

}  // namespace mailtwin::etcd
