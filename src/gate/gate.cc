#include "gate/gate.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "gate/smtp_stream.h"

namespace mailtwin::gate {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {
constexpr std::size_t kMaxHeldBytes = 1 << 20;  // replies queued behind a held one
}

// One relayed session: front = Postfix's public smtpd, back = the after-filter.
class Gate::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Gate& gate, tcp::socket front)
      : gate_(gate), alive_(gate.alive_), front_(std::move(front)), back_(front_.get_executor()) {
    stream_.SetObserver(&fp_);
  }

  void Start() {
    back_.async_connect(gate_.after_filter_, [self = shared_from_this()](asio::error_code ec) {
      // Closed meanwhile (a switchover drains sessions still connecting).
      if (!*self->alive_ || self->closed_) return;
      if (ec) {
        spdlog::error("gate: cannot reach the after-filter smtpd at {}: {} (Postfix answers the "
                      "client 451; check master.cf: mailtwin postfix-config)",
                      self->gate_.cfg_.gate_after_filter, ec.message());
        return self->Close();
      }
      if (self->gate_.after_filter_.protocol().family() != AF_UNIX) {
        asio::error_code ignored;
        self->back_.set_option(tcp::no_delay(true), ignored);
      }
      self->ReadFront();
      self->ReadBack();
    });
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    asio::error_code ec;
    front_.close(ec);
    back_.close(ec);
    if (*alive_) --gate_.stats_.active_sessions;
  }

  // Drain: close at once unless a message's reply is still to come or to be
  // passed on; then Postfix's smtpd closes once it has the reply.
  void Drain() {
    if (closed_ || (!local_ && stream_.awaiting_message_reply()) || !out_.empty() || writing_)
      return;
    spdlog::debug("gate: intake stops: closing a session between messages");
    Close();
  }
  bool closed() const { return closed_; }

  // A held reply may go out now (with new text, in strict mode's refusal).
  void Release(std::uint64_t n, std::optional<std::string> text) {
    for (auto& o : out_)
      if (o.n == n) {
        o.held = false;
        if (text) o.text = std::move(*text);
      }
    FlushFront();
  }

 private:
  struct Out {
    std::uint64_t n;
    std::string text;
    bool held;
  };

  void Fail(const std::string& what) {
    if (!*alive_) return;
    ++gate_.stats_.errors;
    spdlog::warn("gate: closing a session: {}", what);
    Close();
  }

  void ReadFront() {
    front_.async_read_some(asio::buffer(fbuf_), [self = shared_from_this()](asio::error_code ec,
                                                                             std::size_t n) {
      if (!*self->alive_ || self->closed_) return;
      if (ec) return self->Close();  // Postfix closed the session
      std::string_view data(self->fbuf_.data(), n);
      if (self->local_) return self->LocalCommands(data);
      data = self->NameMessage(data);
      if (!self->stream_.opaque()) {
        std::string_view rest = data;
        bool first = true;
        while (!rest.empty()) {
          std::size_t eod = std::string_view::npos;
          if (!self->stream_.FromClient(rest, &eod))
            return self->Fail("from Postfix's smtpd: " + self->stream_.error());
          if (eod == std::string_view::npos) break;
          Digest d = self->fp_.Finish();
          // A resend of a message inherited at a failover: the after-filter
          // never sees the end of its data, so it queues nothing.
          if (first && self->gate_.dedup_)
            if (const DedupEntry* e = self->gate_.dedup_->Match(d, WallSeconds()))
              return self->Duplicate(*e);
          // Before the dot goes on, so ahead of the queue file on the link.
          bool by_token = false;
          if (!self->token_.empty()) {
            by_token = self->gate_.replicas_.FingerprintByToken(self->token_, d);
            self->token_.clear();  // one message per token
          }
          self->fps_.push_back({d, by_token});
          rest.remove_prefix(eod);
          first = false;
        }
      }
      asio::async_write(self->back_, asio::buffer(data.data(), data.size()),
                        [self](asio::error_code ec, std::size_t) {
                          if (!*self->alive_ || self->closed_) return;
                          if (ec) return self->Close();
                          self->ReadFront();
                        });
    });
  }

  void ReadBack() {
    back_.async_read_some(asio::buffer(bbuf_), [self = shared_from_this()](asio::error_code ec,
                                                                            std::size_t n) {
      if (!*self->alive_ || self->closed_) return;
      if (self->local_) return;  // closed by Duplicate(): the gate answers now
      if (ec) {
        // The after-filter hung up: pass on what it said, then close.
        self->back_eof_ = true;
        return self->FlushFront();
      }
      if (self->gate_.test_reply_delay_.count() > 0 && self->stream_.awaiting_message_reply()) {
        auto timer = std::make_shared<asio::steady_timer>(self->back_.get_executor(),
                                                          self->gate_.test_reply_delay_);
        auto data = std::make_shared<std::string>(self->bbuf_.data(), n);
        return timer->async_wait([self, timer, data](asio::error_code) {
          if (*self->alive_ && !self->closed_ && !self->local_) self->FromBack(*data);
        });
      }
      self->FromBack(std::string_view(self->bbuf_.data(), n));
    });
  }

  // Bytes the after-filter sent (toward Postfix's smtpd).
  void FromBack(std::string_view data) {
    if (stream_.opaque()) {
      out_.push_back({next_++, std::string(data), false});
    } else {
      std::vector<Reply> replies;
      bool ok = stream_.FromServer(data, replies);
      for (auto& r : replies) OnReply(std::move(r));
      if (!ok) return Fail("from the after-filter smtpd: " + stream_.error());
      if (stream_.opaque())
        spdlog::warn("gate: STARTTLS through the gate: this session is relayed without holding "
                     "replies (Postfix's smtpd never does this; check what connects to {})",
                     gate_.cfg_.gate_listen);
    }
    FlushFront();
    if (closed_) return;
    if (OutBytes() < kMaxHeldBytes) ReadBack();
    else read_paused_ = true;
  }

  void OnReply(Reply&& r) {
    std::uint64_t n = next_++;
    bool hold = r.EndsMessage() && !r.queue_id.empty() &&
                gate_.cfg_.durability != Durability::kAsync;
    if (r.answers == Answers::kEndOfData && !fps_.empty()) {
      auto [d, by_token] = fps_.front();
      fps_.pop_front();
      if (r.EndsMessage() && !r.queue_id.empty()) {
        gate_.replicas_.Fingerprint(r.queue_id, d, by_token);
        // The resend of an orphan: the old primary's copy must not follow.
        if (gate_.dedup_) gate_.dedup_->NoteQueued(d, r.queue_id);
      }
    }
    if (r.EndsMessage()) ++gate_.stats_.messages;
    out_.push_back({n, std::move(r.text), hold});
    if (!hold) return;
    gate_.HoldReply(r.queue_id, weak_from_this(), n);
  }

  // The first XFORWARD of a session names its message: the gate replaces
  // its IDENT (Postfix's smtpd sends "[UNAVAILABLE]": it has no queue file
  // of its own) with a fresh token, which the after-filter writes into the
  // queue file as log_ident; the fingerprint goes to the standby under that
  // token before the message is committed (docs/gate.md). Only a command
  // line that starts this read is looked at: Postfix's smtpd sends XFORWARD
  // alone and waits for its reply. Returns the bytes to relay.
  std::string_view NameMessage(std::string_view data) {
    if (named_ || gate_.cfg_.dedup_window.count() <= 0 || !stream_.at_command_start())
      return data;
    std::size_t nl = data.find('\n');
    if (nl == std::string_view::npos) return data;
    std::string_view line = data.substr(0, nl);
    bool cr = !line.empty() && line.back() == '\r';
    if (cr) line.remove_suffix(1);
    static constexpr std::string_view kVerb = "XFORWARD ";
    if (line.size() < kVerb.size()) return data;
    for (std::size_t i = 0; i < kVerb.size(); ++i)
      if (std::toupper(static_cast<unsigned char>(line[i])) != kVerb[i]) return data;
    std::string token = NewGateToken();
    auto named = WithXforwardIdent(line, token);
    if (!named) return data;
    named_ = true;
    token_ = std::move(token);
    renamed_ = std::move(*named);
    renamed_ += cr ? "\r\n" : "\n";
    renamed_ += data.substr(nl + 1);
    return renamed_;
  }

  std::size_t OutBytes() const {
    std::size_t b = 0;
    for (const auto& o : out_) b += o.text.size();
    return b;
  }

  void FlushFront() {
    if (writing_ || closed_) return;
    wbuf_.clear();
    while (!out_.empty() && !out_.front().held) {
      wbuf_ += out_.front().text;
      out_.pop_front();
    }
    if (wbuf_.empty()) {
      if (back_eof_ && out_.empty()) Close();
      return;
    }
    writing_ = true;
    asio::async_write(front_, asio::buffer(wbuf_), [self = shared_from_this()](asio::error_code ec,
                                                                               std::size_t) {
      if (!*self->alive_ || self->closed_) return;
      self->writing_ = false;
      if (ec) return self->Close();
      if (self->read_paused_ && self->OutBytes() < kMaxHeldBytes) {
        self->read_paused_ = false;
        self->ReadBack();
      }
      self->FlushFront();
      if (*self->alive_ && self->gate_.draining_) self->Drain();
    });
  }

  // The message just ended is a resend of e, inherited at a failover: its
  // first 250 was lost with the old primary. Answer 250 (the sender is owed
  // it) and do not queue it again: the after-filter is still in its DATA
  // phase, and there is no SMTP command that ends DATA without committing,
  // so the gate closes that connection before the final "."; its smtpd logs
  // "lost connection after DATA" and cleanup discards the unfinished queue
  // file (never 0700: the watcher never replicates it). From here on the
  // gate answers Postfix's smtpd itself (LocalCommands).
  void Duplicate(const DedupEntry& e) {
    ++gate_.stats_.duplicates;
    gate_.dedup_->CountDuplicate();
    spdlog::warn("gate: duplicate of {}, whose 250 was lost when {} failed; not queued again "
                 "(from <{}>, {} recipient{})",
                 e.id, e.origin, fp_.sender(), fp_.recipients(), fp_.recipients() == 1 ? "" : "s");
    local_ = true;
    asio::error_code ec;
    back_.close(ec);
    out_.push_back({next_++, fmt::format("250 2.0.0 Ok: queued as {}\r\n", e.id), false});
    FlushFront();
    ReadFront();
  }

  // After a duplicate: Postfix's smtpd sends QUIT and hangs up (its proxy
  // connection lasts one transaction). Anything else ends the session
  // with a 421: nothing of it was queued, so its client retries.
  void LocalCommands(std::string_view data) {
    local_in_ += data;
    if (local_in_.size() > SmtpStream::kMaxLine) local_in_.clear();
    std::size_t nl;
    while ((nl = local_in_.find('\n')) != std::string::npos) {
      std::string line = local_in_.substr(0, nl);
      local_in_.erase(0, nl + 1);
      while (!line.empty() && line.back() == '\r') line.pop_back();
      std::string verb = line.substr(0, 4);
      for (auto& c : verb) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      if (verb == "RSET" || verb == "NOOP") {
        out_.push_back({next_++, "250 2.0.0 Ok\r\n", false});
        continue;
      }
      out_.push_back({next_++, verb == "QUIT" ? "221 2.0.0 Bye\r\n"
                                              : "421 4.3.0 mailtwin: closing this connection\r\n",
                      false});
      back_eof_ = true;  // close once this reply is out
      break;
    }
    FlushFront();
    if (!back_eof_) ReadFront();
  }

  Gate& gate_;
  std::shared_ptr<bool> alive_;
  tcp::socket front_;
  asio::generic::stream_protocol::socket back_;
  SmtpStream stream_;
  std::array<char, 65536> fbuf_, bbuf_;
  std::deque<Out> out_;
  std::string wbuf_;
  std::uint64_t next_ = 0;
  bool writing_ = false, read_paused_ = false, back_eof_ = false, closed_ = false;
  Fingerprinter fp_;
  struct Ended {
    Digest digest;
    bool by_token;  // went to the standby under token_ already
  };
  std::deque<Ended> fps_;  // of messages ended, their replies not yet seen
  bool named_ = false;     // this session's XFORWARD IDENT was replaced
  std::string token_;      // ... by this token, until its message ends
  std::string renamed_;    // the read whose XFORWARD line was rewritten
  bool local_ = false;      // a duplicate was answered: the after-filter is gone
  std::string local_in_;
};

