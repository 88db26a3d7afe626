#include "common/config.h"

#include <fstream>

#include <gtest/gtest.h>

#include "test_util.h"

namespace mailtwin {
namespace {

const char* kGood = R"(
[node]
name = "backup"
cluster = "lab"
role = "standby"
state_dir = "/var/lib/mailtwin"

[postfix]
config_dir = "/etc/postfix"

[replication]
listen = "10.0.0.2:7525"
peer = "10.0.0.1:7525"
heartbeat_interval = "100ms"
peer_timeout = "1s"

[tls]
ca_file = "/etc/mailtwin/ca.pem"
cert_file = "/etc/mailtwin/backup.pem"
key_file = "/etc/mailtwin/backup.key"
peer_name = "main"
)";

std::optional<Config> Load(const std::string& text, ConfigErrors& errs) {
  mailtwin::testing::TempDir dir;
  std::string path = dir.path() + "/mailtwin.toml";
  std::ofstream(path) << text;
  return LoadConfig(path, errs);
}

TEST(Config, GoodFileLoads) {
  ConfigErrors errs;
  auto c = Load(kGood, errs);
  ASSERT_TRUE(c) << (errs.errors.empty() ? "" : errs.errors[0]);
  EXPECT_EQ(c->node_name, "backup");
  EXPECT_EQ(c->role, NodeRole::kStandby);
  EXPECT_EQ(c->heartbeat_interval, Millis(100));
  EXPECT_EQ(c->peer_timeout, Millis(1000));
}

TEST(Config, EveryProblemIsReportedWithItsLine) {
  std::string text = kGood;
  text.replace(text.find("role = \"standby\""), 16, "role = \"backup\"");
  text.replace(text.find("heartbeat_interval"), 18, "heartbeat_intervall");
  text += "\n[extra]\n";
  ConfigErrors errs;
  EXPECT_FALSE(Load(text, errs));
  std::string all;
  for (const auto& e : errs.errors) all += e + "\n";
  EXPECT_NE(all.find("role is \"backup\""), std::string::npos) << all;
  EXPECT_NE(all.find("unknown key 'heartbeat_intervall'"), std::string::npos) << all;
  EXPECT_NE(all.find("line "), std::string::npos) << all;
  EXPECT_NE(all.find("unknown section [extra]"), std::string::npos) << all;
}

TEST(Config, MissingKeysAndBadAddresses) {
  ConfigErrors errs;
  EXPECT_FALSE(Load("[node]\nname = \"a\"\n[replication]\nlisten = \"nope\"\npeer = \"1.2.3.4:0\"\n",
                    errs));
  std::string all;
  for (const auto& e : errs.errors) all += e + "\n";
  EXPECT_NE(all.find("[node] cluster is missing"), std::string::npos) << all;
  EXPECT_NE(all.find("listen \"nope\" is not host:port"), std::string::npos) << all;
  EXPECT_NE(all.find("peer \"1.2.3.4:0\" is not host:port"), std::string::npos) << all;
  EXPECT_NE(all.find("[tls] ca_file is missing"), std::string::npos) << all;
}

TEST(Config, TimeoutMustCoverHeartbeats) {
  std::string text = kGood;
  text.replace(text.find("peer_timeout = \"1s\""), 19, "peer_timeout = 150");
  ConfigErrors errs;
  EXPECT_FALSE(Load(text, errs));
  ASSERT_EQ(errs.errors.size(), 1u);
  EXPECT_NE(errs.errors[0].find("at least twice"), std::string::npos);
}

TEST(Config, SyntaxErrorNamesTheLine) {
  ConfigErrors errs;
  EXPECT_FALSE(Load("[node]\nname = \n", errs));
  ASSERT_EQ(errs.errors.size(), 1u);
  EXPECT_NE(errs.errors[0].find("line 2"), std::string::npos) << errs.errors[0];
}

TEST(Config, MetricsListen) {
  std::string text = kGood;
  text += "\n[metrics]\nlisten = \"127.0.0.1:9725\"\n";
  ConfigErrors errs;
  auto c = Load(text, errs);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->metrics_listen, "127.0.0.1:9725");
  ConfigErrors e2;
  EXPECT_FALSE(Load(std::string(kGood) + "\n[metrics]\nlisten = \"9725\"\n", e2));
}

