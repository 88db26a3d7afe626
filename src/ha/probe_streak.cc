// probe_streak.cc - counting overlapping probes (see probe_streak.h).
#include "ha/probe_streak.h"

namespace mailtwin::ha {

std::uint64_t ProbeStreak::Begin(Time now) {
  begun_[next_] = now;
  return next_++;
}

bool ProbeStreak::End(std::uint64_t id, bool ok, const std::string& error, Time now) {
  auto it = begun_.find(id);
  if (it == begun_.end()) return false;
  Time began = it->second;
  begun_.erase(it);
  if (id < floor_ || id < last_ok_) return false;
  if (ok) {
    last_ok_ = id;
    failures_ = 0;
    serial_ = 0;
    serial_until_ = {};
    error_.clear();
    return true;
  }
  ++failures_;
  error_ = error;
  // One probe at a time would not have started this one before the last
  // counted failure ended.
  if (serial_ == 0 || began >= serial_until_) {
    ++serial_;
    serial_until_ = now;
  }
  return true;
}

void ProbeStreak::Reset() {
  floor_ = next_;
  failures_ = 0;
  serial_ = 0;
  serial_until_ = {};
  error_.clear();
}

}  // namespace mailtwin::ha