struct Gate::Hold {
  Hold(asio::io_context& io, std::string id) : id(std::move(id)), timer(io) {}
  std::string id;
  Clock::time_point t0 = Clock::now();
  asio::steady_timer timer;
  // The session whose reply number n this is; expired once Postfix's smtpd
  // has hung up (then nobody waits for the reply any more).
  std::weak_ptr<Session> session;
  std::uint64_t n = 0;
  bool answered = false;
  bool released = false;  // strict: moved out of hold/, waiting for that move's replica
  unsigned stage = 0;     // which wait the timer belongs to (a stale expiry is ignored)
};

Gate::Gate(asio::io_context& io, const Config& cfg, Replicas& replicas, DedupTable* dedup)
    : io_(io), cfg_(cfg), replicas_(replicas), dedup_(dedup), acceptor_(io) {
  // Test switches (lab tests only): a delay of 1 to 60000 ms, else none.
  auto test_delay = [](const char* name, const char* what) {
    const char* v = std::getenv(name);
    int ms = 0;
    if (!v) return std::chrono::milliseconds(0);
    auto [p, ec] = std::from_chars(v, v + std::strlen(v), ms);
    if (ec != std::errc{} || *p != 0 || ms <= 0 || ms > 60000) return std::chrono::milliseconds(0);
    spdlog::warn("gate: {}={}: {} (a test switch; never in production)", name, ms, what);
    return std::chrono::milliseconds(ms);
  };
  test_reply_delay_ = test_delay("MAILTWIN_TEST_GATE_REPLY_DELAY_MS",
                                 "every message's 250 waits that long before the gate even "
                                 "reads it");
  test_released_delay_ = test_delay("MAILTWIN_TEST_GATE_RELEASED_DELAY_MS",
                                    "strict: every message's 250 waits that long after the "
                                    "standby has its release from hold");
}

