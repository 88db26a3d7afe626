// processes.h - a running Postfix instance seen through /proc.
//
// Postfix's master calls setsid(): the master's PID is the process group of
// every process it runs (qmgr, smtpd, cleanup, smtp, local, ...), and the
// name in /proc/PID/stat is the program's (qmgr, smtp). That is enough to
// stop an instance gracefully, which Postfix itself cannot do: `postfix stop`
// sends SIGTERM to the whole group, and a delivery agent killed after the
// remote server accepted a message but before the agent marked the
// recipient done (queue facts 1c: one byte, R -> D) leaves the message to be
// delivered again by whoever takes the queue over.
//
// Quiesce (used by a switchover):
//   1. SIGSTOP the queue manager: it hands out no more deliveries;
//   2. wait until every delivery in flight has ended. A delivery agent opens
//      its message's queue file (active/ID) when it reads the request, marks
//      each recipient done in it (R -> D) as the remote side accepts it, and
//      then writes its status to the queue manager. It closes the file only
//      after the queue manager hangs up (deliver_request.c waits for that),
//      which a stopped queue manager never does. So a delivery has ended
//      when its agent's status reply sits unread in the queue manager's
//      socket: netlink sock_diag shows the bytes queued (ss -x's Recv-Q)
//      and which socket is whose peer;
//   3. SIGTERM the master as `postfix stop` does, SIGTERM + SIGCONT the
//      stopped queue manager (the pending SIGTERM is taken before it runs).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <string_view>
#include <vector>

namespace mailtwin::postfix {

struct ProcStat {
  std::string comm;  // program name, as the kernel has it (at most 15 bytes)
  char state = '?';  // R S D T Z X ...
  long pgrp = 0;
};
// Parses the text of /proc/PID/stat ("pid (comm) state ppid pgrp ..."; comm
// may itself hold spaces and parentheses). False when malformed.
bool ParseProcStat(std::string_view text, ProcStat& out);

// True while pid runs. kill(pid, 0) is not enough: a process whose parent
// (PID 1 here) reaps late stays a zombie for a while, which kill(2) reaches.
bool ProcessLive(pid_t pid);

// The master's PID from <queue_dir>/pid/master.pid, if that process runs
// (a zombie does not); 0 otherwise.
pid_t RunningMaster(const std::string& queue_dir);

struct PostfixProcess {
  pid_t pid = 0;
  std::string comm;
  char state = '?';  // as in /proc/PID/stat: 'T' is stopped
};
// The master and the live processes it runs: its children as
// /proc/MASTER/task/MASTER/children lists them (every Postfix daemon is one),
// or, without that file, every process in its process group.
std::vector<PostfixProcess> ProcessGroup(pid_t master);
// Postfix's queue manager: qmgr, or oqmgr in old setups.
inline bool IsQueueManager(const PostfixProcess& p) { return p.comm == "qmgr" || p.comm == "oqmgr"; }

// Of procs, those (other than any named skip) with a file open under dir
// (a path ending in '/'): for active/, the deliveries in flight.
std::vector<pid_t> WithFilesOpenUnder(const std::vector<PostfixProcess>& procs,
                                      const std::string& dir, std::string_view skip);

// A unix-domain socket, as sock_diag reports it.
struct UnixSocket {
  std::uint32_t peer = 0;    // the other end's inode (0: none)
  std::uint32_t rqueue = 0;  // bytes received and not read yet
};
// Every unix socket of this network namespace, by inode. Empty with error
// set when sock_diag is not available.
std::unordered_map<std::uint32_t, UnixSocket> UnixSockets(std::string& error);
// Inodes of the sockets pid has open ("socket:[N]" in /proc/PID/fd).
std::vector<std::uint32_t> SocketInodes(pid_t pid);

// Pure: of the agents (each: the inodes of its sockets), those still
// delivering, i.e. with no socket that is the peer of one of the queue
// manager's sockets holding unread bytes.
std::size_t CountStillDelivering(const std::vector<std::vector<std::uint32_t>>& agents,
                                 const std::vector<std::uint32_t>& qmgr_sockets,
                                 const std::unordered_map<std::uint32_t, UnixSocket>& table);

// Deliveries in flight in the instance whose master is master, with the
// queue manager stopped: agents with a file of active_dir open that have
// not yet replied to the queue manager. error is set (and the count is the
// agents with a file open) when the sockets cannot be read.
std::size_t DeliveriesInFlight(pid_t master, const std::string& active_dir, std::string& error);

}  // namespace mailtwin::postfix