TEST(Config, Vip) {
  ConfigErrors e;
  auto c = Load(std::string(kGood) + "\n[vip]\naddress = \"10.0.0.100/24\"\ninterface = \"eth0\"\n", e);
  ASSERT_TRUE(c) << ::testing::PrintToString(e.errors);
  EXPECT_EQ(c->vip_address, "10.0.0.100/24");
  EXPECT_EQ(c->vip_interface, "eth0");
  // No prefix: a host address.
  c = Load(std::string(kGood) + "\n[vip]\naddress = \"10.0.0.100\"\ninterface = \"eth0\"\n", e);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->vip_address, "10.0.0.100/32");
  // IPv6, in its canonical form.
  c = Load(std::string(kGood) + "\n[vip]\naddress = \"FD00:0::100/64\"\ninterface = \"eth0\"\n", e);
  ASSERT_TRUE(c) << ::testing::PrintToString(e.errors);
  EXPECT_EQ(c->vip_address, "fd00::100/64");
  // Each mistake is named.
  auto errors = [](const std::string& vip) {
    ConfigErrors e;
    EXPECT_FALSE(Load(std::string(kGood) + "\n[vip]\n" + vip, e));
    return ::testing::PrintToString(e.errors);
  };
  EXPECT_NE(errors("address = \"10.0.0.100/24\"\n").find("interface is missing"), std::string::npos);
  EXPECT_NE(errors("interface = \"eth0\"\n").find("address is not"), std::string::npos);
  EXPECT_NE(errors("address = \"10.0.0.300\"\ninterface = \"eth0\"\n").find("not an IPv4"),
            std::string::npos);
  EXPECT_NE(errors("address = \"10.0.0.1/33\"\ninterface = \"eth0\"\n").find("prefix"),
            std::string::npos);
  EXPECT_NE(errors("address = \"fe80::1/64\"\ninterface = \"eth0\"\n").find("link-local"),
            std::string::npos);
  EXPECT_NE(errors("address = \"fd00::1/129\"\ninterface = \"eth0\"\n").find("1 to 128"),
            std::string::npos);
  EXPECT_NE(errors("address = \"127.0.0.5\"\ninterface = \"lo\"\n").find("loopback"),
            std::string::npos);
  EXPECT_NE(errors("address = \"10.0.0.1\"\ninterface = \"eth0/x\"\n").find("not an interface"),
            std::string::npos);
}

TEST(Config, Witness) {
  ConfigErrors none;
  auto plain = Load(kGood, none);
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->witness());  // no section: no witness, as before

  ConfigErrors errs;
  auto c = Load(std::string(kGood) + R"(
[witness]
endpoints = ["https://10.0.0.5:2379", "https://10.0.0.6:2379"]
ca_file = "/etc/mailtwin/etcd-ca.pem"
cert_file = "/etc/mailtwin/etcd.pem"
key_file = "/etc/mailtwin/etcd.key"
prefix = "/mx/"
ttl = "6s"
)",
                errs);
  ASSERT_TRUE(c) << (errs.errors.empty() ? "" : errs.errors[0]);
  EXPECT_TRUE(c->witness());
  EXPECT_EQ(c->witness_endpoints.size(), 2u);
  EXPECT_EQ(c->witness_ttl, Millis(6000));
  EXPECT_EQ(c->WitnessKey("leader"), "/mx/lab/leader");
  EXPECT_TRUE(errs.warnings.empty());

  ConfigErrors warn;
  auto h = Load(std::string(kGood) + "\n[witness]\nendpoints = [\"http://10.0.0.5:2379\"]\n", warn);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->witness_ttl, Millis(10000));
  EXPECT_EQ(h->WitnessKey("epoch"), "/mailtwin/lab/epoch");
  ASSERT_EQ(warn.warnings.size(), 1u);
  EXPECT_NE(warn.warnings[0].find("plain http://"), std::string::npos);

  for (const char* bad :
       {"endpoints = []", "endpoints = \"https://10.0.0.5:2379\"",
        "endpoints = [\"10.0.0.5:2379\"]", "endpoints = [\"https://10.0.0.5:2379/v3\"]",
        "endpoints = [\"https://e:2379\"]\nttl = \"1s\"",
        "endpoints = [\"https://e:2379\"]\nttl = \"2500ms\"",
        "endpoints = [\"https://e:2379\"]\nprefix = \"mailtwin\"",
        "endpoints = [\"https://e:2379\"]\ncert_file = \"/x.pem\"",
        "endpoints = [\"https://e:2379\"]\nleader = \"x\""}) {
    ConfigErrors e;
    EXPECT_FALSE(Load(std::string(kGood) + "\n[witness]\n" + bad + "\n", e)) << bad;
    EXPECT_FALSE(e.errors.empty()) << bad;
  }
}

