#include "postfix/processes.h"

#include <dirent.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <unordered_set>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace mailtwin::postfix {

bool ParseProcStat(std::string_view text, ProcStat& out) {
  // comm is whatever lies between the first '(' and the last ')'.
  auto open = text.find('(');
  auto close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open ||
      close + 2 >= text.size() || text[close + 1] != ' ')
    return false;
  out.comm = std::string(text.substr(open + 1, close - open - 1));
  out.state = text[close + 2];
  // After the state: ppid, pgrp.
  std::string rest(text.substr(close + 3));
  std::istringstream in(rest);
  long ppid = 0, pgrp = 0;
  if (!(in >> ppid >> pgrp)) return false;
  out.pgrp = pgrp;
  return true;
}

namespace {
bool ReadStat(pid_t pid, ProcStat& st) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string text;
  return std::getline(in, text) && ParseProcStat(text, st);
}
bool Live(const ProcStat& st) { return st.state != 'Z' && st.state != 'X'; }
}  // namespace

bool ProcessLive(pid_t pid) {
  ProcStat st;
  return pid > 1 && ReadStat(pid, st) && Live(st);
}

pid_t RunningMaster(const std::string& queue_dir) {
  std::ifstream in(queue_dir + "/pid/master.pid");
  long pid = 0;
  if (!(in >> pid) || !ProcessLive(static_cast<pid_t>(pid))) return 0;
  return static_cast<pid_t>(pid);
}

std::vector<PostfixProcess> ProcessGroup(pid_t master) {
  std::vector<PostfixProcess> out;
  if (master <= 1) return out;
  {
    std::ifstream children(fmt::format("/proc/{}/task/{}/children", master, master));
    if (children) {
      std::vector<pid_t> pids{master};
      for (long pid; children >> pid;) pids.push_back(static_cast<pid_t>(pid));
      for (pid_t pid : pids) {
        ProcStat st;
        if (ReadStat(pid, st) && Live(st)) out.push_back({pid, st.comm, st.state});
      }
      return out;
    }
  }
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 1 || *end) continue;
    ProcStat st;
    if (ReadStat(static_cast<pid_t>(pid), st) && Live(st) && st.pgrp == master)
      out.push_back({static_cast<pid_t>(pid), st.comm, st.state});
  }
  closedir(d);
  return out;
}

std::vector<pid_t> WithFilesOpenUnder(const std::vector<PostfixProcess>& procs,
                                      const std::string& dir, std::string_view skip) {
  std::vector<pid_t> out;
  for (const auto& p : procs) {
    if (p.comm == skip) continue;
    std::string fds = fmt::format("/proc/{}/fd", p.pid);
    DIR* d = opendir(fds.c_str());
    if (!d) continue;  // gone, or not ours to look at
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      char target[4096];
      ssize_t n = readlinkat(dirfd(d), e->d_name, target, sizeof target - 1);
      if (n <= 0) continue;
      if (std::string_view(target, static_cast<std::size_t>(n)).starts_with(dir)) {
        out.push_back(p.pid);
        break;
      }
    }
    closedir(d);
  }
  return out;
}

std::unordered_map<std::uint32_t, UnixSocket> UnixSockets(std::string& error) {
  std::unordered_map<std::uint32_t, UnixSocket> out;
  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) {
    error = fmt::format("sock_diag: {}", std::strerror(errno));
    return out;
  }
  struct {
    nlmsghdr nlh;
    unix_diag_req req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req.sdiag_family = AF_UNIX;
  msg.req.udiag_states = ~0u;
  msg.req.udiag_show = UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN;
  sockaddr_nl nl{};
  nl.nl_family = AF_NETLINK;
  if (sendto(fd, &msg, sizeof msg, 0, reinterpret_cast<sockaddr*>(&nl), sizeof nl) < 0) {
    error = fmt::format("sock_diag request: {}", std::strerror(errno));
    close(fd);
    return out;
  }
  alignas(nlmsghdr) char buf[32768];
  for (bool done = false; !done;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      error = fmt::format("sock_diag reply: {}", std::strerror(errno));
      break;
    }
    if (n == 0) break;
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type == NLMSG_DONE) {
        done = true;
        break;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        error = fmt::format("sock_diag: {}", std::strerror(-e->error));
        done = true;
        break;
      }
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(unix_diag_msg))) continue;
      auto* m = static_cast<unix_diag_msg*>(NLMSG_DATA(h));
      UnixSocket s;
      int alen = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
      for (auto* a = reinterpret_cast<rtattr*>(m + 1); RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
        if (a->rta_type == UNIX_DIAG_PEER && RTA_PAYLOAD(a) >= sizeof(std::uint32_t))
          std::memcpy(&s.peer, RTA_DATA(a), sizeof s.peer);
        else if (a->rta_type == UNIX_DIAG_RQLEN && RTA_PAYLOAD(a) >= sizeof(unix_diag_rqlen))
          s.rqueue = static_cast<unix_diag_rqlen*>(RTA_DATA(a))->udiag_rqueue;
      }
      out[m->udiag_ino] = s;
    }
  }
  close(fd);
  return out;
}

std::vector<std::uint32_t> SocketInodes(pid_t pid) {
  std::vector<std::uint32_t> out;
  std::string fds = fmt::format("/proc/{}/fd", pid);
  DIR* d = opendir(fds.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char target[64];
    ssize_t n = readlinkat(dirfd(d), e->d_name, target, sizeof target - 1);
    if (n <= 0) continue;
    target[n] = 0;
    unsigned long ino = 0;
    if (std::sscanf(target, "socket:[%lu]", &ino) == 1) out.push_back(static_cast<std::uint32_t>(ino));
  }
  closedir(d);
  return out;
}

std::size_t CountStillDelivering(const std::vector<std::vector<std::uint32_t>>& agents,
                                 const std::vector<std::uint32_t>& qmgr_sockets,
                                 const std::unordered_map<std::uint32_t, UnixSocket>& table) {
  // The agents' ends of the queue manager's sockets that have unread bytes.
  std::unordered_set<std::uint32_t> replied;
  for (std::uint32_t q : qmgr_sockets)
    if (auto it = table.find(q); it != table.end() && it->second.rqueue > 0 && it->second.peer)
      replied.insert(it->second.peer);
  std::size_t n = 0;
  for (const auto& socks : agents) {
    bool done = false;
    for (std::uint32_t s : socks) done = done || replied.contains(s);
    if (!done) ++n;
  }
  return n;
}

std::size_t DeliveriesInFlight(pid_t master, const std::string& active_dir, std::string& error) {
  auto procs = ProcessGroup(master);
  pid_t qmgr = 0;
  std::string qmgr_name = "qmgr";
  for (const auto& p : procs)
    if (IsQueueManager(p)) qmgr = p.pid, qmgr_name = p.comm;
  auto busy = WithFilesOpenUnder(procs, active_dir, qmgr_name);
  if (busy.empty()) return 0;
  auto table = UnixSockets(error);
  if (!error.empty()) return busy.size();
  std::vector<std::vector<std::uint32_t>> agents;
  for (pid_t pid : busy) agents.push_back(SocketInodes(pid));
  return CountStillDelivering(agents, qmgr ? SocketInodes(qmgr) : std::vector<std::uint32_t>{},
                              table);
}

}  // namespace mailtwin::postfix
