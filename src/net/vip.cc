#include "net/vip.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/if_addr.h>
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
  bool v6 = text.find(':') != std::string_view::npos;
  int max = v6 ? 128 : 32;
  std::string_view ip = text;
  int prefix = max;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    ip = text.substr(0, slash);
    std::string_view p = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (p.empty() || ec != std::errc() || end != p.data() + p.size() || prefix < 1 || prefix > max)
      return fmt::format("\"{}\": the prefix length must be 1 to {}", text, max);
  }
  if (v6) {
    in6_addr a{};
    if (inet_pton(AF_INET6, std::string(ip).c_str(), &a) != 1)
      return fmt::format("\"{}\" is not an IPv6 address (ADDR or ADDR/PREFIX)", text);
    if (IN6_IS_ADDR_UNSPECIFIED(&a) || IN6_IS_ADDR_LOOPBACK(&a) || IN6_IS_ADDR_MULTICAST(&a) ||
        IN6_IS_ADDR_LINKLOCAL(&a) || IN6_IS_ADDR_V4MAPPED(&a))
      return fmt::format("\"{}\" cannot be a service address (unspecified, loopback, multicast, "
                         "link-local or IPv4-mapped)",
                         text);
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &a, buf, sizeof buf);
    out.family = AF_INET6;
    out.addr6 = a;
    out.addr = {};
    out.prefix = prefix;
    out.text = fmt::format("{}/{}", buf, prefix);
    return {};
  }
  in_addr a{};
  if (inet_pton(AF_INET, std::string(ip).c_str(), &a) != 1)
    return fmt::format("\"{}\" is not an IPv4 address (ADDR or ADDR/PREFIX)", text);
  std::uint32_t h = ntohl(a.s_addr);
  if (h == 0 || (h >> 24) == 127 || (h >> 28) == 14 || h == 0xffffffffu)
    return fmt::format("\"{}\" cannot be a service address (unspecified, loopback, multicast "
                       "or broadcast)",
                       text);
  out.family = AF_INET;
  out.addr = a;
  out.addr6 = {};
  out.prefix = prefix;
  out.text = fmt::format("{}/{}", ip, prefix);
  return {};
}

std::string UnsolicitedNa(const std::uint8_t mac[6], const in6_addr& target) {
  std::string p(32, '\0');
  auto* b = reinterpret_cast<std::uint8_t*>(p.data());
  b[0] = 136;   // ND_NEIGHBOR_ADVERT; code 0, checksum 0 (the kernel's)
  b[4] = 0x20;  // Override; not Router, not Solicited
  std::memcpy(b + 8, &target, 16);
  b[24] = 2;  // option: target link-layer address
  b[25] = 1;  // its length in units of 8 bytes
  std::memcpy(b + 26, mac, 6);
  return p;
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
  if (int e = nl_addr_parse(text.c_str(), addr_.family, &local); e < 0)
    return fmt::format("{}: {}", text, nl_geterror(e));
  rtnl_addr_set_ifindex(a.get(), static_cast<int>(index));
  rtnl_addr_set_local(a.get(), local);  // takes its own reference, prefix included
  nl_addr_put(local);
  if (addr_.family == AF_INET6) {
    // No duplicate address detection: the old holder gave it up or is
    // fenced, and a tentative address cannot be used for a second or more.
    if (add) rtnl_addr_set_flags(a.get(), IFA_F_NODAD);
  } else if (add && if_.size() + 3 < IFNAMSIZ) {
    // A label marks it as ours for `ip addr` readers: "<if>:mt" if it fits
    // (IPv4 only). Not on removal: the kernel would then only remove an
    // address with that very label, and one added by hand has none.
    rtnl_addr_set_label(a.get(), (if_ + ":mt").c_str());
  }
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
    if (!i->ifa_addr || i->ifa_addr->sa_family != addr_.family) continue;
    std::string_view name(i->ifa_name);
    if (name != if_ && !name.starts_with(if_ + ":")) continue;
    if (addr_.family == AF_INET6) {
      const auto* a6 = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
      if (std::memcmp(&a6->sin6_addr, &addr_.addr6, sizeof addr_.addr6) != 0) continue;
      prefix = 128;
      if (i->ifa_netmask) {
        prefix = 0;
        for (std::uint8_t byte : reinterpret_cast<sockaddr_in6*>(i->ifa_netmask)->sin6_addr.s6_addr)
          prefix += __builtin_popcount(byte);
      }
      break;
    }
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
  // The interface's MAC: the ARP sender address, or the neighbour
  // advertisement's target link-layer address option.
  int ifd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (ifd < 0) return fmt::format("announcing {}: socket: {}", addr_.text, std::strerror(errno));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, if_.c_str(), IFNAMSIZ - 1);
  int rc = ioctl(ifd, SIOCGIFHWADDR, &ifr);
  int err = errno;
  close(ifd);
  if (rc != 0)
    return fmt::format("announcing {}: MAC address of {}: {}", addr_.text, if_, std::strerror(err));
  // No ARP or neighbour discovery on this interface (loopback, tun).
  if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) return {};
  std::uint8_t mac[6];
  std::memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
  if (addr_.family == AF_INET6) return AnnounceNa(index, mac);

  int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP));
  if (fd < 0) return fmt::format("gratuitous ARP: socket: {}", std::strerror(errno));
  std::string pkt = GratuitousArp(mac, addr_.addr);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_protocol = htons(ETH_P_ARP);
  to.sll_ifindex = static_cast<int>(index);
  to.sll_halen = 6;
  std::memset(to.sll_addr, 0xff, 6);  // broadcast
  ssize_t n = sendto(fd, pkt.data(), pkt.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  err = errno;
  close(fd);
  if (n != static_cast<ssize_t>(pkt.size()))
    return fmt::format("gratuitous ARP on {}: {}", if_, std::strerror(err));
  return {};
}

std::string Vip::AnnounceNa(unsigned index, const std::uint8_t mac[6]) {
  std::string pkt = UnsolicitedNa(mac, addr_.addr6);

  int fd = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6);
  if (fd < 0) return fmt::format("neighbour advertisement: socket: {}", std::strerror(errno));
  // Receivers accept neighbour discovery only with hop limit 255 (RFC 4861
  // 7.1.2), and from the VIP itself as source.
  int hops = 255;
  unsigned ifindex = index;
  sockaddr_in6 src{};
  src.sin6_family = AF_INET6;
  src.sin6_addr = addr_.addr6;
  sockaddr_in6 to{};
  to.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "ff02::1", &to.sin6_addr);  // all nodes
  to.sin6_scope_id = index;
  ssize_t n = -1;
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof hops) == 0 &&
      setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof ifindex) == 0 &&
      bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) == 0)
    n = sendto(fd, pkt.data(), pkt.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  int err = errno;
  close(fd);
  if (n != static_cast<ssize_t>(pkt.size()))
    return fmt::format("neighbour advertisement on {}: {}", if_, std::strerror(err));
  return {};
}

}  // namespace mailtwin::net
