// The write side: every command's happy path and rejections, bootstrap, the hash chain and its
// signatures under tampering, concurrent appends, secrets never stored, credentials and the
// scope catalog.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "ledger/crypto.h"
#include "ledger/group_signer.h"
#include "ledger/log_reader.h"
#include "ledger/log_verifier.h"
#include "ledger/scope_catalog.h"
#include "projections/forensics.h"
#include "projections/rebuild.h"
#include "test_support.h"

namespace tokenledger::test {
namespace {

using Kind = Expiration::Kind;

mode_t modeOf(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0777777;
  return st.st_mode & 07777;
}

std::vector<std::filesystem::path> pemFiles(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".pem") out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string hexOf(const Digest& d) { return toHex(Bytes(d.data(), d.size())); }

// ---------------------------------------------------------------------------------------------
// Bootstrap: LedgerInstance::init, what `tokenledgerd init` runs.

TEST(Init, CreatesPrivateKeyAndThreeVerifiedEvents) {
  TempDir dir;
  const auto data = dir.path() / "ledger";
  Credential admin = LedgerInstance::init(data, "alice");

  EXPECT_EQ(modeOf(data), 0700u);
  EXPECT_EQ(modeOf(data / "keys"), 0700u);
  auto keys = pemFiles(data / "keys");
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(modeOf(keys[0]), 0600u);

  auto store = Store::open(data / "db", Store::Mode::kReadOnly, false);
  VerifyReport report = verifyLog(*store);
  EXPECT_TRUE(report.intact) << report.problem;
  EXPECT_EQ(report.entries, 3u);
  EXPECT_EQ(report.checkpoints, 1u);

  auto e1 = readEvent(*store, 1);
  auto e2 = readEvent(*store, 2);
  auto e3 = readEvent(*store, 3);
  ASSERT_TRUE(e1.event().isSigningKeyRotated());
  ASSERT_TRUE(e2.event().isRoleGranted());
  ASSERT_TRUE(e3.event().isTokenCreated());
  EXPECT_FALSE(store->get(Family::kEvents, seqKey(4)).has_value());

  const std::string keyId = e1.event().getSigningKeyRotated().getKeyId();
  EXPECT_EQ(keys[0].stem().string(), keyId);
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    EXPECT_EQ(sealKeyId(*store, seq), keyId) << seq;
    auto e = readEvent(*store, seq);
    EXPECT_EQ(e.event().getSeq(), seq);
    EXPECT_TRUE(e.event().getActor().isBootstrap());
  }
  EXPECT_EQ(std::string(e2.event().getRoleGranted().getPrincipal()), "alice");
  EXPECT_EQ(e2.event().getRoleGranted().getRole(), schema::Role::ADMIN);
  auto created = e3.event().getTokenCreated();
  EXPECT_EQ(std::string(created.getSid()), admin.sidHex());
  EXPECT_EQ(std::string(created.getOwner()), "alice");
  EXPECT_EQ(created.getExpiresAtMicros(), 0);
  EXPECT_TRUE(created.getScopes().isAll());
  Digest hash = sha256(admin.secret);
  EXPECT_TRUE(std::equal(hash.begin(), hash.end(), created.getSecretHash().begin(),
                         created.getSecretHash().end()));
}

TEST(Init, SecondInitIsAlreadyExistsAndAppendsNothing) {
  TempDir dir;
  Credential admin = LedgerInstance::init(dir.path(), "alice");
  auto keysBefore = pemFiles(dir.path() / "keys");
  try {
    LedgerInstance::init(dir.path(), "mallory");
    FAIL() << "second init succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(errorCodeText(e.code()), errorCodeText(ErrorCode::kAlreadyExists)) << e.what();
  }
  EXPECT_EQ(pemFiles(dir.path() / "keys"), keysBefore) << "a rejected init left a key behind";
  auto instance = LedgerInstance::open(dir.path());
  EXPECT_EQ(instance->ledger().headSeq(), 3u);
  EXPECT_TRUE(instance->projection().committed().rolesOf("mallory").empty());
  auto tokens = instance->projection().listTokens(std::nullopt);
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_EQ(tokens[0].sid, admin.sidHex());
  EXPECT_EQ(instance->projection().verifyIndex().verify(admin.encode(), ScopeMask{}, nowMicros()).reason,
            VerifyReason::kOk);
}

TEST(Init, RejectsAnInvalidAdminName) {
  TempDir dir;
  try {
    LedgerInstance::init(dir.path() / "ledger", " bad name");
    FAIL() << "init accepted a principal with a leading space";
  } catch (const Error& e) {
    EXPECT_EQ(errorCodeText(e.code()), errorCodeText(ErrorCode::kInvalidArgument));
  }
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "ledger" / "keys"));
}

TEST(Init, OpeningAnEmptyDirectoryIsNotFound) {
  TempDir dir;
  try {
    LedgerInstance::open(dir.path());
    FAIL() << "opened a directory without a ledger";
  } catch (const Error& e) {
    EXPECT_EQ(errorCodeText(e.code()), errorCodeText(ErrorCode::kNotFound)) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// Commands.

class Commands : public LedgerFixture {};

TEST_F(Commands, UserCreatesTokenForSelf) {
  Login bob = user("bob");
  const uint64_t before = head();
  CommandResult r = run(bob.actor,
                        CreateToken{"bob", "  Vendor X\t", {Kind::kDays90, 0}, scopes({"assignment:read"})},
                        "onboarding vendor X");
  ASSERT_TRUE(r.credential.has_value());
  const std::string sid = r.credential->sidHex();
  EXPECT_EQ(r.firstSeq, before + 1);
  EXPECT_EQ(r.lastSeq, before + 1);
  EXPECT_EQ(head(), before + 1);
  EXPECT_EQ(r.sids, std::vector<std::string>{sid});
  EXPECT_TRUE(isSidText(sid));

  auto token = projection().committed().token(sid);
  ASSERT_TRUE(token.has_value());
  EXPECT_EQ(token->owner, "bob");
  EXPECT_EQ(token->description, "Vendor X");
  EXPECT_EQ(token->createdAtMicros, clock.now());
  EXPECT_EQ(token->createdBy, bob.actor);
  EXPECT_EQ(token->expiresAtMicros, clock.now() + 90 * kDay);
  EXPECT_EQ(token->scopes, scopes({"assignment:read"}));
  EXPECT_EQ(token->secretHash, sha256(r.credential->secret));
  EXPECT_FALSE(token->revoked);
  EXPECT_EQ(token->lastSeq, r.lastSeq);

  auto stored = readEvent(store(), r.firstSeq);
  auto event = stored.event();
  EXPECT_EQ(event.getSeq(), r.firstSeq);
  EXPECT_EQ(event.getTimeMicros(), clock.now());
  ASSERT_TRUE(event.getActor().isToken());
  EXPECT_EQ(std::string(event.getActor().getToken().getPrincipal()), "bob");
  EXPECT_EQ(std::string(event.getActor().getToken().getSid()), bob.credential.sidHex());
  EXPECT_EQ(std::string(event.getClientAddress()), "127.0.0.1:4000");
  EXPECT_EQ(std::string(event.getReason()), "onboarding vendor X");
  ASSERT_TRUE(event.isTokenCreated());
  EXPECT_EQ(std::string(event.getTokenCreated().getDescription()), "Vendor X");

  EXPECT_EQ(projection().verifyIndex().verify(r.credential->encode(),
                                              projection().verifyIndex().requiredMask({"assignment:read"}),
                                              clock.now()).reason,
            VerifyReason::kOk);
}

TEST_F(Commands, ExpirationChoices) {
  const int64_t now = clock.now();
  auto expiry = [&](Expiration e) {
    CommandResult r = run(admin, CreateToken{"svc", "integration", e, scopes({"email:read"})});
    return projection().committed().token(r.sids.at(0))->expiresAtMicros;
  };
  EXPECT_EQ(expiry({Kind::kDays90, 0}), now + 90 * kDay);
  EXPECT_EQ(expiry({Kind::kDays180, 0}), now + 180 * kDay);
  EXPECT_EQ(expiry({Kind::kYear, 0}), now + 365 * kDay);
  EXPECT_EQ(expiry(Expiration::custom(now + 10 * kDay)), now + 10 * kDay);
  EXPECT_EQ(expiry(Expiration::custom(now + 365 * kDay)), now + 365 * kDay);  // the maximum itself
  EXPECT_EQ(expiry({Kind::kNever, 0}), 0);
}

TEST_F(Commands, AdminCreatesForAnotherOwner) {
  CommandResult r = run(admin, CreateToken{"svc-vendor", "Vendor integration", {}, scopes({"hotlist:read"})});
  auto token = projection().committed().token(r.sids.at(0));
  ASSERT_TRUE(token.has_value());
  EXPECT_EQ(token->owner, "svc-vendor");
  EXPECT_EQ(token->createdBy, admin);
  auto owned = projection().listTokens("svc-vendor");
  ASSERT_EQ(owned.size(), 1u);
  EXPECT_EQ(owned[0].sid, r.sids[0]);
}

TEST_F(Commands, CreateTokenPermissions) {
  Login bob = user("bob");
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, bob.actor,
                  CreateToken{"carol", "for carol", {}, scopes({"assignment:read"})});
  // A principal without any role.
  Login nobody = tokenFor("nobody", scopes({"tokens:write", "tokens:read", "assignment:read"}));
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, nobody.actor,
                  CreateToken{"nobody", "mine", {}, scopes({"assignment:read"})});
  // A user whose login token lacks tokens:write.
  run(admin, GrantRole{"frank", Role::kUser});
  Login readOnly = tokenFor("frank", scopes({"tokens:read", "assignment:read"}));
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, readOnly.actor,
                  CreateToken{"frank", "mine", {}, scopes({"assignment:read"})});
  // An invalid owner name is bad input, whoever asks.
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, admin,
                  CreateToken{"bad/owner", "x", {}, scopes({"assignment:read"})});
}

TEST_F(Commands, CreateTokenScopeRules) {
  Login bob = user("bob");
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, bob.actor, CreateToken{"bob", "none", {}, Scopes{}});
  std::string message = EXPECT_REJECTED(ErrorCode::kInvalidArgument, bob.actor,
                                        CreateToken{"bob", "unknown", {}, scopes({"assignment:read", "assignment:delete"})});
  EXPECT_NE(message.find("assignment:delete"), std::string::npos) << message;
  message = EXPECT_REJECTED(ErrorCode::kInvalidArgument, admin,
                            CreateToken{"svc", "unknown", {}, scopes({"payroll:read"})});
  EXPECT_NE(message.find("payroll:read"), std::string::npos) << message;

  // No escalation: only scopes the caller's own login token holds.
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, bob.actor,
                  CreateToken{"bob", "more", {}, scopes({"assignment:read", "email:write"})});
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, bob.actor, CreateToken{"bob", "all", {}, Scopes::allScopes()});
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, bob.actor,
                  CreateToken{"bob", "roles", {}, scopes({"roles:write"})});
  // Exactly what it holds, and a subset, are fine; duplicates collapse.
  CommandResult r = run(bob.actor, CreateToken{"bob", "subset", {}, scopes({"contact:read", "contact:read"})});
  EXPECT_EQ(projection().committed().token(r.sids.at(0))->scopes.selected,
            std::vector<std::string>{"contact:read"});
  // The admin role does not lift the limits of the token an admin logged in with.
  Login limitedAdmin = tokenFor("alice", scopes({"tokens:write", "contact:read"}));
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, limitedAdmin.actor,
                  CreateToken{"svc", "escalate", {}, scopes({"contact:write"})});
  run(limitedAdmin.actor, CreateToken{"svc", "within", {}, scopes({"contact:read"})});
}

