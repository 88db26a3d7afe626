// systemd.h - telling systemd how the daemon is doing (sd_notify(3)).
//
// Under a `Type=notify` unit, `systemctl start mailtwind` returns only once
// NotifyReady has been called, so "started" means "serves or follows": call
// it when the node really serves as primary (epoch confirmed, Postfix
// started) or follows as standby (control socket up, link listening).
// NotifyStatus sets the one-line status `systemctl status` shows.
// NotifyStopping before a clean shutdown. Outside systemd (no
// $NOTIFY_SOCKET) each is a no-op that reports "not sent". Thread-safe.
#pragma once

#include <string>

namespace mailtwin::systemd {

struct NotifyResult {
  bool sent = false;   // systemd got the message
  std::string error;   // set when $NOTIFY_SOCKET is set but sending failed
  bool ok() const { return error.empty(); }
};

NotifyResult NotifyReady(const std::string& status);
NotifyResult NotifyStatus(const std::string& status);
NotifyResult NotifyStopping();

}  // namespace mailtwin::systemd
