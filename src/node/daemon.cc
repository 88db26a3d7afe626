#include "node/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/process.h"
#include "ha/smtp_probe.h"
#include "metrics/exposition.h"
#include "postfix/gate_config.h"
#include "postfix/promote.h"

namespace mailtwin {
namespace {

// A switchover waits at most this long for the deliveries in flight (mail
// is still accepted meanwhile), then at most kIntakeLimit for the sessions
// whose message is ended to get their reply (a 10 MB message in the middle
// of its DATA is not waited for: it is cut, and its client sends it again).
constexpr auto kDeliveryLimit = std::chrono::milliseconds(3000);
constexpr auto kIntakeLimit = std::chrono::milliseconds(1000);
constexpr auto kDeliveryScan = std::chrono::milliseconds(10);
constexpr auto kDeliveryQuiet = std::chrono::milliseconds(30);
// After the gate's last session ended, the time Postfix's smtpd gets to
// pass the reply on to its client.
constexpr auto kIntakeGrace = std::chrono::milliseconds(50);

ctl::Json NodeJson(const std::string& node, const repl::msg::NodeStatus& m) {
  using NS = repl::msg::NodeStatus;
  ctl::Json q = ctl::Json::object();
  for (Queue k : kAllQueues)
    q[std::string(QueueName(k))] = m.queues[static_cast<std::size_t>(k) - 1];
  return {{"node", node},
          {"role", m.role == repl::Role::kPrimary ? "primary" : "standby"},
          {"epoch", m.epoch},
          {"paused", (m.flags & NS::kPaused) != 0},
          {"postfix_running", (m.flags & NS::kPostfixRunning) != 0},
          {"epoch_confirmed", (m.flags & NS::kEpochConfirmed) != 0},
          {"vip_held", (m.flags & NS::kVipHeld) != 0},
          {"queue_writable", (m.flags & NS::kQueueWritable) != 0},
          {"queue_free_mb", m.queue_free_mb},
          {"queues", q},
          {"decision", m.decision}};
}

double CpuMs() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  auto ms = [](const timeval& tv) { return tv.tv_sec * 1000.0 + tv.tv_usec / 1000.0; };
  return ms(ru.ru_utime) + ms(ru.ru_stime);
}

}  // namespace

Daemon::Daemon(Config cfg)
    : cfg_(std::move(cfg)),
      signals_(io_, SIGINT, SIGTERM),
      batch_timer_(io_),
      started_(std::chrono::steady_clock::now()),
      tick_timer_(io_) {}

Daemon::~Daemon() {
  AbandonSwitchover("mailtwind is stopping");
  if (inotify_) inotify_->release();  // the watcher owns the descriptor
}

void Daemon::AbandonSwitchover(const std::string& why) {
  // A switchover cut short must not leave Postfix's queue manager stopped
  // (Postfix would accept mail and deliver none) nor the address lingering
  // on a node that no longer serves.
  if (switching_ && switching_->qmgr &&
      (switching_->phase == Switching::Phase::kDeliveries ||
       switching_->phase == Switching::Phase::kIntake)) {
    kill(switching_->qmgr, SIGCONT);
    spdlog::warn("switchover abandoned ({}): Postfix's queue manager continues", why);
  }
  switching_.reset();
  if (vip_ && state_.role != NodeRole::kPrimary && vip_linger_until_ != ha::Clock::time_point{})
    ReleaseVip(why);
}

std::string Daemon::Init() {
  auto pc = Postconf(cfg_.postfix_config_dir, {"queue_directory", "enable_long_queue_ids",
                                               "hash_queue_depth", "hash_queue_names"});
  if (!pc.error.empty()) return pc.error;
  hash_.depth = std::atoi(pc.values["hash_queue_depth"].c_str());
  hash_.names.clear();
  {
    std::string names = pc.values["hash_queue_names"];
    for (char& c : names)
      if (c == ',') c = ' ';
    std::istringstream in(names);
    for (std::string n; in >> n;) hash_.names.push_back(n);
  }
  if (pc.values["enable_long_queue_ids"] != "yes")
    return fmt::format(
        "Postfix in {} uses short queue IDs (enable_long_queue_ids = {}); mailtwin needs long "
        "IDs, which stay the same when a file moves to another host. Run: postconf -c {} -e "
        "enable_long_queue_ids=yes && postfix -c {} reload  (mailtwin check-config explains more)",
        cfg_.postfix_config_dir, pc.values["enable_long_queue_ids"], cfg_.postfix_config_dir,
        cfg_.postfix_config_dir);
  queue_dir_ = cfg_.queue_directory.empty() ? pc.values["queue_directory"] : cfg_.queue_directory;
  {
    std::error_code ec;
    auto canon = std::filesystem::weakly_canonical(queue_dir_ + "/active", ec);
    active_dir_ = (ec ? queue_dir_ + "/active" : canon.string()) + "/";
  }
  if (!cfg_.vip_address.empty()) {
    net::VipAddress va;
    if (std::string err = net::ParseVip(cfg_.vip_address, va); !err.empty())
      return "[vip] address " + err;
    vip_ = std::make_unique<net::Vip>(va, cfg_.vip_interface);
    vip_held_ = vip_->Present();
    spdlog::info("vip: {} on {} follows the primary role ({} here now)", va.text,
                 cfg_.vip_interface, vip_held_ ? "present" : "absent");
  }
  // A switchover cut short by a crash of this daemon may have left Postfix's
  // queue manager stopped: Postfix would accept mail and deliver none.
  for (const auto& p : postfix::ProcessGroup(postfix::RunningMaster(queue_dir_)))
    if (postfix::IsQueueManager(p) && p.state == 'T') {
      kill(p.pid, SIGCONT);
      spdlog::warn("Postfix's {} (pid {}) was stopped, as a switchover leaves it: continued",
                   p.comm, p.pid);
    }
  // Postfix's integrity checks run here, once: mailtwind later starts
  // Postfix without them, to keep promotions and switchovers short.
  if (auto chk = RunCommand({"postfix", "-c", cfg_.postfix_config_dir, "check"}); !chk.ok())
    spdlog::warn("postfix -c {} check: {}", cfg_.postfix_config_dir, chk.output);
  mirror_dir_ = cfg_.mirror_dir.empty() ? queue_dir_ + "-mailtwin-mirror" : cfg_.mirror_dir;

  std::string err;
  auto st = LoadNodeState(cfg_.state_dir, err);
  if (!err.empty()) return err;
  if (st) {
    state_ = *st;
    if (state_.role != cfg_.role)
      spdlog::info("node state says {} (epoch {}); the config's role {} applies only at first start",
                   RoleName(state_.role), state_.epoch, RoleName(cfg_.role));
  } else {
    state_ = NodeState{cfg_.role, 1};
    if (err = SaveNodeState(cfg_.state_dir, state_); !err.empty()) return err;
  }
  std::random_device rd;
  ident_ = repl::Identity{cfg_.cluster, cfg_.node_name, state_.epoch,
                          (std::uint64_t{rd()} << 32) | rd()};
  if (err = events_.Open(cfg_.state_dir); !err.empty()) return err;
  if (err = ledger_.Open(cfg_.state_dir); !err.empty()) return err;
  notifier_ = std::make_unique<ha::Notifier>(cfg_, events_);
  ha_ = ha::HaConfigOf(cfg_);
  handover_pending_ = postfix::CountSetAside(HandoverDir());
  return {};
}

