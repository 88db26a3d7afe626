// tls.h - mutual TLS for the replication link.
//
// Both sides present a certificate signed by the cluster's CA and verify the
// peer's against it; the peer's certificate must also name the configured
// peer_name (subjectAltName DNS or CN). TLS 1.3 only.
#pragma once

#include <string>

#include <asio/ssl.hpp>

#include "common/config.h"

namespace mailtwin::repl {

// Returns "" on success, else what is wrong with the files.
std::string ConfigureTls(asio::ssl::context& ctx, const Config& cfg);

}  // namespace mailtwin::repl
