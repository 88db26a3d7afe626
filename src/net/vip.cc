#include "net/vip.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>

#include <fmt/format.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <spdlog/spdlog.h>

namespace mailtwin::net {

std::string ParseVip(std::string_view text, VipAddress& out) {
  if (text.find(':') != std::string_view::npos)
    return fmt::format("\"{}\": only IPv4 virtual addresses are supported", text);
  std::string_view ip = text;
  int prefix = 32;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    ip = text.substr(0, slash);
    std::string_view p = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (p.empty() || ec != std::errc() || end != p.data() + p.size() || prefix < 1 || prefix > 32)
      return fmt::format("\"{}\": the prefix length must be 1 to 32", text);
  }
  in_addr a{};
  if (inet_pton(AF_INET, std::string(ip).c_str(), &a) != 1)
    return fmt::format("\"{}\" is not an IPv4 address (ADDR or ADDR/PREFIX)", text);
  std::uint32_t h = ntohl(a.s_addr);
  if (h == 0 || (h >> 24) == 127 || (h >> 28) == 14 || h == 0xffffffffu)
    return fmt::format("\"{}\" cannot be a service address (unspecified, loopback, multicast "
                       "or broadcast)",
                       text);
  out.addr = a;
  out.prefix = prefix;
  out.text = fmt::format("{}/{}", ip, prefix);
  return {};
}

std::string GratuitousArp(const std::uint8_t mac[6], in_addr ip) {
  std::string p(28, '\0');
  auto* b = reinterpret_cast<std::uint8_t*>(p.data());
  b[0] = 0, b[1] = ARPHRD_ETHER;                 // hardware type
  b[2] = ETH_P_IP >> 8, b[3] = ETH_P_IP & 0xff;  // protocol type
  b[4] = 6, b[5] = 4;                            // address lengths
  b[6] = 0, b[7] = ARPOP_REQUEST;                // an announcement is a request
  std::memcpy(b + 8, mac, 6);                    // sender MAC
  std::memcpy(b + 14, &ip.s_addr, 4);            // sender IP = VIP
  // target MAC stays zero
  std::memcpy(b + 24, &ip.s_addr, 4);            // target IP = VIP
  return p;
}

Vip::Vip(VipAddress address, std::string interface)
    : addr_(std::move(address)), if_(std::move(interface)) {}

std::string Vip::Change(bool add) { return Change(add, addr_.prefix); }

std::string Vip::Change(bool add, int prefix) {
  unsigned index = if_nametoindex(if_.c_str());
  if (!index) return fmt::format("interface {}: {}", if_, std::strerror(errno));
  std::unique_ptr<nl_sock, void (*)(nl_sock*)> sk(nl_socket_alloc(), nl_socket_free);
  if (!sk) return "libnl: out of memory";
  if (int e = nl_connect(sk.get(), NETLINK_ROUTE); e < 0)
    return fmt::format("rtnetlink: {}", nl_geterror(e));
  std::unique_ptr<rtnl_addr, void (*)(rtnl_addr*)> a(rtnl_addr_alloc(), rtnl_addr_put);
  std::string text = addr_.text.substr(0, addr_.text.find('/')) + "/" + std::to_string(prefix);
  nl_addr* local = nullptr;
  if (int e = nl_addr_parse(text.c_str(), AF_INET, &local); e < 0)
    return fmt::format("{}: {}", text, nl_geterror(e));
  rtnl_addr_set_ifindex(a.get(), static_cast<int>(index));
  rtnl_addr_set_local(a.get(), local);  // takes its own reference, prefix included
  nl_addr_put(local);
  // A label marks it as ours for `ip addr` readers: "<if>:mt" if it fits.
  // Not on removal: the kernel would then only remove an address with that
  // very label, and one added by hand has none.
  if (add && if_.size() + 3 < IFNAMSIZ) rtnl_addr_set_label(a.get(), (if_ + ":mt").c_str());
  int e = add ? rtnl_addr_add(sk.get(), a.get(), 0) : rtnl_addr_delete(sk.get(), a.get(), 0);
  if (e == -NLE_EXIST && add) return {};
  if ((e == -NLE_NOADDR || e == -NLE_OBJ_NOTFOUND) && !add) return {};
  if (e < 0)
    return fmt::format("{} {} {} {}: {}", add ? "adding" : "removing", addr_.text,
                       add ? "to" : "from", if_, nl_geterror(e));
  return {};
}

std::string Vip::Acquire() {
  if (std::string err = Change(true); !err.empty()) return err;
  announcements_left_ = 6;
  next_announce_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  return Announce();
}

std::string Vip::Release() {
  announcements_left_ = 0;
  if (std::string err = Change(false); !err.empty()) return err;
  if (!Present()) return {};
  // There with another prefix (added by hand, or by another tool): the
  // kernel removes an address only when the prefix matches too.
  if (int p = PresentPrefix(); p > 0 && p != addr_.prefix)
    if (std::string err = Change(false, p); !err.empty()) return err;
  if (Present())
    return fmt::format("{} is still on {} after its removal", addr_.text, if_);
  return {};
}

int Vip::PresentPrefix() const {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return -1;
  int prefix = -1;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    std::string_view name(i->ifa_name);
    if (name != if_ && !name.starts_with(if_ + ":")) continue;
    if (reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr != addr_.addr.s_addr) continue;
    prefix = i->ifa_netmask
                 ? __builtin_popcount(reinterpret_cast<sockaddr_in*>(i->ifa_netmask)->sin_addr.s_addr)
                 : 32;
    break;
  }
  freeifaddrs(list);
  return prefix;
}

bool Vip::Present() const { return PresentPrefix() >= 0; }

void Vip::Tick(std::chrono::steady_clock::time_point now) {
  if (announcements_left_ <= 0 || now < next_announce_) return;
  --announcements_left_;
  next_announce_ = now + std::chrono::milliseconds(500);
  if (std::string err = Announce(); !err.empty()) spdlog::warn("vip: {}", err);
}

std::string Vip::Announce() {
  unsigned index = if_nametoindex(if_.c_str());
  if (!index) return fmt::format("interface {}: {}", if_, std::strerror(errno));
  int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP));
  if (fd < 0) return fmt::format("gratuitous ARP: socket: {}", std::strerror(errno));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, if_.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) {
    int err = errno;
    close(fd);
    return fmt::format("gratuitous ARP: MAC address of {}: {}", if_, std::strerror(err));
  }
  if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
    close(fd);
    return {};  // no ARP on this interface (loopback, tun): nothing to announce
  }
  std::uint8_t mac[6];
  std::memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
  std::string pkt = GratuitousArp(mac, addr_.addr);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_protocol = htons(ETH_P_ARP);
  to.sll_ifindex = static_cast<int>(index);
  to.sll_halen = 6;
  std::memset(to.sll_addr, 0xff, 6);  // broadcast
  ssize_t n = sendto(fd, pkt.data(), pkt.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  int err = errno;
  close(fd);
  if (n != static_cast<ssize_t>(pkt.size()))
    return fmt::format("gratuitous ARP on {}: {}", if_, std::strerror(err));
  return {};
}

}  // namespace mailtwin::net
