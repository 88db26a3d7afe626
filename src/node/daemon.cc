#include "node/daemon.h"

#include <sys/resource.h>

#include <random>
#include <sstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/process.h"
#include "postfix/gate_config.h"
#include "postfix/promote.h"

namespace mailtwin {
namespace {

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
      started_(std::chrono::steady_clock::now()) {}

Daemon::~Daemon() {
  if (inotify_) inotify_->release();  // the watcher owns the descriptor
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
  return {};
}

std::string Daemon::StartPrimary() {
  model_ = std::make_unique<repl::QueueModel>();
  link_.reset();
  watcher_ = std::make_unique<repl::QueueWatcher>(
      queue_dir_, *model_, [this](const std::string& id, repl::ApplyResult&& r) {
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

std::string Daemon::Withdraw(const std::string& id) {
  return "strict durability is not implemented in this version";
}

void Daemon::WatchInotify() {
  inotify_->async_wait(asio::posix::stream_descriptor::wait_read, [this](asio::error_code ec) {
    if (ec) return;
    if (cfg_.batch_delay.count() == 0) return PollInotify();
    // Let the events of the next few hundred microseconds gather: Postfix
    // makes several per message, and one wake-up for all is much cheaper.
    batch_timer_.expires_after(cfg_.batch_delay);
    batch_timer_.async_wait([this](asio::error_code ec) {
      if (!ec) PollInotify();
    });
  });
}

void Daemon::PollInotify() {
  if (!watcher_->Poll()) {
    // Not drained yet: yield to the network, then continue.
    asio::post(io_, [this] { PollInotify(); });
    return;
  }
  WatchInotify();
}

std::string Daemon::StartStandby() {
  mirror_ = std::make_unique<repl::Mirror>(mirror_dir_);
  if (std::string err = mirror_->Open(); !err.empty()) return err;
  server_ = std::make_unique<repl::StandbyServer>(io_, cfg_, ident_, *mirror_);
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
  if (err.empty()) err = state_.role == NodeRole::kPrimary ? StartPrimary() : StartStandby();
  if (!err.empty()) {
    spdlog::critical("{}", err);
    return 2;
  }
  signals_.async_wait([this](asio::error_code, int sig) {
    spdlog::info("signal {}: stopping", sig);
    if (gate_) gate_->Stop();
    if (link_) link_->Stop();
    if (server_) server_->Stop();
    io_.stop();
  });
  io_.run();
  spdlog::info("mailtwind stopped");
  return 0;
}

ctl::Json Daemon::Handle(const ctl::Json& req) {
  std::string cmd = req.value("cmd", "");
  if (cmd == "status") return Status();
  if (cmd == "promote") return Promote(req);
  if (cmd == "inspect") return Inspect(req.value("id", ""));
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
                 {"errors", gs.errors},
                 {"hold_samples", hold.count()},
                 {"hold_p50_ms", hold.Quantile(0.5)},
                 {"hold_p99_ms", hold.Quantile(0.99)}};
  }
  if (server_ && mirror_) {
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
                        {"commit_ms_avg", ms.commits ? ms.commit_ms_total / ms.commits : 0.0},
                        {"commit_ms_max", ms.commit_ms_max},
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
  if (state_.role == NodeRole::kPrimary)
    return {{"ok", false}, {"error", "this node is already the primary"}};
  if (!req.value("force", false))
    return {{"ok", false},
            {"error", "promotion without --force is not available yet: use promote --force, and "
                      "only once the primary is certainly stopped (otherwise both deliver)"}};
  // The epoch is stored before anything else moves (docs/operations.md).
  NodeState next{NodeRole::kPrimary, state_.epoch + 1};
  if (std::string err = SaveNodeState(cfg_.state_dir, next); !err.empty())
    return {{"ok", false}, {"error", err}};
  state_ = next;
  ident_.epoch = next.epoch;
  server_->Stop();
  auto rep = postfix::Promote(*mirror_, queue_dir_, cfg_.postfix_config_dir,
                              cfg_.flush_after_promote);
  ctl::Json out{{"ok", rep.error.empty()}, {"epoch", state_.epoch}, {"files", rep.files},
                {"logs", rep.logs},       {"conflicts", rep.conflicts}, {"steps", rep.steps}};
  if (!rep.error.empty()) {
    out["error"] = rep.error;
    spdlog::error("promote: {}", rep.error);
    return out;
  }
  // Serve as primary from now on: watch the live queue and replicate to the peer.
  server_.reset();
  if (std::string err = StartPrimary(); !err.empty()) {
    out["ok"] = false;
    out["error"] = "promoted, but replication could not start: " + err;
  }
  spdlog::info("promote: this node is the primary now (epoch {})", state_.epoch);
  return out;
}

}  // namespace mailtwin
