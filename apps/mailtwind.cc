// mailtwind - the mailtwin daemon, one per node. Wiring only: see node/daemon.h.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "common/config.h"
#include "node/daemon.h"

// EX_CONFIG (sysexits.h): the configuration does not load. mailtwind.service
// does not restart it then (RestartPreventExitStatus); other failures at
// start (exit 2: an address not up yet, Postfix not ready) are retried.
constexpr int kExitConfig = 78;

int main(int argc, char** argv) {
  CLI::App app{"mailtwind: keeps a live twin of a Postfix queue on a standby"};
  std::string config = "/etc/mailtwin/mailtwin.toml";
  std::string level = "info";
  app.add_option("-c,--config", config, "configuration file")->capture_default_str();
  app.add_option("--log-level", level, "trace, debug, info, warn, error")->capture_default_str();
  app.set_version_flag("--version", "mailtwind " MAILTWIN_VERSION);
  CLI11_PARSE(app, argc, argv);

  auto logger = spdlog::stderr_color_mt("mailtwind");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(level));

  mailtwin::ConfigErrors errs;
  auto cfg = mailtwin::LoadConfig(config, errs);
  if (!cfg) {
    for (const auto& e : errs.errors) spdlog::critical("{}: {}", config, e);
    spdlog::critical("not starting; `mailtwin check-config {}` explains the configuration", config);
    return kExitConfig;
  }
  for (const auto& w : errs.warnings) spdlog::warn("{}: {}", config, w);
  mailtwin::Daemon d(std::move(*cfg));
  return d.Run();
}
