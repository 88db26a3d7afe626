// queue_fs_probe.h - is the queue's filesystem usable? (docs/failover.md:
// a primary whose queue disk fails hands the role to a healthy standby.)
//
// Free space is read at every tick (statvfs); a durable write test (create,
// write, fsync, unlink in the mirror directory, which lives on the queue's
// filesystem) runs every 5 s: a disk that went read-only or fails its
// writes shows there first. A test blocks the loop for one fsync.
#pragma once

#include <chrono>
#include <string>

namespace mailtwin {

class QueueFsProbe {
 public:
  using Clock = std::chrono::steady_clock;
  QueueFsProbe(std::string queue_dir, std::string test_dir)
      : queue_dir_(std::move(queue_dir)), test_dir_(std::move(test_dir)) {}
  void Sample(Clock::time_point now);
  bool writable() const { return writable_; }
  double free_mb() const { return free_mb_; }  // 1e12 until known

 private:
  std::string queue_dir_, test_dir_;
  bool writable_ = true;
  double free_mb_ = 1e12;
  Clock::time_point last_write_test_{};
};

}  // namespace mailtwin
