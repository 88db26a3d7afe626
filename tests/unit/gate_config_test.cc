// The Postfix side of the gate: generated commands and the checks on them.
#include "postfix/gate_config.h"

#include <gtest/gtest.h>

namespace mailtwin::postfix {
namespace {

TEST(GateConfig, PostfixTimeValues) {
  EXPECT_EQ(ParsePostfixTime("100s"), Millis(100000));
  EXPECT_EQ(ParsePostfixTime("100"), Millis(100000));
  EXPECT_EQ(ParsePostfixTime("5m"), Millis(300000));
  EXPECT_EQ(ParsePostfixTime("1h"), Millis(3600000));
  EXPECT_FALSE(ParsePostfixTime("5x"));
  EXPECT_FALSE(ParsePostfixTime(""));
  EXPECT_FALSE(ParsePostfixTime("-1s"));
}

TEST(GateConfig, CommandsForInetAndUnixAfterFilters) {
  Config c;
  auto cmds = GateCommands(c, {"smtp", "submission"});
  ASSERT_GE(cmds.size(), 3u);
  EXPECT_EQ(cmds[0], (std::vector<std::string>{"-M", "127.0.0.1:10026/inet=127.0.0.1:10026 inet n - n - - smtpd"}));
  // The after-filter never loops back into the gate; the public services do go through it.
  EXPECT_EQ(cmds[1], (std::vector<std::string>{"-P", "127.0.0.1:10026/inet/smtpd_proxy_filter="}));
  EXPECT_EQ(cmds[cmds.size() - 2],
            (std::vector<std::string>{"-P", "smtp/inet/smtpd_proxy_filter=127.0.0.1:10025"}));
  EXPECT_EQ(cmds.back(),
            (std::vector<std::string>{"-P", "submission/inet/smtpd_proxy_filter=127.0.0.1:10025"}));
  c.gate_after_filter = "unix:/var/spool/postfix/private/mt-after";
  cmds = GateCommands(c, {"smtp"});
  EXPECT_EQ(cmds[0], (std::vector<std::string>{"-M", "mt-after/unix=mt-after unix - - n - - smtpd"}));
  EXPECT_EQ(cmds[1], (std::vector<std::string>{"-P", "mt-after/unix/smtpd_proxy_filter="}));
  auto has = [&](const std::string& kv) {
    for (const auto& cmd : cmds)
      if (cmd == std::vector<std::string>{"-P", kv}) return true;
    return false;
  };
  EXPECT_TRUE(has("mt-after/unix/smtpd_data_restrictions="));
  c.durability = Durability::kStrict;  // every message on hold until the gate releases it
  cmds = GateCommands(c, {"smtp"});
  EXPECT_TRUE(has("mt-after/unix/smtpd_data_restrictions=check_client_access,static:HOLD"));
  EXPECT_FALSE(has("mt-after/unix/smtpd_data_restrictions="));
}

TEST(GateConfig, Checks) {
  Config c;
  c.path = "/etc/mailtwin/mailtwin.toml";
  GateInspection g;
  {
    ConfigErrors out;  // sync, but nothing goes through the gate: said loudly
    CheckGate(c, g, out);
    EXPECT_TRUE(out.ok());
    ASSERT_EQ(out.warnings.size(), 1u);
    EXPECT_NE(out.warnings[0].find("postfix-config"), std::string::npos);
  }
  g.gated_services = {"smtp"};
  {
    ConfigErrors out;  // gated, but no after-filter: every message would get 451
    CheckGate(c, g, out);
    ASSERT_EQ(out.errors.size(), 1u);
    EXPECT_NE(out.errors[0].find("after-filter"), std::string::npos);
  }
  g.after_filter = true;
  g.proxy_timeout = Millis(1500);
  {
    ConfigErrors out;  // Postfix would give up on the gate first: duplicates
    CheckGate(c, g, out);
    ASSERT_EQ(out.errors.size(), 1u);
    EXPECT_NE(out.errors[0].find("smtpd_proxy_timeout"), std::string::npos);
  }
  g.proxy_timeout = Millis(100000);
  {
    ConfigErrors out;
    CheckGate(c, g, out);
    EXPECT_TRUE(out.ok());
    EXPECT_TRUE(out.warnings.empty());
  }
  g.after_filter_holds = true;
  {
    ConfigErrors out;  // sync with a holding after-filter: nothing would be delivered
    CheckGate(c, g, out);
    ASSERT_EQ(out.errors.size(), 1u);
    EXPECT_NE(out.errors[0].find("no mail would be delivered"), std::string::npos);
  }
  c.durability = Durability::kStrict;
  {
    ConfigErrors out;
    CheckGate(c, g, out);
    EXPECT_TRUE(out.ok()) << ::testing::PrintToString(out.errors);
  }
  g.proxy_timeout = Millis(3000);
  {
    ConfigErrors out;  // strict waits twice: a quarter of the proxy timeout at most
    CheckGate(c, g, out);
    ASSERT_EQ(out.errors.size(), 1u);
    EXPECT_NE(out.errors[0].find("a quarter"), std::string::npos);
  }
  g.proxy_timeout = Millis(100000);
  {
    GateInspection none = g;  // strict with nothing through the gate: an error, not a warning
    none.gated_services.clear();
    ConfigErrors out;
    CheckGate(c, none, out);
    EXPECT_FALSE(out.ok());
  }
  g.after_filter_holds = false;
  {
    ConfigErrors out;  // strict needs the hold: refusing safely depends on it
    CheckGate(c, g, out);
    ASSERT_EQ(out.errors.size(), 1u);
    EXPECT_NE(out.errors[0].find("does not put messages on hold"), std::string::npos);
  }
  c.durability = Durability::kAsync;
  g = {};
  {
    ConfigErrors out;  // async asks for nothing
    CheckGate(c, g, out);
    EXPECT_TRUE(out.ok() && out.warnings.empty());
  }
}

}  // namespace
}  // namespace mailtwin::postfix
