#include "common/systemd.h"

#include <systemd/sd-daemon.h>

#include <cstring>

#include <fmt/format.h>

namespace mailtwin::systemd {
namespace {

// A status is one line: systemd shows it after "Status:".
std::string OneLine(const std::string& s) {
  std::string out = s;
  for (char& c : out)
    if (c == '\n' || c == '\r') c = ' ';
  return out;
}

NotifyResult Send(const std::string& state) {
  int r = sd_notify(0, state.c_str());
  if (r > 0) return {true, ""};
  if (r == 0) return {false, ""};  // not run by systemd
  return {false, fmt::format("sd_notify({}) failed: {}", state.substr(0, state.find('\n')),
                             std::strerror(-r))};
}

}  // namespace

NotifyResult NotifyReady(const std::string& status) {
  return Send("READY=1\nSTATUS=" + OneLine(status));
}

NotifyResult NotifyStatus(const std::string& status) { return Send("STATUS=" + OneLine(status)); }

NotifyResult NotifyStopping() { return Send("STOPPING=1\nSTATUS=stopping"); }

}  // namespace mailtwin::systemd