std::string Daemon::StartPrimary() {
  model_ = std::make_unique<repl::QueueModel>();
  link_.reset();
  watcher_ = std::make_unique<repl::QueueWatcher>(
      queue_dir_, *model_, [this](const std::string& id, repl::ApplyResult&& r) {
        // A message's first change is its whole file: record it then, not
        // at every move and patch (two hash lookups each).
        for (const auto& c : r.changes)
          if (std::holds_alternative<repl::msg::File>(c)) {
            ledger_.Record(id);
            break;
          }
        if (link_) link_->OnChanges(id, std::move(r));
      },
      hash_);
  auto t0 = std::chrono::steady_clock::now();
  if (std::string err = watcher_->Start(); !err.empty()) return err;
  // The initial scan only filled the model; drain what it marked.
  while (!watcher_->Poll()) {
  }
  spdlog::info("watcher: {} holds {} committed messages (scanned in {:.3f} s)", queue_dir_,
               model_->size(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  link_ = std::make_unique<repl::PrimaryLink>(io_, cfg_, ident_, *watcher_);
  link_->SetJudge([this](const repl::msg::Hello& h) { return JudgeDialer(h); });
  link_->SetOnNodeStatus([this](const repl::msg::NodeStatus& m) {
    OnPeerStatus(link_ ? link_->peer_node() : cfg_.peer, m);
  });
  link_->SetOnSwitchoverRequest([this](const repl::msg::SwitchoverRequest& m) {
    bool failback = m.reason.find("failback") != std::string::npos;
    asio::post(io_, [this, m, failback] {
      auto r = StartSwitchover(fmt::format("{} (asked by {})", m.reason, link_ ? link_->peer_node() : "?"),
                               failback ? "failback" : "switchover");
      if (!r.value("ok", false)) spdlog::error("switchover asked by the standby: {}", r.value("error", ""));
    });
  });
  sink_ = std::make_unique<HandoverSink>(
      queue_dir_, hash_, cfg_.postfix_config_dir, ledger_,
      [this](const std::string& id) { return model_ && model_->Find(id) != nullptr; });
  if (std::string err = sink_->Init(); !err.empty()) {
    spdlog::error("handover: {}; messages offered by a rejoining node are refused", err);
    sink_.reset();
  }
  link_->SetHandover([this](const repl::Message& m) -> std::optional<repl::Message> {
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
  });
  if (std::string err = link_->Start(); !err.empty()) return err;
  inotify_ = std::make_unique<asio::posix::stream_descriptor>(io_, watcher_->fd());
  WatchInotify();
  return StartGate();
}

std::string Daemon::StartGate() {
  ConfigErrors problems;
  postfix::CheckGate(cfg_, postfix::InspectGate(cfg_), problems);
  for (const auto& w : problems.warnings) spdlog::warn("{}", w);
  for (const auto& e : problems.errors) spdlog::error("{}", e);
  gate_ = std::make_unique<gate::Gate>(io_, cfg_, static_cast<gate::Replicas&>(*this));
  return gate_->Start();
}

void Daemon::WaitDurable(const std::string& id, std::function<void(bool)> done) {
  if (!watcher_ || !link_) {  // stepped down meanwhile: no replica to wait for
    asio::post(io_, [done = std::move(done)] { done(false); });
    return;
  }
  // The after-filter answered "queued as id" after cleanup's fchmod, so the
  // commit's inotify event is already queued: read it now rather than after
  // the batch delay, so that the commit is in the model and on its way.
  while (!watcher_->Poll()) {
  }
  link_->WaitDurable(id, std::move(done));
}

std::optional<std::chrono::steady_clock::time_point> Daemon::DownSince() const {
  return link_ ? link_->down_since() : std::make_optional(started_);
}

postfix::HoldResult Daemon::Release(const std::string& id) {
  return postfix::ReleaseHeld(queue_dir_, hash_, id);
}

postfix::HoldResult Daemon::Withdraw(const std::string& id) {
  return postfix::WithdrawHeld(queue_dir_, hash_, id);
}

// The watcher's handlers carry the generation of the primary that started
// them: one that completes after a step-down (cancel() does not stop a
// handler whose operation had already completed) finds another generation
// and does nothing.
void Daemon::WatchInotify() {
  inotify_->async_wait(asio::posix::stream_descriptor::wait_read,
                       [this, gen = primary_gen_](asio::error_code ec) {
                         if (ec || gen != primary_gen_) return;
                         if (cfg_.batch_delay.count() == 0) return PollInotify();
                         // Let the events of the next few hundred microseconds
                         // gather: Postfix makes several per message, and one
                         // wake-up for all is much cheaper.
                         batch_timer_.expires_after(cfg_.batch_delay);
                         batch_timer_.async_wait([this, gen](asio::error_code ec) {
                           if (!ec && gen == primary_gen_) PollInotify();
                         });
                       });
}

void Daemon::PollInotify() {
  if (!watcher_) return;
  if (!watcher_->Poll()) {
    // Not drained yet: yield to the network, then continue.
    asio::post(io_, [this, gen = primary_gen_] {
      if (gen == primary_gen_) PollInotify();
    });
    return;
  }
  WatchInotify();
}

std::string Daemon::StartStandby() {
  // Every node keeps a mirror and listens: a standby to follow its primary,
  // a primary to meet a peer that claims the role too (the higher epoch wins).
  mirror_ = std::make_unique<repl::Mirror>(mirror_dir_);
  if (std::string err = mirror_->Open(); !err.empty()) return err;
  server_ = std::make_unique<repl::StandbyServer>(io_, cfg_, ident_, *mirror_);
  server_->SetHooks([this](const repl::msg::Hello& h) { return JudgeListener(h); },
                    [this] { return SelfHello(); });
  server_->SetOnNewFile([this](const std::string& id) { ledger_.Record(id); });
  server_->SetOnNodeStatus([this](const repl::msg::NodeStatus& m) {
    OnPeerStatus(server_->peer_node(), m);
  });
  server_->SetOnSwitchover([this](const repl::msg::Switchover& m) {
    if (state_.role != NodeRole::kStandby || m.epoch <= state_.epoch) {
      spdlog::warn("switchover to epoch {} ignored: this node is {} at epoch {}", m.epoch,
                   RoleName(state_.role), state_.epoch);
      return;
    }
    asio::post(io_, [this, m] {
      if (state_.role == NodeRole::kStandby)
        TakeOver(fmt::format("switchover from {}: {}", server_->peer_node(), m.reason), m.epoch);
    });
  });
  server_->SetLiveHooks([this] { OnFollowingLive(); },
                        [this](const repl::msg::HandoverResult& r) { OnHandoverResult(r); });
  return server_->Start();
}

int Daemon::Run() {
  if (std::string err = Init(); !err.empty()) {
    spdlog::critical("{}", err);
    return 2;
  }
  spdlog::info("mailtwind {} starting: node {} of cluster {}, role {}, epoch {}", "0.1.0",
               cfg_.node_name, cfg_.cluster, RoleName(state_.role), state_.epoch);
  // The control socket first: `mailtwin status` answers during a long
  // start-up scan too.
  control_ = std::make_unique<ctl::ControlServer>(
      io_, cfg_.control_socket, [this](const ctl::Json& r) { return Handle(r); });
  std::string err = control_->Start();
  if (err.empty() && !cfg_.metrics_listen.empty()) {
    metrics_ = std::make_unique<metrics::HttpServer>(io_, cfg_.metrics_listen, [this] {
      return metrics::Exposition(Status());
    });
    err = metrics_->Start();
  }
  if (err.empty()) err = StartStandby();
  if (err.empty() && state_.role == NodeRole::kPrimary) {
    // Serve only once the peer confirms our epoch (ha::Decide).
    unconfirmed_since_ = std::chrono::steady_clock::now();
    err = StartPrimary();
  }
  if (!err.empty()) {
    spdlog::critical("{}", err);
    return 2;
  }
  if (handover_pending_)
    spdlog::warn("{} queue files set aside at a step-down wait in {} (docs/failover.md)",
                 handover_pending_, HandoverDir());
  notifier_->Start();
  signals_.async_wait([this](asio::error_code, int sig) {
    spdlog::info("signal {}: stopping", sig);
    AbandonSwitchover("mailtwind is stopping");
    if (gate_) gate_->Stop();
    if (link_) link_->Stop();
    if (server_) server_->Stop();
    tick_timer_.cancel();
    io_.stop();
  });
  last_tick_ = std::chrono::steady_clock::now();
  ScheduleTick();
  io_.run();
  notifier_.reset();  // delivers what is queued, then joins
  spdlog::info("mailtwind stopped");
  return 0;
}

ctl::Json Daemon::Handle(const ctl::Json& req) {
  Busy b(*this);  // a command may block (promote)
  return HandleCommand(req);
}

ctl::Json Daemon::HandleCommand(const ctl::Json& req) {
  std::string cmd = req.value("cmd", "");
  if (cmd == "status") return Status();
  if (cmd == "promote") return Promote(req);
  if (cmd == "inspect") return Inspect(req.value("id", ""));
  if (cmd == "switchover" || cmd == "failback") {
    std::string reason = cmd == "failback" ? "mailtwin failback" : "mailtwin switchover";
    if (cmd == "failback") {
      if (cfg_.preferred.empty())
        return {{"ok", false}, {"error", "no [failover] preferred node is configured"}};
      bool here_preferred = cfg_.preferred == cfg_.node_name;
      if ((state_.role == NodeRole::kPrimary) == here_preferred)
        return {{"ok", false},
                {"error", fmt::format("the preferred node {} is already the primary",
                                      cfg_.preferred)}};
    }
    if (state_.role == NodeRole::kPrimary) return StartSwitchover(reason, cmd);
    return RequestSwitchover(reason, cmd);
  }
  if (cmd == "pause") return SetPaused(true);
  if (cmd == "resume") return SetPaused(false);
  if (cmd == "events") {
    ctl::Json list = ctl::Json::array();
    for (const auto& e : events_.Recent(req.value("n", 20))) list.push_back(e.ToJson());
    return {{"ok", true}, {"events", list}};
  }
  return ctl::Json{{"ok", false}, {"error", fmt::format("unknown command '{}'", cmd)}};
}

ctl::Json Daemon::Status() {
  ctl::Json j{{"ok", true},
              {"node", cfg_.node_name},
              {"cluster", cfg_.cluster},
              {"role", std::string(RoleName(state_.role))},
              {"epoch", state_.epoch},
              {"uptime_s", std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                         started_).count()},
              {"cpu_ms", CpuMs()},
              {"queue_directory", queue_dir_},
              {"mirror_directory", mirror_dir_}};
  {
    ctl::Json recent = ctl::Json::array();
    for (const auto& e : events_.Recent(5)) recent.push_back(e.ToJson());
    ctl::Json actions = ctl::Json::array();
    for (auto a : last_decision_.actions) actions.push_back(std::string(ha::ActionName(a)));
    j["ha"] = {{"failover", cfg_.auto_failover ? "auto" : "manual"},
               {"paused", state_.paused},
               {"epoch_confirmed", state_.role == NodeRole::kPrimary ? epoch_confirmed_ : false},
               {"postfix_running", PostfixUp()},
               {"queue_writable", queue_writable_},
               {"queue_free_mb", queue_free_mb_},
               {"decision", last_decision_.reason},
               {"decision_actions", actions},
               {"decided_unix", std::chrono::duration_cast<std::chrono::seconds>(
                                    last_decision_at_.time_since_epoch()).count()},
               {"probe", cfg_.probe},
               {"probes", probes_},
               {"probe_failures", probe_failures_},
               {"probe_error", probe_error_},
               {"last_probe_ms", last_probe_ms_},
               {"primary_seen", primary_seen_},
               {"handover_pending", handover_pending_},
               {"handover_received",
                sink_ ? ctl::Json{{"imported", sink_->stats().imported},
                                  {"queued", sink_->stats().queued},
                                  {"finished", sink_->stats().finished},
                                  {"refused", sink_->stats().refused}}
                      : ctl::Json(nullptr)},
               {"ledger_ids", ledger_.size()},
               {"preferred", cfg_.preferred},
               {"failback", cfg_.auto_failback ? "auto" : "manual"},
               {"switching", switching_.has_value()},
               {"last_handover_s", last_switch_pause_s_.value_or(-1)},
               {"vip", vip_ ? ctl::Json{{"address", vip_->address().text},
                                        {"interface", vip_->interface()},
                                        {"held", vip_held_},
                                        {"error", vip_error_}}
                            : ctl::Json(nullptr)},
               {"events", recent}};
  }
  {
    ctl::Json nodes = ctl::Json::array();
    nodes.push_back(NodeJson(cfg_.node_name, SelfStatus()));
    nodes.back()["self"] = true;
    if (peer_status_) {
      nodes.push_back(NodeJson(peer_status_node_, *peer_status_));
      nodes.back()["self"] = false;
      nodes.back()["age_s"] =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - peer_status_at_).count();
    }
    j["nodes"] = nodes;
  }
  if (link_ && watcher_) {
    const auto& ws = watcher_->stats();
    const auto& lag = link_->lag();
    j["replication"] = {
        {"side", "primary"},
        {"state", std::string(repl::PrimaryLink::StateName(link_->state()))},
        {"peer", cfg_.peer},
        {"peer_node", link_->peer_node()},
        {"messages", model_->size()},
        {"sent_seq", link_->sent_seq()},
        {"acked_seq", link_->acked_seq()},
        {"unacked_frames", link_->sent_seq() - link_->acked_seq()},
        {"pending_resend", link_->pending_resend()},
        {"queued_bytes", link_->queued_bytes()},
        {"files_sent", link_->files_sent()},
        {"bytes_sent", link_->bytes_sent()},
        {"lag_samples", lag.count()},
        {"lag_p50_ms", lag.Quantile(0.5)},
        {"lag_p99_ms", lag.Quantile(0.99)},
        {"ship_p50_ms", link_->ship_lag().Quantile(0.5)},
        {"ship_p99_ms", link_->ship_lag().Quantile(0.99)},
        {"last_catchup_s", link_->last_catchup_seconds().value_or(-1)},
        {"last_error", link_->last_error()},
        {"watcher",
         {{"events", ws.events},
          {"syncs", ws.syncs},
          {"overflows", ws.overflows},
          {"rescans", ws.rescans},
          {"read_races", ws.read_races}}}};
  }
  if (gate_) {
    const auto& gs = gate_->stats();
    const auto& hold = gate_->hold_ms();
    j["gate"] = {{"durability", std::string(DurabilityName(cfg_.durability))},
                 {"listen", cfg_.gate_listen},
                 {"sync_timeout_ms", cfg_.sync_timeout.count()},
                 {"sessions", gs.sessions},
                 {"active_sessions", gs.active_sessions},
                 {"messages", gs.messages},
                 {"waiting", gate_->waiting()},
                 {"replicated", gs.replicated},
                 {"gone_before_replica", gs.gone},
                 {"unprotected", gate_->unprotected()},
                 {"unprotected_total", gs.unprotected_total},
                 {"oldest_unprotected_s", gate_->oldest_unprotected_s().value_or(0)},
                 {"refused", gs.refused},
                 {"released", gs.released},
                 {"abandoned", gs.abandoned},
                 {"errors", gs.errors},
                 {"hold_samples", hold.count()},
                 {"hold_p50_ms", hold.Quantile(0.5)},
                 {"hold_p99_ms", hold.Quantile(0.99)}};
  }
  if (server_ && mirror_ && state_.role == NodeRole::kStandby) {
    const auto& ms = mirror_->stats();
    j["replication"] = {{"side", "standby"},
                        {"state", std::string(repl::StandbyServer::StateName(server_->state()))},
                        {"peer_node", server_->peer_node()},
                        {"applied_seq", server_->applied_seq()},
                        {"mirror_files", mirror_->files().size()},
                        {"mirror_logs", mirror_->logs().size()},
                        {"applied", ms.applied},
                        {"commits", ms.commits},
                        {"fsyncs", ms.fsyncs},
                        {"syncfs", ms.syncfs},
                        {"recycled_inodes", ms.recycled},
                        {"commit_ms_avg", ms.commits ? mirror_->commit_latency().sum() / ms.commits
                                                     : 0.0},
                        {"commit_ms_max", ms.commit_ms_max},
                        {"commit_p50_ms", mirror_->commit_latency().Quantile(0.5)},
                        {"commit_p99_ms", mirror_->commit_latency().Quantile(0.99)},
                        {"batch_p50_ms", server_->batch_latency().Quantile(0.5)},
                        {"batch_p99_ms", server_->batch_latency().Quantile(0.99)},
                        {"last_error", server_->last_error()}};
  }
  return j;
}

