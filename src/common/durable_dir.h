// durable_dir.h: a directory whose own name survives a power loss.
//
// mkdir() alone is not durable: the new name lives in the parent directory,
// and POSIX makes it durable only with an fsync of the parent. A directory
// made at first start (the mirror, the state directory) and then filled
// with fsynced files would otherwise vanish, files and all, at the first
// power cut (tests/lab/t-21-powercut found exactly that).
#pragma once

#include <sys/types.h>

#include <string>

namespace mailtwin {

// Creates path (mode) if it is missing, then fsyncs its parent directory.
// Returns "" or an error message.
std::string MakeDurableDir(const std::string& path, mode_t mode);

// fsyncs the directory itself: the names created, renamed or removed in it
// become durable. Returns "" or an error message.
std::string SyncDirectory(const std::string& dir);

}  // namespace mailtwin
