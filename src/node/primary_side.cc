#include "node/primary_side.h"

#include <cstdlib>

#include <spdlog/spdlog.h>

#include "postfix/gate_config.h"
#include "postfix/hold.h"

namespace mailtwin {

PrimarySide::PrimarySide(asio::io_context& io, const Config& cfg, const std::string& queue_dir,
                         const repl::HashLayout& hash, repl::Identity ident, ha::Ledger& ledger,
                         Hooks hooks, gate::DedupTable* dedup)
    : io_(io),
      cfg_(cfg),
      queue_dir_(queue_dir),
      hash_(hash),
      ident_(std::move(ident)),
      ledger_(ledger),
      hooks_(std::move(hooks)),
      dedup_(dedup),
      batch_timer_(io) {}

PrimarySide::~PrimarySide() {
  // The gate first (it waits on the link), then the link, then the watcher
  // that feeds it.
  if (gate_) gate_->Stop();
  if (link_) link_->Stop();
  gate_.reset();
  link_.reset();
  batch_timer_.cancel();
  if (inotify_) {
    inotify_->cancel();
    inotify_->release();  // the watcher owns the descriptor
  }
}

std::string PrimarySide::Start() {
  model_ = std::make_unique<repl::QueueModel>();
  watcher_ = std::make_unique<repl::QueueWatcher>(
      queue_dir_, *model_,
      [this](const std::string& id, repl::ApplyResult&& r) {
        // A message's first change is its whole file: record it then, not
        // at every move and patch (two hash lookups each).
        for (const auto& c : r.changes)
          if (std::holds_alternative<repl::msg::File>(c)) {
            ledger_.Record(id);
            break;
          }
        if (link_ && !test_no_live_changes_) link_->OnChanges(id, std::move(r));
      },
      hash_);
  auto t0 = std::chrono::steady_clock::now();
  if (std::string err = watcher_->Start(); !err.empty()) return err;
  // The initial scan only filled the model; drain what it marked.
  DrainWatcher();
  spdlog::info("watcher: {} holds {} committed messages (scanned in {:.3f} s)", queue_dir_,
               model_->size(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  if (const char* v = std::getenv("MAILTWIN_TEST_REPL_NO_LIVE_CHANGES"); v && *v == '1') {
    test_no_live_changes_ = true;
    spdlog::warn("replication: MAILTWIN_TEST_REPL_NO_LIVE_CHANGES=1: no queue change made from now "
                 "on is sent to the standby (a test switch; never in production)");
  }
  if (std::string err = StartLink(); !err.empty()) return err;
  inotify_ = std::make_unique<asio::posix::stream_descriptor>(io_, watcher_->fd());
  WatchInotify();
  return StartGate();
}

std::string PrimarySide::StartLink() {
  link_ = std::make_unique<repl::PrimaryLink>(io_, cfg_, ident_, *watcher_);
  link_->SetJudge(hooks_.judge);
  link_->SetOnNodeStatus([this](const repl::msg::NodeStatus& m) {
    hooks_.on_node_status(link_ ? link_->peer_node() : cfg_.peer, m);
  });
  link_->SetOnSwitchoverRequest(hooks_.on_switchover_request);
  // The dedup table follows the role: a standby that takes fingerprints
  // gets this primary's inherited entries, for its own next take-over, and
  // the fingerprints of the messages queued here lately (recent_).
  link_->SetOnFingerprintsOk([this] {
    SendRecentFingerprints();
    if (!dedup_ || dedup_->empty()) return;
    auto now_s = gate::WallSeconds();
    std::size_t n = 0;
    for (const auto& [k, e] : dedup_->entries()) {
      if (e.expires_s <= now_s) continue;
      auto keep = static_cast<std::uint32_t>(
          std::min<std::int64_t>(e.expires_s - now_s, repl::kMaxFingerprintKeep));
      if (link_->SendFingerprint(repl::msg::Fingerprint{e.id, e.digest, keep, e.origin})) ++n;
    }
    spdlog::info("dedup: sent the {} entries of this node's dedup table to standby {}", n,
                 link_->peer_node());
  });
  sink_ = std::make_unique<HandoverSink>(
      queue_dir_, hash_, cfg_.postfix_config_dir, ledger_,
      [this](const std::string& id) { return model_ && model_->Find(id) != nullptr; },
      [this](std::string_view ident) -> std::optional<std::string> {
        if (!dedup_ || !IsGateToken(ident)) return std::nullopt;
        return dedup_->ResentAs(ident, gate::WallSeconds());
      });
  if (std::string err = sink_->Init(); !err.empty()) {
    spdlog::error("handover: {}; messages offered by a rejoining node are refused", err);
    sink_.reset();
  }
  link_->SetHandover([this](const repl::Message& m) { return OnHandover(m); });
  return link_->Start();
}

std::optional<repl::Message> PrimarySide::OnHandover(const repl::Message& m) {
  if (!sink_)
    return repl::msg::HandoverResult{repl::ChangeId(m), repl::msg::HandoverOutcome::kRefused,
                                     "this primary cannot take handovers (see its log)"};
  auto r = sink_->OnMessage(m);
  if (!r) return std::nullopt;
  static constexpr const char* kWhat[] = {"", "imported into", "already queued in",
                                          "already finished according to the ledger of",
                                          "refused by"};
  spdlog::info("handover: {} {} this primary{}", r->id, kWhat[static_cast<int>(r->outcome)],
               r->text.empty() ? "" : " (" + r->text + ")");
  return repl::Message(*r);
}

std::string PrimarySide::StartGate() {
  ConfigErrors problems;
  postfix::CheckGate(cfg_, postfix::InspectGate(cfg_), problems);
  for (const auto& w : problems.warnings) spdlog::warn("{}", w);
  for (const auto& e : problems.errors) spdlog::error("{}", e);
  gate_ = std::make_unique<gate::Gate>(io_, cfg_, static_cast<gate::Replicas&>(*this), dedup_);
  return gate_->Start();
}

void PrimarySide::DrainWatcher() {
  while (!watcher_->Poll()) {
  }
}

bool PrimarySide::StandbyHoldsAll() const {
  return link_->sent_seq() == link_->acked_seq() && !link_->pending_resend() &&
         !link_->queued_bytes();
}

void PrimarySide::WatchInotify() {
  inotify_->async_wait(asio::posix::stream_descriptor::wait_read,
                       [this, alive = std::weak_ptr<char>(alive_)](asio::error_code ec) {
                         if (ec || alive.expired()) return;
                         if (cfg_.batch_delay.count() == 0) return PollInotify();
                         // Let the events of the next few hundred microseconds
                         // gather: Postfix makes several per message, and one
                         // wake-up for all is much cheaper.
                         batch_timer_.expires_after(cfg_.batch_delay);
                         batch_timer_.async_wait([this, alive](asio::error_code ec) {
                           if (!ec && !alive.expired()) PollInotify();
                         });
                       });
}

void PrimarySide::PollInotify() {
  if (!watcher_->Poll()) {
    // Not drained yet: yield to the network, then continue.
    asio::post(io_, [this, alive = std::weak_ptr<char>(alive_)] {
      if (!alive.expired()) PollInotify();
    });
    return;
  }
  WatchInotify();
}

void PrimarySide::WaitDurable(const std::string& id, std::function<void(bool)> done) {
  // The after-filter answered "queued as id" after cleanup's fchmod, so the
  // commit's inotify event is already queued: read it now rather than after
  // the batch delay, so that the commit is in the model and on its way.
  DrainWatcher();
  link_->WaitDurable(id, std::move(done));
}

std::optional<std::chrono::steady_clock::time_point> PrimarySide::DownSince() const {
  // "Down for sync_timeout already": the gate does not hold the reply.
  if (awaiting_first_standby()) return std::chrono::steady_clock::now() - cfg_.sync_timeout;
  return link_->down_since();
}

void PrimarySide::Fingerprint(const std::string& id, const gate::Digest& d, bool sent_by_token) {
  if (!sent_by_token) link_->SendFingerprint(id, d);
  if (cfg_.dedup_window.count() <= 0) return;
  auto now = std::chrono::steady_clock::now();
  PruneRecent(now);
  if (recent_.size() >= kMaxRecent) recent_.pop_front();
  recent_.push_back({now, id, d});
}

void PrimarySide::PruneRecent(std::chrono::steady_clock::time_point now) {
  while (!recent_.empty() && now - recent_.front().at > cfg_.dedup_window) recent_.pop_front();
}

void PrimarySide::SendRecentFingerprints() {
  PruneRecent(std::chrono::steady_clock::now());
  std::size_t n = 0;
  for (const Queued& q : recent_)
    if (model_->Find(q.id) && link_->SendFingerprint(q.id, q.digest)) ++n;
  if (n)
    spdlog::info("dedup: sent standby {} again the fingerprints of the {} messages queued here in "
                 "the last dedup_window and still in the queue",
                 link_->peer_node(), n);
}

bool PrimarySide::FingerprintByToken(const std::string& token, const gate::Digest& d) {
  return link_->SendFingerprint(token, d);
}

postfix::HoldResult PrimarySide::Release(const std::string& id) {
  return postfix::ReleaseHeld(queue_dir_, hash_, id);
}

postfix::HoldResult PrimarySide::Withdraw(const std::string& id) {
  return postfix::WithdrawHeld(queue_dir_, hash_, id);
}

}  // namespace mailtwin
