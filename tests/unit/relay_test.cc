// The relay's pure parts: the PROXY v1 header it writes and reads, and the
// Postfix settings it needs (postfix/relay_config.h).
#include <gtest/gtest.h>

#include "postfix/relay_config.h"
#include "relay/proxy_header.h"

namespace mailtwin::relay {
namespace {

ProxyEndpoints Ends(const char* src, const char* dst, std::uint16_t sp, std::uint16_t dp) {
  return {asio::ip::make_address(src), asio::ip::make_address(dst), sp, dp};
}

TEST(ProxyHeader, WritesV1AsPostfixReadsIt) {
  EXPECT_EQ(FormatProxyV1(Ends("203.0.113.7", "192.0.2.25", 51234, 25)),
            "PROXY TCP4 203.0.113.7 192.0.2.25 51234 25\r\n");
  EXPECT_EQ(FormatProxyV1(Ends("2001:db8::7", "2001:db8::25", 1, 25)),
            "PROXY TCP6 2001:db8::7 2001:db8::25 1 25\r\n");
  // A v4 client on a dual-stack listener is written as v4.
  EXPECT_EQ(FormatProxyV1(Ends("::ffff:203.0.113.7", "::ffff:192.0.2.25", 2, 25)),
            "PROXY TCP4 203.0.113.7 192.0.2.25 2 25\r\n");
  // Never two families in one header (Postfix refuses it).
  EXPECT_EQ(FormatProxyV1(Ends("203.0.113.7", "2001:db8::25", 2, 25)),
            "PROXY TCP4 203.0.113.7 0.0.0.0 2 25\r\n");
}

TEST(ProxyHeader, ReadsBackWhatItWrites) {
  for (auto e : {Ends("203.0.113.7", "192.0.2.25", 51234, 25),
                 Ends("2001:db8::7", "2001:db8::25", 65535, 0)}) {
    auto back = ParseProxyV1(FormatProxyV1(e));
    ASSERT_TRUE(back);
    EXPECT_EQ(back->src, e.src);
    EXPECT_EQ(back->dst, e.dst);
    EXPECT_EQ(back->src_port, e.src_port);
    EXPECT_EQ(back->dst_port, e.dst_port);
  }
}

TEST(ProxyHeader, RefusesAnythingElse) {
  for (const char* bad : {
           "",
           "\r\n",
           "PROXY TCP4 203.0.113.7 192.0.2.25 51234 25",        // no CRLF
           "PROXY TCP4 203.0.113.7 192.0.2.25 51234 25\n",      // LF only
           "PROXY UNKNOWN\r\n",                                 // we never write it
           "PROXY TCP4 203.0.113.7 192.0.2.25 51234\r\n",       // a field short
           "PROXY TCP4 203.0.113.7 192.0.2.25 51234 25 x\r\n",  // a field more
           "PROXY TCP4 203.0.113.7  192.0.2.25 51234 25\r\n",   // two spaces
           "PROXY TCP4 203.0.113.7 192.0.2.25 51234 25 \r\n",   // trailing space
           "PROXY TCP6 203.0.113.7 192.0.2.25 51234 25\r\n",    // family mismatch
           "PROXY TCP4 2001:db8::7 192.0.2.25 51234 25\r\n",
           "PROXY TCP4 203.0.113.7 192.0.2.25 65536 25\r\n",    // port range
           "PROXY TCP4 203.0.113.7 192.0.2.25 -1 25\r\n",
           "PROXY TCP4 203.0.113.7 192.0.2.25 +1 25\r\n",
           "PROXY TCP4 203.0.113.7 192.0.2.25 0080 25\r\n",     // leading zero
           "PROXY TCP4 203.0.113.999 192.0.2.25 1 25\r\n",
           "proxy TCP4 203.0.113.7 192.0.2.25 1 25\r\n",
           "EHLO x\r\n",
       })
    EXPECT_FALSE(ParseProxyV1(bad)) << bad;
  // Over 107 bytes, even if well formed otherwise.
  std::string longest = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  EXPECT_LE(longest.size(), kMaxProxyV1);
  EXPECT_TRUE(ParseProxyV1(longest));
  EXPECT_FALSE(ParseProxyV1("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 065535\r\n"));
}

TEST(RelayConfig, PostfixLeavesPort25AndReadsTheHeader) {
  Config c;
  EXPECT_TRUE(postfix::RelayCommands(c).empty());  // relay off: nothing changes
  EXPECT_EQ(postfix::PublicServices(c, {"smtp"}), std::vector<std::string>{"smtp"});
  c.relay_listen = "0.0.0.0:25";
  auto cmds = postfix::RelayCommands(c);
  ASSERT_EQ(cmds.size(), 3u);
  EXPECT_EQ(cmds[0], (std::vector<std::string>{"-M#", "smtp/inet"}));
  EXPECT_EQ(cmds[1], (std::vector<std::string>{
                         "-M", "127.0.0.1:10024/inet=127.0.0.1:10024 inet n - n - - smtpd"}));
  EXPECT_EQ(cmds[2], (std::vector<std::string>{
                         "-P", "127.0.0.1:10024/inet/smtpd_upstream_proxy_protocol=haproxy"}));
  // The gate sits behind the relay's smtpd instead of "smtp".
  EXPECT_EQ(postfix::PublicServices(c, {"smtp", "submission"}),
            (std::vector<std::string>{"127.0.0.1:10024", "submission"}));
}

TEST(RelayConfig, ChecksSayWhatIsMissing) {
  Config c;
  c.relay_listen = "0.0.0.0:25";
  postfix::RelayInspection r;
  r.on_port_25 = {"smtp"};
  ConfigErrors out;
  postfix::CheckRelay(c, r, out);
  ASSERT_EQ(out.errors.size(), 2u);
  EXPECT_NE(out.errors[0].find("listens on port 25 itself"), std::string::npos);
  EXPECT_NE(out.errors[1].find("no smtpd service on 127.0.0.1:10024"), std::string::npos);
  r = {};
  r.smtpd = true;
  out = {};
  postfix::CheckRelay(c, r, out);
  ASSERT_EQ(out.errors.size(), 1u);
  EXPECT_NE(out.errors[0].find("PROXY protocol"), std::string::npos);
  r.proxy_protocol = true;
  out = {};
  postfix::CheckRelay(c, r, out);
  EXPECT_TRUE(out.ok());
}

}  // namespace
}  // namespace mailtwin::relay