TEST(Config, Durations) {
  EXPECT_EQ(ParseDuration("250ms"), Millis(250));
  EXPECT_EQ(ParseDuration("2s"), Millis(2000));
  EXPECT_EQ(ParseDuration("1m"), Millis(60000));
  EXPECT_EQ(ParseDuration("40"), Millis(40));
  EXPECT_EQ(ParseDuration("2h"), Millis(2 * 3600 * 1000));
  EXPECT_EQ(ParseDuration("5d"), Millis(5LL * 86400 * 1000));
  EXPECT_FALSE(ParseDuration("2x"));
  EXPECT_FALSE(ParseDuration("99999999999d"));  // would overflow
  EXPECT_FALSE(ParseDuration("-1s"));
  EXPECT_FALSE(ParseDuration("500us"));  // not whole milliseconds
  EXPECT_EQ(ParseDurationUs("500us"), std::chrono::microseconds(500));
  EXPECT_EQ(ParseDurationUs("2ms"), std::chrono::microseconds(2000));
}

TEST(Config, BatchDelay) {
  std::string text = kGood;
  text.replace(text.find("peer_timeout"), 0, "batch_delay = \"250us\"\n");
  ConfigErrors errs;
  auto c = Load(text, errs);
  ASSERT_TRUE(c) << errs.errors[0];
  EXPECT_EQ(c->batch_delay, std::chrono::microseconds(250));
  text.replace(text.find("\"250us\""), 7, "\"90ms\"");
  ConfigErrors errs2;
  EXPECT_FALSE(Load(text, errs2));
}

TEST(Config, Dedup) {
  ConfigErrors errs;
  auto c = Load(kGood, errs);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->dedup_window, Millis(30000));
  EXPECT_EQ(c->dedup_retention, Millis(5LL * 86400 * 1000));
  ConfigErrors e1;
  c = Load(std::string(kGood) + "\n[gate]\ndedup_window = \"0s\"\ndedup_retention = \"2h\"\n", e1);
  ASSERT_TRUE(c) << e1.errors[0];
  EXPECT_EQ(c->dedup_window, Millis(0));
  EXPECT_EQ(c->dedup_retention, Millis(7200000));
  for (const char* bad : {"dedup_window = \"11m\"", "dedup_retention = \"30s\"",
                          "dedup_retention = \"40d\"", "dedup_window = \"-1s\""}) {
    ConfigErrors e;
    EXPECT_FALSE(Load(std::string(kGood) + "\n[gate]\n" + bad + "\n", e)) << bad;
  }
}

}  // namespace
}  // namespace mailtwin

