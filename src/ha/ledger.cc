#include "ha/ledger.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/durable_dir.h"
#include "common/queue_id.h"

namespace mailtwin::ha {
namespace {

void Load(const std::string& path, std::unordered_set<std::string>& into) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (IsValidQueueId(line)) into.insert(line);  // a torn last line is skipped
}

}  // namespace

Ledger::~Ledger() {
  if (out_) std::fclose(out_);
}

std::string Ledger::Open(const std::string& state_dir) {
  dir_ = state_dir;
  // ledger.current names the generation being appended to (0 if absent).
  std::ifstream cur(dir_ + "/ledger.current");
  if (!(cur >> gen_) || (gen_ != 0 && gen_ != 1)) gen_ = 0;
  Load(fmt::format("{}/ledger.{}", dir_, gen_), cur_);
  Load(fmt::format("{}/ledger.{}", dir_, gen_ ^ 1), old_);
  std::string path = fmt::format("{}/ledger.{}", dir_, gen_);
  out_ = std::fopen(path.c_str(), "ae");
  if (!out_) return fmt::format("cannot open the ledger {}: {}", path, std::strerror(errno));
  return SyncDirectory(dir_);  // its name, if fopen just created it
}

void Ledger::Record(std::string_view id) {
  if (Has(id)) return;
  cur_.emplace(id);
  if (out_) {
    std::fprintf(out_, "%.*s\n", static_cast<int>(id.size()), id.data());
    dirty_ = true;
  }
  if (cur_.size() >= max_) Rotate();
}

bool Ledger::Has(std::string_view id) const {
  std::string k(id);
  return cur_.count(k) || old_.count(k);
}

void Ledger::Flush() {
  if (!out_ || !dirty_) return;
  dirty_ = false;
  // Durable, not only written: after a power cut an ID the ledger forgot
  // would let a rejoining node's leftover copy in again (a duplicate).
  if (std::fflush(out_) != 0 || fdatasync(fileno(out_)) != 0)
    spdlog::error("ledger: cannot make ledger.{} durable: {}", gen_, std::strerror(errno));
}

void Ledger::Rotate() {
  if (out_) std::fclose(out_);
  gen_ ^= 1;
  old_ = std::move(cur_);
  cur_.clear();
  std::string path = fmt::format("{}/ledger.{}", dir_, gen_);
  out_ = std::fopen(path.c_str(), "we");  // truncates the oldest generation
  if (!out_) spdlog::error("ledger: cannot open {}: {}", path, std::strerror(errno));
  dirty_ = false;
  std::string tmp = dir_ + "/ledger.current.tmp";
  if (std::FILE* f = std::fopen(tmp.c_str(), "we")) {
    std::fprintf(f, "%d\n", gen_);
    bool ok = std::fflush(f) == 0 && fsync(fileno(f)) == 0;
    std::fclose(f);
    if (!ok || std::rename(tmp.c_str(), (dir_ + "/ledger.current").c_str()) != 0)
      spdlog::error("ledger: cannot switch to ledger.{}: {}", gen_, std::strerror(errno));
  }
  if (std::string err = SyncDirectory(dir_); !err.empty()) spdlog::error("ledger: {}", err);
}

}  // namespace mailtwin::ha