Gate::~Gate() {
  Stop();
  *alive_ = false;
}

std::string Gate::Start() {
  std::string host;
  std::uint16_t port;
  asio::error_code ec;
  if (cfg_.gate_after_filter.rfind("unix:", 0) == 0) {
    // A master.cf unix service: no TCP stack between the gate and the
    // after-filter (about half the gate's CPU is loopback TCP otherwise).
    after_filter_ = asio::local::stream_protocol::endpoint(cfg_.gate_after_filter.substr(5));
  } else {
    SplitHostPort(cfg_.gate_after_filter, host, port);
    after_filter_ = tcp::endpoint(asio::ip::make_address(host, ec), port);
    if (ec) return fmt::format("[gate] after_filter {}: not an IP address", cfg_.gate_after_filter);
  }
  SplitHostPort(cfg_.gate_listen, host, port);
  tcp::endpoint ep(asio::ip::make_address(host, ec), port);
  if (ec) return fmt::format("[gate] listen {}: not an IP address", cfg_.gate_listen);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return fmt::format("[gate] cannot listen on {}: {} (is another mailtwind running?)",
                       cfg_.gate_listen, ec.message());
  spdlog::info("gate: listening on {} for Postfix's smtpd, relaying to {}; durability {}, "
               "sync_timeout {} ms",
               cfg_.gate_listen, cfg_.gate_after_filter, DurabilityName(cfg_.durability),
               cfg_.sync_timeout.count());
  Accept();
  return {};
}

