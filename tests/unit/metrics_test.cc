#include "metrics/exposition.h"
#include "metrics/http_server.h"

#include <gtest/gtest.h>

using namespace mailtwin::metrics;

TEST(Metrics, StatusBecomesGauges) {
  nlohmann::json st = {{"ok", true},
                       {"node", "mx1"},
                       {"cluster", "lab"},
                       {"role", "primary"},
                       {"epoch", 7},
                       {"replication", {{"state", "live"}, {"lag_p99_ms", 2.5}, {"acked_seq", 42}}},
                       {"gate", {{"unprotected", 0}, {"durability", "sync"}}},
                       {"ha", {{"paused", false}, {"events", {{{"seq", 1}}}}, {"decision", "x"}}}};
  std::string m = Exposition(st);
  EXPECT_NE(m.find("mailtwin_epoch{node=\"mx1\",cluster=\"lab\"} 7\n"), std::string::npos) << m;
  EXPECT_NE(m.find("mailtwin_replication_lag_p99_ms{node=\"mx1\",cluster=\"lab\"} 2.5\n"),
            std::string::npos);
  EXPECT_NE(m.find("mailtwin_ha_paused{node=\"mx1\",cluster=\"lab\"} 0\n"), std::string::npos);
  EXPECT_NE(m.find("mailtwin_role_info{node=\"mx1\",cluster=\"lab\",value=\"primary\"} 1\n"),
            std::string::npos);
  EXPECT_NE(m.find("mailtwin_replication_state_info{node=\"mx1\",cluster=\"lab\",value=\"live\"} 1"),
            std::string::npos);
  EXPECT_EQ(m.find("mailtwin_ok"), std::string::npos);
  EXPECT_EQ(m.find("events"), std::string::npos);
  EXPECT_EQ(m.find("decision"), std::string::npos);  // free text is not a metric
}

TEST(Metrics, OnlyGetMetricsIsServed) {
  auto body = [] { return std::string("mailtwin_epoch 1\n"); };
  EXPECT_NE(Respond("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", body).find("200 OK"),
            std::string::npos);
  EXPECT_NE(Respond("GET /metrics HTTP/1.1\r\n\r\n", body).find("mailtwin_epoch 1"),
            std::string::npos);
  EXPECT_NE(Respond("GET / HTTP/1.1\r\n\r\n", body).find("404"), std::string::npos);
  EXPECT_NE(Respond("POST /metrics HTTP/1.1\r\n\r\n", body).find("405"), std::string::npos);
  EXPECT_NE(Respond(std::string(9000, 'x'), body).find("405"), std::string::npos);
}
