// process.h - running Postfix's own commands (postconf, postsuper, postfix).
//
// RunCommand executes argv directly (no shell), captures stdout and stderr
// together, and returns the exit status. Blocking: use it only where the
// caller may wait (start-up, promotion, CLI), never on the replication path.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace mailtwin {

struct CommandResult {
  int status = -1;  // exit code, or -1 when it could not run / was killed
  std::string output;
  bool ok() const { return status == 0; }
};

CommandResult RunCommand(const std::vector<std::string>& argv);

struct CommandOptions {
  std::vector<std::string> env;        // "NAME=value", added to this process's environment
  std::string input;                   // written to its stdin (small: a few KB)
  std::chrono::milliseconds timeout{0};  // 0 = none; else the command is killed
};
CommandResult RunCommand(const std::vector<std::string>& argv, const CommandOptions& opt);

struct PostconfResult {
  std::map<std::string, std::string> values;
  std::string error;
};

// `postconf -c DIR -h NAME...`, one value per requested name.
PostconfResult Postconf(const std::string& config_dir, const std::vector<std::string>& names);

}  // namespace mailtwin