void Gate::Stop() {
  asio::error_code ec;
  acceptor_.close(ec);
}

void Gate::Accept() {
  acceptor_.async_accept([this, alive = alive_](asio::error_code ec, tcp::socket s) {
    if (!*alive || !acceptor_.is_open()) return;
    if (!ec) {
      s.set_option(tcp::no_delay(true));
      ++stats_.sessions;
      ++stats_.active_sessions;
      if (draining_) {
        Refuse(std::move(s));
      } else {
        auto session = std::make_shared<Session>(*this, std::move(s));
        std::erase_if(sessions_, [](const auto& w) { return w.expired(); });
        sessions_.push_back(session);
        session->Start();
      }
    } else {
      spdlog::warn("gate: accept: {}", ec.message());
    }
    Accept();
  });
}

void Gate::Refuse(tcp::socket s) {
  --stats_.active_sessions;
  auto sock = std::make_shared<tcp::socket>(std::move(s));
  static const std::string kBye =
      "421 4.3.2 mailtwin: this server hands its role over right now, try again\r\n";
  asio::async_write(*sock, asio::buffer(kBye), [sock](asio::error_code, std::size_t) {
    asio::error_code ec;
    sock->close(ec);
  });
}

void Gate::Drain() {
  if (!draining_) spdlog::info("gate: intake stops (switchover)");
  draining_ = true;
  for (auto& w : sessions_)
    if (auto s = w.lock()) s->Drain();
}

