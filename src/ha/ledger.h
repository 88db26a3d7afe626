// ledger.h - the queue IDs a node has held, so that a rejoining node's
// leftovers are neither lost nor delivered twice (docs/failover.md).
//
// Every ID this node's queue or mirror ever held is recorded: on a primary
// when the watcher sees a message committed, on a standby when the mirror
// receives one. When a node that stepped down offers a message, the primary
// takes it only if the ID is neither queued here nor in the ledger: an ID in
// the ledger but no longer queued has been delivered, bounced or removed.
//
// Stored as two generations of text files (<state_dir>/ledger.{0,1}, one ID
// per line), appended with buffered writes made durable (fdatasync) every
// check_interval in which something was recorded: a crash or a power cut
// forgets at most the last check_interval, which can only turn into a
// duplicate, never a loss. When the current generation reaches
// max_per_generation IDs the older one is dropped.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>
#include <unordered_set>

namespace mailtwin::ha {

class Ledger {
 public:
  explicit Ledger(std::size_t max_per_generation = 1000000) : max_(max_per_generation) {}
  ~Ledger();
  std::string Open(const std::string& state_dir);
  void Record(std::string_view id);
  bool Has(std::string_view id) const;
  void Flush();
  std::size_t size() const { return cur_.size() + old_.size(); }

 private:
  void Rotate();
  std::size_t max_;
  std::string dir_;
  std::unordered_set<std::string> cur_, old_;
  std::FILE* out_ = nullptr;
  int gen_ = 0;  // the file cur_ appends to: ledger.<gen_>
  bool dirty_ = false;  // appended since the last Flush
};

}  // namespace mailtwin::ha
