#include "node/etcd_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <charconv>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/epoch.h"

namespace mailtwin::etcd {

namespace {

constexpr std::size_t kMaxBody = 64 * 1024;

}  // namespace

Options OptionsOf(const Config& cfg) {
  Options o;
  o.endpoints = cfg.witness_endpoints;
  o.ca_file = cfg.witness_ca_file;
  o.cert_file = cfg.witness_cert_file;
  o.key_file = cfg.witness_key_file;
  o.leader_key = cfg.WitnessKey("leader");
  o.epoch_key = cfg.WitnessKey("epoch");
  o.node = cfg.node_name;
  o.ttl_s = cfg.witness_ttl.count() / 1000;
  // Several tries fit in one renewal interval (ttl / 4).
  o.timeout_ms = std::clamp<long>(cfg.witness_ttl.count() / 8, 250, 2000);
  return o;
}

// ---- the client ---------------------------------------------------------------

namespace {

std::size_t CollectBody(char* data, std::size_t size, std::size_t n, void* user) {
  auto* body = static_cast<std::string*>(user);
  if (body->size() + size * n > kMaxBody) return 0;  // too large: curl fails the transfer
  body->append(data, size * n);
  return size * n;
}

}  // namespace

Client::Client(asio::io_context& io, Options opt) : io_(io), opt_(std::move(opt)) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  seen_.resize(opt_.endpoints.size());
  worker_ = std::thread([this] { Loop(); });
}

Client::~Client() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    jobs_.clear();
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void Client::Loop() {
  curl_ = curl_easy_init();
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
      if (stop_) break;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
  curl_easy_cleanup(static_cast<CURL*>(curl_));
}

void Client::Submit(ha::WitnessRequest r, std::int64_t lease, std::uint64_t epoch, bool exact,
                    Done done) {
  std::lock_guard lock(mu_);
  jobs_.push_back([this, r, lease, epoch, exact, done = std::move(done)] {
    auto answer = Run(r, lease, epoch, exact);
    answer.request = r;
    asio::post(io_, [done, answer = std::move(answer)] { done(answer); });
  });
  cv_.notify_one();
}

std::vector<EndpointHealth> Client::Health() const {
  std::lock_guard lock(mu_);
  std::vector<EndpointHealth> out;
  auto now = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < opt_.endpoints.size(); ++i) {
    EndpointHealth h{opt_.endpoints[i], seen_[i].ok, seen_[i].error, seen_[i].ms, -1};
    if (seen_[i].at) h.age_s = std::chrono::duration<double>(now - *seen_[i].at).count();
    out.push_back(std::move(h));
  }
  return out;
}

Client::Reply Client::Post(const std::string& path, const nlohmann::json& req) {
  CURL* c = static_cast<CURL*>(curl_);
  Reply r;
  if (!c) {
    r.error = "libcurl could not be initialised";
    return r;
  }
  std::string payload = req.dump();
  std::string last;
  for (std::size_t tried = 0; tried < opt_.endpoints.size(); ++tried) {
    std::size_t i = (current_ + tried) % opt_.endpoints.size();
    std::string body;
    char errbuf[CURL_ERROR_SIZE] = {};
    curl_easy_reset(c);
    std::string url = opt_.endpoints[i] + path;
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, opt_.timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, opt_.timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, CollectBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE, static_cast<long>(kMaxBody));
    if (!opt_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, opt_.ca_file.c_str());
    if (!opt_.cert_file.empty()) curl_easy_setopt(c, CURLOPT_SSLCERT, opt_.cert_file.c_str());
    if (!opt_.key_file.empty()) curl_easy_setopt(c, CURLOPT_SSLKEY, opt_.key_file.c_str());
    struct curl_slist* hdr = curl_slist_append(nullptr, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    auto t0 = ha::Clock::now();
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(hdr);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    auto t1 = ha::Clock::now();
    std::string error;
    nlohmann::json parsed;
    if (rc != CURLE_OK) {
      // curl's own words for the code: the same text each time (the error
      // buffer's details, with durations, go to the debug log only).
      error = curl_easy_strerror(rc);
      spdlog::debug("witness: {}: {}", url, errbuf);
    } else if (status != 200) {
      error = fmt::format("HTTP {}", status);
      auto j = nlohmann::json::parse(body, nullptr, false);
      if (j.is_object() && j.contains("error") && j["error"].is_string())
        error += ": " + j["error"].get<std::string>().substr(0, 120);
    } else {
      // The keepalive gateway streams: one JSON document a line.
      auto nl = body.find('\n');
      parsed = nlohmann::json::parse(nl == std::string::npos ? body : body.substr(0, nl), nullptr,
                                     false);
      if (parsed.is_discarded() || !parsed.is_object()) error = "the answer is not a JSON object";
    }
    {
      std::lock_guard lock(mu_);
      seen_[i] = Seen{error.empty(), error,
                      std::chrono::duration<double, std::milli>(t1 - t0).count(), t1};
    }
    if (error.empty()) {
      current_ = i;
      r.ok = true;
      r.body = std::move(parsed);
      r.sent_at = t0;
      return r;
    }
    last = error;
  }
  current_ = (current_ + 1) % opt_.endpoints.size();
  // One stable line (each endpoint's own failure is in Health(), for status).
  r.error = opt_.endpoints.size() > 1
                ? fmt::format("none of the {} endpoints answered", opt_.endpoints.size())
                : last;
  return r;
}