TEST_F(Commands, DescriptionRules) {
  auto create = [&](const std::string& description) {
    return CreateToken{"svc", description, {}, scopes({"email:read"})};
  };
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, admin, create(""));
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, admin, create("   \t  "));
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, admin, create(std::string(201, 'x')));
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, admin, create("line\nbreak"));
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, admin, create(std::string("nul\0x", 5)));
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, admin, create("bell\x07"));
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, admin, create("del\x7f"));
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, admin, create("bad utf8 \xff"));
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, admin, create("c1 \xc2\x85"));

  // 200 characters (not bytes) is the limit; surrounding blanks are trimmed first.
  auto descriptionOf = [&](const std::string& d) {
    return projection().committed().token(run(admin, create(d)).sids.at(0))->description;
  };
  EXPECT_EQ(descriptionOf(std::string(200, 'x')), std::string(200, 'x'));
  std::string accents;
  for (int i = 0; i < 200; ++i) accents += "\xc3\xa9";  // é
  EXPECT_EQ(descriptionOf(accents), accents);
  EXPECT_EQ(descriptionOf("  " + std::string(200, 'y') + " \t"), std::string(200, 'y'));
  EXPECT_EQ(descriptionOf("Vendor: ACME Corp. (prod)"), "Vendor: ACME Corp. (prod)");
}

// The rule is "valid UTF-8" (the error message says so): overlong forms (a hidden NUL as C0 80),
// UTF-16 surrogates and code points past U+10FFFF are not valid UTF-8.
TEST_F(Commands, DescriptionMustBeWellFormedUtf8) {
  for (const std::string& bad : {std::string("nul \xc0\x80 inside"), std::string("overlong \xe0\x80\xaf"),
                                 std::string("surrogate \xed\xa0\x80"), std::string("too big \xf4\x90\x80\x80"),
                                 std::string("not a lead byte \xf8\x88\x80\x80\x80")}) {
    SCOPED_TRACE(::testing::PrintToString(bad));
    EXPECT_REJECTED(ErrorCode::kInvalidArgument, admin, CreateToken{"svc", bad, {}, scopes({"email:read"})});
  }
  // Well-formed multi-byte text is fine.
  run(admin, CreateToken{"svc", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91", {}, scopes({"email:read"})});
}

TEST_F(Commands, UnknownExpirationKindIsRejected) {
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, admin,
                  CreateToken{"svc", "x", Expiration{static_cast<Kind>(42), 0}, scopes({"email:read"})});
}

TEST_F(Commands, EventTimesNeverGoBackwards) {
  uint64_t first = run(admin, CreateToken{"svc", "a", {}, scopes({"email:read"})}).firstSeq;
  const int64_t t = clock.now();
  clock.set(t - kDay);  // the wall clock jumps back
  uint64_t second = run(admin, CreateToken{"svc", "b", {}, scopes({"email:read"})}).firstSeq;
  EXPECT_EQ(readEvent(store(), first).event().getTimeMicros(), t);
  EXPECT_EQ(readEvent(store(), second).event().getTimeMicros(), t);
  reopen();
  uint64_t third = run(admin, CreateToken{"svc", "c", {}, scopes({"email:read"})}).firstSeq;
  EXPECT_EQ(readEvent(store(), third).event().getTimeMicros(), t);
  clock.set(t + kSecond);
  uint64_t fourth = run(admin, CreateToken{"svc", "d", {}, scopes({"email:read"})}).firstSeq;
  EXPECT_EQ(readEvent(store(), fourth).event().getTimeMicros(), t + kSecond);
}

TEST_F(Commands, SigningKeyReadableByOthersIsRefused) {
  close();
  auto keys = pemFiles(dataDir() / "keys");
  ASSERT_EQ(keys.size(), 1u);
  ASSERT_EQ(::chmod(keys[0].c_str(), 0644), 0);
  try {
    open();
    FAIL() << "opened with a world-readable signing key";
  } catch (const Error& e) {
    EXPECT_EQ(errorCodeText(e.code()), errorCodeText(ErrorCode::kFailedPrecondition)) << e.what();
  }
  ASSERT_EQ(::chmod(keys[0].c_str(), 0600), 0);
  open();
  EXPECT_EQ(head(), 3u);
}

TEST_F(Commands, CustomExpiryRules) {
  const int64_t now = clock.now();
  auto create = [&](Expiration e) { return CreateToken{"svc", "expiring", e, scopes({"email:read"})}; };
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, admin, create(Expiration::custom(now - kSecond)));
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, admin, create(Expiration::custom(now)));
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, admin, create(Expiration::custom(now + 365 * kDay + 1)));
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, admin, create(Expiration::custom(now + 10 * 365 * kDay)));

  Login bob = user("bob");
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, bob.actor,
                  CreateToken{"bob", "forever", {Kind::kNever, 0}, scopes({"assignment:read"})});
  CommandResult r = run(bob.actor, CreateToken{"bob", "custom", Expiration::custom(now + kDay),
                                               scopes({"assignment:read"})});
  EXPECT_EQ(projection().committed().token(r.sids.at(0))->expiresAtMicros, now + kDay);
}

TEST_F(Commands, ChangeScopes) {
  Login bob = user("bob");
  Login other = user("olga");
  std::string sid = run(bob.actor, CreateToken{"bob", "A", {}, scopes({"assignment:read"})}).sids.at(0);

  CommandResult r = run(bob.actor, ChangeScopes{sid, scopes({"contact:read", "assignment:write"})});
  EXPECT_EQ(r.sids, std::vector<std::string>{sid});
  EXPECT_EQ(r.firstSeq, head());
  EXPECT_EQ(projection().committed().token(sid)->scopes, scopes({"assignment:write", "contact:read"}));
  auto stored = readEvent(store(), r.firstSeq);
  ASSERT_TRUE(stored.event().isTokenScopesChanged());
  EXPECT_EQ(stored.event().getTokenScopesChanged().getScopes().getSelected().size(), 2u);

  // The same set, in another order and with a duplicate, changes nothing.
  EXPECT_REJECTED(ErrorCode::kFailedPrecondition, bob.actor,
                  ChangeScopes{sid, Scopes{false, {"contact:read", "assignment:write", "contact:read"}}});
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, bob.actor, ChangeScopes{sid, Scopes{}});
  std::string message = EXPECT_REJECTED(ErrorCode::kInvalidArgument, bob.actor,
                                        ChangeScopes{sid, scopes({"contact:readwrite"})});
  EXPECT_NE(message.find("contact:readwrite"), std::string::npos) << message;
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, bob.actor, ChangeScopes{sid, Scopes::allScopes()});
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, bob.actor, ChangeScopes{sid, scopes({"email:read"})});
  EXPECT_REJECTED(ErrorCode::kNotFound, other.actor, ChangeScopes{sid, scopes({"assignment:read"})});
  EXPECT_REJECTED(ErrorCode::kNotFound, bob.actor,
                  ChangeScopes{std::string(32, 'a'), scopes({"assignment:read"})});
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, bob.actor, ChangeScopes{"not-a-sid", scopes({"assignment:read"})});

  // An admin may change anyone's token, within its own token's scopes (All Scopes here).
  run(admin, ChangeScopes{sid, Scopes::allScopes()});
  EXPECT_TRUE(projection().committed().token(sid)->scopes.all);

  run(bob.actor, RevokeToken{sid});
  EXPECT_REJECTED(ErrorCode::kFailedPrecondition, admin, ChangeScopes{sid, scopes({"assignment:read"})});
}

TEST_F(Commands, SetDescription) {
  Login bob = user("bob");
  Login other = user("olga");
  std::string sid = run(bob.actor, CreateToken{"bob", "Vendor A", {}, scopes({"assignment:read"})}).sids.at(0);
  CommandResult r = run(bob.actor, SetDescription{sid, " Vendor A (prod) "});
  EXPECT_EQ(r.sids, std::vector<std::string>{sid});
  EXPECT_EQ(projection().committed().token(sid)->description, "Vendor A (prod)");
  auto stored = readEvent(store(), r.firstSeq);
  ASSERT_TRUE(stored.event().isTokenDescriptionChanged());
  EXPECT_EQ(std::string(stored.event().getTokenDescriptionChanged().getDescription()), "Vendor A (prod)");

  EXPECT_REJECTED(ErrorCode::kFailedPrecondition, bob.actor, SetDescription{sid, "Vendor A (prod)"});
  EXPECT_REJECTED(ErrorCode::kFailedPrecondition, bob.actor, SetDescription{sid, "\tVendor A (prod)  "});
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, bob.actor, SetDescription{sid, "  "});
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, bob.actor, SetDescription{sid, std::string(201, 'd')});
  EXPECT_REJECTED(ErrorCode::kNotFound, other.actor, SetDescription{sid, "mine now"});
  EXPECT_REJECTED(ErrorCode::kNotFound, bob.actor, SetDescription{std::string(32, '0'), "x"});
  run(admin, SetDescription{sid, "Renamed by admin"});
  EXPECT_EQ(projection().committed().token(sid)->description, "Renamed by admin");
}

TEST_F(Commands, RevokeToken) {
  Login bob = user("bob");
  Login other = user("olga");
  CommandResult created = run(bob.actor, CreateToken{"bob", "Vendor A", {}, scopes({"assignment:read"})});
  const std::string sid = created.sids.at(0);
  EXPECT_REJECTED(ErrorCode::kNotFound, other.actor, RevokeToken{sid});

  clock.advance(kSecond);
  CommandResult r = run(bob.actor, RevokeToken{sid}, "contract ended");
  EXPECT_EQ(r.sids, std::vector<std::string>{sid});
  EXPECT_EQ(r.firstSeq, r.lastSeq);
  auto token = projection().committed().token(sid);
  ASSERT_TRUE(token.has_value());
  EXPECT_TRUE(token->revoked);
  EXPECT_EQ(token->statusAt(clock.now()), TokenStatus::kRevoked);
  EXPECT_EQ(token->revokedAtMicros, clock.now());
  EXPECT_EQ(token->revokedBy, bob.actor);
  EXPECT_EQ(token->revokeReason, "contract ended");
  EXPECT_EQ(projection().verifyIndex().verify(created.credential->encode(), ScopeMask{}, clock.now()).reason,
            VerifyReason::kRevoked);

  std::string message = EXPECT_REJECTED(ErrorCode::kFailedPrecondition, bob.actor, RevokeToken{sid});
  EXPECT_NE(message.find("already revoked"), std::string::npos) << message;
  EXPECT_REJECTED(ErrorCode::kFailedPrecondition, admin, RevokeToken{sid});
  EXPECT_REJECTED(ErrorCode::kNotFound, bob.actor, RevokeToken{Credential::generate().sidHex()});
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, bob.actor, RevokeToken{"1234"});
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, bob.actor, RevokeToken{""});
  std::string upper = bob.credential.sidHex();
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  if (upper != bob.credential.sidHex()) {
    EXPECT_REJECTED(ErrorCode::kInvalidArgument, bob.actor, RevokeToken{upper});
  }

  // An admin may revoke anyone's token.
  std::string sid2 = run(bob.actor, CreateToken{"bob", "Vendor B", {}, scopes({"assignment:read"})}).sids.at(0);
  run(admin, RevokeToken{sid2});
  EXPECT_TRUE(projection().committed().token(sid2)->revoked);
}

