#include "repl/identity.h"

#include <gtest/gtest.h>

namespace mailtwin::repl {
namespace {

TEST(Identity, PeerHelloChecks) {
  Identity self{"lab", "backup", 3, 9};
  msg::Hello ok = Identity{"lab", "main", 3, 1}.HelloAs(Role::kPrimary);
  EXPECT_FALSE(CheckPeerHello(ok, self, Role::kPrimary));

  msg::Hello other = Identity{"other", "main", 3, 1}.HelloAs(Role::kPrimary);
  auto e = CheckPeerHello(other, self, Role::kPrimary);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, msg::ErrorCode::kWrongCluster);
  EXPECT_NE(e->text.find("belongs to cluster 'other', not 'lab'"), std::string::npos) << e->text;

  e = CheckPeerHello(ok, self, Role::kStandby);  // two primaries
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, msg::ErrorCode::kRoleConflict);

  msg::Hello v2 = ok;
  v2.version = 2;
  e = CheckPeerHello(v2, self, Role::kPrimary);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, msg::ErrorCode::kProtocol);
}

}  // namespace
}  // namespace mailtwin::repl
