// etcd_parse.h - the bytes the witness gets from etcd's v3 HTTP/JSON
// gateway, checked: keys and values in base64, 64-bit numbers as decimal
// strings, the leader key's value, the epoch key's value. An answer that is
// not exactly what is expected is an error, never a guess. Pure functions,
// fuzzed (fuzz/etcd_fuzz.cc) and unit-tested (witness_test.cc).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ha/witness.h"

namespace mailtwin::etcd {

std::string Base64Encode(std::string_view in);
std::optional<std::string> Base64Decode(std::string_view in);

// A 64-bit number of the gateway: a decimal string (or a plain JSON number).
// nullopt when absent; false in ok when present but malformed.
std::optional<std::int64_t> Int64Field(const nlohmann::json& obj, const char* key, bool& ok);

// The leader key's value.
std::string LeaderValue(const std::string& node, std::uint64_t epoch);
// "" or why the value is not one.
std::string ParseLeaderValue(std::string_view value, ha::LeaderKey& out);

struct KeyValue {
  bool exists = false;
  std::string value;
  std::int64_t mod_revision = 0;
  std::int64_t lease = 0;
};
// The answer of /v3/kv/range for one key (a body of a range response, or
// of a txn's response_range). "" or why not.
std::string ParseRange(const nlohmann::json& body, const std::string& key, KeyValue& out);
// /v3/lease/grant, /v3/lease/keepalive ({"result": ...}), /v3/lease/timetolive:
// the lease's ID and TTL in seconds (0 or absent: the lease is gone).
std::string ParseLease(const nlohmann::json& body, std::int64_t& id, std::int64_t& ttl_s);
// The epoch key's value: decimal, below kMaxEpoch.
std::string ParseEpoch(std::string_view value, std::uint64_t& out);

}  // namespace mailtwin::etcd