std::string Client::ReadKey(const std::string& key, KeyValue& kv) {
  auto r = Post("/v3/kv/range", {{"key", Base64Encode(key)}});
  if (!r.ok) return r.error;
  return ParseRange(r.body, key, kv);
}

ha::WitnessAnswer Client::Run(ha::WitnessRequest r, std::int64_t lease, std::uint64_t epoch,
                              bool exact) {
  switch (r) {
    case ha::WitnessRequest::kClaim: return Claim(epoch, exact);
    case ha::WitnessRequest::kRenew: return Renew(lease);
    case ha::WitnessRequest::kRead: return Read();
    case ha::WitnessRequest::kRelease: return Release(lease);
    case ha::WitnessRequest::kNone: break;
  }
  return {};
}

namespace {

ha::WitnessAnswer Failed(std::string why) {
  ha::WitnessAnswer a;
  a.ok = false;
  a.error = std::move(why);
  return a;
}

// The leader key as the daemon sees it: a value that is not ours to parse
// is an error, not a free key.
std::string ToLeader(const KeyValue& kv, ha::LeaderKey& out) {
  out = ha::LeaderKey{};
  if (!kv.exists) return {};
  if (std::string err = ParseLeaderValue(kv.value, out); !err.empty()) return err;
  out.exists = true;
  out.lease = kv.lease;
  return {};
}

}  // namespace

