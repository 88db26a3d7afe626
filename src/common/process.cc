#include "common/process.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

extern char** environ;

namespace mailtwin {

CommandResult RunCommand(const std::vector<std::string>& argv) {
  CommandResult r;
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) {
    r.output = fmt::format("pipe: {}", std::strerror(errno));
    return r;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(pipefd[1]);
  if (rc != 0) {
    close(pipefd[0]);
    r.output = fmt::format("cannot run {}: {}", argv[0], std::strerror(rc));
    return r;
  }
  char buf[4096];
  for (;;) {
    ssize_t n = read(pipefd[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    r.output.append(buf, static_cast<std::size_t>(n));
  }
  close(pipefd[0]);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
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