ctl::Json Daemon::Inspect(const std::string& id) {
  ctl::Json j{{"ok", true}, {"id", id}};
  auto logs_json = [](auto&& get) {
    ctl::Json out = ctl::Json::object();
    for (LogKind k : kAllLogKinds) get(k, out);
    return out;
  };
  if (model_) {
    const repl::MessageState* st = model_->Find(id);
    if (!st) {
      j["primary"] = nullptr;
    } else {
      j["primary"] = {{"queue", std::string(QueueName(st->file.queue))},
                      {"path", st->file.relpath},
                      {"size", st->file.layout.size},
                      {"mode", st->file.mode},
                      {"mtime_ns", st->file.mtime_ns},
                      {"digest", st->file.digest},
                      {"logs", logs_json([&](LogKind k, ctl::Json& out) {
                         const auto& l = st->logs[static_cast<int>(k) - 1];
                         if (l) out[std::string(LogKindName(k))] = {{"path", l->relpath}, {"size", l->size}};
                       })}};
    }
  }
  if (mirror_) {
    auto it = mirror_->files().find(id);
    j["mirror"] = it == mirror_->files().end()
                      ? ctl::Json(nullptr)
                      : ctl::Json{{"queue", std::string(QueueName(it->second.queue))},
                                  {"size", it->second.size},
                                  {"mode", it->second.mode},
                                  {"mtime_ns", it->second.mtime_ns}};
    j["mirror_logs"] = logs_json([&](LogKind k, ctl::Json& out) {
      auto lit = mirror_->logs().find({k, id});
      if (lit != mirror_->logs().end()) out[std::string(LogKindName(k))] = {{"size", lit->second.size}};
    });
  }
  return j;
}

