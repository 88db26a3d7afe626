// config_check.h - everything `mailtwin check-config` checks, in one routine
// that mailtwind runs at start too: the daemon refuses exactly the files
// check-config rejects, with the same words.
//
// In order: the file's shape (LoadConfig), the machine (CheckEnvironment:
// files, certificates, key permissions, Postfix's queue IDs, the mirror's
// filesystem), and Postfix's gate settings (CheckGate), each step only if the
// one before found no error (a later check would only repeat its cause).
#pragma once

#include <optional>
#include <string>

#include "common/config.h"

namespace mailtwin::postfix {

struct ConfigCheck {
  std::optional<Config> config;  // set when the file could be read at all
  ConfigErrors problems;
  bool ok() const { return config && problems.ok(); }
};

ConfigCheck CheckConfigFile(const std::string& path);

}  // namespace mailtwin::postfix
