#include "node/mirror_side.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>


namespace mailtwin {

MirrorSide::MirrorSide(asio::io_context& io, const Config& cfg, std::string mirror_dir,
                       repl::Identity ident, Hooks hooks)
    : io_(io),
      cfg_(cfg),
      mirror_dir_(std::move(mirror_dir)),
      ident_(std::move(ident)),
      hooks_(std::move(hooks)) {}

std::string MirrorSide::Start() {
  mirror_ = std::make_unique<repl::Mirror>(mirror_dir_);
  if (std::string err = mirror_->Open(); !err.empty()) return err;
  server_ = std::make_unique<repl::StandbyServer>(io_, cfg_, ident_, *mirror_);
  server_->SetHooks(hooks_.judge, hooks_.hello);
  server_->SetOnFileFrame(hooks_.on_file_frame);
  server_->SetOnNodeStatus([this](const repl::msg::NodeStatus& m) {
    hooks_.on_node_status(server_->peer_node(), m);
  });
  server_->SetOnSwitchover(hooks_.on_switchover);
  if (hooks_.on_fingerprint)
    server_->SetOnFingerprint([this](const repl::msg::Fingerprint& m) {
      hooks_.on_fingerprint(server_->peer_node(), m);
    });
  server_->SetLiveHooks(hooks_.on_in_sync,
                        [this](const repl::msg::HandoverResult& r) { OnHandoverResult(r); });
  return server_->Start();
}

void MirrorSide::StartHandover(const std::string& dir) {
  source_ = std::make_unique<HandoverSource>(dir);
  inflight_.reset();
  round_ = {};
  HandoverNext();
}

void MirrorSide::HandoverNext() {
  if (!source_ || inflight_) return;
  std::vector<repl::Message> frames;
  std::string id;
  auto have = [this](const std::string& id) { return mirror_->files().count(id) > 0; };
  if (source_->Next(have, frames, id)) {
    for (const auto& f : frames)
      if (!server_->SendUp(f)) return;  // the session ended: next round
    inflight_ = id;
    return;
  }
  round_.already += source_->dropped();
  source_.reset();
  std::string summary = fmt::format(
      "handover to the primary: {} messages only this node had were imported there, {} it "
      "already had or had finished were dropped here, {} refused",
      round_.imported, round_.already, round_.refused);
  hooks_.on_handover_done(summary, round_.imported || round_.refused);
}

void MirrorSide::OnHandoverResult(const repl::msg::HandoverResult& r) {
  if (!source_ || !inflight_ || *inflight_ != r.id) {
    spdlog::warn("handover: unexpected result for {}", r.id);
    return;
  }
  inflight_.reset();
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

}  // namespace mailtwin