ctl::Json Daemon::Promote(const ctl::Json& req) {
  bool force = req.value("force", false);
  if (state_.role == NodeRole::kPrimary) {
    if (epoch_confirmed_) return {{"ok", false}, {"error", "this node is already the primary"}};
    if (!force)
      return {{"ok", false},
              {"error", "this node is a primary waiting for its peer to confirm the epoch; "
                        "promote --force serves without it (only if the peer is certainly down)"}};
    NodeState next{NodeRole::kPrimary, state_.epoch + 1, state_.paused};
    if (std::string err = SaveNodeState(cfg_.state_dir, next); !err.empty())
      return {{"ok", false}, {"error", err}};
    state_ = next;
    ident_.epoch = next.epoch;
    epoch_confirmed_ = true;
    unconfirmed_since_.reset();
    Raise("promotion", "promote --force: serving without the peer's confirmation");
    asio::post(io_, [this] { Tick(); });
    return {{"ok", true}, {"epoch", state_.epoch}, {"steps", {"epoch confirmed by the operator"}}};
  }
  if (!force && last_decision_.event != "primary-lost")
    return {{"ok", false},
            {"error", fmt::format("the primary is not known to be down ({}); use promote --force "
                                  "only once it is certainly stopped (otherwise both deliver)",
                                  last_decision_.reason)}};
  return TakeOver(force ? "promote --force by the operator" : "promote by the operator");
}

ctl::Json Daemon::TakeOver(const std::string& reason, std::optional<std::uint64_t> epoch) {
  Busy busy(*this);
  auto t0 = std::chrono::steady_clock::now();
  // The epoch is stored before anything else moves (docs/failover.md).
  NodeState next{NodeRole::kPrimary, std::max(epoch.value_or(0), state_.epoch + 1),
                 state_.paused};
  if (std::string err = SaveNodeState(cfg_.state_dir, next); !err.empty())
    return {{"ok", false}, {"error", err}};
  state_ = next;
  ident_.epoch = next.epoch;
  spdlog::warn("taking over at epoch {}: {}", state_.epoch, reason);
  server_->Drop("this node takes over as primary");
  auto rep = postfix::MakeLive(*mirror_, queue_dir_, cfg_.postfix_config_dir);
  if (rep.error.empty() && handover_pending_) {
    // Taking over before the last handover was settled: what only this node
    // had goes back into its queue (a message the peer had already delivered
    // would be delivered again: rare, and never a loss).
    auto back = postfix::RestoreSetAside(HandoverDir(), queue_dir_, cfg_.postfix_config_dir);
    handover_pending_ = postfix::CountSetAside(HandoverDir());
    rep.steps.push_back(fmt::format("put back {} set-aside messages the new queue lacked, dropped "
                                    "{} it holds{}",
                                    back.restored, back.dropped,
                                    back.error.empty() ? "" : "; " + back.error));
    spdlog::warn("promote: {}", rep.steps.back());
  }
  epoch_confirmed_ = true;
  unconfirmed_since_.reset();
  primary_lost_raised_ = false;
  // Watcher, link and gate first, so that the first client Postfix accepts
  // finds the gate open; then Postfix.
  std::string start_err = rep.error.empty() ? StartPrimary() : "";
  if (rep.error.empty()) postfix::Serve(cfg_.postfix_config_dir, cfg_.flush_after_promote, rep);
  ctl::Json out{{"ok", rep.error.empty()}, {"epoch", state_.epoch}, {"files", rep.files},
                {"logs", rep.logs},       {"conflicts", rep.conflicts}, {"steps", rep.steps}};
  if (!rep.error.empty()) {
    out["error"] = rep.error;
    spdlog::error("promote: {}", rep.error);
    Raise("promotion", fmt::format("{}; promotion FAILED: {}", reason, rep.error));
    return out;
  }
  if (!start_err.empty()) {
    out["ok"] = false;
    out["error"] = "promoted, but replication could not start: " + start_err;
  }
  SyncVip(std::chrono::steady_clock::now());
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  out["promote_ms"] = ms;
  spdlog::warn("promote: this node is the primary now (epoch {}, {} files, {:.0f} ms)",
               state_.epoch, rep.files, ms);
  Raise("promotion", fmt::format("{}; {} queue files made live in {:.0f} ms", reason, rep.files, ms));
  return out;
}

ctl::Json Daemon::SetPaused(bool paused) {
  NodeState next = state_;
  next.paused = paused;
  if (std::string err = SaveNodeState(cfg_.state_dir, next); !err.empty())
    return {{"ok", false}, {"error", err}};
  state_ = next;
  spdlog::warn("automatic actions {}", paused ? "paused (maintenance)" : "resumed");
  Raise(paused ? "paused" : "resumed",
        paused ? "the administrator paused automatic actions" : "automatic actions resumed");
  return {{"ok", true}, {"paused", paused}};
}

// ---- high availability --------------------------------------------------

std::string Daemon::HandoverDir() const { return mirror_dir_ + "-handover"; }

