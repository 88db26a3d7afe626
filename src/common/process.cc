#include "common/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

extern char** environ;

namespace mailtwin {

CommandResult RunCommand(const std::vector<std::string>& argv) { return RunCommand(argv, {}); }

CommandResult RunCommand(const std::vector<std::string>& argv, const CommandOptions& opt) {
  CommandResult r;
  int outp[2], inp[2] = {-1, -1};
  if (pipe2(outp, O_CLOEXEC) != 0 || (!opt.input.empty() && pipe2(inp, O_CLOEXEC) != 0)) {
    r.output = fmt::format("pipe: {}", std::strerror(errno));
    return r;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
  posix_spawn_file_actions_adddup2(&fa, outp[1], 2);
  if (inp[0] >= 0) posix_spawn_file_actions_adddup2(&fa, inp[0], 0);
  else posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_store;
  std::vector<char*> env;
  if (!opt.env.empty()) {
    for (char** e = environ; *e; ++e) env.push_back(*e);
    env_store = opt.env;
    for (auto& e : env_store) env.push_back(e.data());
    env.push_back(nullptr);
  }
  pid_t pid;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), env.empty() ? environ : env.data());
  posix_spawn_file_actions_destroy(&fa);
  close(outp[1]);
  if (inp[0] >= 0) close(inp[0]);
  if (rc != 0) {
    close(outp[0]);
    if (inp[1] >= 0) close(inp[1]);
    r.output = fmt::format("cannot run {}: {}", argv[0], std::strerror(rc));
    return r;
  }
  if (inp[1] >= 0) {
    // Small inputs only (a notification mail): written before reading output.
    std::size_t off = 0;
    while (off < opt.input.size()) {
      ssize_t n = write(inp[1], opt.input.data() + off, opt.input.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      off += static_cast<std::size_t>(n);
    }
    close(inp[1]);
  }
  auto deadline = std::chrono::steady_clock::now() + opt.timeout;
  bool killed = false;
  char buf[4096];
  for (;;) {
    if (opt.timeout.count() > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{outp[0], POLLIN, 0};
      int pr = left.count() > 0 ? poll(&p, 1, static_cast<int>(left.count())) : 0;
      if (pr < 0 && errno == EINTR) continue;
      if (pr == 0) {
        kill(pid, SIGKILL);
        killed = true;
        break;
      }
    }
    ssize_t n = read(outp[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    r.output.append(buf, static_cast<std::size_t>(n));
  }
  close(outp[0]);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (killed)
    r.output += fmt::format("\n(killed after {} ms)", opt.timeout.count());
  return r;
}

PostconfResult Postconf(const std::string& config_dir, const std::vector<std::string>& names) {
  PostconfResult r;
  std::vector<std::string> argv{"postconf", "-c", config_dir, "-h"};
  argv.insert(argv.end(), names.begin(), names.end());
  CommandResult c = RunCommand(argv);
  if (!c.ok()) {
    r.error = fmt::format("postconf -c {} failed (exit {}): {}", config_dir, c.status, c.output);
    return r;
  }
  std::size_t start = 0;
  for (const auto& n : names) {
    auto nl = c.output.find('\n', start);
    if (nl == std::string::npos) {
      r.error = fmt::format("postconf -c {} printed fewer values than asked", config_dir);
      return r;
    }
    r.values[n] = c.output.substr(start, nl - start);
    start = nl + 1;
  }
  return r;
}

}  // namespace mailtwin
