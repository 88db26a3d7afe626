// instance_lock.h - one mailtwind per node: an exclusive lock on a file in
// the node's state directory, taken before the daemon touches anything else
// (control socket, mirror, Postfix).
//
// The lock is flock(2) on <state_dir>/mailtwind.lock, held for the life of
// the process: the kernel drops it when the process dies, however it dies,
// so a crash never leaves a stale lock. The file holds the holder's PID,
// for the message a second daemon prints.
#pragma once

#include <string>

namespace mailtwin {

class InstanceLock {
 public:
  InstanceLock() = default;
  ~InstanceLock();
  InstanceLock(InstanceLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  InstanceLock& operator=(InstanceLock&&) = delete;

  // Takes the lock; "" on success, else what happened and what to do.
  std::string Take(const std::string& state_dir);
  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace mailtwin