TEST_F(Commands, RevokedExpiredOrForeignLoginIsUnauthenticated) {
  Login bob = user("bob");
  const CreateToken create{"bob", "x", {}, scopes({"assignment:read"})};
  run(bob.actor, create);

  // Someone else's token, or one that does not exist.
  EXPECT_REJECTED(ErrorCode::kUnauthenticated, Actor::token("mallory", adminCredential.sidHex()), create);
  EXPECT_REJECTED(ErrorCode::kUnauthenticated, Actor::token("bob", Credential::generate().sidHex()), create);
  EXPECT_REJECTED(ErrorCode::kUnauthenticated, Actor::token("bob", "garbage"), create);

  // Expired: exactly at its expiry the token stops working.
  Login temp = tokenFor("bob", scopes({"tokens:write", "assignment:read"}), Expiration::custom(clock.now() + kDay));
  run(temp.actor, create);
  clock.advance(kDay - 1);
  run(temp.actor, create);
  clock.advance(1);
  std::string message = EXPECT_REJECTED(ErrorCode::kUnauthenticated, temp.actor, create);
  EXPECT_NE(message.find("expired"), std::string::npos) << message;
  EXPECT_REJECTED(ErrorCode::kUnauthenticated, temp.actor, RevokeToken{temp.credential.sidHex()});

  // Revoked.
  run(admin, RevokeToken{bob.credential.sidHex()});
  message = EXPECT_REJECTED(ErrorCode::kUnauthenticated, bob.actor, create);
  EXPECT_NE(message.find("revoked"), std::string::npos) << message;
}

TEST_F(Commands, ExpiredTokenCannotBeChangedButCanBeRevoked) {
  Login bob = user("bob");
  std::string sid = run(bob.actor, CreateToken{"bob", "short", Expiration::custom(clock.now() + kSecond),
                                               scopes({"assignment:read"})}).sids.at(0);
  clock.advance(kSecond);
  EXPECT_EQ(projection().committed().token(sid)->statusAt(clock.now()), TokenStatus::kExpired);
  EXPECT_REJECTED(ErrorCode::kFailedPrecondition, bob.actor, ChangeScopes{sid, scopes({"contact:read"})});
  EXPECT_REJECTED(ErrorCode::kFailedPrecondition, bob.actor, SetDescription{sid, "new"});
  EXPECT_REJECTED(ErrorCode::kFailedPrecondition, bob.actor, RotateToken{sid});
  run(bob.actor, RevokeToken{sid});
  EXPECT_TRUE(projection().committed().token(sid)->revoked);
}

TEST_F(Commands, RevokeAllForOffboardsOneOwnerAtomically) {
  std::vector<std::string> sids;
  for (int i = 0; i < 4; ++i) {
    sids.push_back(run(admin, CreateToken{"svc", "svc " + std::to_string(i), {}, scopes({"email:read"})}).sids.at(0));
  }
  std::string keep = run(admin, CreateToken{"other", "other", {}, scopes({"email:read"})}).sids.at(0);
  run(admin, RevokeToken{sids[1]});
  const uint64_t before = head();

  CommandResult r = run(admin, RevokeAllFor{"svc"}, "offboarding");
  std::vector<std::string> expected{sids[0], sids[2], sids[3]};
  std::vector<std::string> got = r.sids;
  std::sort(expected.begin(), expected.end());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, expected);
  EXPECT_EQ(r.firstSeq, before + 1);
  EXPECT_EQ(r.lastSeq, before + 3);
  EXPECT_EQ(head(), before + 3);
  for (const auto& sid : sids) EXPECT_TRUE(projection().committed().token(sid)->revoked) << sid;
  EXPECT_FALSE(projection().committed().token(keep)->revoked);
  for (uint64_t seq = r.firstSeq; seq <= r.lastSeq; ++seq) {
    auto e = readEvent(store(), seq);
    ASSERT_TRUE(e.event().isTokenRevoked());
    EXPECT_EQ(std::string(e.event().getReason()), "offboarding");
  }

  // Nothing left to revoke: nothing appended.
  CommandResult again = run(admin, RevokeAllFor{"svc"});
  EXPECT_EQ(again.firstSeq, 0u);
  EXPECT_TRUE(again.sids.empty());
  EXPECT_EQ(head(), before + 3);

  Login bob = user("bob");
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, bob.actor, RevokeAllFor{"other"});
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, admin, RevokeAllFor{""});
  // A user may offboard themselves (their own login token included).
  run(bob.actor, RevokeAllFor{"bob"});
  EXPECT_TRUE(projection().committed().token(bob.credential.sidHex())->revoked);
}

TEST_F(Commands, RotateToken) {
  Login bob = user("bob");
  Login other = user("olga");
  CommandResult created = run(bob.actor, CreateToken{"bob", "A", {}, scopes({"assignment:read"})});
  const Credential old = *created.credential;
  const std::string sid = old.sidHex();
  const Token before = *projection().committed().token(sid);
  clock.advance(kSecond);
  const VerifyIndex& index = projection().verifyIndex();
  auto mask = index.requiredMask({"assignment:read"});
  ASSERT_EQ(index.verify(old.encode(), mask, clock.now()).reason, VerifyReason::kOk);

  CommandResult r = run(bob.actor, RotateToken{sid});
  ASSERT_TRUE(r.credential.has_value());
  EXPECT_EQ(r.credential->sidHex(), sid);
  EXPECT_NE(r.credential->secret, old.secret);
  EXPECT_EQ(r.sids, std::vector<std::string>{sid});
  EXPECT_EQ(index.verify(old.encode(), mask, clock.now()).reason, VerifyReason::kInvalidCredentials);
  VerifyResult fresh = index.verify(r.credential->encode(), mask, clock.now());
  EXPECT_EQ(fresh.reason, VerifyReason::kOk);
  EXPECT_EQ(fresh.sidHex(), sid);
  EXPECT_EQ(fresh.owner, "bob");
  auto token = projection().committed().token(sid);
  EXPECT_EQ(token->secretHash, sha256(r.credential->secret));
  EXPECT_EQ(token->description, "A");
  EXPECT_EQ(token->scopes, before.scopes);
  EXPECT_EQ(token->expiresAtMicros, before.expiresAtMicros);
  EXPECT_EQ(token->createdAtMicros, before.createdAtMicros);
  EXPECT_NE(token->secretHash, before.secretHash);
  auto stored = readEvent(store(), r.firstSeq);
  ASSERT_TRUE(stored.event().isTokenRotated());
  EXPECT_EQ(std::string(stored.event().getTokenRotated().getSid()), sid);

  EXPECT_REJECTED(ErrorCode::kNotFound, other.actor, RotateToken{sid});
  EXPECT_REJECTED(ErrorCode::kNotFound, bob.actor, RotateToken{Credential::generate().sidHex()});
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, bob.actor, RotateToken{"zz"});
  run(bob.actor, RevokeToken{sid});
  EXPECT_REJECTED(ErrorCode::kFailedPrecondition, bob.actor, RotateToken{sid});
}

TEST_F(Commands, GrantAndRevokeRoles) {
  CommandResult r = run(admin, GrantRole{"bob", Role::kUser});
  EXPECT_EQ(r.firstSeq, head());
  EXPECT_TRUE(projection().committed().rolesOf("bob").has(Role::kUser));
  auto stored = readEvent(store(), r.firstSeq);
  ASSERT_TRUE(stored.event().isRoleGranted());
  EXPECT_EQ(std::string(stored.event().getRoleGranted().getPrincipal()), "bob");
  EXPECT_EQ(stored.event().getRoleGranted().getRole(), schema::Role::USER);

  EXPECT_REJECTED(ErrorCode::kFailedPrecondition, admin, GrantRole{"bob", Role::kUser});
  EXPECT_REJECTED(ErrorCode::kInvalidArgument, admin, GrantRole{"", Role::kUser});
  EXPECT_REJECTED(ErrorCode::kFailedPrecondition, admin, RevokeRole{"bob", Role::kAuditor});

  Login bob = tokenFor("bob", Scopes::allScopes());
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, bob.actor, GrantRole{"bob", Role::kAdmin});
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, bob.actor, RevokeRole{"alice", Role::kAdmin});
  // An admin whose login token lacks roles:write.
  Login limitedAdmin = tokenFor("alice", scopes({"tokens:read", "tokens:write"}));
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, limitedAdmin.actor, GrantRole{"bob", Role::kAuditor});

  // The last admin cannot be removed.
  std::string message = EXPECT_REJECTED(ErrorCode::kFailedPrecondition, admin, RevokeRole{"alice", Role::kAdmin});
  EXPECT_NE(message.find("last admin"), std::string::npos) << message;
  EXPECT_EQ(projection().committed().principalsWith(Role::kAdmin), std::vector<std::string>{"alice"});

  run(admin, GrantRole{"dave", Role::kAdmin});
  Login dave = tokenFor("dave", Scopes::allScopes());
  run(admin, RevokeRole{"alice", Role::kAdmin}, "handover");
  EXPECT_FALSE(projection().committed().rolesOf("alice").has(Role::kAdmin));
  EXPECT_EQ(projection().committed().principalsWith(Role::kAdmin), std::vector<std::string>{"dave"});
  // alice keeps her token but not her rights.
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, admin, CreateToken{"svc", "x", {}, scopes({"email:read"})});
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, admin, GrantRole{"alice", Role::kAdmin});
  EXPECT_REJECTED(ErrorCode::kFailedPrecondition, dave.actor, RevokeRole{"dave", Role::kAdmin});

  // Removing a principal's last role removes its roles entirely.
  run(dave.actor, RevokeRole{"bob", Role::kUser});
  EXPECT_TRUE(projection().committed().rolesOf("bob").empty());
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, bob.actor, CreateToken{"bob", "x", {}, scopes({"email:read"})});
}

TEST_F(Commands, RotateSigningKey) {
  auto before = pemFiles(dataDir() / "keys");
  ASSERT_EQ(before.size(), 1u);
  const std::string oldKey = before[0].stem().string();

  CommandResult r = run(admin, RotateSigningKey{}, "scheduled");
  EXPECT_EQ(r.firstSeq, r.lastSeq);
  auto after = pemFiles(dataDir() / "keys");
  ASSERT_EQ(after.size(), 2u);
  auto stored = readEvent(store(), r.firstSeq);
  ASSERT_TRUE(stored.event().isSigningKeyRotated());
  const std::string newKey = stored.event().getSigningKeyRotated().getKeyId();
  EXPECT_NE(newKey, oldKey);
  EXPECT_TRUE(std::filesystem::exists(dataDir() / "keys" / (newKey + ".pem")));
  EXPECT_EQ(modeOf(dataDir() / "keys" / (newKey + ".pem")), 0600u);
  // The rotation entry is vouched for by the old key; everything after it by the new one.
  EXPECT_EQ(sealKeyId(store(), r.firstSeq), oldKey);

  uint64_t next = run(admin, CreateToken{"svc", "after rotation", {}, scopes({"email:read"})}).firstSeq;
  EXPECT_EQ(sealKeyId(store(), next), newKey);
  VerifyReport report = verifyLog(store());
  EXPECT_TRUE(report.intact) << report.firstBadSeq << ": " << report.problem;
  EXPECT_EQ(report.entries, head());

  reopen();
  uint64_t afterReopen = run(admin, CreateToken{"svc", "after reopen", {}, scopes({"email:read"})}).firstSeq;
  EXPECT_EQ(sealKeyId(store(), afterReopen), newKey);
  auto cp = run(admin, MakeCheckpoint{}).checkpoint;
  ASSERT_TRUE(cp.has_value());
  EXPECT_EQ(cp->keyId, newKey);
  report = verifyLog(store());
  EXPECT_TRUE(report.intact) << report.firstBadSeq << ": " << report.problem;
  EXPECT_EQ(report.entries, head());

  // Reopen right after a rotation (the rotation is the head entry) and rotate twice.
  run(admin, RotateSigningKey{});
  reopen();
  run(admin, RotateSigningKey{});
  uint64_t last = run(admin, CreateToken{"svc", "third key", {}, scopes({"email:read"})}).firstSeq;
  EXPECT_EQ(pemFiles(dataDir() / "keys").size(), 4u);
  auto rotation = readEvent(store(), last - 1);
  ASSERT_TRUE(rotation.event().isSigningKeyRotated());
  EXPECT_EQ(sealKeyId(store(), last), std::string(rotation.event().getSigningKeyRotated().getKeyId()));
  report = verifyLog(store());
  EXPECT_TRUE(report.intact) << report.firstBadSeq << ": " << report.problem;

  Login bob = user("bob");
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, bob.actor, RotateSigningKey{});
  Login carol = principal("carol", Role::kAuditor, Scopes::allScopes());
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, carol.actor, RotateSigningKey{});
  EXPECT_EQ(pemFiles(dataDir() / "keys").size(), 4u) << "a rejected rotation left a key file";
}

