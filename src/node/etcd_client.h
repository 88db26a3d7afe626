// etcd_client.h - the witness's etcd, through etcd's v3 HTTP/JSON gateway
// (/v3/kv/range, /v3/kv/txn, /v3/lease/grant, /keepalive, /timetolive,
// /revoke: keys and values in base64, 64-bit numbers as decimal strings), as
// Patroni's etcd3 backend talks to it. docs/failover.md, "The witness".
//
// Requests run one at a time on a worker thread of their own (libcurl's easy
// interface, blocking there, with a timeout per request); the answer is
// posted to the daemon's io_context, so its loop never waits for etcd.
// Endpoints are tried in turn from the last one that answered. Linearizable
// reads only (never serializable): a member cut off from the majority
// cannot answer, so a minority never hands out a stale "key is free".
//
// Every byte from etcd is checked (the parse functions below, unit-tested):
// a body larger than 64 KiB, malformed JSON, a number out of range, bad
// base64, a leader value that is not {"node": NAME, "epoch": N} with a valid
// name and a believable epoch: the answer is an error, never a guess.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <asio.hpp>
#include <nlohmann/json.hpp>

#include "ha/witness.h"
#include "node/etcd_parse.h"

namespace mailtwin::etcd {

struct Options {
  std::vector<std::string> endpoints;
  std::string ca_file, cert_file, key_file;
  std::string leader_key, epoch_key;
  std::string node;
  std::int64_t ttl_s = 10;
  long timeout_ms = 1000;  // each HTTP request, per endpoint
};
Options OptionsOf(const Config& cfg);

struct EndpointHealth {
  std::string url;
  bool ok = false;
  std::string error;
  double ms = 0;     // the last request's duration
  double age_s = -1; // since then; -1: never asked
};

class Client {
 public:
  using Done = std::function<void(ha::WitnessAnswer)>;
  Client(asio::io_context& io, Options opt);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Runs the request on the worker; done runs on io's thread.
  void Submit(ha::WitnessRequest r, std::int64_t lease, std::uint64_t epoch, bool exact,
              Done done);
  std::vector<EndpointHealth> Health() const;
  const Options& options() const { return opt_; }

 private:
  struct Reply {
    bool ok = false;
    nlohmann::json body;
    std::string error;
    ha::Clock::time_point sent_at{};
  };
  Reply Post(const std::string& path, const nlohmann::json& req);
  ha::WitnessAnswer Run(ha::WitnessRequest r, std::int64_t lease, std::uint64_t epoch, bool exact);
  ha::WitnessAnswer Claim(std::uint64_t epoch, bool exact);
  ha::WitnessAnswer Renew(std::int64_t lease);
  ha::WitnessAnswer Read();
  ha::WitnessAnswer Release(std::int64_t lease);
  std::string ReadKey(const std::string& key, KeyValue& kv);
  void Loop();

  asio::io_context& io_;
  Options opt_;
  void* curl_ = nullptr;  // CURL*, used on the worker only
  std::size_t current_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  struct Seen {
    bool ok = false;
    std::string error;
    double ms = 0;
    std::optional<std::chrono::steady_clock::time_point> at;
  };
  std::vector<Seen> seen_;
  std::thread worker_;
};

}  // namespace mailtwin::etcd
