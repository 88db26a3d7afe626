// stats.h - a small latency recorder for status and metrics.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

namespace mailtwin::repl {

// Wall-clock time in ns since the epoch: heartbeats and commit times carry
// it, to measure lag across the two hosts.
inline std::int64_t WallClockNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Keeps the last kWindow samples (milliseconds) and the totals.
class LatencyStats {
 public:
  static constexpr std::size_t kWindow = 20000;
  void Add(double ms) {
    if (ring_.size() < kWindow) ring_.push_back(ms);
    else ring_[next_++ % kWindow] = ms;
    ++count_;
    sum_ += ms;
  }
  // q in [0,1]; 0 when empty.
  double Quantile(double q) const {
    if (ring_.empty()) return 0;
    std::vector<double> v(ring_);
    auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k];
  }
  std::uint64_t count() const { return count_; }
  double sum() const { return sum_; }

 private:
  std::vector<double> ring_;
  std::size_t next_ = 0;
  std::uint64_t count_ = 0;
  double sum_ = 0;
};

}  // namespace mailtwin::repl