// Rights are the owner's role intersected with the ledger scopes of the login token. An admin's
// token made for a vendor (no ledger scope at all) must not be able to rotate the signing key.
TEST_F(Commands, RotateSigningKeyNeedsALedgerScopedLoginToken) {
  Login vendorToken = tokenFor("alice", scopes({"assignment:read"}));
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, vendorToken.actor, RotateSigningKey{});
  Login readOnly = tokenFor("alice", scopes({"tokens:read"}));
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, readOnly.actor, RotateSigningKey{});
}

TEST_F(Commands, MakeCheckpoint) {
  Login carol = principal("carol", Role::kAuditor, scopes({"audit:read"}));
  const uint64_t before = head();
  CommandResult r = run(carol.actor, MakeCheckpoint{});
  EXPECT_EQ(head(), before) << "a checkpoint is not an event";
  EXPECT_EQ(r.firstSeq, 0u);
  ASSERT_TRUE(r.checkpoint.has_value());
  EXPECT_EQ(r.checkpoint->seq, before);
  EXPECT_EQ(r.checkpoint->timeMicros, clock.now());
  EXPECT_EQ(r.checkpoint->keyId, sealKeyId(store(), before));
  auto seal = store().get(Family::kSeals, seqKey(before));
  ASSERT_TRUE(seal.has_value());
  CanonicalReader sealReader(*seal);
  auto sealHash = sealReader.root<schema::Seal>().getEntryHash();
  EXPECT_TRUE(std::equal(sealHash.begin(), sealHash.end(), r.checkpoint->entryHash.begin()));
  EXPECT_TRUE(store().get(Family::kCheckpoints, seqKey(before)).has_value());

  VerifyOptions against;
  against.against = r.checkpoint;
  VerifyReport report = verifyLog(store(), against);
  EXPECT_TRUE(report.intact) << report.problem;

  EXPECT_TRUE(run(admin, MakeCheckpoint{}).checkpoint.has_value());
  Login bob = user("bob");
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, bob.actor, MakeCheckpoint{});
  Login carolNoAudit = tokenFor("carol", scopes({"tokens:read"}));
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, carolNoAudit.actor, MakeCheckpoint{});
}

TEST_F(Commands, AuditorCannotChangeTokens) {
  Login bob = user("bob");
  std::string sid = run(bob.actor, CreateToken{"bob", "A", {}, scopes({"assignment:read"})}).sids.at(0);
  Login carol = principal("carol", Role::kAuditor, Scopes::allScopes());
  const Actor& c = carol.actor;
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, c, CreateToken{"carol", "mine", {}, scopes({"audit:read"})});
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, c, CreateToken{"bob", "for bob", {}, scopes({"assignment:read"})});
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, c, ChangeScopes{sid, scopes({"contact:read"})});
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, c, SetDescription{sid, "audited"});
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, c, RevokeToken{sid});
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, c, RevokeToken{carol.credential.sidHex()});
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, c, RevokeAllFor{"bob"});
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, c, RotateToken{sid});
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, c, GrantRole{"carol", Role::kAdmin});
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, c, RevokeRole{"bob", Role::kUser});
  EXPECT_TRUE(run(c, MakeCheckpoint{}).checkpoint.has_value());
}

TEST_F(Commands, ReasonIsValidatedAndRecorded) {
  const uint64_t before = head();
  for (std::string reason : {std::string(501, 'r'), std::string("tab\tin reason")}) {
    try {
      run(admin, CreateToken{"svc", "x", {}, scopes({"email:read"})}, reason);
      ADD_FAILURE() << "accepted reason " << reason;
    } catch (const Error& e) {
      EXPECT_EQ(errorCodeText(e.code()), errorCodeText(ErrorCode::kInvalidArgument));
    }
  }
  EXPECT_EQ(head(), before);
  CommandResult r = run(admin, CreateToken{"svc", "x", {}, scopes({"email:read"})}, std::string(500, 'r'));
  EXPECT_EQ(std::string(readEvent(store(), r.firstSeq).event().getReason()), std::string(500, 'r'));
}

TEST_F(Commands, BootstrapOnlyOnAnEmptyLog) {
  EXPECT_REJECTED(ErrorCode::kAlreadyExists, Actor::bootstrapActor(), Bootstrap{"mallory"});
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, admin, Bootstrap{"mallory"});
}

TEST_F(Commands, StoppedLedgerIsUnavailable) {
  ledger().stop();
  try {
    run(admin, MakeCheckpoint{});
    FAIL() << "a stopped ledger accepted a command";
  } catch (const Error& e) {
    EXPECT_EQ(errorCodeText(e.code()), errorCodeText(ErrorCode::kUnavailable));
  }
}

// Commands queued together share a group: each is validated against the ones before it.
TEST_F(Commands, QueuedCommandsSeeEachOther) {
  std::string sid = run(admin, CreateToken{"svc", "x", {}, scopes({"email:read"})}).sids.at(0);
  const uint64_t before = head();
  std::vector<std::promise<Outcome>> promises(6);
  auto submit = [&](size_t i, Command c) {
    ledger().submit(Request{admin, "test", "", std::move(c)},
                    [&promises, i](Outcome o) { promises[i].set_value(std::move(o)); });
  };
  submit(0, RevokeToken{sid});
  submit(1, RevokeToken{sid});
  submit(2, CreateToken{"svc", "ok 1", {}, scopes({"email:read"})});
  submit(3, CreateToken{"svc", "", {}, scopes({"email:read"})});
  submit(4, CreateToken{"svc", "ok 2", {}, scopes({"email:read"})});
  submit(5, GrantRole{"zed", Role::kUser});
  std::vector<Outcome> out;
  for (auto& p : promises) out.push_back(p.get_future().get());

  ASSERT_FALSE(out[0].error.has_value());
  ASSERT_TRUE(out[1].error.has_value());
  EXPECT_EQ(errorCodeText(out[1].error->code()), errorCodeText(ErrorCode::kFailedPrecondition));
  ASSERT_FALSE(out[2].error.has_value());
  ASSERT_TRUE(out[3].error.has_value());
  EXPECT_EQ(errorCodeText(out[3].error->code()), errorCodeText(ErrorCode::kInvalidArgument));
  ASSERT_FALSE(out[4].error.has_value());
  ASSERT_FALSE(out[5].error.has_value());
  EXPECT_EQ(out[0].result.firstSeq, before + 1);
  EXPECT_EQ(out[2].result.firstSeq, before + 2);
  EXPECT_EQ(out[4].result.firstSeq, before + 3);
  EXPECT_EQ(out[5].result.firstSeq, before + 4);
  EXPECT_EQ(head(), before + 4);
  VerifyReport report = verifyLog(store());
  EXPECT_TRUE(report.intact) << report.problem;
  EXPECT_EQ(report.entries, before + 4);
}

// One command per group: the sealer validates each group while the one before it is still being
// written, so every answer below depends on a group that was not yet durable when it was sealed.
class Pipeline : public LedgerFixture {
 protected:
  LedgerOptions options() override {
    LedgerOptions o = LedgerFixture::options();
    o.maxGroup = 1;
    return o;
  }
};

TEST_F(Pipeline, EachGroupIsValidatedAgainstTheGroupsBeforeIt) {
  const std::string sid = run(admin, CreateToken{"svc", "x", {}, scopes({"email:read"})}).sids.at(0);
  const uint64_t before = head();
  const uint64_t groupsBefore = ledger().stats().groups;
  std::vector<Command> commands = {
      SetDescription{sid, "first"},
      SetDescription{sid, "first"},   // already so, by the group before
      RevokeToken{sid},
      SetDescription{sid, "second"},  // revoked, by the group before
      GrantRole{"zed", Role::kUser},
      GrantRole{"zed", Role::kUser},  // already granted, by the group before
      RevokeRole{"zed", Role::kUser},
  };
  std::vector<std::promise<Outcome>> promises(commands.size());
  for (size_t i = 0; i < commands.size(); ++i) {  // all queued before the first is written
    ledger().submit(Request{admin, "test", "", commands[i]},
                    [&promises, i](Outcome o) { promises[i].set_value(std::move(o)); });
  }
  std::vector<std::string> codes;
  for (auto& p : promises) {
    Outcome o = p.get_future().get();
    codes.push_back(o.error ? errorCodeText(o.error->code()) : "ok");
  }
  const std::string refused = errorCodeText(ErrorCode::kFailedPrecondition);
  EXPECT_EQ(codes, (std::vector<std::string>{"ok", refused, "ok", refused, "ok", refused, "ok"}));
  EXPECT_EQ(ledger().stats().groups - groupsBefore, commands.size());
  EXPECT_EQ(head(), before + 4);
  VerifyReport report = verifyLog(store());
  EXPECT_TRUE(report.intact) << report.problem;
  EXPECT_TRUE(projection().token(sid)->revoked);
  EXPECT_EQ(projection().token(sid)->description, "first");
  EXPECT_FALSE(projection().rolesOf("zed").has(Role::kUser));
  reopen();  // what was answered is what is stored
  EXPECT_TRUE(projection().token(sid)->revoked);
  EXPECT_EQ(head(), before + 4);
}