repl::msg::Hello Daemon::SelfHello() const {
  return ident_.HelloAs(state_.role == NodeRole::kPrimary ? repl::Role::kPrimary
                                                          : repl::Role::kStandby);
}

std::optional<repl::msg::Error> Daemon::JudgeListener(const repl::msg::Hello& peer) {
  auto j = ha::JudgePeer({state_.role, state_.epoch, cfg_.node_name},
                         {NodeRole::kPrimary, peer.epoch, peer.node});
  switch (j.verdict) {
    case ha::Verdict::kFollow:
      if (peer.epoch > state_.epoch) {
        NodeState next{NodeRole::kStandby, peer.epoch, state_.paused};
        if (std::string err = SaveNodeState(cfg_.state_dir, next); !err.empty())
          return repl::msg::Error{repl::msg::ErrorCode::kApply, "cannot store the epoch: " + err};
        state_ = next;
        ident_.epoch = next.epoch;
        spdlog::info("{}", j.reason);
      }
      primary_seen_ = true;
      // Probes count failures of this primary, from its arrival on.
      probe_failures_ = 0;
      probe_error_.clear();
      return std::nullopt;
    case ha::Verdict::kStepDown:
      StepDown(j.epoch, j.reason);
      primary_seen_ = true;
      return std::nullopt;
    case ha::Verdict::kAccept:
    case ha::Verdict::kRefuse:
      break;
  }
  spdlog::warn("replication: {}", j.reason);
  if (state_.role == NodeRole::kPrimary && peer.epoch == state_.epoch)
    Raise("split-brain", j.reason, peer.node);
  // The peer is back: meet it from our side now rather than after the
  // link's back-off, so that it learns our epoch and rejoins at once.
  if (link_) asio::post(io_, [this] {
      if (link_) link_->DialNow();
    });
  return repl::msg::Error{repl::msg::ErrorCode::kStaleEpoch, j.reason};
}

std::optional<repl::msg::Error> Daemon::JudgeDialer(const repl::msg::Hello& peer) {
  NodeRole peer_role =
      peer.role == repl::Role::kPrimary ? NodeRole::kPrimary : NodeRole::kStandby;
  auto j = ha::JudgePeer({state_.role, state_.epoch, cfg_.node_name},
                         {peer_role, peer.epoch, peer.node});
  if (j.verdict == ha::Verdict::kAccept) {
    if (!epoch_confirmed_) {
      epoch_confirmed_ = true;
      unconfirmed_since_.reset();
      spdlog::info("epoch {} confirmed: {}", state_.epoch, j.reason);
      asio::post(io_, [this] {
        Evaluate(std::chrono::steady_clock::now());
        SyncVip(std::chrono::steady_clock::now());
      });
    }
    return std::nullopt;
  }
  if (j.verdict == ha::Verdict::kStepDown) {
    // Not from inside the link's own handler: it is torn down by StepDown.
    asio::post(io_, [this, j] {
      if (state_.role == NodeRole::kPrimary) StepDown(j.epoch, j.reason);
    });
    if (peer_role == NodeRole::kPrimary && peer.epoch == state_.epoch)
      Raise("split-brain", j.reason, peer.node);
  } else {
    spdlog::warn("replication: {}", j.reason);
  }
  return repl::msg::Error{repl::msg::ErrorCode::kStaleEpoch, j.reason};
}

void Daemon::StopPrimary() {
  ++primary_gen_;  // pending watcher handlers of this primary become no-ops
  if (gate_) gate_->Stop();
  if (link_) link_->Stop();
  gate_.reset();
  link_.reset();
  batch_timer_.cancel();
  if (inotify_) {
    inotify_->cancel();
    inotify_->release();
    inotify_.reset();
  }
  watcher_.reset();
  model_.reset();
}

void Daemon::StepDown(std::uint64_t epoch, const std::string& reason) {
  Busy busy(*this);
  if (state_.role != NodeRole::kPrimary) return;
  auto t0 = std::chrono::steady_clock::now();
  NodeState next{NodeRole::kStandby, std::max(epoch, state_.epoch), state_.paused};
  if (std::string err = SaveNodeState(cfg_.state_dir, next); !err.empty())
    spdlog::error("step-down: {} (stepping down anyway)", err);
  state_ = next;
  ident_.epoch = next.epoch;
  epoch_confirmed_ = false;
  unconfirmed_since_.reset();
  spdlog::warn("stepping down to standby at epoch {}: {}", state_.epoch, reason);
  if (std::chrono::steady_clock::now() >= vip_linger_until_) ReleaseVip("stepping down");
  probe_failures_ = 0;  // a new primary to watch
  probe_error_.clear();
  StopPrimary();
  sink_.reset();
  StopPostfix(true);
  // What this queue holds goes aside, never delivered from here again: the
  // new primary has the replicated part, and the rest waits for handover.
  auto moved = postfix::SetAside(queue_dir_, HandoverDir());
  handover_pending_ = postfix::CountSetAside(HandoverDir());
  if (!moved.error.empty()) spdlog::error("step-down: {}", moved.error);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  Raise("fencing", fmt::format("stepped down to standby in {:.0f} ms: {}; {} queue files set "
                               "aside for handover",
                               ms, reason, moved.files));
}

bool Daemon::PostfixUp() const { return postfix::RunningMaster(queue_dir_) != 0; }

bool Daemon::StartPostfix() {
  Busy busy(*this);
  CommandResult r;
  r.status = postfix::StartPostfixQuick(cfg_.postfix_config_dir, r.output) ? 0 : 1;
  if (r.ok() || PostfixUp()) {
    postfix_start_failures_ = 0;
    spdlog::info("started Postfix ({})", cfg_.postfix_config_dir);
    return true;
  }
  ++postfix_start_failures_;
  spdlog::error("postfix -c {} start failed (exit {}): {}", cfg_.postfix_config_dir, r.status,
                r.output);
  return false;
}

