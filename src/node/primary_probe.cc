// primary_probe.cc - overlapping SMTP probes of the primary (primary_probe.h).
#include "node/primary_probe.h"

#include <spdlog/spdlog.h>

#include "ha/smtp_probe.h"

namespace mailtwin {

void PrimaryProbe::Reset() { streak_.Reset(); }

void PrimaryProbe::Run(std::function<bool()> counts, std::function<void()> on_failure) {
  if (streak_.in_flight() >= kMaxInFlight) return;
  auto id = streak_.Begin(std::chrono::steady_clock::now());
  ha::ProbeSmtp(io_, cfg_.probe, cfg_.node_name, cfg_.probe_timeout,
                [this, id, alive = std::weak_ptr<char>(alive_), counts = std::move(counts),
                 on_failure = std::move(on_failure)](ha::ProbeResult r) {
                  if (alive.expired()) return;
                  ++probes_;
                  last_ms_ = r.elapsed.count() / 1000.0;
                  int before = streak_.failures();
                  bool counted = streak_.End(id, r.ok, r.error, std::chrono::steady_clock::now());
                  if (!counts() || !counted) return;
                  if (r.ok) {
                    if (before > 0)
                      spdlog::info("probe: {} answers again after {} failures", cfg_.probe, before);
                    return;
                  }
                  int n = streak_.failures();
                  if (n == 1 || n % 20 == 0)
                    spdlog::warn("probe: {} failed ({} in a row): {}", cfg_.probe, n, r.error);
                  on_failure();
                });
}

}  // namespace mailtwin