TEST(GroupSignerTest, SignsEveryEntryInOrderAcrossGroupsAndKeys) {
  GroupSigner signer;
  const SigningKey first = SigningKey::generate(), second = SigningKey::generate();
  const VerifyingKey firstPublic(first.publicKey()), secondPublic(second.publicKey());
  for (size_t size : {1, 2, 3, 40, 1, 0, 17}) {  // the same signer, group after group
    std::vector<Digest> hashes(size);
    for (size_t i = 0; i < size; ++i) {
      hashes[i] = sha256(asBytes("entry " + std::to_string(size) + "/" + std::to_string(i)));
      signer.add(hashes[i], i % 3 == 2 ? second : first);
    }
    std::vector<Ed25519Signature> signatures = signer.finish();
    ASSERT_EQ(signatures.size(), size);
    for (size_t i = 0; i < size; ++i) {
      const VerifyingKey& key = i % 3 == 2 ? secondPublic : firstPublic;
      EXPECT_TRUE(key.verify(hashes[i], signatures[i])) << "group of " << size << ", entry " << i;
      EXPECT_EQ(signatures[i], (i % 3 == 2 ? second : first).sign(hashes[i]));  // Ed25519 is deterministic
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The chain and its signatures.

class Chain : public LedgerFixture {};

TEST_F(Chain, IntactLogVerifies) {
  Workload w = workload();
  const uint64_t n = head();
  ASSERT_GT(n, 20u);
  auto seal = store().get(Family::kSeals, seqKey(n));
  ASSERT_TRUE(seal.has_value());
  CanonicalReader sealReader(*seal);
  auto headHash = sealReader.root<schema::Seal>().getEntryHash();

  for (bool signatures : {true, false}) {
    for (unsigned threads : {1u, 2u, 4u}) {
      VerifyOptions options;
      options.signatures = signatures;
      options.threads = threads;
      uint64_t progressed = 0;
      options.progress = [&](uint64_t k) { progressed = k; };
      VerifyReport report = verifyLog(store(), options);
      EXPECT_TRUE(report.intact) << report.firstBadSeq << ": " << report.problem;
      EXPECT_EQ(report.entries, n);
      EXPECT_EQ(report.firstBadSeq, 0u);
      EXPECT_EQ(progressed, n);
      // init, the key rotation and the auditor's checkpoint.
      EXPECT_EQ(report.checkpoints, 3u);
      EXPECT_TRUE(std::equal(headHash.begin(), headHash.end(), report.headHash.begin()));
    }
  }
  VerifyOptions against;
  against.against = w.checkpoint;
  VerifyReport report = verifyLog(store(), against);
  EXPECT_TRUE(report.intact) << report.problem;
  EXPECT_EQ(report.checkpoints, 4u);

  // The chain is the documented one: entryHash(n) = SHA-256(tag 0x00 prev event).
  Digest hash = genesisHash();
  EXPECT_EQ(hash, sha256(asBytes("tokenledger/genesis/v1")));
  for (uint64_t seq = 1; seq <= n; ++seq) {
    std::string event = *store().get(Family::kEvents, seqKey(seq));
    std::string tag("tokenledger/entry/v1\0", 21);
    Digest expected = sha256({asBytes(tag), Bytes(hash.data(), hash.size()), asBytes(event)});
    hash = entryHash(hash, asBytes(event));
    ASSERT_EQ(hexOf(hash), hexOf(expected)) << seq;
  }
  EXPECT_EQ(hexOf(hash), hexOf(report.headHash));
}

TEST_F(Chain, AutomaticCheckpoints) {
  close();
  LedgerOptions o = options();
  o.checkpointEvery = 5;
  instance = LedgerInstance::open(dataDir(), o);
  for (int i = 0; i < 12; ++i) run(admin, CreateToken{"svc", "n" + std::to_string(i), {}, scopes({"email:read"})});
  EXPECT_EQ(head(), 15u);
  std::vector<uint64_t> seqs;
  auto it = store().iterate(Family::kCheckpoints);
  for (it->SeekToFirst(); it->Valid(); it->Next()) seqs.push_back(seqFromKey(it->key().ToStringView()));
  EXPECT_EQ(seqs, (std::vector<uint64_t>{3, 8, 13}));
  VerifyReport report = verifyLog(store());
  EXPECT_TRUE(report.intact) << report.problem;
  EXPECT_EQ(report.checkpoints, 3u);
}

class Tamper : public LedgerFixture {
 protected:
  void SetUp() override {
    LedgerFixture::SetUp();
    populate();
    n = head();
    mid = n / 2;
    db = rawStore();
    VerifyReport report = verifyLog(*db);
    ASSERT_TRUE(report.intact) << report.problem;
    ASSERT_EQ(report.entries, n);
  }
  void TearDown() override { db.reset(); }
  // What the log holds before the tampering.
  virtual void populate() { w = workload(); }

  void put(Family f, uint64_t seq, const std::string& value) {
    rocksdb::WriteBatch batch;
    batch.Put(db->family(f), seqKey(seq), value);
    db->write(batch, true);
  }
  void del(Family f, uint64_t seq) {
    rocksdb::WriteBatch batch;
    batch.Delete(db->family(f), seqKey(seq));
    db->write(batch, true);
  }
  std::string get(Family f, uint64_t seq) { return db->get(f, seqKey(seq)).value(); }
  VerifyReport verify(bool signatures = true, std::optional<CheckpointInfo> against = {}) {
    VerifyOptions o;
    o.signatures = signatures;
    o.against = against;
    return verifyLog(*db, o);
  }

  Workload w;
  uint64_t n = 0;
  uint64_t mid = 0;
  std::unique_ptr<Store> db;
};

// Verification reads the log a batch ahead (LogReadAhead): on a long log, a flip past the first
// batches and one in the very last entry are still found at their exact seq.
class LongLogTamper : public Tamper {
 protected:
  static constexpr int kTokens = 2600;  // more than two of LogReadAhead's batches
  void populate() override {
    std::vector<std::future<Outcome>> outcomes;
    for (int i = 0; i < kTokens; ++i) {
      auto p = std::make_shared<std::promise<Outcome>>();
      outcomes.push_back(p->get_future());
      ledger().submit(Request{admin, "test", "", CreateToken{"svc", "t" + std::to_string(i), {}, scopes({"email:read"})}},
                      [p](Outcome o) { p->set_value(std::move(o)); });
    }
    for (auto& o : outcomes) ASSERT_FALSE(o.get().error);
  }
};

TEST_F(LongLogTamper, FlipsPastTheFirstBatchAreFoundAtTheirSeq) {
  ASSERT_GE(n, static_cast<uint64_t>(kTokens));
  VerifyReport chainOnly = verify(/*signatures=*/false);  // SetUp checked the full verification
  EXPECT_TRUE(chainOnly.intact) << chainOnly.firstBadSeq << ": " << chainOnly.problem;
  EXPECT_EQ(chainOnly.entries, n);
  for (uint64_t seq : {uint64_t{2100}, n}) {
    const std::string original = get(Family::kEvents, seq);
    std::string bad = original;
    bad[bad.size() / 2] = static_cast<char>(bad[bad.size() / 2] ^ 0x20);
    put(Family::kEvents, seq, bad);
    for (bool signatures : {true, false}) {
      VerifyReport report = verify(signatures);
      EXPECT_FALSE(report.intact) << seq;
      EXPECT_EQ(report.firstBadSeq, seq) << report.problem;
    }
    put(Family::kEvents, seq, original);
  }
  EXPECT_TRUE(verify().intact);
}

// A byte flipped on disk, inside a RocksDB table file, fails that block's checksum before the
// chain ever sees it. Every entry that still reads back is checked, and the first one that does
// not is reported as the failure, with RocksDB's reason (a lost seal is not "no seal").
class DiskFlip : public LongLogTamper {
 protected:
  uint64_t flipOnDisk(Family family) {
    db.reset();
    const uint64_t read = flipByteOnDisk(dataDir() / "db", family);
    db = Store::open(dataDir() / "db", Store::Mode::kReadWrite, /*create=*/false);
    return read;
  }
};

TEST_F(DiskFlip, InAnEventsTableFileIsFoundAtTheFirstEntryThatDoesNotReadBack) {
  const uint64_t unreadable = flipOnDisk(Family::kEvents) + 1;
  ASSERT_GT(unreadable, 1u);
  ASSERT_LE(unreadable, n);
  // Where RocksDB's own iterator reads events again: past the damaged block.
  uint64_t again = 0;
  for (uint64_t seq = unreadable + 1; again == 0 && seq <= n; ++seq) {
    std::unique_ptr<rocksdb::Iterator> it(
        db->db().NewIterator(rocksdb::ReadOptions(), db->family(Family::kEvents)));
    it->Seek(seqKey(seq));
    if (it->Valid()) again = seqFromKey(it->key().ToStringView());
  }
  ASSERT_GT(again, unreadable);
  for (bool signatures : {true, false}) {
    VerifyReport report = verify(signatures);
    EXPECT_FALSE(report.intact);
    EXPECT_EQ(report.firstBadSeq, unreadable) << report.problem;
    EXPECT_EQ(report.entries, unreadable - 1);
    EXPECT_NE(report.problem.find("after seq " + std::to_string(unreadable - 1) +
                                  ": stored data in column family \"events\" does not read back"),
              std::string::npos)
        << report.problem;
    EXPECT_NE(report.problem.find("Corruption"), std::string::npos) << report.problem;
    EXPECT_NE(report.problem.find("entries " + std::to_string(unreadable) + "-" +
                                  std::to_string(again - 1) + " cannot be read, the log reads again from " +
                                  std::to_string(again)),
              std::string::npos)
        << report.problem;
  }
  // Other whole-log passes get every entry before the damage, then the same error.
  uint64_t lastVisited = 0;
  try {
    forEachHistoryEvent(*db, HistoryQuery{}, [&](schema::Event::Reader e) { lastVisited = e.getSeq(); });
    ADD_FAILURE() << "the damaged log was read to its end";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIntegrity) << e.what();
  }
  EXPECT_EQ(lastVisited, unreadable - 1);
}

TEST_F(DiskFlip, InASealsTableFileIsNotMistakenForAMissingSeal) {
  const uint64_t unreadable = flipOnDisk(Family::kSeals) + 1;
  ASSERT_GT(unreadable, 1u);
  ASSERT_LE(unreadable, n);
  VerifyReport report = verify();
  EXPECT_FALSE(report.intact);
  EXPECT_EQ(report.firstBadSeq, unreadable) << report.problem;
  EXPECT_NE(report.problem.find("after seq " + std::to_string(unreadable - 1) +
                                ": stored data in column family \"seals\" does not read back"),
            std::string::npos)
      << report.problem;
}

// The token table is derived from the log, but a damaged one must not pass for a short one:
// the ledger refuses to start on it, and a comparison with the log says why instead of listing
// the unreadable rows as missing.
TEST_F(DiskFlip, InTheTokenTableIsAnIntegrityErrorNotMissingRows) {
  flipOnDisk(Family::kTokens);
  auto expectDamagedTable = [](const std::function<void()>& read) {
    try {
      read();
      ADD_FAILURE() << "the damaged token table read as if whole";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kIntegrity) << e.what();
      EXPECT_NE(std::string(e.what()).find("column family \"tokens\" does not read back"),
                std::string::npos)
          << e.what();
    }
  };
  expectDamagedTable([&] { diffStored(*db, replayLog(*db)); });
  db.reset();
  expectDamagedTable([&] { open(); });

  // The table is derived: rebuilt from the verified log, damaged file and all, it serves again.
  db = Store::open(dataDir() / "db", Store::Mode::kReadWrite, /*create=*/false);
  RebuildReport rebuilt = rebuildStored(*db);
  EXPECT_EQ(rebuilt.entries, n);
  EXPECT_EQ(rebuilt.tokens, static_cast<size_t>(kTokens) + 1);  // and the admin's
  EXPECT_TRUE(diffStored(*db, replayLog(*db)).empty());
  db.reset();
  open();
  EXPECT_EQ(projection().verifyIndex().size(), static_cast<size_t>(kTokens) + 1);
  EXPECT_TRUE(projection().verifyIndex().verify(adminCredential, ScopeMask{}, clock.now()).valid());
}

// A rebuild that died after dropping the table leaves a flag: the ledger will not serve the
// incomplete table, even from a family the crash left missing, until a rebuild finishes.
TEST_F(Tamper, AnUnfinishedRebuildKeepsTheLedgerFromServing) {
  db->setFlag("projection rebuild unfinished", true);  // what rebuildStored() sets first
  // A crash between dropping the family and creating it again (Store::recreate).
  ASSERT_TRUE(db->db().DropColumnFamily(db->family(Family::kTokens)).ok());
  db.reset();
  try {
    open();
    ADD_FAILURE() << "the ledger opened on a half-rebuilt table";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFailedPrecondition) << e.what();
    EXPECT_NE(std::string(e.what()).find("rebuild` again"), std::string::npos) << e.what();
  }
  db = rawStore();
  EXPECT_TRUE(rebuildUnfinished(*db));
  rebuildStored(*db);
  EXPECT_FALSE(rebuildUnfinished(*db));
  db.reset();
  open();
  EXPECT_TRUE(projection().verifyIndex().verify(adminCredential, ScopeMask{}, clock.now()).valid());
}

TEST_F(Tamper, EveryFlippedEventByteIsFoundAtItsSeq) {
  const std::string original = get(Family::kEvents, mid);
  for (size_t i = 0; i < original.size(); ++i) {
    std::string bad = original;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    put(Family::kEvents, mid, bad);
    VerifyReport report = verify(/*signatures=*/i % 16 == 0);
    ASSERT_FALSE(report.intact) << "byte " << i;
    ASSERT_EQ(report.firstBadSeq, mid) << "byte " << i << ": " << report.problem;
  }
  put(Family::kEvents, mid, original);
  EXPECT_TRUE(verify().intact);
}

