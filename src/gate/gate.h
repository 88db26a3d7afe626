// gate.h - the zero-loss gate: a before-queue SMTP proxy that holds back the
// client's 250 until the standby holds the message (docs/gate.md).
//
//   client -> Postfix smtpd --smtpd_proxy_filter--> Gate --> after-filter smtpd
//                                                     ^            | cleanup commits
//                                         ack of ID --+            | incoming/ID
//
// Every session is relayed byte for byte in both directions. SmtpStream
// tells which server reply ends a message; that reply ("250 ... queued as
// ID") is held, with every reply behind it, until Replicas says ID is durable
// on the standby (or gone from the queue: delivered already). Then:
//   async  - never held;
//   sync   - released after sync_timeout anyway; the message is counted as
//            unprotected until a replica exists, and the administrator warned;
//            while replication has been down longer than sync_timeout,
//            replies are not held at all (no point making every client wait);
//   strict - the after-filter puts every message on hold. Once the standby
//            holds it, the gate releases it to incoming/ and waits until the
//            standby has that move too; only then does the 250 go out. After
//            sync_timeout (per step) the queued copy is withdrawn first and
//            the client gets 451 4.4.0, so its retry cannot make a duplicate.
// Single-threaded, on the daemon's io_context.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <asio.hpp>

#include "common/config.h"
#include "gate/dedup_table.h"
#include "gate/fingerprint.h"
#include "postfix/hold.h"
#include "repl/stats.h"

namespace mailtwin::gate {

// What the gate needs from replication (the daemon wires it to PrimaryLink).
class Replicas {
 public:
  virtual ~Replicas() = default;
  // done(true): the standby holds id durably; done(false): id left the queue.
  // done runs later on the io_context, never inside WaitDurable.
  virtual void WaitDurable(const std::string& id, std::function<void(bool)> done) = 0;
  // Since when replication has been down (nullopt when up).
  virtual std::optional<std::chrono::steady_clock::time_point> DownSince() const = 0;
  // strict mode (postfix/hold.h): the after-filter put id on hold. Release
  // lets Postfix deliver it (hold/ -> incoming/); Withdraw deletes it before
  // it can be delivered (kDone), or says why it cannot (then the gate must
  // answer 250).
  virtual postfix::HoldResult Release(const std::string& id) = 0;
  virtual postfix::HoldResult Withdraw(const std::string& id) = 0;
  // The fingerprint of message id, queued just now: unless it already went
  // under its token (sent_by_token), it goes to the standby ahead of the
  // WaitDurable that follows, so that the acknowledgement the gate waits
  // for covers it too. Either way the replicas keep it for dedup_window, to
  // send it again to the standby of a later session (a frame lost with a
  // broken connection, or none sent while the link was down).
  virtual void Fingerprint(const std::string& id, const Digest& d, bool sent_by_token) {
    (void)id;
    (void)d;
    (void)sent_by_token;
  }
  // The fingerprint of a message that has not been committed yet, under the
  // token the gate gave the after-filter as XFORWARD IDENT (its queue file
  // will carry it): sent before the message's final "." reaches the
  // after-filter, so ahead of the queue file itself. False when it could
  // not go (no standby, or one that does not take tokens): then the gate
  // sends Fingerprint(id, d) once it knows the ID.
  virtual bool FingerprintByToken(const std::string& token, const Digest& d) {
    (void)token;
    (void)d;
    return false;
  }
};

class Gate {
 public:
  // dedup: messages inherited at a failover whose resends are answered 250
  // and not queued again (may be null: no duplicate is recognised).
  Gate(asio::io_context& io, const Config& cfg, Replicas& replicas,
       DedupTable* dedup = nullptr);
  ~Gate();
  std::string Start();  // "" or why the listener could not start
  void Stop();

  // Intake stops for a switchover (docs/failover.md). New sessions get 421
  // (Postfix's smtpd answers its client 4xx: the sender retries, at the
  // other MX or later). A session that has not ended a message is closed
  // now: nothing of it was queued, its client gets 4xx. A session whose
  // message is ended but not answered yet runs on until the reply (held for
  // the standby as usual) has gone out and Postfix's smtpd hangs up: closing
  // it could make the client send again a message that is queued already.
  void Drain();
  // Once no session is left that could still carry a 250.
  bool drained() const;
  void Resume();  // the switchover failed: accept again

  struct Stats {
    std::uint64_t sessions = 0;       // accepted from Postfix
    std::uint64_t active_sessions = 0;
    std::uint64_t messages = 0;       // end-of-message replies seen
    std::uint64_t replicated = 0;     // released once the standby held them
    std::uint64_t gone = 0;           // released: delivered before any replica
    std::uint64_t unprotected_total = 0;  // sync: released without a replica
    std::uint64_t refused = 0;        // strict: answered 451, queued copy removed
    std::uint64_t released = 0;       // strict: moved from hold/ to incoming/
    std::uint64_t abandoned = 0;      // strict: withdrawn, its session gone before the reply
    std::uint64_t errors = 0;         // sessions closed on a protocol error
    std::uint64_t duplicates = 0;     // resends of inherited messages: 250, not queued again
  };
  const Stats& stats() const { return stats_; }
  std::size_t waiting() const { return waiting_; }  // replies held right now
  // Messages answered 250 that have no replica yet, and the oldest one's age.
  std::size_t unprotected() const { return unprotected_.size(); }
  // Their queue IDs, oldest first, at most max.
  std::vector<std::string> unprotected_ids(std::size_t max) const;
  std::optional<double> oldest_unprotected_s() const;
  // Time each released reply was held (ms).
  const repl::LatencyStats& hold_ms() const { return hold_ms_; }

 private:
  class Session;
  struct Hold;
  void Accept();
  void Refuse(asio::ip::tcp::socket s);
  // Starts holding reply number n of session, the one that ends message
  // id; Answer() lets it go (with its text replaced when given: strict
  // mode's 451). An expired session means nobody waits for the reply any
  // more (strict mode must not release a message nobody was told 250).
  void HoldReply(const std::string& id, std::weak_ptr<Session> session, std::uint64_t n);
  void Resolve(const std::shared_ptr<Hold>& h, bool replicated);
  void Timeout(const std::shared_ptr<Hold>& h);
  void Recovered();
  void Arm(const std::shared_ptr<Hold>& h);
  void Answer(const std::shared_ptr<Hold>& h, std::optional<std::string> text);

  asio::io_context& io_;
  const Config& cfg_;
  Replicas& replicas_;
  DedupTable* dedup_;
  asio::ip::tcp::acceptor acceptor_;
  asio::generic::stream_protocol::endpoint after_filter_;
  // MAILTWIN_TEST_GATE_REPLY_DELAY_MS (lab tests only): the gate sits that
  // long on the after-filter's reply to a message's end, as a node that
  // dies between the commit and the reply would (tests/lab/t-27).
  std::chrono::milliseconds test_reply_delay_{0};
  // MAILTWIN_TEST_GATE_RELEASED_DELAY_MS (lab tests only; strict): the 250
  // waits that long once the standby has the release from hold, as a node
  // that dies between step 3 and its reply would (tests/lab/t-27).
  std::chrono::milliseconds test_released_delay_{0};
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::vector<std::weak_ptr<Session>> sessions_;
  bool draining_ = false;
  Stats stats_;
  std::size_t waiting_ = 0;
  // id -> when its 250 went out without a replica.
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> unprotected_;
  bool warned_degraded_ = false;  // said "answering 250 anyway"; not yet Recovered()
  bool warned_not_held_ = false;
  repl::LatencyStats hold_ms_;
};

}  // namespace mailtwin::gate
