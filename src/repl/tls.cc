#include "repl/tls.h"

#include <fmt/format.h>

namespace mailtwin::repl {

std::string ConfigureTls(asio::ssl::context& ctx, const Config& cfg) {
  asio::error_code ec;
  ctx.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                      asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                      asio::ssl::context::no_tlsv1_1 | asio::ssl::context::no_tlsv1_2,
                  ec);
  ctx.load_verify_file(cfg.ca_file, ec);
  if (ec) return fmt::format("cannot load CA {}: {}", cfg.ca_file, ec.message());
  ctx.use_certificate_chain_file(cfg.cert_file, ec);
  if (ec) return fmt::format("cannot load certificate {}: {}", cfg.cert_file, ec.message());
  ctx.use_private_key_file(cfg.key_file, asio::ssl::context::pem, ec);
  if (ec) return fmt::format("cannot load key {}: {}", cfg.key_file, ec.message());
  ctx.set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
  ctx.set_verify_callback(asio::ssl::host_name_verification(cfg.peer_name));
  return {};
}

}  // namespace mailtwin::repl