bool Gate::drained() const {
  for (const auto& w : sessions_)
    if (auto s = w.lock(); s && !s->closed()) return false;
  return true;
}

void Gate::Resume() {
  if (draining_) spdlog::info("gate: intake resumes");
  draining_ = false;
}

void Gate::HoldReply(const std::string& id, std::weak_ptr<Session> session, std::uint64_t n) {
  auto h = std::make_shared<Hold>(io_, id);
  h->session = std::move(session);
  h->n = n;
  ++waiting_;
  replicas_.WaitDurable(id, [this, h, alive = alive_](bool replicated) {
    if (*alive) Resolve(h, replicated);
  });
  // Replication has been down for longer than a client would wait: holding
  // the reply would only slow every client down.
  auto down = replicas_.DownSince();
  if (down && Clock::now() - *down >= cfg_.sync_timeout) return Timeout(h);
  Arm(h);
}

void Gate::Arm(const std::shared_ptr<Hold>& h) {
  // expires_after() cancels a wait still pending, not one whose expiry is
  // already queued: the stage tells that one apart.
  unsigned stage = ++h->stage;
  h->timer.expires_after(cfg_.sync_timeout);
  h->timer.async_wait([this, h, stage, alive = alive_](asio::error_code ec) {
    if (!ec && *alive && stage == h->stage) Timeout(h);
  });
}

void Gate::Answer(const std::shared_ptr<Hold>& h, std::optional<std::string> text) {
  h->answered = true;
  --waiting_;
  ++h->stage;
  h->timer.cancel();
  if (auto s = h->session.lock()) s->Release(h->n, std::move(text));
}

void Gate::Resolve(const std::shared_ptr<Hold>& h, bool replicated) {
  if (h->answered) {
    // Answered without a replica before; now it has one (or is delivered).
    unprotected_.erase(h->id);
    if (replicated) Recovered();
    return;
  }
  if (replicated) Recovered();
  if (cfg_.durability == Durability::kStrict && h->session.expired()) {
    // Postfix's smtpd hung up before the reply (its proxy timeout, the
    // client went away): nobody was told 250, so the sender will send it
    // again. Take this copy out while that is still possible.
    postfix::HoldResult r = replicas_.Withdraw(h->id);
    if (r.outcome == postfix::HoldOutcome::kDone || r.outcome == postfix::HoldOutcome::kStuck) {
      ++stats_.abandoned;
      spdlog::warn("gate: the session of {} ended before its reply: withdrawn ({})", h->id,
                   r.text);
    } else {
      spdlog::warn("gate: the session of {} ended before its reply, and it cannot be withdrawn "
                   "({}): its sender's retry may deliver it twice",
                   h->id, r.text);
    }
    return Answer(h, std::nullopt);
  }
  if (cfg_.durability == Durability::kStrict && replicated && !h->released) {
    // The standby holds the message, on hold: let Postfix have it, and wait
    // until the standby has that move too, so that a promoted standby never
    // keeps on hold a message whose client was told 250.
    postfix::HoldResult r = replicas_.Release(h->id);
    switch (r.outcome) {
      case postfix::HoldOutcome::kDone:
        ++stats_.released;
        h->released = true;
        Arm(h);
        replicas_.WaitDurable(h->id, [this, h, alive = alive_](bool replicated) {
          if (*alive) Resolve(h, replicated);
        });
        return;
      case postfix::HoldOutcome::kNotHeld:
        // Not on hold: queued for delivery already, and the standby holds
        // it. Safe to answer 250, but a timeout could not be refused safely.
        if (!warned_not_held_) {
          warned_not_held_ = true;
          spdlog::error("gate: durability is strict, but the after-filter did not put {} on hold "
                        "({}): a message that times out may then be delivered and refused at "
                        "once. Run `mailtwin postfix-config -c {} --apply` and reload Postfix",
                        h->id, r.text, cfg_.path);
        }
        break;
      case postfix::HoldOutcome::kTooLate:
      case postfix::HoldOutcome::kStuck:
      case postfix::HoldOutcome::kError:
        spdlog::error("gate: cannot release {} from hold: {}", h->id, r.text);
        return Timeout(h);
    }
  }
  ++(replicated ? stats_.replicated : stats_.gone);
  hold_ms_.Add(std::chrono::duration<double, std::milli>(Clock::now() - h->t0).count());
  if (h->released && replicated && test_released_delay_.count() > 0) {
    ++h->stage;  // the sync_timeout wait is over: its expiry must not answer
    auto t = std::make_shared<asio::steady_timer>(io_, test_released_delay_);
    t->async_wait([this, h, t, alive = alive_](asio::error_code) {
      if (*alive && !h->answered) Answer(h, std::nullopt);
    });
    return;
  }
  Answer(h, std::nullopt);
}