namespace mailtwin {
namespace {

TEST(Config, GateDefaultsAndErrors) {
  ConfigErrors errs;
  auto c = Load(kGood, errs);
  ASSERT_TRUE(c) << ::testing::PrintToString(errs.errors);
  EXPECT_EQ(c->durability, Durability::kSync);
  EXPECT_EQ(c->sync_timeout, Millis(1000));
  EXPECT_EQ(c->gate_listen, "127.0.0.1:10025");
  EXPECT_EQ(c->gate_after_filter, "127.0.0.1:10026");

  ConfigErrors e2;
  auto c2 = Load(std::string(kGood) + "[gate]\ndurability = \"async\"\nafter_filter = "
                                      "\"unix:/var/spool/postfix/private/mt-after\"\n",
                 e2);
  ASSERT_TRUE(c2) << ::testing::PrintToString(e2.errors);
  EXPECT_EQ(c2->durability, Durability::kAsync);

  ConfigErrors e3;
  EXPECT_FALSE(Load(std::string(kGood) + "[gate]\ndurability = \"maybe\"\nlisten = \"x\"\n"
                                         "sync_timeout = \"5m\"\nafter_filter = \"unix:rel\"\n",
                    e3));
  ASSERT_EQ(e3.errors.size(), 4u) << ::testing::PrintToString(e3.errors);
  EXPECT_NE(e3.errors[0].find("\"maybe\""), std::string::npos);
  EXPECT_NE(e3.errors[1].find("listen"), std::string::npos);
  EXPECT_NE(e3.errors[2].find("after_filter"), std::string::npos);
  EXPECT_NE(e3.errors[3].find("sync_timeout"), std::string::npos);

  ConfigErrors e4;
  auto c4 = Load(std::string(kGood) + "[gate]\ndurability = \"strict\"\n", e4);
  ASSERT_TRUE(c4) << ::testing::PrintToString(e4.errors);
  EXPECT_EQ(c4->durability, Durability::kStrict);
}

}  // namespace
TEST(Config, FailoverDefaultsAndErrors) {
  ConfigErrors errs;
  auto c = Load(kGood, errs);
  ASSERT_TRUE(c) << ::testing::PrintToString(errs.errors);
  EXPECT_TRUE(c->auto_failover);
  EXPECT_TRUE(c->manage_postfix);
  EXPECT_EQ(c->check_interval, Millis(250));
  EXPECT_EQ(c->fail_threshold, 3);
  EXPECT_EQ(c->probe_timeout, Millis(700));
  // The probe goes to the peer's host, port 25, unless told otherwise.
  std::string host;
  std::uint16_t port = 0;
  ASSERT_TRUE(SplitHostPort(c->peer, host, port));
  EXPECT_EQ(c->probe, host + ":25");

  ConfigErrors e2;
  auto c2 = Load(std::string(kGood) + "[failover]\nmode = \"manual\"\nprobe = \"10.0.0.1:2525\"\n"
                                      "[notify]\nmail_to = \"root@example.org\"\nhook = \"/bin/true\"\n",
                 e2);
  ASSERT_TRUE(c2) << ::testing::PrintToString(e2.errors);
  EXPECT_FALSE(c2->auto_failover);
  EXPECT_EQ(c2->probe, "10.0.0.1:2525");
  EXPECT_EQ(c2->notify_hook, "/bin/true");

  ConfigErrors e3;
  EXPECT_FALSE(Load(std::string(kGood) + "[failover]\nmode = \"sometimes\"\nfail_threshold = 0\n"
                                         "check_interval = \"10ms\"\nprobe = \"nope\"\n"
                                         "[notify]\nmail_to = \"root\"\nhook = \"notify.sh\"\n",
                    e3));
  std::string all;
  for (const auto& e : e3.errors) all += e + "\n";
  ASSERT_EQ(e3.errors.size(), 6u) << all;
  for (const char* want : {"fail_threshold must be a whole number from 1 to 100", "\"sometimes\"",
                           "probe \"nope\"", "check_interval (10 ms)", "mail_to \"root\"",
                           "absolute path"})
    EXPECT_NE(all.find(want), std::string::npos) << want << " in " << all;
}

// The package's postfix@.service drop-in must look for this node's state.
TEST(Config, BootGuardFollowsStateDir) {
  mailtwin::testing::TempDir dir;
  std::string dropin = dir.path() + "/mailtwin.conf";
  std::ofstream(dropin) << "[Unit]\nConditionPathExists=!/var/lib/mailtwin/state.json\n";
  Config c;
  c.state_dir = "/var/lib/mailtwin/";
  ConfigErrors ok;
  CheckBootGuard(c, dropin, ok);
  EXPECT_TRUE(ok.warnings.empty()) << ok.warnings[0];

  c.state_dir = "/srv/mailtwin";
  ConfigErrors moved;
  CheckBootGuard(c, dropin, moved);
  ASSERT_EQ(moved.warnings.size(), 1u);
  EXPECT_NE(moved.warnings[0].find("/srv/mailtwin/state.json"), std::string::npos) << moved.warnings[0];
  EXPECT_NE(moved.warnings[0].find("stale queue"), std::string::npos);

  ConfigErrors none;  // no package: nothing to say
  CheckBootGuard(c, dir.path() + "/absent.conf", none);
  EXPECT_TRUE(none.warnings.empty() && none.errors.empty());
}

}  // namespace mailtwin
