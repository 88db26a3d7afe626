// The virtual address's pure parts: parsing and the announcement packet.
// Adding and removing the address, and the ARP it sends, run for real in
// the lab (tests/lab/t-10-vip).
#include "net/vip.h"

#include <arpa/inet.h>

#include <gtest/gtest.h>

namespace mailtwin::net {
namespace {

TEST(Vip, Parse) {
  VipAddress v;
  ASSERT_EQ(ParseVip("192.0.2.10/24", v), "");
  EXPECT_EQ(v.text, "192.0.2.10/24");
  EXPECT_EQ(v.prefix, 24);
  EXPECT_EQ(ntohl(v.addr.s_addr), 0xc000020au);
  ASSERT_EQ(ParseVip("192.0.2.10", v), "");
  EXPECT_EQ(v.text, "192.0.2.10/32");
  EXPECT_EQ(v.family, AF_INET);
  for (const char* bad : {"", "/24", "192.0.2.10/", "192.0.2.10/0", "192.0.2.10/x", "192.0.2",
                          "0.0.0.0", "127.0.0.1", "224.0.0.1/4", "255.255.255.255", "192.0.2.10/33"})
    EXPECT_NE(ParseVip(bad, v), "") << bad;
}

TEST(Vip, ParseIpv6) {
  VipAddress v;
  ASSERT_EQ(ParseVip("2001:DB8:0::10/64", v), "");
  EXPECT_EQ(v.family, AF_INET6);
  EXPECT_EQ(v.text, "2001:db8::10/64");  // the canonical form
  EXPECT_EQ(v.prefix, 64);
  EXPECT_EQ(v.addr6.s6_addr[15], 0x10);
  ASSERT_EQ(ParseVip("fd00:231::100", v), "");
  EXPECT_EQ(v.text, "fd00:231::100/128");
  for (const char* bad : {"::", "::1", "ff02::1", "fe80::1/64", "::ffff:192.0.2.10",
                          "2001:db8::10/129", "2001:db8::10/0", "2001:db8::g", "2001:db8::10/"})
    EXPECT_NE(ParseVip(bad, v), "") << bad;
}

TEST(Vip, UnsolicitedNeighbourAdvertisement) {
  const std::uint8_t mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
  in6_addr ip{};
  inet_pton(AF_INET6, "2001:db8::10", &ip);
  std::string p = UnsolicitedNa(mac, ip);
  ASSERT_EQ(p.size(), 32u);
  auto b = [&](int i) { return static_cast<unsigned>(static_cast<std::uint8_t>(p[i])); };
  EXPECT_EQ(b(0), 136u);  // neighbour advertisement
  EXPECT_EQ(b(1), 0u);
  EXPECT_EQ(b(4), 0x20u);  // Override only: unsolicited, not a router
  EXPECT_EQ(p.substr(8, 16), std::string(reinterpret_cast<const char*>(&ip), 16));
  EXPECT_EQ(b(24), 2u);  // target link-layer address option, 8 bytes
  EXPECT_EQ(b(25), 1u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(b(26 + i), mac[i]);
}

TEST(Vip, GratuitousArpIsAnAnnouncement) {
  const std::uint8_t mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
  in_addr ip{};
  inet_pton(AF_INET, "192.0.2.10", &ip);
  std::string p = GratuitousArp(mac, ip);
  ASSERT_EQ(p.size(), 28u);
  auto b = [&](int i) { return static_cast<unsigned>(static_cast<std::uint8_t>(p[i])); };
  EXPECT_EQ(b(0) << 8 | b(1), 1u);       // Ethernet
  EXPECT_EQ(b(2) << 8 | b(3), 0x0800u);  // IPv4
  EXPECT_EQ(b(4), 6u);
  EXPECT_EQ(b(5), 4u);
  EXPECT_EQ(b(6) << 8 | b(7), 1u);  // request
  for (int i = 0; i < 6; ++i) EXPECT_EQ(b(8 + i), mac[i]);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(b(18 + i), 0u);  // target MAC unknown
  // Sender and target protocol address: both the VIP.
  EXPECT_EQ(p.substr(14, 4), std::string("\xc0\x00\x02\x0a", 4));
  EXPECT_EQ(p.substr(24, 4), std::string("\xc0\x00\x02\x0a", 4));
}

}  // namespace
}  // namespace mailtwin::net
