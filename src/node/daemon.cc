#include "node/daemon.h"

#include <signal.h>
#include <unistd.h>

#include <random>
#include <sstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/epoch.h"
#include "common/process.h"
#include "common/systemd.h"
#include "metrics/exposition.h"
#include "node/transitions.h"
#include "postfix/promote.h"
#include "repl/queue_file.h"

namespace mailtwin {

Daemon::Daemon(Config cfg)
    : cfg_(std::move(cfg)),
      signals_(io_, SIGINT, SIGTERM),
      tick_timer_(io_),
      switch_timer_(io_),
      silence_timer_(io_),
      roles_(cfg_.state_dir),
      started_(std::chrono::steady_clock::now()),
      probe_(io_, cfg_) {}

Daemon::~Daemon() { AbandonSwitchover("mailtwind is stopping"); }

// ---- start ---------------------------------------------------------------

std::string Daemon::ReadPostfixLayout() {
  auto pc = Postconf(cfg_.postfix_config_dir, {"queue_directory", "enable_long_queue_ids",
                                               "hash_queue_depth", "hash_queue_names"});
  if (!pc.error.empty()) return pc.error;
  hash_.depth = std::atoi(pc.values["hash_queue_depth"].c_str());
  hash_.names.clear();
  std::string names = pc.values["hash_queue_names"];
  for (char& c : names)
    if (c == ',') c = ' ';
  std::istringstream in(names);
  for (std::string n; in >> n;) hash_.names.push_back(n);
  if (pc.values["enable_long_queue_ids"] != "yes")
    return fmt::format(
        "Postfix in {} uses short queue IDs (enable_long_queue_ids = {}); mailtwin needs long "
        "IDs, which stay the same when a file moves to another host. Run: postconf -c {} -e "
        "enable_long_queue_ids=yes && postfix -c {} reload  (mailtwin check-config explains more)",
        cfg_.postfix_config_dir, pc.values["enable_long_queue_ids"], cfg_.postfix_config_dir,
        cfg_.postfix_config_dir);
  queue_dir_ = cfg_.queue_directory.empty() ? pc.values["queue_directory"] : cfg_.queue_directory;
  mirror_dir_ = cfg_.mirror_dir.empty() ? queue_dir_ + "-mailtwin-mirror" : cfg_.mirror_dir;
  return {};
}

std::string Daemon::Init() {
  if (std::string err = ReadPostfixLayout(); !err.empty()) return err;
  postfix_ = std::make_unique<LocalPostfix>(cfg_.postfix_config_dir, queue_dir_);
  fs_probe_ = std::make_unique<QueueFsProbe>(queue_dir_, mirror_dir_);
  if (!cfg_.vip_address.empty()) {
    net::VipAddress va;
    if (std::string err = net::ParseVip(cfg_.vip_address, va); !err.empty())
      return "[vip] address " + err;
    vip_ = std::make_unique<net::Vip>(va, cfg_.vip_interface);
    vip_held_ = vip_->Present();
    spdlog::info("vip: {} on {} follows the primary role ({} here now)", va.text,
                 cfg_.vip_interface, vip_held_ ? "present" : "absent");
  }
  postfix_->ContinueStoppedQueueManagers();
  // From here on, a Postfix that is not running is started by mailtwind
  // only (KeepStopped, renewed every tick).
  if (cfg_.manage_postfix) postfix_->KeepStopped();
  // Postfix's integrity checks run here, once: mailtwind later starts
  // Postfix without them, to keep promotions and switchovers short.
  if (auto chk = RunCommand({"postfix", "-c", cfg_.postfix_config_dir, "check"}); !chk.ok())
    spdlog::warn("postfix -c {} check: {}", cfg_.postfix_config_dir, chk.output);

  if (std::string err = roles_.Load(cfg_.role); !err.empty()) return err;
  if (roles_.role() != cfg_.role)
    spdlog::info("node state says {} (epoch {}); the config's role {} applies only at first start",
                 RoleName(roles_.role()), roles_.epoch(), RoleName(cfg_.role));
  std::random_device rd;
  ident_ = repl::Identity{cfg_.cluster, cfg_.node_name, roles_.epoch(),
                          (std::uint64_t{rd()} << 32) | rd()};
  if (std::string err = events_.Open(cfg_.state_dir); !err.empty()) return err;
  if (std::string err = ledger_.Open(cfg_.state_dir); !err.empty()) return err;
  recent_fps_ = std::make_unique<gate::RecentFingerprints>(cfg_.dedup_window);
  if (std::string w = dedup_.Open(cfg_.state_dir + "/dedup.table", gate::WallSeconds()); !w.empty())
    spdlog::warn("{}", w);
  if (!dedup_.empty())
    spdlog::info("dedup: {} messages inherited at a failover: their resends are answered 250 "
                 "and not queued again",
                 dedup_.size());
  notifier_ = std::make_unique<ha::Notifier>(cfg_, events_);
  ha_ = ha::HaConfigOf(cfg_);
  if (cfg_.witness()) {
    wcfg_ = ha::WitnessConfigOf(cfg_);
    witness_ = std::make_unique<etcd::Client>(io_, etcd::OptionsOf(cfg_));
    spdlog::info("witness: etcd at {} ({} endpoints), leader key {}, ttl {} s: only its holder "
                 "serves",
                 cfg_.witness_endpoints.front(), cfg_.witness_endpoints.size(),
                 cfg_.WitnessKey("leader"), cfg_.witness_ttl.count() / 1000);
  }
  handover_pending_ = postfix::CountSetAside(HandoverDir());
  return {};
}

repl::Identity Daemon::Ident() const {
  repl::Identity id = ident_;
  id.epoch = roles_.epoch();
  return id;
}

repl::msg::Hello Daemon::SelfHello() const {
  return Ident().HelloAs(roles_.primary() ? repl::Role::kPrimary : repl::Role::kStandby);
}

std::string Daemon::StartMirrorSide() {
  MirrorSide::Hooks h;
  h.judge = [this](const repl::msg::Hello& p) { return JudgeClaimedPrimary(p); };
  h.hello = [this] { return SelfHello(); };
  h.on_file_frame = [this](const repl::msg::File& f) {
    if (f.offset == 0) ledger_.Record(f.id);
    if (cfg_.dedup_window.count() <= 0) return;
    // A fingerprint counts once its whole file is here; the gate's token in
    // the file's head binds one sent before the commit (docs/gate.md).
    auto now = std::chrono::steady_clock::now();
    if (f.offset == 0) recent_fps_->AddFile(f.id, repl::LogIdentOf(f.data), now);
    if (f.offset + f.data.size() == f.total_size) recent_fps_->FileWhole(f.id, now);
  };
  h.on_fingerprint = [this](const std::string& node, const repl::msg::Fingerprint& m) {
    if (m.keep_s == 0)
      return recent_fps_->Add(m.id, m.digest, node.empty() ? std::string("?") : node,
                              std::chrono::steady_clock::now());
    // An entry of the primary's own table: this node keeps it too.
    std::string origin = m.origin;
    for (char& c : origin)
      if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '_';
    if (origin.empty()) origin = "?";
    auto now_s = gate::WallSeconds();
    dedup_.Insert(gate::DedupEntry{m.digest, m.id, origin, now_s, now_s + m.keep_s});
  };
  h.on_node_status = [this](const std::string& n, const repl::msg::NodeStatus& m) {
    OnPeerStatus(n, m);
  };
  h.on_switchover = [this](const repl::msg::Switchover& m) {
    if (roles_.role() != NodeRole::kStandby || m.epoch <= roles_.epoch() ||
        !EpochBelievable(roles_.epoch(), m.epoch)) {
      spdlog::warn("switchover to epoch {} ignored: this node is {} at epoch {}", m.epoch,
                   RoleName(roles_.role()), roles_.epoch());
      return;
    }
    asio::post(io_, [this, m] {
      if (roles_.role() == NodeRole::kStandby)
        TakeOver(fmt::format("switchover from {}: {}", mirror_side_->server().peer_node(),
                             m.reason),
                 m.epoch);
    });
  };
  h.on_in_sync = [this] { OnInSync(); };
  h.on_handover_done = [this](const std::string& summary, bool notable) {
    handover_pending_ = postfix::CountSetAside(HandoverDir());
    std::string s = fmt::format("{} ({} left)", summary, handover_pending_);
    spdlog::warn("{}", s);
    if (notable) Raise("handover", s);
  };
  mirror_side_ = std::make_unique<MirrorSide>(io_, cfg_, mirror_dir_, Ident(), std::move(h));
  return mirror_side_->Start();
}

std::string Daemon::StartPrimarySide() {
  PrimarySide::Hooks h;
  h.judge = [this](const repl::msg::Hello& p) { return JudgeReplicaPeer(p); };
  h.on_node_status = [this](const std::string& n, const repl::msg::NodeStatus& m) {
    OnPeerStatus(n, m);
  };
  h.on_switchover_request = [this](const repl::msg::SwitchoverRequest& m) {
    bool failback = m.reason.find("failback") != std::string::npos;
    asio::post(io_, [this, m, failback] {
      std::string peer = primary_ ? primary_->link().peer_node() : "?";
      auto r = StartSwitchover(fmt::format("{} (asked by {})", m.reason, peer),
                               failback ? "failback" : "switchover");
      if (!r.value("ok", false))
        spdlog::error("switchover asked by the standby: {}", r.value("error", ""));
    });
  };
  primary_ = std::make_unique<PrimarySide>(io_, cfg_, queue_dir_, hash_, Ident(), ledger_,
                                           std::move(h), cfg_.dedup_window.count() ? &dedup_ : nullptr);
  primary_started_ = std::chrono::steady_clock::now();
  std::string err = primary_->Start();
  if (!err.empty()) primary_.reset();  // half started: nothing of it may run
  return err;
}

int Daemon::Run() {
  if (std::string err = Init(); !err.empty()) {
    spdlog::critical("{}", err);
    return 2;
  }
  spdlog::info("mailtwind {} starting: node {} of cluster {}, role {}, epoch {}", MAILTWIN_VERSION,
               cfg_.node_name, cfg_.cluster, RoleName(roles_.role()), roles_.epoch());
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
  if (err.empty()) err = StartMirrorSide();
  if (err.empty() && !cfg_.relay_listen.empty()) {
    relay_ = std::make_unique<relay::Relay>(io_, cfg_);
    err = relay_->Start();
    SyncRelay();
  }
  if (err.empty() && roles_.primary()) {
    // A power cut or crash between storing the primary role and moving the
    // mirror into the queue left the mail there: the take-over goes on.
    FinishTakeOver();
    // Serve only once the peer confirms our epoch (ha::Decide).
    unconfirmed_since_ = std::chrono::steady_clock::now();
    err = StartPrimarySide();
  }
  if (!err.empty()) {
    spdlog::critical("{}", err);
    return 2;
  }
  if (handover_pending_)
    spdlog::warn("{} queue files set aside at a step-down wait in {} (docs/failover.md)",
                 handover_pending_, HandoverDir());
  notifier_->Start();
  NotifyIfReady();
  if (!ready_sent_)
    systemd::NotifyStatus(fmt::format("primary at epoch {}: waiting for the peer to confirm the "
                                      "epoch (not serving)",
                                      roles_.epoch()));
  signals_.async_wait([this](asio::error_code, int sig) {
    spdlog::info("signal {}: stopping", sig);
    systemd::NotifyStopping();
    AbandonSwitchover("mailtwind is stopping");
    primary_.reset();
    relay_.reset();
    mirror_side_->Stop();
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

// ---- role transitions (node/transitions.h) --------------------------------

ctl::Json Daemon::TakeOver(const std::string& reason,
                           std::optional<std::uint64_t> switchover_epoch, std::uint64_t at_least) {
  using transition::Step;
  Busy busy(*this);
  auto t0 = std::chrono::steady_clock::now();
  postfix::PromoteReport rep;
  std::string error, warning;
  // A step's outcome: true, or false with why (error: fatal steps;
  // warning: the rest).
  auto outcome = [](std::string& into, std::string why) {
    into = std::move(why);
    return into.empty();
  };
  auto run = [&](Step s) -> bool {
    switch (s) {
      case Step::kPersist: {
        auto next = roles_.NextEpoch(switchover_epoch.value_or(at_least));
        if (!next) return outcome(error, "the epoch cannot grow any further");
        if (std::string err = roles_.Become(NodeRole::kPrimary, *next); !err.empty())
          return outcome(error, err);
        spdlog::warn("taking over at epoch {}: {}", roles_.epoch(), reason);
        epoch_confirmed_ = true;
        unconfirmed_since_.reset();
        told_[static_cast<int>(ha::Condition::kPrimaryLost)] = false;
        return true;
      }
      case Step::kDropFollower:
        mirror_side_->server().Drop("this node takes over as primary");
        return true;
      case Step::kMakeMirrorLive:
        rep = postfix::MakeLive(mirror_side_->mirror(), queue_dir_, cfg_.postfix_config_dir);
        promotion_failed_ = rep.error;
        return outcome(error, rep.error);
      case Step::kRestoreSetAside: {
        if (!handover_pending_) return true;
        // Taking over before the last handover was settled: what only this
        // node had goes back into its queue (a message the peer had already
        // delivered would be delivered again: rare, and never a loss).
        auto back = postfix::RestoreSetAside(HandoverDir(), queue_dir_, cfg_.postfix_config_dir);
        handover_pending_ = postfix::CountSetAside(HandoverDir());
        rep.steps.push_back(fmt::format(
            "put back {} set-aside messages the new queue lacked, dropped {} it holds{}",
            back.restored, back.dropped, back.error.empty() ? "" : "; " + back.error));
        spdlog::warn("promote: {}", rep.steps.back());
        return back.error.empty();
      }
      case Step::kStartPrimarySide:
        // Before the gate opens: a sender whose 250 died with the old
        // primary may already be waiting at our relay with its resend.
        InheritFingerprints();
        if (std::string err = StartPrimarySide(); !err.empty())
          return outcome(warning, "promoted, but replication could not start: " + err);
        if (!switchover_epoch) primary_->ExpectNoStandby();
        return true;
      case Step::kStartPostfix:
        postfix_->AllowStart();
        postfix::Serve(cfg_.postfix_config_dir, cfg_.flush_after_promote, rep);
        return outcome(error, rep.error);
      case Step::kTakeAddress:
        // Clients held since the old primary went quiet go to our Postfix now.
        SyncRelay();
        SyncVip(std::chrono::steady_clock::now());
        return true;
      case Step::kTell: {
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                              t0).count();
        spdlog::warn("promote: this node is the primary now (epoch {}, {} files, {:.0f} ms)",
                     roles_.epoch(), rep.files, ms);
        Raise("promotion",
              fmt::format("{}; {} queue files made live in {:.0f} ms", reason, rep.files, ms));
        return true;
      }
      default: return true;
    }
  };
  auto failed = transition::Execute(transition::kTakeOver, transition::kTakeOverFatal, run);
  if (failed == Step::kPersist) return {{"ok", false}, {"error", error}};
  ctl::Json out{{"ok", !failed && warning.empty()}, {"epoch", roles_.epoch()},
                {"files", rep.files},               {"logs", rep.logs},
                {"conflicts", rep.conflicts},       {"steps", rep.steps}};
  if (failed) {
    out["error"] = error;
    spdlog::error("promote: {}", error);
    Raise("promotion", fmt::format("{}; promotion FAILED: {}", reason, error));
    return out;
  }
  if (!warning.empty()) out["error"] = warning;
  out["promote_ms"] =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

void Daemon::StepDown(std::uint64_t epoch, const std::string& reason) {
  using transition::Step;
  Busy busy(*this);
  if (!roles_.primary()) return;
  auto t0 = std::chrono::steady_clock::now();
  postfix::SetAsideReport moved;
  transition::Execute(transition::kStepDown, transition::kStepDownFatal, [&](Step s) {
    switch (s) {
      case Step::kPersist: {
        NodeState next{NodeRole::kStandby, std::max(epoch, roles_.epoch()), roles_.state().paused};
        if (std::string err = roles_.Commit(next); !err.empty()) {
          spdlog::error("step-down: {} (stepping down anyway)", err);
          roles_.AdoptUnsaved(next);
        }
        epoch_confirmed_ = false;
        unconfirmed_since_.reset();
        spdlog::warn("stepping down to standby at epoch {}: {}", roles_.epoch(), reason);
        ReleaseWitness();
        probe_.Reset();  // a new primary to watch
        return true;
      }
      case Step::kReleaseAddress:
        SyncRelay();  // new clients go to the new primary
        if (std::chrono::steady_clock::now() >= vip_linger_until_) ReleaseVip("stepping down");
        return true;
      case Step::kStopPrimarySide: primary_.reset(); return true;
      case Step::kStopPostfix:
        StopPostfix(true);
        promotion_failed_.clear();  // a standby's Postfix is stopped anyway
        return true;
      case Step::kSetAsideQueue:
        // What this queue holds goes aside, never delivered from here
        // again: the new primary has the replicated part, and the rest
        // waits for handover.
        moved = postfix::SetAside(queue_dir_, HandoverDir());
        handover_pending_ = postfix::CountSetAside(HandoverDir());
        if (!moved.error.empty()) spdlog::error("step-down: {}", moved.error);
        return moved.error.empty();
      case Step::kTell: {
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                              t0).count();
        Raise("fencing", fmt::format("stepped down to standby in {:.0f} ms: {}; {} queue files "
                                     "set aside for handover",
                                     ms, reason, moved.files));
        return true;
      }
      default: return true;
    }
  });
}

void Daemon::FinishTakeOver() {
  Busy busy(*this);
  auto rep = postfix::FinishPromotion(mirror_side_->mirror(), queue_dir_, cfg_.postfix_config_dir);
  promotion_failed_ = rep.error;
  if (!rep.error.empty()) {
    spdlog::error("promote: {}", rep.error);
    Raise("promotion", "finishing an interrupted take-over FAILED: " + rep.error);
  } else if (rep.files || rep.logs) {
    Raise("promotion", fmt::format("an interrupted take-over was finished: {} queue files and {} "
                                   "logs made live",
                                   rep.files, rep.logs));
  }
}

void Daemon::InheritFingerprints() {
  if (cfg_.dedup_window.count() <= 0) return;
  auto now_s = gate::WallSeconds();
  auto retention_s =
      std::chrono::duration_cast<std::chrono::seconds>(cfg_.dedup_retention).count();
  // Tokens without their file: the message never reached this node (its
  // resend must be queued, so they are not entered).
  auto orphans = recent_fps_->UnboundTokens();
  auto entries = recent_fps_->Take(std::chrono::steady_clock::now(), now_s, retention_s);
  if (!orphans.empty()) {
    dedup_.AddOrphans(orphans, now_s + retention_s);
    spdlog::info("dedup: {} messages the old primary's gate saw end never reached this node: a "
                 "resend of one is queued here, and the old primary's own copy of it, if it "
                 "offers one when it rejoins, is then dropped",
                 orphans.size());
  }
  // strict: a message still on hold here never had its 250 (the gate sends
  // it only once the standby has the release from hold). Its sender's
  // resend must be queued: entered, it would be answered 250 and dropped,
  // and the only copy would stay on hold, never delivered.
  if (cfg_.durability == Durability::kStrict) {
    std::size_t held = std::erase_if(entries, [this](const gate::DedupEntry& e) {
      std::vector<std::string> paths;
      hash_.Paths("hold", e.id, paths);
      for (const auto& p : paths)
        if (::access((queue_dir_ + "/" + p).c_str(), F_OK) == 0) return true;
      return false;
    });
    if (held)
      spdlog::warn("dedup: {} messages the old primary accepted are on hold here (strict: their "
                   "clients never got 250): not entered, so their resends are queued; delete "
                   "the held copies (postsuper -d ID hold)",
                   held);
  }
  if (entries.empty()) return;
  std::string err = dedup_.Add(entries);
  spdlog::warn("dedup: {} messages the old primary accepted in the last {} ms may have lost their "
               "250 with it: a resend of any of them is answered 250 and not queued again for "
               "{} s ({} entries){}",
               entries.size(), cfg_.dedup_window.count(), retention_s, dedup_.size(),
               err.empty() ? "" : "; but the table could not be saved: " + err);
}

ctl::Json Daemon::DedupJson() const {
  return {{"window_ms", cfg_.dedup_window.count()},
          {"retention_s",
           std::chrono::duration_cast<std::chrono::seconds>(cfg_.dedup_retention).count()},
          {"entries", dedup_.size()},
          {"duplicates", dedup_.duplicates()},
          {"recent_fingerprints", recent_fps_ ? recent_fps_->size() : 0},
          {"tokens_bound", recent_fps_ ? recent_fps_->bound() : 0},
          {"tokens_waiting", recent_fps_ ? recent_fps_->unbound_tokens() : 0},
          {"orphans", dedup_.orphans()}};
}

void Daemon::OnInSync() {
  if (roles_.role() != NodeRole::kStandby) return;
  // Say at once that this node takes fingerprints (NodeStatus), rather than
  // at the next status a second later.
  mirror_side_->server().SendUp(SelfStatus());
  // Mail this node made since it stepped down (its own notifications, in
  // maildrop) goes along, if its Postfix is not running.
  if (!postfix_->Running()) postfix::SetAside(queue_dir_, HandoverDir());
  handover_pending_ = postfix::CountSetAside(HandoverDir());
  if (!handover_pending_) return;
  spdlog::info("handover: {} set-aside queue files to settle with the primary", handover_pending_);
  mirror_side_->StartHandover(HandoverDir());
}

// ---- peers ------------------------------------------------------------------

std::optional<repl::msg::Error> Daemon::JudgeClaimedPrimary(const repl::msg::Hello& peer) {
  auto j = ha::JudgePeer({roles_.role(), roles_.epoch(), cfg_.node_name},
                         {NodeRole::kPrimary, peer.epoch, peer.node});
  switch (j.verdict) {
    case ha::Verdict::kFollow:
      if (peer.epoch > roles_.epoch()) {
        if (std::string err = roles_.Become(NodeRole::kStandby, peer.epoch); !err.empty())
          return repl::msg::Error{repl::msg::ErrorCode::kApply, "cannot store the epoch: " + err};
        spdlog::info("{}", j.reason);
      }
      primary_seen_ = true;
      probe_.Reset();  // failures count against this primary, from its arrival on
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
  // A corrupt or hostile peer: said loudly, once per claimed epoch.
  if (!EpochBelievable(roles_.epoch(), peer.epoch) && peer.epoch != refused_epoch_) {
    refused_epoch_ = peer.epoch;
    Raise("epoch-refused", j.reason, peer.node);
  }
  if (roles_.primary() && peer.epoch == roles_.epoch()) Raise("split-brain", j.reason, peer.node);
  // The peer is back: meet it from our side now rather than after the
  // link's back-off, so that it learns our epoch and rejoins at once.
  if (primary_) asio::post(io_, [this] {
      if (primary_) primary_->link().DialNow();
    });
  return repl::msg::Error{repl::msg::ErrorCode::kStaleEpoch, j.reason};
}

std::optional<repl::msg::Error> Daemon::JudgeReplicaPeer(const repl::msg::Hello& peer) {
  NodeRole peer_role = peer.role == repl::Role::kPrimary ? NodeRole::kPrimary : NodeRole::kStandby;
  auto j = ha::JudgePeer({roles_.role(), roles_.epoch(), cfg_.node_name},
                         {peer_role, peer.epoch, peer.node});
  if (j.verdict == ha::Verdict::kAccept) {
    if (!epoch_confirmed_) {
      epoch_confirmed_ = true;
      unconfirmed_since_.reset();
      spdlog::info("epoch {} confirmed: {}", roles_.epoch(), j.reason);
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
      if (roles_.primary()) StepDown(j.epoch, j.reason);
    });
    if (peer_role == NodeRole::kPrimary && peer.epoch == roles_.epoch())
      Raise("split-brain", j.reason, peer.node);
  } else {
    spdlog::warn("replication: {}", j.reason);
  }
  return repl::msg::Error{repl::msg::ErrorCode::kStaleEpoch, j.reason};
}

void Daemon::OnPeerStatus(const std::string& node, const repl::msg::NodeStatus& m) {
  peer_status_ = m;
  peer_status_node_ = node;
  peer_status_at_ = std::chrono::steady_clock::now();
}

repl::msg::NodeStatus Daemon::SelfStatus() const {
  using NS = repl::msg::NodeStatus;
  NS m;
  m.role = roles_.primary() ? repl::Role::kPrimary : repl::Role::kStandby;
  m.epoch = roles_.epoch();
  m.flags = (roles_.state().paused ? NS::kPaused : 0) |
            (postfix_->Running() ? NS::kPostfixRunning : 0) |
            (fs_probe_->writable() ? NS::kQueueWritable : 0) |
            (roles_.primary() && epoch_confirmed_ ? NS::kEpochConfirmed : 0) |
            (vip_held_ ? NS::kVipHeld : 0) |
            (cfg_.dedup_window.count() > 0 ? NS::kFingerprints | NS::kGateTokens : 0);
  auto add = [&m](Queue q) {
    auto i = static_cast<std::size_t>(q) - 1;
    if (i < m.queues.size()) ++m.queues[i];
  };
  // A primary counts its live queue, a standby its mirror (what it would
  // deliver if it took over).
  if (roles_.primary() && primary_)
    for (const auto& [id, st] : primary_->model().entries()) add(st.file.queue);
  else
    for (const auto& [id, f] : mirror_side_->mirror().files()) add(f.queue);
  double free_mb = fs_probe_->free_mb();
  m.queue_free_mb = free_mb >= 1e11 ? -1 : static_cast<std::int64_t>(free_mb);
  // Printable ASCII only: a standby's reason may quote what a broken SMTP
  // server answered its probe, and the peer refuses control characters.
  m.decision = last_decision_.reason.substr(0, repl::kMaxName);
  for (char& c : m.decision)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  return m;
}

void Daemon::SendStatus(ha::Clock::time_point now) {
  if (now - status_sent_at_ < std::chrono::seconds(1)) return;
  bool sent = roles_.primary() ? primary_ && primary_->link().SendControl(SelfStatus())
                               : mirror_side_->server().SendUp(SelfStatus());
  if (sent) status_sent_at_ = now;
}

void Daemon::NotifyIfReady() {
  if (ready_sent_) return;
  std::string status;
  if (!roles_.primary())
    status = fmt::format("standby at epoch {}, listening on {}", roles_.epoch(), cfg_.listen);
  else if (epoch_confirmed_ && (!cfg_.manage_postfix || postfix_->Running()))
    status = fmt::format("primary at epoch {}, serving", roles_.epoch());
  else
    return;
  ready_sent_ = true;
  if (auto r = systemd::NotifyReady(status); !r.ok())
    spdlog::warn("systemd: cannot say the node is ready: {}", r.error);
}

// ---- Postfix -----------------------------------------------------------------

void Daemon::SyncRelay() {
  if (!relay_) return;
  if (!roles_.primary()) return relay_->SetRoute(relay::Route::kPeer);
  relay_->SetRoute(postfix_->Running() ? relay::Route::kLocal : relay::Route::kHold);
}

bool Daemon::StartPostfix() {
  Busy busy(*this);
  std::string out;
  if (postfix_->Start(out)) {
    postfix_start_failures_ = 0;
    spdlog::info("started Postfix ({})", cfg_.postfix_config_dir);
    return true;
  }
  ++postfix_start_failures_;
  spdlog::error("postfix -c {} start failed: {}", cfg_.postfix_config_dir, out);
  return false;
}

void Daemon::StopPostfix(bool fence) {
  Busy busy(*this);
  auto r = postfix_->Stop(switching_ ? switching_->qmgr : 0);
  // At once: nothing may start it again between here and the next tick.
  if (cfg_.manage_postfix && !postfix_->Running()) postfix_->KeepStopped();
  if (!r.was_running) return;
  spdlog::warn("{} Postfix ({}) in {:.0f} ms{}", fence ? "fenced" : "stopped",
               cfg_.postfix_config_dir, r.ms,
               r.killed ? " (its master ignored SIGTERM for 2 s: killed)" : "");
}

Daemon::Busy::~Busy() {
  if (--d.busy_depth_ == 0)
    d.busy_ += std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - t0);
}

}  // namespace mailtwin