ha::WitnessAnswer Client::Claim(std::uint64_t epoch, bool exact) {
  ha::WitnessAnswer a;
  KeyValue leader, ek;
  if (std::string err = ReadKey(opt_.leader_key, leader); !err.empty()) return Failed(err);
  ha::LeaderKey lk;
  if (std::string err = ToLeader(leader, lk); !err.empty()) return Failed(err);
  if (lk.exists) {
    a.ok = true;
    a.key = lk;
    // Ours from before a restart: adopt its lease if etcd still keeps it.
    if (exact && lk.holder == opt_.node && lk.epoch == epoch && lk.lease > 0) {
      auto r = Post("/v3/lease/keepalive", {{"ID", std::to_string(lk.lease)}});
      if (!r.ok) return Failed(r.error);
      std::int64_t id = 0, ttl = 0;
      if (std::string err = ParseLease(r.body, id, ttl); !err.empty()) return Failed(err);
      if (id == lk.lease && ttl > 0) {
        a.claimed = true;
        a.lease_id = id;
        a.ttl = Millis(ttl * 1000);
        a.sent_at = r.sent_at;
        a.epoch = epoch;
      }
    }
    return a;
  }
  if (std::string err = ReadKey(opt_.epoch_key, ek); !err.empty()) return Failed(err);
  std::uint64_t stored = 0;
  if (ek.exists)
    if (std::string err = ParseEpoch(ek.value, stored); !err.empty()) return Failed(err);
  a.store_epoch = stored;
  a.key = ha::LeaderKey{};
  a.ok = true;
  if (exact && stored > epoch) return a;  // a newer primary existed: not ours to claim
  std::uint64_t next = exact ? epoch : std::max(epoch, stored + 1);
  if (next >= kMaxEpoch || (stored && !EpochBelievable(stored, next)))
    return Failed(fmt::format("epoch {} after the store's {} is beyond belief", next, stored));
  auto g = Post("/v3/lease/grant", {{"TTL", std::to_string(opt_.ttl_s)}});
  if (!g.ok) return Failed(g.error);
  std::int64_t id = 0, ttl = 0;
  if (std::string err = ParseLease(g.body, id, ttl); !err.empty()) return Failed(err);
  if (ttl <= 0) return Failed("etcd granted a lease without a TTL");
  std::string lkey = Base64Encode(opt_.leader_key), ekey = Base64Encode(opt_.epoch_key);
  nlohmann::json txn{
      {"compare",
       {{{"key", lkey}, {"target", "CREATE"}, {"result", "EQUAL"}, {"create_revision", "0"}},
        {{"key", ekey}, {"target", "MOD"}, {"result", "EQUAL"},
         {"mod_revision", std::to_string(ek.mod_revision)}}}},
      {"success",
       {{{"request_put",
          {{"key", lkey}, {"value", Base64Encode(LeaderValue(opt_.node, next))},
           {"lease", std::to_string(id)}}}},
        {{"request_put", {{"key", ekey}, {"value", Base64Encode(std::to_string(next))}}}}}},
      {"failure", {{{"request_range", {{"key", lkey}}}}}}};
  auto t = Post("/v3/kv/txn", txn);
  if (!t.ok) return Failed(t.error);
  auto s = t.body.find("succeeded");
  if (s != t.body.end() && !s->is_boolean()) return Failed("the txn answer is malformed");
  if (s != t.body.end() && s->get<bool>()) {
    a.claimed = true;
    a.lease_id = id;
    a.ttl = Millis(std::min<std::int64_t>(ttl, opt_.ttl_s) * 1000);
    a.sent_at = g.sent_at;
    a.epoch = next;
    a.store_epoch = next;
    return a;
  }
  // Somebody else was faster (or the epoch moved): our lease is not needed.
  Post("/v3/lease/revoke", {{"ID", std::to_string(id)}});
  const auto& resp = t.body.value("responses", nlohmann::json::array());
  if (resp.is_array() && !resp.empty() && resp[0].is_object() && resp[0].contains("response_range")) {
    KeyValue kv;
    ha::LeaderKey other;
    if (ParseRange(resp[0]["response_range"], opt_.leader_key, kv).empty() &&
        ToLeader(kv, other).empty())
      a.key = other;
  }
  return a;
}

ha::WitnessAnswer Client::Renew(std::int64_t lease) {
  ha::WitnessAnswer a;
  auto r = Post("/v3/lease/keepalive", {{"ID", std::to_string(lease)}});
  if (!r.ok) return Failed(r.error);
  std::int64_t id = 0, ttl = 0;
  if (std::string err = ParseLease(r.body, id, ttl); !err.empty()) return Failed(err);
  if (id != lease) return Failed("the keepalive answer is about another lease");
  a.lease_id = lease;
  a.ttl = Millis(std::min<std::int64_t>(ttl, opt_.ttl_s) * 1000);
  a.sent_at = r.sent_at;
  KeyValue kv;
  ha::LeaderKey lk;
  if (std::string err = ReadKey(opt_.leader_key, kv); err.empty() && ToLeader(kv, lk).empty())
    a.key = lk;
  a.ok = true;
  return a;
}

ha::WitnessAnswer Client::Read() {
  ha::WitnessAnswer a;
  KeyValue kv, ek;
  if (std::string err = ReadKey(opt_.leader_key, kv); !err.empty()) return Failed(err);
  ha::LeaderKey lk;
  if (std::string err = ToLeader(kv, lk); !err.empty()) return Failed(err);
  if (lk.exists && lk.lease > 0) {
    auto r = Post("/v3/lease/timetolive", {{"ID", std::to_string(lk.lease)}});
    std::int64_t id = 0, ttl = 0;
    if (r.ok && ParseLease(r.body, id, ttl).empty() && id == lk.lease) lk.ttl_left = Millis(ttl * 1000);
  }
  if (std::string err = ReadKey(opt_.epoch_key, ek); !err.empty()) return Failed(err);
  std::uint64_t stored = 0;
  if (ek.exists)
    if (std::string err = ParseEpoch(ek.value, stored); !err.empty()) return Failed(err);
  a.key = lk;
  a.store_epoch = stored;
  a.ok = true;
  return a;
}

ha::WitnessAnswer Client::Release(std::int64_t lease) {
  ha::WitnessAnswer a;
  auto r = Post("/v3/lease/revoke", {{"ID", std::to_string(lease)}});
  if (!r.ok) return Failed(r.error);
  a.lease_id = lease;
  a.ok = true;
  return a;
}

}  // namespace mailtwin::etcd
