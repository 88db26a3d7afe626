#include "node/primary_probe.h"

#include <spdlog/spdlog.h>

#include "ha/smtp_probe.h"

namespace mailtwin {

void PrimaryProbe::Reset() {
  failures_ = 0;
  error_.clear();
}

void PrimaryProbe::Run(std::function<bool()> counts, std::function<void()> on_failure) {
  if (running_) return;
  running_ = true;
  ha::ProbeSmtp(io_, cfg_.probe, cfg_.node_name, cfg_.probe_timeout,
                [this, alive = std::weak_ptr<char>(alive_), counts = std::move(counts),
                 on_failure = std::move(on_failure)](ha::ProbeResult r) {
                  if (alive.expired()) return;
                  running_ = false;
                  ++probes_;
                  last_ms_ = r.elapsed.count() / 1000.0;
                  if (!counts()) return;
                  if (r.ok) {
                    if (failures_ > 0)
                      spdlog::info("probe: {} answers again after {} failures", cfg_.probe,
                                   failures_);
                    Reset();
                    return;
                  }
                  ++failures_;
                  error_ = r.error;
                  if (failures_ == 1 || failures_ % 20 == 0)
                    spdlog::warn("probe: {} failed ({} in a row): {}", cfg_.probe, failures_,
                                 r.error);
                  on_failure();
                });
}

}  // namespace mailtwin
