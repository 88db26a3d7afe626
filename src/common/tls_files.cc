// tls_files.cc - see tls_files.h.
#include "common/tls_files.h"

#include <ifaddrs.h>
#include <netdb.h>
#include <sys/stat.h>

#include <cstdio>
#include <memory>

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

namespace mailtwin {
namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE, X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;

// One PEM object from path, read by PEM_read_X509 or PEM_read_PrivateKey.
template <typename Ptr, typename Reader>
Ptr ReadPem(const std::string& path, Reader read) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return nullptr;
  Ptr p(read(f, nullptr, nullptr, nullptr));
  std::fclose(f);
  return p;
}

// The certificate carries name as a DNS subjectAltName or as its CN: what
// the peer's check of peer_name accepts.
bool Names(X509* cert, const std::string& name) {
  if (X509_check_host(cert, name.data(), name.size(), 0, nullptr) == 1) return true;
  char cn[256] = {};
  int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
  return n > 0 && name == std::string(cn, static_cast<std::size_t>(n));
}

// Why cert does not verify against the CA file, or "".
std::string VerifyAgainstCa(X509* cert, const std::string& ca_file) {
  StorePtr store(X509_STORE_new());
  if (X509_STORE_load_file(store.get(), ca_file.c_str()) != 1) return "ca_file holds no certificate";
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), cert, nullptr);
  if (X509_verify_cert(ctx.get()) == 1) return {};
  return X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
}

void CheckKeyPermissions(const Config& c, ConfigErrors& out) {
  struct stat st;
  if (stat(c.key_file.c_str(), &st) != 0) return;  // CheckReadable said it
  if (st.st_mode & 077)
    out.errors.push_back(fmt::format(
        "[tls] key_file {} can be read by others (mode {:04o}): anyone who reads it can pose as "
        "this node. Run: chmod 600 {}",
        c.key_file, st.st_mode & 07777, c.key_file));
  if (st.st_uid != 0)
    out.errors.push_back(fmt::format(
        "[tls] key_file {} is owned by uid {}, not root: that user can pose as this node. Run: "
        "chown root: {}",
        c.key_file, st.st_uid, c.key_file));
}

}  // namespace

void CheckTlsFiles(const Config& c, ConfigErrors& out) {
  auto cert = ReadPem<X509Ptr>(c.cert_file, PEM_read_X509);
  auto key = ReadPem<KeyPtr>(c.key_file, PEM_read_PrivateKey);
  if (!cert)
    out.errors.push_back(fmt::format("[tls] cert_file {} is not a PEM certificate", c.cert_file));
  if (!key)
    out.errors.push_back(fmt::format("[tls] key_file {} is not a PEM private key", c.key_file));
  if (cert && key && X509_check_private_key(cert.get(), key.get()) != 1)
    out.errors.push_back(fmt::format(
        "[tls] key_file {} does not belong to cert_file {} (the key of another certificate)",
        c.key_file, c.cert_file));
  ERR_clear_error();
  CheckKeyPermissions(c, out);
  if (!cert) return;
  if (std::string why = VerifyAgainstCa(cert.get(), c.ca_file); !why.empty())
    out.errors.push_back(fmt::format(
        "[tls] cert_file {} does not verify against ca_file {} ({}): the peer would refuse this "
        "node. Use a certificate signed by the cluster's CA",
        c.cert_file, c.ca_file, why));
  if (!Names(cert.get(), c.node_name))
    out.warnings.push_back(fmt::format(
        "[tls] cert_file {} carries neither DNS:{} nor CN={}: the peer's peer_name must name "
        "whatever it carries",
        c.cert_file, c.node_name, c.node_name));
  if (!c.peer_name.empty() && c.peer_name != c.node_name && Names(cert.get(), c.peer_name))
    out.errors.push_back(fmt::format(
        "[tls] peer_name {} is a name of this node's own certificate {}: this node would accept "
        "its own certificate as its peer's. peer_name must name the peer's certificate",
        c.peer_name, c.cert_file));
  ERR_clear_error();
}

void CheckPeerIsNotSelf(const Config& c, ConfigErrors& out) {
  if (c.peer_name == c.node_name)
    out.errors.push_back(fmt::format(
        "[tls] peer_name {} is this node's own name: it must be the name in the peer's "
        "certificate",
        c.peer_name));
  std::string peer_host, listen_host;
  std::uint16_t peer_port = 0, listen_port = 0;
  if (!SplitHostPort(c.peer, peer_host, peer_port) ||
      !SplitHostPort(c.listen, listen_host, listen_port) || peer_port != listen_port)
    return;
  bool self = peer_host == listen_host;
  // Or any address of this host, when the listener takes them all.
  ifaddrs* ifs = nullptr;
  if (!self && getifaddrs(&ifs) == 0) {
    for (ifaddrs* i = ifs; i && !self; i = i->ifa_next) {
      if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
        continue;
      char host[NI_MAXHOST];
      socklen_t len = i->ifa_addr->sa_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
      if (getnameinfo(i->ifa_addr, len, host, sizeof host, nullptr, 0, NI_NUMERICHOST) == 0)
        self = peer_host == host && (listen_host == "0.0.0.0" || listen_host == "::");
    }
    freeifaddrs(ifs);
  }
  if (self)
    out.errors.push_back(fmt::format(
        "[replication] peer {} is this node's own listen address ({}): the primary would "
        "replicate to itself. peer must be the other node's listen address",
        c.peer, c.listen));
}

}  // namespace mailtwin
