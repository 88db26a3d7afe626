// exposition.h - Prometheus text exposition of mailtwind's status.
//
// Every number and boolean of `mailtwin status --json` becomes a gauge
// named mailtwin_<path> (path joined with '_', non-alphanumerics as '_'),
// labelled with the node; strings that name a state (role, link state,
// durability) become info gauges: mailtwin_<path>_info{value="..."} 1.
// Pure: tested without sockets.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace mailtwin::metrics {

std::string Exposition(const nlohmann::json& status);

}  // namespace mailtwin::metrics
