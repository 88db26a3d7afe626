// Fuzzes what the witness reads from etcd (node/etcd_parse.h): a member of
// the etcd cluster, or whatever answers at its address, is a peer like any
// other. Invariants: no crash; what is accepted is within bounds (a leader
// value names a valid node and a believable epoch, an epoch is below
// kMaxEpoch, a key's value is at most 512 bytes, a lease has an ID); base64
// decodes what it encodes.
//
// Input: the first byte chooses the parser, the rest is its text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/epoch.h"
#include "node/etcd_parse.h"

using namespace mailtwin;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 5) {
    case 0: {
      ha::LeaderKey k;
      if (etcd::ParseLeaderValue(text, k).empty()) {
        if (k.epoch == 0 || k.epoch >= kMaxEpoch || k.holder.empty() || k.holder.size() > 64)
          std::abort();
        // What it accepted, written again, reads the same.
        ha::LeaderKey again;
        if (!etcd::ParseLeaderValue(etcd::LeaderValue(k.holder, k.epoch), again).empty() ||
            again.holder != k.holder || again.epoch != k.epoch)
          std::abort();
      }
      break;
    }
    case 1: {
      std::uint64_t e = 0;
      if (etcd::ParseEpoch(text, e).empty() && e >= kMaxEpoch) std::abort();
      break;
    }
    case 2: {
      auto d = etcd::Base64Decode(text);
      if (d && d->size() > text.size()) std::abort();
      auto back = etcd::Base64Decode(etcd::Base64Encode(text));
      if (!back || *back != text) std::abort();
      break;
    }
    case 3: {
      auto j = nlohmann::json::parse(text, nullptr, false);
      if (j.is_discarded()) break;
      etcd::KeyValue kv;
      if (etcd::ParseRange(j, "/mailtwin/lab/leader", kv).empty() && kv.exists &&
          (kv.mod_revision <= 0 || kv.lease < 0 || kv.value.size() > 512))
        std::abort();
      break;
    }
    case 4: {
      auto j = nlohmann::json::parse(text, nullptr, false);
      if (j.is_discarded()) break;
      std::int64_t id = 0, ttl = 0;
      if (etcd::ParseLease(j, id, ttl).empty() && (id <= 0 || ttl < 0)) std::abort();
      break;
    }
  }
  return 0;
}
