// config_check.cc - see config_check.h.
#include "postfix/config_check.h"
#include "postfix/relay_config.h"

#include "postfix/gate_config.h"

namespace mailtwin::postfix {

ConfigCheck CheckConfigFile(const std::string& path) {
  ConfigCheck c;
  c.config = LoadConfig(path, c.problems);
  if (c.config) CheckEnvironment(*c.config, c.problems);
  if (c.config && c.problems.ok()) {
    CheckGate(*c.config, InspectGate(*c.config), c.problems);
    CheckRelay(*c.config, InspectRelay(*c.config), c.problems);
  }
  return c;
}

}  // namespace mailtwin::postfix