void Gate::Timeout(const std::shared_ptr<Hold>& h) {
  if (h->answered) return;
  if (cfg_.durability == Durability::kStrict) {
    postfix::HoldResult r = replicas_.Withdraw(h->id);
    if (r.outcome == postfix::HoldOutcome::kDone || r.outcome == postfix::HoldOutcome::kStuck) {
      ++stats_.refused;
      if (r.outcome == postfix::HoldOutcome::kDone)
        spdlog::warn("gate: the standby has not confirmed {} within {} ms: removed from the "
                     "queue ({}) and refused with 451 (strict durability); the sender will retry",
                     h->id, cfg_.sync_timeout.count(), r.text);
      else  // on hold for good: never delivered, so a 451 is still right
        spdlog::error("gate: the standby has not confirmed {} within {} ms: refused with 451, "
                      "but it could not be removed ({}); remove it by hand: postsuper -d {} hold",
                      h->id, cfg_.sync_timeout.count(), r.text, h->id);
      return Answer(h, std::string("451 4.4.0 Message not accepted: its copy on the standby "
                                   "server could not be confirmed, try again later\r\n"));
    }
    spdlog::error("gate: {} has {} and cannot be withdrawn ({}): answering 250 without "
                  "a confirmed replica",
                  h->id, h->released ? "a replica on hold on the standby" : "no replica",
                  r.text);
  }
  ++stats_.unprotected_total;
  unprotected_.emplace(h->id, h->t0);
  if (!warned_degraded_) {
    warned_degraded_ = true;
    spdlog::error("gate: the standby has not confirmed {} within {} ms; answering 250 anyway: "
                  "this message and the next ones have no replica until replication catches "
                  "up (see `mailtwin status`)",
                  h->id, cfg_.sync_timeout.count());
  }
  Answer(h, std::nullopt);
}

void Gate::Recovered() {
  // Said once a replica confirms a message again and none answered without
  // one is left. Not when the last of them is merely delivered while
  // replication is still down (no standby since a takeover, a dead link):
  // the next message would have no replica either, and the warning would
  // come back for each one, two log lines per message.
  if (!warned_degraded_ || !unprotected_.empty()) return;
  spdlog::info("gate: replication works again: every message answered without a replica is "
               "protected or delivered");
  warned_degraded_ = false;
}

std::vector<std::string> Gate::unprotected_ids(std::size_t max) const {
  std::vector<std::pair<Clock::time_point, std::string>> all;
  all.reserve(unprotected_.size());
  for (const auto& [id, t] : unprotected_) all.emplace_back(t, id);
  std::sort(all.begin(), all.end());
  std::vector<std::string> out;
  for (std::size_t i = 0; i < all.size() && i < max; ++i) out.push_back(std::move(all[i].second));
  return out;
}

std::optional<double> Gate::oldest_unprotected_s() const {
  if (unprotected_.empty()) return std::nullopt;
  auto oldest = Clock::now();
  for (const auto& [id, t] : unprotected_) oldest = std::min(oldest, t);
  return std::chrono::duration<double>(Clock::now() - oldest).count();
}

}  // namespace mailtwin::gate
