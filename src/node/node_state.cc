#include "node/node_state.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/durable_dir.h"

namespace mailtwin {

std::string_view RoleName(NodeRole r) { return r == NodeRole::kPrimary ? "primary" : "standby"; }

std::optional<NodeState> LoadNodeState(const std::string& state_dir, std::string& error) {
  std::string path = state_dir + "/state.json";
  std::ifstream in(path);
  if (!in) {
    if (errno != ENOENT) error = fmt::format("cannot read {}: {}", path, std::strerror(errno));
    return std::nullopt;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    auto j = nlohmann::json::parse(ss.str());
    NodeState st;
    std::string role = j.at("role").get<std::string>();
    if (role != "primary" && role != "standby") throw std::runtime_error("bad role " + role);
    st.role = role == "primary" ? NodeRole::kPrimary : NodeRole::kStandby;
    st.epoch = j.at("epoch").get<std::uint64_t>();
    st.paused = j.value("paused", false);
    return st;
  } catch (const std::exception& e) {
    error = fmt::format("{} is damaged ({}); move it away to start from the configured role",
                        path, e.what());
    return std::nullopt;
  }
}

std::string SaveNodeState(const std::string& state_dir, const NodeState& st) {
  if (std::string err = MakeDurableDir(state_dir, 0700); !err.empty()) return err;
  nlohmann::json j{{"role", std::string(RoleName(st.role))}, {"epoch", st.epoch},
                   {"paused", st.paused}};
  std::string text = j.dump(2) + "\n";
  std::string tmp = state_dir + "/state.json.tmp", path = state_dir + "/state.json";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fmt::format("cannot write {}: {}", tmp, std::strerror(errno));
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            fsync(fd) == 0;
  close(fd);
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0)
    return fmt::format("cannot write {}: {}", path, std::strerror(errno));
  int dfd = open(state_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return {};
}

}  // namespace mailtwin
