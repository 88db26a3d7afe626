// proxy_header.h - the HAProxy PROXY protocol, version 1 (the text line),
// as the relay writes it to Postfix's smtpd (smtpd_upstream_proxy_protocol
// = haproxy) and reads it from the peer node's relay.
//
//   "PROXY TCP4 203.0.113.7 192.0.2.25 51234 25\r\n"   (at most 107 bytes)
//
// Guarantees: ParseProxyV1 accepts only a complete, well-formed TCP4/TCP6
// line (no UNKNOWN, no leading zeros or signs in ports, addresses of the
// family named), so a header this node passes on is always one it could
// have written itself. Pure functions; no threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <asio/ip/address.hpp>

namespace mailtwin::relay {

// The longest v1 line, CRLF included (the specification's 107 bytes).
inline constexpr std::size_t kMaxProxyV1 = 107;

struct ProxyEndpoints {
  asio::ip::address src, dst;
  std::uint16_t src_port = 0, dst_port = 0;
};

// The v1 line for a connection from src to dst. Both addresses must be of
// one family (a v4-mapped v6 address is written as v4).
std::string FormatProxyV1(const ProxyEndpoints& e);

// line: one header, CRLF included. nullopt for anything else.
std::optional<ProxyEndpoints> ParseProxyV1(std::string_view line);

}  // namespace mailtwin::relay