TEST_F(Tamper, FlippedEventBytesAtBothEnds) {
  for (uint64_t seq : {uint64_t{1}, n}) {
    const std::string original = get(Family::kEvents, seq);
    std::string bad = original;
    bad[bad.size() - 1] = static_cast<char>(bad[bad.size() - 1] ^ 0x80);
    put(Family::kEvents, seq, bad);
    VerifyReport report = verify();
    EXPECT_FALSE(report.intact);
    EXPECT_EQ(report.firstBadSeq, seq) << report.problem;
    put(Family::kEvents, seq, original);
  }
  EXPECT_TRUE(verify().intact);
}

TEST_F(Tamper, FlippedSealSignatureByteIsFoundAtItsSeq) {
  const std::string original = get(Family::kSeals, mid);
  CanonicalReader reader(original);
  auto sig = reader.root<schema::Seal>().getSignature();
  ASSERT_EQ(sig.size(), 64u);
  size_t at = original.find(std::string(reinterpret_cast<const char*>(sig.begin()), sig.size()));
  ASSERT_NE(at, std::string::npos);
  for (size_t k : {size_t{0}, size_t{31}, size_t{63}}) {
    std::string bad = original;
    bad[at + k] = static_cast<char>(bad[at + k] ^ 0x04);
    put(Family::kSeals, mid, bad);
    VerifyReport report = verify();
    EXPECT_FALSE(report.intact);
    EXPECT_EQ(report.firstBadSeq, mid) << report.problem;
    EXPECT_NE(report.problem.find("signature"), std::string::npos) << report.problem;
  }
  // The chain-only mode does not check entry signatures, by design.
  EXPECT_TRUE(verify(/*signatures=*/false).intact);
  put(Family::kSeals, mid, original);
  EXPECT_TRUE(verify().intact);
}

TEST_F(Tamper, FlippedSealHashByteIsFoundEvenWithoutSignatures) {
  const std::string original = get(Family::kSeals, mid);
  CanonicalReader reader(original);
  auto hash = reader.root<schema::Seal>().getEntryHash();
  size_t at = original.find(std::string(reinterpret_cast<const char*>(hash.begin()), hash.size()));
  ASSERT_NE(at, std::string::npos);
  std::string bad = original;
  bad[at + 7] = static_cast<char>(bad[at + 7] ^ 0x10);
  put(Family::kSeals, mid, bad);
  for (bool signatures : {true, false}) {
    VerifyReport report = verify(signatures);
    EXPECT_FALSE(report.intact);
    EXPECT_EQ(report.firstBadSeq, mid) << report.problem;
  }
}

TEST_F(Tamper, ASignatureFromAnotherKeyIsRejected) {
  // A well-formed signature over the right hash, made by a key the log never introduced.
  const std::string original = get(Family::kSeals, mid);
  CanonicalReader reader(original);
  auto seal = reader.root<schema::Seal>();
  Digest hash{};
  std::copy(seal.getEntryHash().begin(), seal.getEntryHash().end(), hash.begin());
  Ed25519Signature forged = SigningKey::generate().sign(hash);
  capnp::MallocMessageBuilder message;
  message.setRoot(seal);
  message.getRoot<schema::Seal>().setSignature(kj::arrayPtr(forged.data(), forged.size()));
  put(Family::kSeals, mid, canonicalBytes(message.getRoot<schema::Seal>().asReader()));
  VerifyReport report = verify();
  EXPECT_FALSE(report.intact);
  EXPECT_EQ(report.firstBadSeq, mid) << report.problem;
}

TEST_F(Tamper, MissingEntriesAreReported) {
  const std::string event = get(Family::kEvents, mid);
  const std::string seal = get(Family::kSeals, mid);

  del(Family::kEvents, mid);
  del(Family::kSeals, mid);
  VerifyReport report = verify();
  EXPECT_FALSE(report.intact);
  EXPECT_EQ(report.firstBadSeq, mid) << report.problem;
  EXPECT_FALSE(verify(false).intact);

  put(Family::kSeals, mid, seal);  // only the event missing
  report = verify();
  EXPECT_FALSE(report.intact);
  EXPECT_EQ(report.firstBadSeq, mid) << report.problem;

  put(Family::kEvents, mid, event);
  del(Family::kSeals, mid);  // only the seal missing
  report = verify(false);
  EXPECT_FALSE(report.intact);
  EXPECT_EQ(report.firstBadSeq, mid) << report.problem;

  put(Family::kSeals, mid, seal);
  del(Family::kEvents, 1);  // the very first entry
  report = verify();
  EXPECT_FALSE(report.intact);
  EXPECT_EQ(report.firstBadSeq, 1u) << report.problem;
}

TEST_F(Tamper, SwappedEntriesAreReported) {
  const std::string a = get(Family::kEvents, mid);
  const std::string b = get(Family::kEvents, mid + 1);
  const std::string sa = get(Family::kSeals, mid);
  const std::string sb = get(Family::kSeals, mid + 1);
  put(Family::kEvents, mid, b);
  put(Family::kEvents, mid + 1, a);
  put(Family::kSeals, mid, sb);
  put(Family::kSeals, mid + 1, sa);
  VerifyReport report = verify(false);
  EXPECT_FALSE(report.intact);
  EXPECT_EQ(report.firstBadSeq, mid) << report.problem;
}

TEST_F(Tamper, TruncatedTailIsFoundAgainstASavedCheckpoint) {
  const CheckpointInfo saved = w.checkpoint;
  ASSERT_LT(saved.seq, n);
  ASSERT_GT(saved.seq, 5u);
  const uint64_t keep = saved.seq - 3;
  // Cut the tail and every stored checkpoint that would give it away.
  rocksdb::WriteBatch batch;
  for (uint64_t seq = keep + 1; seq <= n; ++seq) {
    batch.Delete(db->family(Family::kEvents), seqKey(seq));
    batch.Delete(db->family(Family::kSeals), seqKey(seq));
    batch.Delete(db->family(Family::kCheckpoints), seqKey(seq));
  }
  db->write(batch, true);

  // A bare hash chain cannot tell.
  VerifyReport report = verify();
  EXPECT_TRUE(report.intact) << report.problem;
  EXPECT_EQ(report.entries, keep);

  report = verify(true, saved);
  EXPECT_FALSE(report.intact);
  EXPECT_EQ(report.firstBadSeq, keep + 1) << report.problem;
  EXPECT_NE(report.problem.find("truncated"), std::string::npos) << report.problem;
  report = verify(false, saved);
  EXPECT_FALSE(report.intact);
  EXPECT_EQ(report.firstBadSeq, keep + 1) << report.problem;
}

TEST_F(Tamper, TruncationIsFoundByStoredCheckpointsLeftBehind) {
  // Cut the log from the auditor's checkpoint on, but leave the stored checkpoints.
  const uint64_t cut = w.checkpoint.seq;
  rocksdb::WriteBatch batch;
  for (uint64_t seq = cut; seq <= n; ++seq) {
    batch.Delete(db->family(Family::kEvents), seqKey(seq));
    batch.Delete(db->family(Family::kSeals), seqKey(seq));
  }
  db->write(batch, true);
  VerifyReport report = verify(false);
  EXPECT_FALSE(report.intact);
  EXPECT_EQ(report.entries, cut - 1);
  EXPECT_EQ(report.firstBadSeq, cut) << report.problem;
}

// A seal is the chain's statement that its entry exists: a seal past the last event means the
// tail was cut (the ledger itself refuses to open such a log), so verification must not say
// "intact" there either.
TEST_F(Tamper, ASealWithoutItsEventAtTheEndIsReported) {
  del(Family::kEvents, n);
  VerifyReport report = verify(false);
  EXPECT_FALSE(report.intact) << "entries " << report.entries << ", seal " << n << " has no event";
  EXPECT_EQ(report.firstBadSeq, n) << report.problem;
  db.reset();
  EXPECT_THROW(open(), Error) << "the ledger refuses this log";
}

TEST_F(Tamper, ALogThatStillExtendsTheCheckpointVerifies) {
  // Shorten the log but keep everything up to the checkpoint: still an extension of it.
  rocksdb::WriteBatch batch;
  for (uint64_t seq = w.checkpoint.seq + 1; seq <= n; ++seq) {
    batch.Delete(db->family(Family::kEvents), seqKey(seq));
    batch.Delete(db->family(Family::kSeals), seqKey(seq));
    batch.Delete(db->family(Family::kCheckpoints), seqKey(seq));
  }
  db->write(batch, true);
  VerifyReport report = verify(true, w.checkpoint);
  EXPECT_TRUE(report.intact) << report.problem;
  EXPECT_EQ(report.entries, w.checkpoint.seq);
}

TEST_F(Tamper, ForgedOrForeignCheckpointsAreRejected) {
  CheckpointInfo otherHash = w.checkpoint;
  otherHash.entryHash[0] ^= 1;
  VerifyReport report = verify(false, otherHash);
  EXPECT_FALSE(report.intact);
  EXPECT_EQ(report.firstBadSeq, w.checkpoint.seq) << report.problem;

  CheckpointInfo badSignature = w.checkpoint;
  badSignature.signature[5] ^= 1;
  report = verify(false, badSignature);
  EXPECT_FALSE(report.intact);
  EXPECT_EQ(report.firstBadSeq, w.checkpoint.seq) << report.problem;

  // A stored checkpoint whose bytes were altered.
  std::string stored = get(Family::kCheckpoints, w.checkpoint.seq);
  stored[stored.size() - 9] = static_cast<char>(stored[stored.size() - 9] ^ 0x20);
  put(Family::kCheckpoints, w.checkpoint.seq, stored);
  report = verify(false);
  EXPECT_FALSE(report.intact);
  EXPECT_EQ(report.firstBadSeq, w.checkpoint.seq) << report.problem;
}

// Someone holding the signing key rewrites an old event and re-seals everything after it: the
// chain and every signature check out again, and only a checkpoint kept from before shows it.
TEST_F(Tamper, ResealedRewriteIsFoundOnlyAgainstAnOldCheckpoint) {
  const uint64_t target = w.checkpoint.seq - 4;
  ASSERT_GT(target, 1u);
  {
    auto stored = readEvent(*db, target);
    capnp::MallocMessageBuilder message;
    message.setRoot(stored.event());
    message.getRoot<schema::Event>().setClientAddress("10.6.6.6");
    put(Family::kEvents, target, canonicalBytes(message.getRoot<schema::Event>().asReader()));
  }
  // Re-chain and re-sign from the rewritten entry on, with the keys from the key directory.
  Digest hash{};
  {
    CanonicalReader prev(get(Family::kSeals, target - 1));
    auto h = prev.root<schema::Seal>().getEntryHash();
    std::copy(h.begin(), h.end(), hash.begin());
  }
  for (uint64_t seq = target; seq <= n; ++seq) {
    hash = entryHash(hash, asBytes(get(Family::kEvents, seq)));
    std::string old = get(Family::kSeals, seq);
    CanonicalReader reader(old);
    auto seal = reader.root<schema::Seal>();
    std::string keyId = seal.getKeyId();
    SigningKey key = SigningKey::load(dataDir() / "keys" / (keyId + ".pem"));
    Ed25519Signature sig = key.sign(hash);
    capnp::MallocMessageBuilder message;
    auto out = message.initRoot<schema::Seal>();
    out.setEntryHash(kj::arrayPtr(hash.data(), hash.size()));
    out.setKeyId(keyId);
    out.setSignature(kj::arrayPtr(sig.data(), sig.size()));
    put(Family::kSeals, seq, canonicalBytes(out.asReader()));
  }
  // The stored checkpoints no longer match: the forger deletes them.
  rocksdb::WriteBatch batch;
  auto it = db->iterate(Family::kCheckpoints);
  for (it->SeekToFirst(); it->Valid(); it->Next()) batch.Delete(db->family(Family::kCheckpoints), it->key());
  db->write(batch, true);

  VerifyReport report = verify();
  EXPECT_TRUE(report.intact) << report.problem;
  report = verify(true, w.checkpoint);
  EXPECT_FALSE(report.intact);
  EXPECT_EQ(report.firstBadSeq, w.checkpoint.seq) << report.problem;
}

