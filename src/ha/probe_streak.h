// probe_streak.h - the count of failed SMTP probes of the primary, for
// probes that overlap (pure logic: the caller gives every time; no clock).
//
// Why overlap: a silently dead primary (power cut, kernel panic, cut cable)
// answers nothing, so every probe hangs until probe_timeout. One probe at a
// time, N consecutive failures take N x probe_timeout; a new probe every
// check_interval, each counted when it ends, takes probe_timeout +
// (N - 1) x check_interval (docs/failover.md, "Silent death").
//
// Two counts, because they answer two questions:
//   failures()         probes that failed since the newest success began
//                      (by start order: a probe begun before a success ended
//                      does not count against the primary). Decide uses it
//                      with a silent link: is the primary dead?
//   serial_failures()  the same streak counted as one probe at a time would
//                      count it: a failure counts only if its probe began
//                      after the previously counted failure ended. Decide uses
//                      it with a live link (is its SMTP service broken?), so
//                      that overlapping probes do not make a slow, busy primary
//                      (a greeting later than probe_timeout) look broken four
//                      times sooner than a single probe would.
// A success resets both. Reset() forgets a primary: results of probes begun
// before it are dropped.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

namespace mailtwin::ha {

class ProbeStreak {
 public:
  using Time = std::chrono::steady_clock::time_point;

  // A probe begins; its number is passed back to End.
  std::uint64_t Begin(Time now);
  // Probe `id` ended (answered, refused, or timed out). Returns false when
  // the result was dropped (begun before Reset, or older than a success).
  bool End(std::uint64_t id, bool ok, const std::string& error, Time now);
  void Reset();

  int failures() const { return failures_; }
  int serial_failures() const { return serial_; }
  const std::string& error() const { return error_; }
  std::size_t in_flight() const { return begun_.size(); }

 private:
  std::uint64_t next_ = 1;
  std::uint64_t floor_ = 1;    // results of probes numbered below are dropped
  std::uint64_t last_ok_ = 0;  // the newest probe that succeeded
  std::map<std::uint64_t, Time> begun_;  // in flight: when each began
  int failures_ = 0;
  int serial_ = 0;
  Time serial_until_{};  // when the last serially counted failure ended
  std::string error_;
};

}  // namespace mailtwin::ha
