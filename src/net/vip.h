// vip.h - the virtual IP address that moves with the primary role.
//
// The paper leaves open how submission clients (which, unlike MX senders,
// know one server name) reach whichever node is primary. The answer of
// keepalived and Pacemaker's IPaddr2: an address that only the primary
// holds. The primary adds it to its interface (rtnetlink, through libnl)
// and announces it - IPv4: gratuitous ARP; IPv6: an unsolicited neighbour
// advertisement to all nodes (RFC 4861 7.2.6), the address added without
// duplicate address detection (IFA_F_NODAD, as keepalived does: else it
// stays "tentative", unusable, for a second or more) - so that hosts and
// the router on the segment send to the new MAC at once instead of after
// their neighbour entry expires; a node that stops being primary
// (step-down, fencing) removes it first. Clients and DNS name the VIP;
// Postfix listens on it (inet_interfaces = all, with inet_protocols
// including ipv6 for an IPv6 VIP; or the VIP with ip_nonlocal_bind).
#pragma once

#include <netinet/in.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace mailtwin::net {

struct VipAddress {
  int family = AF_INET;  // AF_INET or AF_INET6
  in_addr addr{};        // AF_INET
  in6_addr addr6{};      // AF_INET6
  int prefix = 32;
  std::string text;  // "192.0.2.10/24", "2001:db8::10/64"
};
// "192.0.2.10", "192.0.2.10/24", "2001:db8::10" (/128) or "2001:db8::10/64".
// Returns "" or why not.
std::string ParseVip(std::string_view text, VipAddress& out);

// The 28-byte ARP payload of a gratuitous ARP request: sender and target
// protocol address both the VIP, target hardware address zero (RFC 5227's
// ARP announcement).
std::string GratuitousArp(const std::uint8_t mac[6], in_addr ip);

// The ICMPv6 message of an unsolicited neighbour advertisement for target
// (RFC 4861 4.4, 7.2.6): type 136, Override set, Solicited not, the target
// link-layer address option with mac. 32 bytes; the checksum is left 0 for
// the kernel, which fills it in on a raw ICMPv6 socket.
std::string UnsolicitedNa(const std::uint8_t mac[6], const in6_addr& target);

class Vip {
 public:
  Vip(VipAddress address, std::string interface);
  const VipAddress& address() const { return addr_; }
  const std::string& interface() const { return if_; }

  // Adds the address (nothing if it is there already) and announces it.
  // Returns "" or what failed.
  std::string Acquire();
  // Removes it (nothing if it is absent). Returns "" or what failed.
  std::string Release();
  // Whether the interface holds the address now.
  bool Present() const;
  // More announcements after an Acquire (at most one per 500 ms, 7 in all,
  // over about 3 s, like keepalived's repeats): a host that missed the first
  // learns from these, and they outlast the 2 s during which an old primary
  // keeps its copy after a switchover.
  void Tick(std::chrono::steady_clock::time_point now);

 private:
  std::string Change(bool add);
  std::string Change(bool add, int prefix);
  int PresentPrefix() const;  // the prefix it has on the interface, -1 if absent
  std::string Announce();
  std::string AnnounceNa(unsigned index, const std::uint8_t mac[6]);  // IPv6

  VipAddress addr_;
  std::string if_;
  int announcements_left_ = 0;
  std::chrono::steady_clock::time_point next_announce_{};
};

}  // namespace mailtwin::net