// ---------------------------------------------------------------------------------------------
// Concurrency: many callers, one writer, gap-free seqs.

// LogReadAhead hands over exactly what LogCursor reads, whatever the batch boundaries: entries
// of every size (some larger than a whole batch), events without seals, a seal without its event.
TEST(LogReadAheadTest, ReadsWhatTheCursorReads) {
  TempDir dir;
  auto db = Store::open(dir.path() / "db", Store::Mode::kReadWrite, /*create=*/true);
  constexpr uint64_t kEntries = 3000;
  rocksdb::WriteBatch batch;
  for (uint64_t seq = 1; seq <= kEntries; ++seq) {
    const size_t size = seq % 997 == 0 ? 700 * 1024 : seq % 50;  // some bigger than a batch
    batch.Put(db->family(Family::kEvents), seqKey(seq), std::string(size, static_cast<char>('a' + seq % 26)));
    if (seq % 7 != 0) batch.Put(db->family(Family::kSeals), seqKey(seq), "seal " + std::to_string(seq));
  }
  batch.Put(db->family(Family::kSeals), seqKey(kEntries + 5), "a seal without its event");
  db->write(batch, true);

  for (uint64_t from : {uint64_t{1}, uint64_t{1000}, kEntries, kEntries + 1}) {
    LogCursor cursor(*db, from);
    LogReadAhead ahead(*db, from);
    uint64_t read = 0;
    for (const auto* entry = ahead.next(); entry != nullptr; entry = ahead.next()) {
      ASSERT_TRUE(cursor.valid()) << "from " << from << ": read ahead past the end, at " << entry->seq;
      ASSERT_EQ(entry->seq, cursor.seq());
      ASSERT_EQ(entry->event, cursor.eventBytes()) << entry->seq;
      ASSERT_EQ(entry->seal, cursor.sealBytes()) << entry->seq;
      cursor.next();
      ++read;
    }
    EXPECT_FALSE(cursor.valid()) << "from " << from << ": read ahead stopped early at " << cursor.seq();
    EXPECT_EQ(read, from > kEntries ? 0 : kEntries - from + 1);
    EXPECT_EQ(ahead.next(), nullptr) << "the end stays the end";
  }

  // Given up after one batch, it stops its reader and lets the store go.
  {
    LogReadAhead ahead(*db, 1);
    ASSERT_NE(ahead.next(), nullptr);
  }
}

class Concurrency : public LedgerFixture {};

TEST_F(Concurrency, ConcurrentAppendsAreGapFreeAndIntact) {
  constexpr int kThreads = 16;
  constexpr int kPerThread = 50;
  const uint64_t before = head();
  std::vector<std::vector<CommandResult>> results(kThreads);
  std::vector<std::string> failures(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        for (int i = 0; i < kPerThread; ++i) {
          const std::string owner = "svc-" + std::to_string(t);
          Request request{admin, "thread", "", CreateToken{owner, "token " + std::to_string(i), {}, scopes({"email:read"})}};
          if (t % 2 == 0) {
            results[t].push_back(ledger().execute(std::move(request)));
          } else {
            std::promise<Outcome> p;
            ledger().submit(std::move(request), [&p](Outcome o) { p.set_value(std::move(o)); });
            Outcome o = p.get_future().get();
            if (o.error) throw *o.error;
            results[t].push_back(std::move(o.result));
          }
        }
      } catch (const std::exception& e) {
        failures[t] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int t = 0; t < kThreads; ++t) ASSERT_EQ(failures[t], "") << "thread " << t;

  const uint64_t total = kThreads * kPerThread;
  std::set<uint64_t> seqs;
  std::set<std::string> sids;
  for (const auto& perThread : results) {
    ASSERT_EQ(perThread.size(), static_cast<size_t>(kPerThread));
    uint64_t last = 0;
    for (const auto& r : perThread) {
      EXPECT_EQ(r.firstSeq, r.lastSeq);
      EXPECT_GT(r.firstSeq, last) << "one caller's commands were reordered";
      last = r.firstSeq;
      seqs.insert(r.firstSeq);
      sids.insert(r.credential->sidHex());
    }
  }
  ASSERT_EQ(seqs.size(), total) << "duplicate seqs";
  EXPECT_EQ(*seqs.begin(), before + 1);
  EXPECT_EQ(*seqs.rbegin(), before + total);
  EXPECT_EQ(sids.size(), total);
  EXPECT_EQ(head(), before + total);

  VerifyReport report = verifyLog(store());
  EXPECT_TRUE(report.intact) << report.firstBadSeq << ": " << report.problem;
  EXPECT_EQ(report.entries, before + total);
  EXPECT_EQ(projection().listTokens(std::nullopt).size(), total + 1);
  EXPECT_EQ(projection().verifyIndex().size(), total + 1);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(projection().listTokens("svc-" + std::to_string(t)).size(), static_cast<size_t>(kPerThread));
  }
  auto mask = projection().verifyIndex().requiredMask({"email:read"});
  for (const auto& perThread : results) {
    for (const auto& r : perThread) {
      ASSERT_EQ(projection().verifyIndex().verify(r.credential->encode(), mask, clock.now()).reason,
                VerifyReason::kOk);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Crash: kill -9 while many callers append. Every acknowledged command survives, and the log,
// its seals and the stored projection agree after recovery.

// The child of the crash test: creates a ledger, reports the admin's SID, then appends from four
// threads forever, reporting "seq sid" for every acknowledged command. Never returns.
[[noreturn]] void crashChild(const std::filesystem::path& dir, int fd) {
  try {
    const Credential adminCredential = LedgerInstance::init(dir, "alice");
    const Actor admin = Actor::token("alice", adminCredential.sidHex());
    auto instance = LedgerInstance::open(dir);
    std::mutex out;
    auto report = [&](const std::string& line) {
      std::lock_guard lock(out);
      if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) ::_exit(4);
    };
    report("admin " + adminCredential.sidHex() + "\n");
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        for (;;) {
          CommandResult r = instance->ledger().execute(
              Request{admin, "child", "", CreateToken{"svc", "crash test", {}, Scopes::of({"email:read"})}});
          report(std::to_string(r.firstSeq) + " " + r.sids.at(0) + "\n");
        }
      });
    }
    for (auto& t : threads) t.join();
  } catch (...) {
  }
  ::_exit(3);
}

// Set in the child's environment: the ledger directory it appends to (its reports go to fd 3).
constexpr char kCrashChildDir[] = "TOKENLEDGER_TEST_CRASH_CHILD_DIR";

// kill -9 while many callers append: every acknowledged command survives, and the log, its seals
// and the stored projection agree after recovery. The child is this test binary run again (fork
// and exec), entering this test with kCrashChildDir set: a child that were only forked would
// inherit RocksDB's background thread pool from tests run before it in this process without its
// threads, and its first flush would wait forever.
TEST(Crash, KillNineLosesNoAcknowledgedCommand) {
  if (const char* childDir = std::getenv(kCrashChildDir)) crashChild(childDir, 3);
  TempDir dir;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  // Everything exec needs, built before fork: the child may only make async-signal-safe calls.
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::string filter = "--gtest_filter=Crash.KillNineLosesNoAcknowledgedCommand";
  std::vector<char*> argv{const_cast<char*>(self.c_str()), filter.data(), nullptr};
  std::vector<std::string> environment{std::string(kCrashChildDir) + "=" + (dir.path() / "ledger").string()};
  for (char** e = environ; *e != nullptr; ++e) environment.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& e : environment) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);  // first: it may be descriptor 3
    const int devNull = ::open("/dev/null", O_WRONLY);  // the child's own GoogleTest banner
    if (devNull < 0 || ::dup2(devNull, STDOUT_FILENO) < 0 || ::dup2(fds[1], 3) < 0) ::_exit(5);
    ::execve(self.c_str(), argv.data(), envp.data());
    ::_exit(6);
  }
  ::close(fds[1]);
  std::string adminSid;
  std::map<uint64_t, std::string> acked;
  std::string buffer;
  char chunk[4096];
  while (acked.size() < 300) {
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, 60'000) != 1) break;  // a guard against a hung child, not a timing check
    ssize_t got = ::read(fds[0], chunk, sizeof(chunk));
    if (got <= 0) break;
    buffer.append(chunk, static_cast<size_t>(got));
    size_t end;
    while ((end = buffer.find('\n')) != std::string::npos) {
      std::string line = buffer.substr(0, end);
      buffer.erase(0, end + 1);
      size_t space = line.find(' ');
      if (line.substr(0, space) == "admin") {
        adminSid = line.substr(space + 1);
      } else {
        acked[std::stoull(line.substr(0, space))] = line.substr(space + 1);
      }
    }
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(fds[0]);
  ASSERT_GE(acked.size(), 300u) << "the child stopped early, status " << status;
  EXPECT_TRUE(WIFSIGNALED(status));

  auto instance = LedgerInstance::open(dir.path() / "ledger");
  EXPECT_GE(instance->ledger().headSeq(), acked.rbegin()->first);
  for (const auto& [seq, sid] : acked) {
    auto token = instance->projection().committed().token(sid);
    ASSERT_TRUE(token.has_value()) << "acknowledged token " << sid << " (seq " << seq << ") lost";
    EXPECT_EQ(token->lastSeq, seq);
  }
  VerifyReport report = verifyLog(instance->store());
  EXPECT_TRUE(report.intact) << report.firstBadSeq << ": " << report.problem;
  EXPECT_EQ(report.entries, instance->ledger().headSeq());
  auto diff = diffStored(instance->store(), replayLog(instance->store()));
  EXPECT_TRUE(diff.empty()) << diff.size() << " differences, first: " << (diff.empty() ? "" : diff[0]);
  EXPECT_EQ(instance->projection().listTokens(std::nullopt).size(), instance->ledger().headSeq() - 2);
  CommandResult r = instance->ledger().execute(Request{Actor::token("alice", adminSid), "test", "",
                                                       CreateToken{"svc", "after crash", {}, Scopes::of({"email:read"})}});
  EXPECT_EQ(r.firstSeq, report.entries + 1);
}

// ---------------------------------------------------------------------------------------------
// Secrets never reach the database.

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class Secrets : public LedgerFixture {};

