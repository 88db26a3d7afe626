#include "metrics/exposition.h"

#include <set>

#include <fmt/format.h>

namespace mailtwin::metrics {
namespace {

std::string Sanitize(std::string_view s) {
  std::string out;
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
  return out;
}

std::string Escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// String fields worth exporting as info gauges (bounded sets of values).
const std::set<std::string> kInfo = {"role", "replication_state", "replication_side",
                                     "gate_durability", "ha_failover", "ha_failback"};

void Walk(const nlohmann::json& j, const std::string& path, const std::string& labels,
          std::string& out) {
  if (j.is_object()) {
    for (const auto& [k, v] : j.items())
      Walk(v, path.empty() ? Sanitize(k) : path + "_" + Sanitize(k), labels, out);
    return;
  }
  if (path == "ok") return;
  if (j.is_boolean()) {
    out += fmt::format("mailtwin_{}{{{}}} {}\n", path, labels, j.get<bool>() ? 1 : 0);
  } else if (j.is_number()) {
    double v = j.get<double>();
    out += fmt::format("mailtwin_{}{{{}}} {}\n", path, labels, v);
  } else if (j.is_string() && kInfo.count(path)) {
    out += fmt::format("mailtwin_{}_info{{{},value=\"{}\"}} 1\n", path, labels,
                       Escape(j.get<std::string>()));
  }
}

}  // namespace

std::string Exposition(const nlohmann::json& status) {
  std::string labels = fmt::format("node=\"{}\",cluster=\"{}\"",
                                   Escape(status.value("node", "")),
                                   Escape(status.value("cluster", "")));
  std::string out;
  nlohmann::json copy = status;
  if (copy.contains("ha")) copy["ha"].erase("events");  // the event texts are not metrics
  Walk(copy, "", labels, out);
  return out;
}

}  // namespace mailtwin::metrics