void Daemon::StopPostfix(bool fence) {
  Busy busy(*this);
  // What `postfix stop` and `postfix abort` both do - SIGTERM to the master,
  // which passes it to its process group - but polled every 5 ms rather
  // than postfix-script's once a second: this is the intake pause of a
  // switchover and the delay of a fence.
  // A queue manager stopped by a switchover dies of this SIGTERM as soon as
  // it continues, before it runs another instruction of its own (also when
  // its master is gone already).
  pid_t qmgr = switching_ ? switching_->qmgr : 0;
  if (qmgr) kill(qmgr, SIGTERM);
  pid_t pid = postfix::RunningMaster(queue_dir_);
  if (!pid) {
    if (qmgr) kill(qmgr, SIGCONT);
    return;
  }
  auto t0 = std::chrono::steady_clock::now();
  kill(pid, SIGTERM);
  if (qmgr) kill(qmgr, SIGCONT);
  for (int i = 0; i < 1000 && postfix::ProcessLive(pid); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  bool gone = !postfix::ProcessLive(pid);
  if (!gone) {
    kill(pid, SIGKILL);
    RunCommand({"postfix", "-c", cfg_.postfix_config_dir, "abort"});
  }
  spdlog::warn("{} Postfix ({}) in {:.0f} ms{}", fence ? "fenced" : "stopped",
               cfg_.postfix_config_dir,
               std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
               gone ? "" : " (its master ignored SIGTERM for 5 s: killed)");
}

void Daemon::Raise(const std::string& kind, const std::string& reason, const std::string& peer) {
  ha::Event e;
  e.kind = kind;
  e.node = cfg_.node_name;
  e.role = std::string(RoleName(state_.role));
  e.epoch = state_.epoch;
  e.peer = peer.empty() ? (link_ && !link_->peer_node().empty() ? link_->peer_node()
                                                                  : cfg_.peer)
                        : peer;
  e.reason = reason;
  notifier_->Post(events_.Append(std::move(e)));
}

void Daemon::ScheduleTick() {
  tick_timer_.expires_after(cfg_.check_interval);
  tick_timer_.async_wait([this](asio::error_code ec) {
    if (!ec) Tick();
  });
}

void Daemon::CheckQueueFilesystem(ha::Clock::time_point now) {
  struct statvfs vfs;
  if (statvfs(queue_dir_.c_str(), &vfs) == 0)
    queue_free_mb_ = static_cast<double>(vfs.f_bavail) * vfs.f_frsize / (1024.0 * 1024.0);
  // A write test every 5 s, on the queue's filesystem (the mirror lives there).
  if (now - last_write_test_ < std::chrono::seconds(5)) return;
  last_write_test_ = now;
  std::string path = mirror_dir_ + "/.mailtwin-write-test";
  auto t0 = std::chrono::steady_clock::now();
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool ok = fd >= 0 && write(fd, "x", 1) == 1 && fsync(fd) == 0;
  int err = errno;
  if (fd >= 0) close(fd);
  unlink(path.c_str());
  spdlog::debug(
      "write test of the queue's filesystem: {:.3f} ms",
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  if (!ok && queue_writable_)
    spdlog::error("the queue's filesystem cannot be written ({}: {})", path, std::strerror(err));
  queue_writable_ = ok;
}

void Daemon::Tick() {
  auto now = std::chrono::steady_clock::now();
  ledger_.Flush();
  CheckQueueFilesystem(now);
  // Time this loop spent in its own blocking work (starting Postfix, a
  // promotion) is not a stall of the node.
  stalled_ = std::chrono::duration_cast<Millis>(now - last_tick_) - cfg_.check_interval - busy_;
  last_tick_ = now;
  busy_ = Millis(0);
  if (state_.role == NodeRole::kStandby && !probe_running_) StartProbe();
  Evaluate(now);
  SyncVip(now);
  SendStatus(now);
  stalled_ = Millis(0);  // a stall is seen by this tick's decision only
  // Mail answered 250 without a replica for a while: told once per period.
  if (gate_ && gate_->unprotected() > 0 && gate_->oldest_unprotected_s().value_or(0) >= 5.0) {
    if (!degraded_raised_) {
      degraded_raised_ = true;
      Raise("replication-degraded",
            fmt::format("{} messages answered 250 have had no replica for {:.0f} s or more "
                        "(durability {}): if this node dies now they are lost",
                        gate_->unprotected(), gate_->oldest_unprotected_s().value_or(0),
                        DurabilityName(cfg_.durability)));
    }
  } else if (!gate_ || gate_->unprotected() == 0) {
    degraded_raised_ = false;
  }
  ScheduleTick();
}

void Daemon::SyncVip(ha::Clock::time_point now) {
  if (!vip_) return;
  bool want = state_.role == NodeRole::kPrimary && epoch_confirmed_;
  // Looked at each time: someone (a network manager, an operator) may have
  // taken it away, or a crash left it behind.
  vip_held_ = vip_->Present();
  if (want == vip_held_) {
    if (want) vip_->Tick(now);
    vip_error_.clear();
    return;
  }
  if (!want) {
    if (now < vip_linger_until_) return;
    return ReleaseVip(vip_linger_until_ != ha::Clock::time_point{}
                          ? "the new primary has announced it"
                          : "this node is not a serving primary");
  }
  vip_linger_until_ = {};
  if (std::string err = vip_->Acquire(); !err.empty()) {
    if (err != vip_error_) {
      vip_error_ = err;
      spdlog::error("vip: cannot take {}: {}", vip_->address().text, err);
      Raise("vip-trouble", fmt::format("the primary cannot take the virtual address {}: {}; "
                                       "clients of that address cannot reach the mail service",
                                       vip_->address().text, err));
    }
    return;
  }
  vip_held_ = true;
  vip_error_.clear();
  spdlog::warn("vip: {} taken on {} and announced (gratuitous ARP)", vip_->address().text,
               vip_->interface());
}

repl::msg::NodeStatus Daemon::SelfStatus() const {
  using NS = repl::msg::NodeStatus;
  NS m;
  m.role = state_.role == NodeRole::kPrimary ? repl::Role::kPrimary : repl::Role::kStandby;
  m.epoch = state_.epoch;
  m.flags = (state_.paused ? NS::kPaused : 0) | (PostfixUp() ? NS::kPostfixRunning : 0) |
            (queue_writable_ ? NS::kQueueWritable : 0) |
            (state_.role == NodeRole::kPrimary && epoch_confirmed_ ? NS::kEpochConfirmed : 0) |
            (vip_held_ ? NS::kVipHeld : 0);
  auto add = [&m](Queue q) {
    auto i = static_cast<std::size_t>(q) - 1;
    if (i < m.queues.size()) ++m.queues[i];
  };
  // A primary counts its live queue, a standby its mirror (what it would
  // deliver if it took over).
  if (state_.role == NodeRole::kPrimary && model_)
    for (const auto& [id, st] : model_->entries()) add(st.file.queue);
  else if (mirror_)
    for (const auto& [id, f] : mirror_->files()) add(f.queue);
  m.queue_free_mb = queue_free_mb_ >= 1e11 ? -1 : static_cast<std::int64_t>(queue_free_mb_);
  // Printable ASCII only: a standby's reason may quote what a broken SMTP
  // server answered its probe, and the peer refuses control characters.
  m.decision = last_decision_.reason.substr(0, repl::kMaxName);
  for (char& c : m.decision)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  return m;
}

void Daemon::SendStatus(ha::Clock::time_point now) {
  if (now - status_sent_at_ < std::chrono::seconds(1)) return;
  bool sent = false;
  if (state_.role == NodeRole::kPrimary && link_) sent = link_->SendControl(SelfStatus());
  else if (state_.role == NodeRole::kStandby && server_) sent = server_->SendUp(SelfStatus());
  if (sent) status_sent_at_ = now;
}

void Daemon::OnPeerStatus(const std::string& node, const repl::msg::NodeStatus& m) {
  peer_status_ = m;
  peer_status_node_ = node;
  peer_status_at_ = std::chrono::steady_clock::now();
}

void Daemon::ReleaseVip(const std::string& why) {
  if (!vip_ || !vip_->Present()) {
    vip_held_ = false;
    return;
  }
  if (std::string err = vip_->Release(); !err.empty()) {
    spdlog::error("vip: cannot give up {}: {} ({}); remove it by hand: ip addr del {} dev {}",
                  vip_->address().text, err, why, vip_->address().text, vip_->interface());
    return;
  }
  vip_held_ = false;
  vip_linger_until_ = {};
  spdlog::warn("vip: {} given up ({})", vip_->address().text, why);
}

Daemon::Busy::~Busy() {
  if (--d.busy_depth_ == 0)
    d.busy_ += std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - t0);
}

ha::Observations Daemon::Observe(ha::Clock::time_point now) {
  ha::Observations o;
  o.role = state_.role;
  o.epoch = state_.epoch;
  o.paused = state_.paused;
  o.postfix_running = PostfixUp();
  o.epoch_confirmed = epoch_confirmed_;
  o.stalled = stalled_;
  if (unconfirmed_since_)
    o.unconfirmed_for = std::chrono::duration_cast<Millis>(now - *unconfirmed_since_);
  o.postfix_start_failures = postfix_start_failures_;
  o.queue_writable = queue_writable_;
  o.queue_free_mb = queue_free_mb_;
  if (!queue_writable_ || queue_free_mb_ < ha_.min_free_mb) {
    if (!queue_trouble_since_) queue_trouble_since_ = now;
    o.queue_trouble_for = std::chrono::duration_cast<Millis>(now - *queue_trouble_since_);
  } else {
    queue_trouble_since_.reset();
  }
  if (switchover_failed_at_)
    o.since_switchover_failed = std::chrono::duration_cast<Millis>(now - *switchover_failed_at_);
  // The peer's word on its own disk counts while fresh (it says it once a
  // second).
  if (peer_status_ && now - peer_status_at_ < std::chrono::seconds(5)) {
    using NS = repl::msg::NodeStatus;
    o.peer_queue_ok = (peer_status_->flags & NS::kQueueWritable) &&
                      (peer_status_->queue_free_mb < 0 ||
                       static_cast<double>(peer_status_->queue_free_mb) >= ha_.min_free_mb);
  }
  if (link_) {
    auto st = link_->state();
    o.link_live = st == repl::PrimaryLink::State::kLive;
    // A standby that is exchanging its manifest or catching up is reachable
    // (its heartbeats keep the link open): a catch-up of 100 000 messages
    // takes ~17 s and is no "standby-lost".
    bool syncing = st == repl::PrimaryLink::State::kManifest ||
                   st == repl::PrimaryLink::State::kCatchup;
    if (auto d = link_->down_since(); d && !syncing)
      o.link_down_for = std::chrono::duration_cast<Millis>(now - *d);
    if (auto l = link_->live_since()) o.link_live_for = std::chrono::duration_cast<Millis>(now - *l);
    o.caught_up = o.link_live && link_->sent_seq() == link_->acked_seq() && !link_->pending_resend();
    o.peer_node = link_->peer_node();
  }
  o.self_node = cfg_.node_name;
  o.switching = switching_.has_value();
  o.primary_seen = primary_seen_;
  o.link_up = server_ && server_->connected();
  o.last_from_primary = server_ ? server_->last_rx() : std::nullopt;
  o.probe_failures = probe_failures_;
  o.probe_error = probe_error_;
  return o;
}

void Daemon::Evaluate(ha::Clock::time_point now) {
  auto d = ha::Decide(Observe(now), ha_, now);
  Apply(d, now);
}

void Daemon::Apply(const ha::Decision& d, ha::Clock::time_point now) {
  if (d.reason != last_decision_.reason || !d.actions.empty()) {
    std::string acts;
    for (auto a : d.actions) acts += fmt::format("{}{}", acts.empty() ? "" : ",", ha::ActionName(a));
    spdlog::info("decide: {}{}", d.reason, acts.empty() ? "" : " -> " + acts);
    last_decision_at_ = std::chrono::system_clock::now();
  }
  last_decision_ = d;
  // Conditions are told once while they last.
  if (d.event == "primary-lost" && !primary_lost_raised_) {
    primary_lost_raised_ = true;
    Raise("primary-lost", d.reason);
  } else if (d.event != "primary-lost" && state_.role == NodeRole::kStandby && server_ &&
             server_->connected()) {
    primary_lost_raised_ = false;
  }
  if (d.event == "queue-trouble" && !queue_trouble_raised_) {
    queue_trouble_raised_ = true;
    Raise("queue-trouble", d.reason);
  } else if (d.event != "queue-trouble") {
    queue_trouble_raised_ = false;
  }
  if (d.event == "standby-lost" && !standby_lost_raised_) {
    standby_lost_raised_ = true;
    Raise("standby-lost", d.reason);
  } else if (d.event != "standby-lost" && link_ &&
             link_->state() == repl::PrimaryLink::State::kLive) {
    standby_lost_raised_ = false;
  }
  for (auto a : d.actions) {
    switch (a) {
      case ha::Action::kStartPostfix: StartPostfix(); break;
      case ha::Action::kStopPostfix: StopPostfix(false); break;
      case ha::Action::kFence:
        ReleaseVip("fencing");
        StopPostfix(true);
        epoch_confirmed_ = false;
        unconfirmed_since_ = now;
        Raise("fencing", d.reason);
        // Meet the peer again: its Hello confirms our epoch or deposes us.
        if (link_) link_->Reconnect("re-confirming the epoch after fencing");
        break;
      case ha::Action::kPromote: TakeOver(d.reason); break;
      case ha::Action::kFailback: StartSwitchover(d.reason, "failback"); break;
      case ha::Action::kSwitchover: StartSwitchover(d.reason, "switchover"); break;
    }
  }
}

ctl::Json Daemon::RequestSwitchover(const std::string& reason, const std::string& kind) {
  if (!server_ || !server_->SendUp(repl::msg::SwitchoverRequest{reason}))
    return {{"ok", false},
            {"error", "this standby is not in sync with a primary: nothing to switch over from"}};
  spdlog::info("{}: asked primary {} to hand its role over", kind, server_->peer_node());
  return {{"ok", true}, {"requested", true}, {"primary", server_->peer_node()}};
}

ctl::Json Daemon::StartSwitchover(const std::string& reason, const std::string& kind) {
  if (state_.role != NodeRole::kPrimary || !epoch_confirmed_)
    return {{"ok", false}, {"error", "this node is not a serving primary"}};
  if (switching_) return {{"ok", false}, {"error", "a switchover is already under way"}};
  if (!link_ || link_->state() != repl::PrimaryLink::State::kLive)
    return {{"ok", false},
            {"error", "the standby is not in sync (link not live): a switchover now could lose "
                      "mail; wait for it, or stop this node and let it fail over"}};
  auto t0 = std::chrono::steady_clock::now();
  Switching sw;
  sw.reason = reason;
  sw.kind = kind;
  sw.t0 = t0;
  sw.deadline = t0 + kDeliveryLimit;
  spdlog::warn("{}: handing the role to {} ({}); deliveries stop first", kind, link_->peer_node(),
               reason);
  // Deliveries, then intake, stop gracefully. Postfix's own stop (SIGTERM to
  // every process) can cut a delivery after the remote server took the
  // message and before the recipient is marked done, and a session after
  // its message is queued and before the client has the 250: either way
  // that message would arrive twice.
  sw.master = postfix::RunningMaster(queue_dir_);
  for (const auto& p : postfix::ProcessGroup(sw.master))
    if (postfix::IsQueueManager(p) && kill(p.pid, SIGSTOP) == 0) sw.qmgr = p.pid;
  if (sw.master && !sw.qmgr)
    spdlog::warn("{}: no queue manager found under Postfix's master {}: deliveries in flight "
                 "are not waited for",
                 kind, sw.master);
  switching_ = std::move(sw);
  SwitchoverPoll();
  return {{"ok", true}, {"started", true}, {"standby", link_->peer_node()}};
}

void Daemon::SwitchoverPoll() {
  if (!switching_) return;
  using Phase = Switching::Phase;
  auto& sw = *switching_;
  auto now = std::chrono::steady_clock::now();
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  bool live = link_ && link_->state() == repl::PrimaryLink::State::kLive;
  if (sw.phase == Phase::kDeliveries) {
    if (!live) return SwitchoverFailed("the link to the standby was lost while deliveries stopped");
    // Deliveries in flight (postfix/processes.h). Looked up afresh each
    // time: an agent the master started for the queue manager's last
    // request is new. Quiet must last kDeliveryQuiet: that request may
    // still be in its socket.
    if (now - sw.scanned >= kDeliveryScan) {
      std::string err;
      sw.delivering = sw.master ? postfix::DeliveriesInFlight(sw.master, active_dir_, err) : 0;
      if (!err.empty() && !sw.diag_warned) {
        sw.diag_warned = true;
        spdlog::warn("{}: cannot tell finished deliveries from running ones ({}): waiting for "
                     "every agent to let go of its queue file",
                     sw.kind, err);
      }
      if (sw.delivering) sw.quiet_since.reset();
      else if (!sw.quiet_since) sw.quiet_since = now;
      sw.scanned = std::chrono::steady_clock::now();
    }
    bool quiet = sw.quiet_since && now - *sw.quiet_since >= kDeliveryQuiet;
    if (quiet || now > sw.deadline) {
      if (!quiet && sw.delivering) {
        sw.cut += sw.delivering;
        spdlog::warn("{}: {} deliveries still in flight after {:.0f} ms: they are cut; what the "
                     "remote side took already will be delivered again by the new primary",
                     sw.kind, sw.delivering, ms(kDeliveryLimit));
      }
      spdlog::info("{}: deliveries stopped in {:.0f} ms; intake stops", sw.kind, ms(now - sw.t0));
      if (gate_) gate_->Drain();
      sw.phase = Phase::kIntake;
      sw.intake_t0 = now;
      sw.deadline = now + kIntakeLimit;
    }
  } else if (sw.phase == Phase::kIntake) {
    if (!live) return SwitchoverFailed("the link to the standby was lost while intake stopped");
    // Postfix's smtpd passes the last reply on just after it leaves the gate.
    bool drained = !gate_ || gate_->drained();
    if (drained && !sw.intake_done) sw.intake_done = now;
    if ((drained && now - *sw.intake_done >= kIntakeGrace) || now > sw.deadline) {
      if (!drained) {
        ++sw.cut;
        spdlog::warn("{}: a message's reply was still not passed on after {:.0f} ms: stopping "
                     "Postfix anyway; its client may send it again",
                     sw.kind, ms(kIntakeLimit));
      }
      StopPostfix(false);
      sw.phase = Phase::kReplicate;
      sw.deadline = now + std::chrono::seconds(5);
    }
  } else if (sw.phase == Phase::kReplicate) {
    if (!live) return SwitchoverFailed("the link to the standby was lost while draining");
    while (!watcher_->Poll()) {
    }
    if (link_->sent_seq() == link_->acked_seq() && !link_->pending_resend() &&
        !link_->queued_bytes()) {
      // The standby holds every change: it takes over at the next epoch.
      link_->SendControl(repl::msg::Switchover{state_.epoch + 1, sw.reason});
      sw.phase = Phase::kTakeOver;
      sw.deadline = now + std::chrono::seconds(5);
      spdlog::info("{}: the standby holds every change ({} frames); it takes over at epoch {}",
                   sw.kind, link_->acked_seq(), state_.epoch + 1);
    } else if (now > sw.deadline) {
      return SwitchoverFailed(fmt::format("the standby did not acknowledge every change within 5 s "
                                          "({} of {} frames)",
                                          link_->acked_seq(), link_->sent_seq()));
    }
  } else if (!live) {
    // The standby took over (it ends our session): step down, as a follower.
    Switching done = std::move(sw);
    switching_.reset();
    double pause = std::chrono::duration<double>(now - done.intake_t0).count();
    double total = std::chrono::duration<double>(now - done.t0).count();
    last_switch_pause_s_ = pause;
    std::string peer = link_ ? link_->peer_node() : cfg_.peer;
    if (vip_held_) vip_linger_until_ = now + std::chrono::seconds(2);
    StepDown(state_.epoch + 1, fmt::format("{} to {}", done.kind, peer));
    if (gate_) gate_->Resume();
    Raise(done.kind,
          fmt::format("{}: the role moved to {} at epoch {}; intake here paused {:.3f} s (from "
                      "the first stopped delivery {:.3f} s){}",
                      done.reason, peer, state_.epoch, pause, total,
                      done.cut ? fmt::format("; {} deliveries or sessions were cut at a time limit "
                                             "and may arrive twice",
                                             done.cut)
                               : ""),
          peer);
    return;
  } else if (now > sw.deadline) {
    return SwitchoverFailed("the standby did not take over within 5 s");
  }
  switch_timer_.expires_after(std::chrono::milliseconds(2));
  switch_timer_.async_wait([this](asio::error_code ec) {
    if (!ec) SwitchoverPoll();
  });
}

void Daemon::SwitchoverFailed(const std::string& why) {
  Switching sw = std::move(*switching_);
  switching_.reset();
  switchover_failed_at_ = std::chrono::steady_clock::now();
  spdlog::error("{} failed: {}; serving again", sw.kind, why);
  bool stopped = sw.phase == Switching::Phase::kReplicate || sw.phase == Switching::Phase::kTakeOver;
  if (!stopped && sw.qmgr) kill(sw.qmgr, SIGCONT);
  if (gate_) gate_->Resume();
  if (state_.role == NodeRole::kPrimary && !PostfixUp()) StartPostfix();
  Raise(sw.kind, fmt::format("{} FAILED: {}; this node serves again", sw.reason, why));
}

void Daemon::OnFollowingLive() {
  if (state_.role != NodeRole::kStandby) return;
  // Mail this node made since it stepped down (its own notifications, in
  // maildrop) goes along, if its Postfix is not running.
  if (!PostfixUp()) postfix::SetAside(queue_dir_, HandoverDir());
  handover_pending_ = postfix::CountSetAside(HandoverDir());
  if (!handover_pending_) return;
  spdlog::info("handover: {} set-aside queue files to settle with the primary", handover_pending_);
  source_ = std::make_unique<HandoverSource>(HandoverDir());
  handover_inflight_.reset();
  round_ = {};
  HandoverNext();
}

void Daemon::HandoverNext() {
  if (!source_ || handover_inflight_ || !server_) return;
  std::vector<repl::Message> frames;
  std::string id;
  auto have = [this](const std::string& id) { return mirror_->files().count(id) > 0; };
  if (source_->Next(have, frames, id)) {
    for (const auto& f : frames)
      if (!server_->SendUp(f)) return;  // the session ended: next round
    handover_inflight_ = id;
    return;
  }
  round_.already += source_->dropped();
  handover_pending_ = postfix::CountSetAside(HandoverDir());
  std::string summary = fmt::format(
      "handover to the primary: {} messages only this node had were imported there, {} it "
      "already had or had finished were dropped here, {} refused ({} left)",
      round_.imported, round_.already, round_.refused, handover_pending_);
  spdlog::warn("{}", summary);
  if (round_.imported || round_.refused) Raise("handover", summary);
  source_.reset();
}

void Daemon::OnHandoverResult(const repl::msg::HandoverResult& r) {
  if (!source_ || !handover_inflight_ || *handover_inflight_ != r.id) {
    spdlog::warn("handover: unexpected result for {}", r.id);
    return;
  }
  handover_inflight_.reset();
  if (r.outcome == repl::msg::HandoverOutcome::kRefused) {
    spdlog::error("handover: the primary refused {}: {} (kept here)", r.id, r.text);
    source_->skipped.push_back(r.id);
    ++round_.refused;
  } else {
    source_->Drop(r.id);
    ++(r.outcome == repl::msg::HandoverOutcome::kImported ? round_.imported : round_.already);
  }
  HandoverNext();
}

void Daemon::StartProbe() {
  probe_running_ = true;
  ha::ProbeSmtp(io_, cfg_.probe, cfg_.node_name, cfg_.probe_timeout, [this](ha::ProbeResult r) {
    probe_running_ = false;
    ++probes_;
    last_probe_ms_ = r.elapsed.count() / 1000.0;
    if (state_.role != NodeRole::kStandby) return;
    if (r.ok) {
      if (probe_failures_ > 0)
        spdlog::info("probe: {} answers again after {} failures", cfg_.probe, probe_failures_);
      probe_failures_ = 0;
      probe_error_.clear();
      return;
    }
    ++probe_failures_;
    probe_error_ = r.error;
    if (probe_failures_ == 1 || probe_failures_ % 20 == 0)
      spdlog::warn("probe: {} failed ({} in a row): {}", cfg_.probe, probe_failures_, r.error);
    // Decide at once rather than at the next tick: it may be the last one.
    Evaluate(std::chrono::steady_clock::now());
  });
}


}  // namespace mailtwin