TEST_F(Secrets, NoSecretIsStoredAnywhere) {
  Workload w = workload();
  // Some of it in SST files, some only in the WAL.
  std::vector<rocksdb::ColumnFamilyHandle*> families;
  for (size_t f = 0; f < kFamilyCount; ++f) families.push_back(store().family(static_cast<Family>(f)));
  ASSERT_TRUE(store().db().Flush(rocksdb::FlushOptions(), families).ok());
  for (int i = 0; i < 5; ++i) {
    CommandResult r = run(admin, CreateToken{"late", "late " + std::to_string(i), {}, scopes({"email:read"})});
    w.issued.push_back(*r.credential);
    w.issued.push_back(*run(admin, RotateToken{r.sids.at(0)}).credential);
  }
  ASSERT_GE(w.issued.size(), 20u);

  struct Needle {
    std::string what;
    std::string bytes;
  };
  std::vector<Needle> secrets;
  std::vector<std::string> hashes;
  for (const Credential& c : w.issued) {
    std::string raw(reinterpret_cast<const char*>(c.secret.data()), c.secret.size());
    std::string hex = toHex(c.secret);
    std::string upper = hex;
    std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
    secrets.push_back({"raw secret of " + c.sidHex(), raw});
    secrets.push_back({"hex secret of " + c.sidHex(), hex});
    secrets.push_back({"HEX secret of " + c.sidHex(), upper});
    secrets.push_back({"credential of " + c.sidHex(), c.encode()});
    Digest h = sha256(c.secret);
    hashes.emplace_back(reinterpret_cast<const char*>(h.data()), h.size());
  }

  // Every row, decoded by RocksDB (values may be compressed on disk).
  size_t rows = 0;
  std::vector<bool> hashSeen(hashes.size(), false);
  for (size_t f = 0; f < kFamilyCount; ++f) {
    auto it = store().iterate(static_cast<Family>(f));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      ++rows;
      std::string row = it->key().ToString() + '\n' + it->value().ToString();
      for (const auto& s : secrets) ASSERT_FALSE(contains(row, s.bytes)) << s.what << " in family " << f;
      for (size_t k = 0; k < hashes.size(); ++k) hashSeen[k] = hashSeen[k] || contains(row, hashes[k]);
    }
  }
  EXPECT_GT(rows, 50u);
  for (size_t k = 0; k < hashes.size(); ++k) EXPECT_TRUE(hashSeen[k]) << "hash " << k << " not stored (scan broken?)";

  // Every byte of every file under the data directory, WAL and RocksDB's own logs included.
  close();
  std::vector<std::string> names;
  std::fill(hashSeen.begin(), hashSeen.end(), false);
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dataDir())) {
    if (!entry.is_regular_file()) continue;
    names.push_back(entry.path().filename().string());
    std::string content = readFile(entry.path());
    for (const auto& s : secrets) {
      EXPECT_FALSE(contains(content, s.bytes)) << s.what << " found in " << entry.path();
    }
    for (size_t k = 0; k < hashes.size(); ++k) hashSeen[k] = hashSeen[k] || contains(content, hashes[k]);
  }
  EXPECT_TRUE(std::any_of(names.begin(), names.end(), [](const std::string& s) { return s.ends_with(".log"); }));
  EXPECT_TRUE(std::any_of(names.begin(), names.end(), [](const std::string& s) { return s.ends_with(".sst"); }));
  // (A hash may straddle a WAL block boundary, so not every one need be contiguous on disk.)
  EXPECT_GE(std::count(hashSeen.begin(), hashSeen.end(), true), static_cast<long>(hashes.size() / 2))
      << "the stored secret hashes are not found in the files: the scan is broken";
}

// ---------------------------------------------------------------------------------------------
// Credentials.

uint32_t crc32(std::string_view data) {
  uint32_t crc = 0xffffffffu;
  for (char ch : data) {
    crc ^= static_cast<uint8_t>(ch);
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

std::string withChecksum(const std::string& body) {
  char out[9];
  std::snprintf(out, sizeof(out), "%08x", crc32(body));
  return body + out;
}

TEST(CredentialTest, EncodeParseRoundTrip) {
  for (int i = 0; i < 20; ++i) {
    Credential c = Credential::generate();
    std::string text = c.encode();
    EXPECT_EQ(text.size(), kCredentialLength);
    EXPECT_EQ(text.size(), 108u);
    EXPECT_TRUE(text.starts_with("tlp_" + c.sidHex() + toHex(c.secret)));
    EXPECT_EQ(text, withChecksum(text.substr(0, 100)));  // crc32 of everything before it
    auto parsed = parseCredential(text);
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(parsed->sid, c.sid);
    EXPECT_EQ(parsed->secret, c.secret);
    EXPECT_EQ(parsed->encode(), text);
  }
  Credential a = Credential::generate();
  Credential b = Credential::generate();
  EXPECT_NE(a.sid, b.sid);
  EXPECT_NE(a.secret, b.secret);
  Credential rotated = Credential::withNewSecret(a.sid);
  EXPECT_EQ(rotated.sid, a.sid);
  EXPECT_NE(rotated.secret, a.secret);
}

TEST(CredentialTest, MalformedStringsAreRejected) {
  Credential c = Credential::generate();
  const std::string good = c.encode();
  const std::string body = good.substr(0, 100);
  EXPECT_FALSE(parseCredential("").has_value());
  EXPECT_FALSE(parseCredential("tlp_").has_value());
  EXPECT_FALSE(parseCredential(good.substr(0, 107)).has_value());
  EXPECT_FALSE(parseCredential(good + "0").has_value());
  EXPECT_FALSE(parseCredential(" " + good).has_value());
  EXPECT_FALSE(parseCredential(good.substr(4)).has_value());
  // Wrong prefix, even with a checksum that matches it.
  EXPECT_FALSE(parseCredential(withChecksum("ghp_" + body.substr(4))).has_value());
  EXPECT_FALSE(parseCredential(withChecksum("TLP_" + body.substr(4))).has_value());
  // Uppercase hex, even with a checksum that matches it.
  std::string upperBody = body;
  std::transform(upperBody.begin() + 4, upperBody.end(), upperBody.begin() + 4, ::toupper);
  ASSERT_NE(upperBody, body);
  EXPECT_FALSE(parseCredential(withChecksum(upperBody)).has_value());
  std::string upperCrc = good;
  std::transform(upperCrc.begin() + 100, upperCrc.end(), upperCrc.begin() + 100, ::toupper);
  if (upperCrc != good) {
    EXPECT_FALSE(parseCredential(upperCrc).has_value());
  }
  // Not hex, even with a checksum that matches it.
  std::string notHex = body;
  notHex[10] = 'g';
  EXPECT_FALSE(parseCredential(withChecksum(notHex)).has_value());
  // Any single changed character.
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = bad[i] == '0' ? '1' : '0';
    EXPECT_FALSE(parseCredential(bad).has_value()) << "position " << i;
  }
}

TEST(CredentialTest, TwoValueForm) {
  Credential c = Credential::generate();
  auto pair = parseCredentialPair(c.sidHex(), toHex(c.secret));
  ASSERT_TRUE(pair.has_value());
  EXPECT_EQ(pair->sid, c.sid);
  EXPECT_EQ(pair->secret, c.secret);
  EXPECT_FALSE(parseCredentialPair(c.sidHex().substr(1), toHex(c.secret)).has_value());
  EXPECT_FALSE(parseCredentialPair(c.sidHex(), toHex(c.secret).substr(2)).has_value());
  EXPECT_FALSE(parseCredentialPair(c.sidHex(), toHex(c.secret) + "00").has_value());
  EXPECT_FALSE(parseCredentialPair(c.sidHex(), std::string(64, 'x')).has_value());
  EXPECT_FALSE(parseCredentialPair("", "").has_value());
  std::string upperSid = c.sidHex();
  std::transform(upperSid.begin(), upperSid.end(), upperSid.begin(), ::toupper);
  if (upperSid != c.sidHex()) {
    EXPECT_FALSE(parseCredentialPair(upperSid, toHex(c.secret)).has_value());
  }
  // The pasted one-string form is not a SID.
  EXPECT_FALSE(parseCredentialPair(c.encode(), toHex(c.secret)).has_value());

  EXPECT_TRUE(isSidText(c.sidHex()));
  EXPECT_FALSE(isSidText(c.sidHex() + "0"));
  EXPECT_FALSE(isSidText(std::string(32, 'g')));
  EXPECT_EQ(parseSid(c.sidHex()), std::optional<Sid>(c.sid));
  EXPECT_FALSE(parseSid("abc").has_value());
}

// ---------------------------------------------------------------------------------------------
// The scope catalog.

TEST(ScopeCatalogTest, BuiltinHasTheSeedAndLedgerScopes) {
  const ScopeCatalog& catalog = ScopeCatalog::builtin();
  std::vector<std::string> expected{
      "assessoncloudresults:write", "onboardingeeo:read", "tokens:read", "tokens:write",
      "audit:read", "roles:write"};
  for (const char* resource : {"assignment", "backgroundcheck", "contact", "contract", "customer",
                               "document", "email", "employee", "everify", "hotlist", "jobboard",
                               "jobordercandidate", "message"}) {
    expected.push_back(std::string(resource) + ":read");
    expected.push_back(std::string(resource) + ":write");
  }
  for (const auto& id : expected) EXPECT_TRUE(catalog.indexOf(id).has_value()) << id;
  EXPECT_EQ(catalog.scopes().size(), expected.size());
  EXPECT_FALSE(catalog.indexOf("onboardingeeo:write").has_value());
  EXPECT_FALSE(catalog.indexOf("assessoncloudresults:read").has_value());
  std::set<std::string> ids;
  for (const auto& s : catalog.scopes()) {
    EXPECT_FALSE(s.displayName.empty()) << s.id;
    EXPECT_FALSE(s.description.empty()) << s.id;
    EXPECT_TRUE(ids.insert(s.id).second) << s.id;
  }
  EXPECT_EQ(catalog.scopes()[*catalog.indexOf("assignment:read")].displayName, "Assignment Read");

  ScopeMask mask = catalog.maskOf({"tokens:read", "assignment:read"});
  EXPECT_EQ(catalog.idsOf(mask.bits),
            (std::vector<std::string>{"assignment:read", "tokens:read"}));
  try {
    catalog.maskOf({"assignment:read", "payroll:read"});
    FAIL() << "unknown scope accepted";
  } catch (const Error& e) {
    EXPECT_EQ(errorCodeText(e.code()), errorCodeText(ErrorCode::kInvalidArgument));
    EXPECT_NE(std::string(e.what()).find("payroll:read"), std::string::npos) << e.what();
  }
}

void expectBadCatalog(const std::string& json, const std::string& named = {}) {
  try {
    ScopeCatalog::fromJson(json);
    ADD_FAILURE() << "accepted catalog " << json;
  } catch (const Error& e) {
    EXPECT_EQ(errorCodeText(e.code()), errorCodeText(ErrorCode::kInvalidArgument)) << json;
    if (!named.empty()) {
      EXPECT_NE(std::string(e.what()).find(named), std::string::npos) << e.what();
    }
  }
}

std::string catalogJson(const std::vector<std::string>& ids) {
  std::string json = R"({"scopes": [)";
  for (size_t i = 0; i < ids.size(); ++i) {
    json += (i ? "," : "") + std::string(R"({"id": ")") + ids[i] +
            R"(", "displayName": "D", "description": "Help."})";
  }
  return json + "]}";
}

TEST(ScopeCatalogTest, FromJson) {
  ScopeCatalog c = ScopeCatalog::fromJson(catalogJson({"widget:read", "widget:write", "tokens:read"}));
  ASSERT_EQ(c.scopes().size(), 3u);
  EXPECT_EQ(c.scopes()[0].id, "widget:read");
  EXPECT_EQ(c.scopes()[0].displayName, "D");
  EXPECT_EQ(c.scopes()[0].description, "Help.");
  EXPECT_EQ(c.indexOf("widget:write"), std::optional<size_t>(1));

  expectBadCatalog(catalogJson({"widget:read", "widget:read"}), "widget:read");
  for (std::string id : {"Widget:read", "widget", ":read", "widget:", "wid get:read",
                                "widget:re-ad", ""}) {
    expectBadCatalog(catalogJson({"ok:read", id}));
  }
  expectBadCatalog("");
  expectBadCatalog("{");
  expectBadCatalog("not json");
  expectBadCatalog(R"({"scopes": 5})");
  expectBadCatalog(catalogJson({}));
  std::vector<std::string> many;
  for (int i = 0; i < 64; ++i) many.push_back("r" + std::to_string(i) + ":read");
  EXPECT_EQ(ScopeCatalog::fromJson(catalogJson(many)).scopes().size(), 64u);
  many.push_back("r64:read");
  expectBadCatalog(catalogJson(many));
}

}  // namespace
}  // namespace tokenledger::test
