// mailtwind - the mailtwin daemon, one per node. Wiring only: see node/daemon.h.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "common/config.h"
#include "common/instance_lock.h"
#include "node/daemon.h"
#include "postfix/config_check.h"

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

  // Exactly what `mailtwin check-config` checks, in the same words: a file
  // it rejects never runs (a mirror on another filesystem would strand the
  // mirrored mail at promotion).
  auto check = mailtwin::postfix::CheckConfigFile(config);
  for (const auto& w : check.problems.warnings) spdlog::warn("{}: {}", config, w);
  for (const auto& e : check.problems.errors) spdlog::critical("{}: {}", config, e);
  if (!check.ok()) {
    spdlog::critical("{}: {} error(s); not starting (`mailtwin check-config {}` shows the same)",
                     config, check.problems.errors.size(), config);
    return kExitConfig;
  }
  // One daemon per node, before anything is touched (control socket, mirror,
  // Postfix): a second one must leave the running one alone.
  mailtwin::InstanceLock lock;
  if (std::string err = lock.Take(check.config->state_dir); !err.empty()) {
    spdlog::critical("not starting: {}", err);
    return 2;
  }
  mailtwin::Daemon d(std::move(*check.config));
  return d.Run();
}
