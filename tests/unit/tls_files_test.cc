// check-config's TLS and identity checks against real files made by the
// openssl command: a certificate of another CA, a key of another
// certificate, a readable key, peer_name or peer naming this node.
#include "common/tls_files.h"

#include <sys/stat.h>

#include <algorithm>

#include <gtest/gtest.h>

#include "common/process.h"
#include "test_util.h"

using namespace mailtwin;

namespace {

// A CA and certificates it signs, in a temporary directory.
class Pki {
 public:
  explicit Pki(const std::string& dir) : dir_(dir) {}
  void Ca(const std::string& name) {
    Run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=" + name, "-keyout", Path(name, "key"), "-out",
         Path(name, "pem")});
  }
  void Cert(const std::string& ca, const std::string& name) {
    Run({"openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", "/CN=" + name, "-keyout", Path(name, "key"), "-out", Path(name, "csr")});
    Run({"openssl", "x509", "-req", "-in", Path(name, "csr"), "-CA", Path(ca, "pem"), "-CAkey",
         Path(ca, "key"), "-CAcreateserial", "-days", "2", "-out", Path(name, "pem")});
    chmod(Path(name, "key").c_str(), 0600);
  }
  std::string Path(const std::string& name, const std::string& ext) const {
    return dir_ + "/" + name + "." + ext;
  }

 private:
  static void Run(const std::vector<std::string>& argv) {
    auto r = RunCommand(argv);
    ASSERT_TRUE(r.ok()) << r.output;
  }
  std::string dir_;
};

class TlsFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_.Ca("ca");
    pki_.Ca("other-ca");
    pki_.Cert("ca", "main");
    pki_.Cert("ca", "backup");
    pki_.Cert("other-ca", "stranger");
    cfg_.node_name = "main";
    cfg_.peer_name = "backup";
    cfg_.ca_file = pki_.Path("ca", "pem");
    cfg_.cert_file = pki_.Path("main", "pem");
    cfg_.key_file = pki_.Path("main", "key");
    cfg_.listen = "10.0.0.1:7525";
    cfg_.peer = "10.0.0.2:7525";
  }
  // All errors of both checks, one per line.
  std::string Errors() {
    ConfigErrors out;
    CheckTlsFiles(cfg_, out);
    CheckPeerIsNotSelf(cfg_, out);
    std::string all;
    for (const auto& e : out.errors) all += e + "\n";
    return all;
  }
  mailtwin::testing::TempDir tmp_;
  Pki pki_{tmp_.path()};
  Config cfg_;
};

bool Has(const std::string& all, const std::string& words) {
  return all.find(words) != std::string::npos;
}

}  // namespace

TEST_F(TlsFilesTest, AGoodNodePasses) { EXPECT_EQ(Errors(), ""); }

TEST_F(TlsFilesTest, CertificateOfAnotherCa) {
  cfg_.cert_file = pki_.Path("stranger", "pem");
  cfg_.key_file = pki_.Path("stranger", "key");
  EXPECT_TRUE(Has(Errors(), "does not verify against ca_file")) << Errors();
}

TEST_F(TlsFilesTest, KeyOfAnotherCertificate) {
  cfg_.key_file = pki_.Path("backup", "key");
  std::string all = Errors();
  EXPECT_TRUE(Has(all, "does not belong to cert_file")) << all;
  EXPECT_FALSE(Has(all, "not a PEM private key")) << all;
}

TEST_F(TlsFilesTest, NotAKey) {
  cfg_.key_file = pki_.Path("main", "csr");
  chmod(cfg_.key_file.c_str(), 0600);
  EXPECT_TRUE(Has(Errors(), "is not a PEM private key")) << Errors();
}

TEST_F(TlsFilesTest, WorldReadableKey) {
  chmod(cfg_.key_file.c_str(), 0644);
  EXPECT_TRUE(Has(Errors(), "can be read by others (mode 0644)")) << Errors();
  chmod(cfg_.key_file.c_str(), 0640);
  EXPECT_TRUE(Has(Errors(), "can be read by others (mode 0640)")) << Errors();
}

TEST_F(TlsFilesTest, KeyNotOwnedByRoot) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give the key away";
  ASSERT_EQ(chown(cfg_.key_file.c_str(), 65534, 65534), 0);
  EXPECT_TRUE(Has(Errors(), "is owned by uid 65534, not root")) << Errors();
}

TEST_F(TlsFilesTest, PeerNameIsThisNode) {
  cfg_.peer_name = "main";
  EXPECT_TRUE(Has(Errors(), "peer_name main is this node's own name")) << Errors();
}

TEST_F(TlsFilesTest, PeerIsOwnListenAddress) {
  cfg_.peer = cfg_.listen;
  EXPECT_TRUE(Has(Errors(), "is this node's own listen address")) << Errors();
  cfg_.listen = "0.0.0.0:7525";
  cfg_.peer = "127.0.0.1:7525";
  EXPECT_TRUE(Has(Errors(), "is this node's own listen address")) << Errors();
  cfg_.peer = "127.0.0.1:7526";  // another port: another daemon may listen there
  EXPECT_FALSE(Has(Errors(), "own listen address")) << Errors();
}
