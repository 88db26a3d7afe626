// netdelay - packet delay with jitter for the lab, where the kernel has no
// sch_netem: packets queued by an iptables NFQUEUE rule are held for
// delay +/- jitter (uniform, like `netem delay D J`) and then accepted.
// Loss is left to iptables (-m statistic --mode random -j DROP).
//
//   netdelay QUEUE_NUM DELAY_MS JITTER_MS
//
// Runs until SIGTERM. Not part of mailtwin: a lab tool (lab/lab.sh
// lab_netem uses it). Releasing packets by due time reorders them when the
// jitter exceeds their spacing, as netem does.
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>

#include <libnetfilter_queue/libnetfilter_queue.h>
#include <signal.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <queue>
#include <random>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Held {
  Clock::time_point due;
  std::uint32_t id;
  bool operator>(const Held& o) const { return due > o.due; }
};

std::priority_queue<Held, std::vector<Held>, std::greater<>> held;
std::mt19937_64 rng{std::random_device{}()};
double delay_ms = 50, jitter_ms = 20;
volatile sig_atomic_t stop = 0;

int OnPacket(nfq_q_handle*, nfgenmsg*, nfq_data* nfa, void*) {
  nfqnl_msg_packet_hdr* ph = nfq_get_msg_packet_hdr(nfa);
  if (!ph) return 0;
  std::uniform_real_distribution<double> u(delay_ms - jitter_ms, delay_ms + jitter_ms);
  double d = std::max(0.0, u(rng));
  held.push({Clock::now() + std::chrono::microseconds(static_cast<long>(d * 1000)), ntohl(ph->packet_id)});
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: netdelay QUEUE_NUM DELAY_MS JITTER_MS\n");
    return 2;
  }
  int qnum = std::atoi(argv[1]);
  delay_ms = std::atof(argv[2]);
  jitter_ms = std::atof(argv[3]);
  signal(SIGTERM, [](int) { stop = 1; });
  signal(SIGINT, [](int) { stop = 1; });
  nfq_handle* h = nfq_open();
  if (!h) return std::perror("nfq_open"), 1;
  nfq_q_handle* qh = nfq_create_queue(h, static_cast<std::uint16_t>(qnum), &OnPacket, nullptr);
  if (!qh) return std::perror("nfq_create_queue"), 1;
  if (nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0) return std::perror("nfq_set_mode"), 1;
  nfq_set_queue_maxlen(qh, 65536);
  int fd = nfq_fd(h);
  std::vector<char> buf(1 << 16);
  while (!stop) {
    int timeout = 100;
    if (!held.empty()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(held.top().due - Clock::now());
      timeout = static_cast<int>(std::max<long>(0, left.count()));
    }
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout) > 0) {
      ssize_t n = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
      if (n > 0) nfq_handle_packet(h, buf.data(), static_cast<int>(n));
    }
    auto now = Clock::now();
    while (!held.empty() && held.top().due <= now) {
      nfq_set_verdict(qh, held.top().id, 1 /* NF_ACCEPT */, 0, nullptr);
      held.pop();
    }
  }
  while (!held.empty()) {  // let what is held go before the rule goes
    nfq_set_verdict(qh, held.top().id, 1 /* NF_ACCEPT */, 0, nullptr);
    held.pop();
  }
  nfq_destroy_queue(qh);
  nfq_close(h);
  return 0;
}
