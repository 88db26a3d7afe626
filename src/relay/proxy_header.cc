#include "relay/proxy_header.h"

#include <charconv>
#include <vector>

#include <fmt/format.h>

namespace mailtwin::relay {

namespace {

asio::ip::address Unmapped(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  return a;
}

std::optional<std::uint16_t> Port(std::string_view s) {
  // Decimal, no sign, no leading zero (the specification's form): a
  // header that could be written two ways is not one this node writes.
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(v);
}

}  // namespace

std::string FormatProxyV1(const ProxyEndpoints& e) {
  asio::ip::address src = Unmapped(e.src), dst = Unmapped(e.dst);
  // Postfix refuses a header whose two addresses differ in family; a
  // client on v4 that reached a v6 listener is written as v4 above, and a
  // mixed pair left over names the client's family for both.
  if (src.is_v4() != dst.is_v4())
    dst = src.is_v4() ? asio::ip::address(asio::ip::address_v4::any())
                      : asio::ip::address(asio::ip::address_v6::any());
  return fmt::format("PROXY {} {} {} {} {}\r\n", src.is_v4() ? "TCP4" : "TCP6", src.to_string(),
                     dst.to_string(), e.src_port, e.dst_port);
}

std::optional<ProxyEndpoints> ParseProxyV1(std::string_view line) {
  if (line.size() > kMaxProxyV1 || line.size() < 2 || line.substr(line.size() - 2) != "\r\n")
    return std::nullopt;
  line.remove_suffix(2);
  std::vector<std::string_view> f;
  while (!line.empty()) {
    auto sp = line.find(' ');
    f.push_back(line.substr(0, sp));
    if (sp == std::string_view::npos) break;
    line.remove_prefix(sp + 1);
    if (line.empty()) return std::nullopt;  // a trailing space
  }
  if (f.size() != 6 || f[0] != "PROXY" || (f[1] != "TCP4" && f[1] != "TCP6"))
    return std::nullopt;
  ProxyEndpoints e;
  asio::error_code ec1, ec2;
  e.src = asio::ip::make_address(std::string(f[2]), ec1);
  e.dst = asio::ip::make_address(std::string(f[3]), ec2);
  if (ec1 || ec2) return std::nullopt;
  bool v4 = f[1] == "TCP4";
  if (e.src.is_v4() != v4 || e.dst.is_v4() != v4) return std::nullopt;
  auto sp = Port(f[4]), dp = Port(f[5]);
  if (!sp || !dp) return std::nullopt;
  e.src_port = *sp;
  e.dst_port = *dp;
  return e;
}

}  // namespace mailtwin::relay
