// tls_files.h - check-config's checks of this node's TLS files and identity
// (part of CheckEnvironment, so mailtwind refuses the same at start).
//
// - cert_file is a PEM certificate signed by ca_file's CA (else the peer
//   refuses this node), and it carries this node's name (a warning: the
//   peer's peer_name may be another name);
// - key_file is a PEM private key, it belongs to cert_file, and only root
//   can read it (mode 0600 or stricter, owned by root);
// - peer_name is not this node's name, nor a name of this node's own
//   certificate, and peer is not this node's own listen address: a node
//   replicating to itself, or accepting its own certificate as the peer's.
#pragma once

#include "common/config.h"

namespace mailtwin {

void CheckTlsFiles(const Config& c, ConfigErrors& out);
void CheckPeerIsNotSelf(const Config& c, ConfigErrors& out);

}  // namespace mailtwin
