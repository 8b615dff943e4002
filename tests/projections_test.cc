// The read side the writer maintains: the stored projection across reopen, rebuild from the log
// (replay, diff, repair), the per-token history index, apply(), and the verification index.
#include <algorithm>
#include <atomic>
#include <map>
#include <tuple>
#include <set>
#include <thread>

#include "ledger/crypto.h"
#include "ledger/log_verifier.h"
#include "ledger/scope_catalog.h"
#include "ledger/token_codec.h"
#include "projections/apply.h"
#include "projections/memory_state.h"
#include "projections/rebuild.h"
#include "projections/stored_projection.h"
#include "projections/verify_index.h"
#include "test_support.h"

namespace tokenledger::test {
namespace {

using Kind = Expiration::Kind;

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += "\n  " + l;
  return out;
}

bool anyLineNames(const std::vector<std::string>& lines, const std::string& what) {
  return std::any_of(lines.begin(), lines.end(),
                     [&](const std::string& l) { return l.find(what) != std::string::npos; });
}

struct Verdict {
  VerifyReason reason;
  std::string sid, owner;
  ScopeMask scopes;
  int64_t expiresAt;
  bool operator==(const Verdict&) const = default;
};
Verdict verdictOf(const VerifyResult& r) { return {r.reason, r.sidHex(), r.owner, r.scopes, r.expiresAtMicros}; }

std::string reasonText(VerifyReason r) { return verifyReasonName(r); }

// ---------------------------------------------------------------------------------------------
// The stored projection.

class Projections : public LedgerFixture {};

TEST_F(Projections, ReopenGivesTheSameTableAndVerifyIndex) {
  Workload w = workload();
  const uint64_t seq = head();
  const auto tokens = projection().listTokens(std::nullopt);
  // alice's init token, bob, carol, bob's A B C, two payroll tokens, erin's.
  ASSERT_EQ(tokens.size(), 9u);
  const auto bobs = projection().listTokens("bob");
  ASSERT_EQ(bobs.size(), 4u);
  std::map<std::string, std::vector<uint64_t>> history;
  for (const auto& t : tokens) history[t.sid] = projection().eventsOf(t.sid);
  const std::vector<std::string> principals{"alice", "bob", "carol", "dave", "erin"};
  std::vector<RoleSet> roles;
  for (const auto& p : principals) roles.push_back(projection().committed().rolesOf(p));
  std::vector<Verdict> verdicts;
  const auto any = ScopeMask{};
  for (const auto& c : w.issued) verdicts.push_back(verdictOf(projection().verifyIndex().verify(c.encode(), any, clock.now())));
  // The reopened index is loaded from the stored rows field by field: what it answers with
  // (owner, scopes, expiry) must be what the live index answered with.
  auto answers = [&] {
    std::vector<std::tuple<std::string, bool, uint64_t, int64_t>> out;
    for (const auto& c : w.issued) {
      VerifyResult r = projection().verifyIndex().verify(c.encode(), any, clock.now());
      out.emplace_back(r.owner, r.scopes.all, r.scopes.bits, r.expiresAtMicros);
    }
    return out;
  };
  const auto liveAnswers = answers();

  reopen();
  EXPECT_EQ(head(), seq);
  EXPECT_EQ(projection().listTokens(std::nullopt), tokens);
  EXPECT_EQ(projection().listTokens("bob"), bobs);
  for (const auto& t : tokens) {
    EXPECT_EQ(projection().eventsOf(t.sid), history[t.sid]) << t.sid;
    EXPECT_EQ(projection().committed().token(t.sid), std::optional<Token>(t));
  }
  for (size_t i = 0; i < principals.size(); ++i) {
    EXPECT_EQ(projection().committed().rolesOf(principals[i]), roles[i]) << principals[i];
  }
  EXPECT_EQ(projection().verifyIndex().size(), tokens.size());
  EXPECT_EQ(answers(), liveAnswers);
  for (size_t i = 0; i < w.issued.size(); ++i) {
    EXPECT_EQ(verdictOf(projection().verifyIndex().verify(w.issued[i].encode(), any, clock.now())), verdicts[i])
        << w.issued[i].sidHex();
  }
  // What the verdicts should be, not just that they survived.
  const VerifyIndex& index = projection().verifyIndex();
  EXPECT_EQ(index.verify(w.current.at(w.rotatedSid).encode(), any, clock.now()).reason, VerifyReason::kOk);
  EXPECT_EQ(index.verify(w.current.at(w.revokedSid).encode(), any, clock.now()).reason, VerifyReason::kRevoked);
  for (const auto& sid : w.offboardedSids) {
    EXPECT_EQ(index.verify(w.current.at(sid).encode(), any, clock.now()).reason, VerifyReason::kRevoked);
  }
  size_t invalid = 0;
  for (const auto& c : w.issued) {
    invalid += index.verify(c.encode(), any, clock.now()).reason == VerifyReason::kInvalidCredentials;
  }
  EXPECT_EQ(invalid, 2u) << "exactly the two rotated-away secrets stop working";
  EXPECT_EQ(projection().committed().rolesOf("bob"), RoleSet{1u << static_cast<unsigned>(Role::kUser)});
  EXPECT_TRUE(projection().committed().rolesOf("dave").empty());

  // And the reopened ledger keeps writing on top.
  CommandResult r = run(w.bob.actor, CreateToken{"bob", "after reopen", {}, scopes({"contact:read"})});
  EXPECT_EQ(r.firstSeq, seq + 1);
  EXPECT_EQ(index.verify(r.credential->encode(), index.requiredMask({"contact:read"}), clock.now()).reason,
            VerifyReason::kOk);
  VerifyReport report = verifyLog(store());
  EXPECT_TRUE(report.intact) << report.problem;
}

TEST_F(Projections, PerTokenHistoryIndexIsExact) {
  Workload w = workload();
  std::map<std::string, std::vector<uint64_t>> expected;
  for (uint64_t seq = 1; seq <= head(); ++seq) {
    auto e = readEvent(store(), seq);
    std::string sid = sidOf(e.event());
    if (!sid.empty()) expected[sid].push_back(seq);
  }
  ASSERT_EQ(expected.size(), projection().listTokens(std::nullopt).size());
  for (const auto& [sid, seqs] : expected) EXPECT_EQ(projection().eventsOf(sid), seqs) << sid;
  // Vendor A: created, rescoped, rotated, renamed.
  EXPECT_EQ(projection().eventsOf(w.rotatedSid).size(), 4u);
  EXPECT_EQ(projection().committed().token(w.rotatedSid)->lastSeq, expected[w.rotatedSid].back());
  EXPECT_TRUE(projection().eventsOf(Credential::generate().sidHex()).empty());
}

TEST_F(Projections, OwnerAndRoleQueries) {
  Workload w = workload();
  auto bobs = projection().listTokens("bob");
  ASSERT_EQ(bobs.size(), 4u);
  EXPECT_TRUE(std::is_sorted(bobs.begin(), bobs.end(), [](const Token& a, const Token& b) { return a.sid < b.sid; }));
  for (const auto& t : bobs) EXPECT_EQ(t.owner, "bob");
  EXPECT_EQ(projection().listTokens("svc-payroll").size(), 2u);
  EXPECT_TRUE(projection().listTokens("nobody").empty());
  EXPECT_TRUE(projection().listTokens("bo").empty()) << "owner prefix must not match";
  auto owned = projection().committed().tokensOwnedBy("bob");
  EXPECT_EQ(owned.size(), 4u);
  EXPECT_EQ(projection().committed().principalsWith(Role::kAuditor), std::vector<std::string>{"carol"});
  EXPECT_EQ(projection().committed().principalsWith(Role::kAdmin), std::vector<std::string>{"alice"});
  EXPECT_EQ(projection().committed().principalsWith(Role::kUser), std::vector<std::string>{"bob"});
}

// ---------------------------------------------------------------------------------------------
// Rebuild from the log.

TEST_F(Projections, ReplayEqualsTheStoredProjection) {
  Workload w = workload();
  MemoryState replayed = replayLog(store());
  auto diff = diffStored(store(), replayed);
  EXPECT_TRUE(diff.empty()) << joined(diff);
  EXPECT_EQ(replayed.lastSeq(), head());

  auto stored = projection().listTokens(std::nullopt);
  ASSERT_EQ(replayed.tokens().size(), stored.size());
  for (const auto& t : stored) {
    auto r = replayed.token(t.sid);
    ASSERT_TRUE(r.has_value()) << t.sid;
    EXPECT_EQ(*r, t);
    EXPECT_EQ(replayed.eventsOf(t.sid), projection().eventsOf(t.sid));
  }
  std::map<std::string, RoleSet, std::less<>> roles;
  roles["alice"].add(Role::kAdmin);
  roles["bob"].add(Role::kUser);
  roles["carol"].add(Role::kAuditor);
  EXPECT_EQ(replayed.roles(), roles);
  EXPECT_EQ(replayed.tokensOwnedBy("bob").size(), 4u);
  EXPECT_TRUE(replayed.token(w.revokedSid)->revoked);
  EXPECT_EQ(replayed.token(w.revokedSid)->revokeReason, "vendor contract ended");
  EXPECT_EQ(replayed.token(w.describedSid)->description, "Vendor B (billing)");
}

TEST_F(Projections, ReplayAsOfSeqAndTime) {
  const int64_t t0 = clock.now();
  CommandResult created = run(admin, CreateToken{"svc", "x", {}, scopes({"email:read"})});
  const std::string sid = created.sids.at(0);
  clock.advance(10 * kSecond);
  const int64_t t1 = clock.now();
  CommandResult revoked = run(admin, RevokeToken{sid});

  MemoryState initOnly = replayLog(store(), ReplayBound{3});
  EXPECT_EQ(initOnly.lastSeq(), 3u);
  EXPECT_EQ(initOnly.tokens().size(), 1u);
  EXPECT_TRUE(initOnly.rolesOf("alice").has(Role::kAdmin));

  MemoryState before = replayLog(store(), ReplayBound{revoked.firstSeq - 1});
  ASSERT_TRUE(before.token(sid).has_value());
  EXPECT_FALSE(before.token(sid)->revoked);
  MemoryState after = replayLog(store(), ReplayBound{revoked.firstSeq});
  EXPECT_TRUE(after.token(sid)->revoked);

  ReplayBound atT0;
  atT0.toTimeMicros = t0;
  EXPECT_FALSE(replayLog(store(), atT0).token(sid)->revoked);
  ReplayBound justBefore;
  justBefore.toTimeMicros = t1 - 1;
  MemoryState m = replayLog(store(), justBefore);
  EXPECT_FALSE(m.token(sid)->revoked);
  EXPECT_EQ(m.lastSeq(), created.firstSeq);
  ReplayBound atT1;
  atT1.toTimeMicros = t1;
  EXPECT_TRUE(replayLog(store(), atT1).token(sid)->revoked);
  ReplayBound beforeInit;
  beforeInit.toTimeMicros = 0;
  EXPECT_TRUE(replayLog(store(), beforeInit).tokens().empty());
}

TEST_F(Projections, DiffNamesDamagedTokenAndRoleRowsAndRebuildRepairsThem) {
  Workload w = workload();
  auto db = rawStore();
  ASSERT_TRUE(diffStored(*db, replayLog(*db)).empty());

  auto putRow = [&](Family f, const std::string& key, const std::string& value) {
    rocksdb::WriteBatch batch;
    batch.Put(db->family(f), key, value);
    db->write(batch, true);
  };
  auto deleteRow = [&](Family f, const std::string& key) {
    rocksdb::WriteBatch batch;
    batch.Delete(db->family(f), key);
    db->write(batch, true);
  };

  Token described = decodeToken(*db->get(Family::kTokens, w.describedSid));
  described.description = "edited behind the ledger's back";
  putRow(Family::kTokens, w.describedSid, encodeToken(described));
  Token rescoped = decodeToken(*db->get(Family::kTokens, w.rescopedSid));
  rescoped.scopes = Scopes::allScopes();
  putRow(Family::kTokens, w.rescopedSid, encodeToken(rescoped));
  Token unrevoked = decodeToken(*db->get(Family::kTokens, w.revokedSid));
  unrevoked.revoked = false;
  putRow(Family::kTokens, w.revokedSid, encodeToken(unrevoked));
  deleteRow(Family::kTokens, w.offboardedSids[0]);
  putRow(Family::kTokens, w.offboardedSids[1], "not a token record");
  Token forged = described;
  forged.sid = Credential::generate().sidHex();
  putRow(Family::kTokens, forged.sid, encodeToken(forged));
  putRow(Family::kRoles, "bob", std::string(1, static_cast<char>(1u << static_cast<unsigned>(Role::kAdmin))));
  putRow(Family::kRoles, "mallory", std::string(1, static_cast<char>(1u << static_cast<unsigned>(Role::kAdmin))));
  deleteRow(Family::kRoles, "carol");

  auto diff = diffStored(*db, replayLog(*db));
  EXPECT_GE(diff.size(), 9u) << joined(diff);
  EXPECT_TRUE(anyLineNames(diff, w.describedSid)) << joined(diff);
  EXPECT_TRUE(anyLineNames(diff, "description")) << joined(diff);
  EXPECT_TRUE(anyLineNames(diff, w.rescopedSid)) << joined(diff);
  EXPECT_TRUE(anyLineNames(diff, "scopes")) << joined(diff);
  EXPECT_TRUE(anyLineNames(diff, w.revokedSid)) << joined(diff);
  EXPECT_TRUE(anyLineNames(diff, "revocation")) << joined(diff);
  EXPECT_TRUE(anyLineNames(diff, w.offboardedSids[0])) << joined(diff);
  EXPECT_TRUE(anyLineNames(diff, w.offboardedSids[1])) << joined(diff);
  EXPECT_TRUE(anyLineNames(diff, forged.sid)) << joined(diff);
  EXPECT_TRUE(anyLineNames(diff, "roles of bob")) << joined(diff);
  EXPECT_TRUE(anyLineNames(diff, "roles of mallory")) << joined(diff);
  EXPECT_TRUE(anyLineNames(diff, "roles of carol")) << joined(diff);
  EXPECT_FALSE(anyLineNames(diff, w.bob.credential.sidHex())) << "an intact row was reported";

  rebuildStored(*db);
  diff = diffStored(*db, replayLog(*db));
  EXPECT_TRUE(diff.empty()) << joined(diff);
  EXPECT_TRUE(verifyLog(*db).intact);
  EXPECT_FALSE(db->get(Family::kTokens, forged.sid).has_value());
  EXPECT_FALSE(db->get(Family::kRoles, "mallory").has_value());
  db.reset();

  // The repaired rows are what a reopened ledger serves and enforces.
  open();
  const VerifyIndex& index = projection().verifyIndex();
  EXPECT_EQ(index.verify(w.current.at(w.revokedSid).encode(), ScopeMask{}, clock.now()).reason, VerifyReason::kRevoked);
  EXPECT_EQ(index.verify(w.current.at(w.offboardedSids[1]).encode(), ScopeMask{}, clock.now()).reason,
            VerifyReason::kRevoked);
  EXPECT_EQ(projection().committed().token(w.describedSid)->description, "Vendor B (billing)");
  EXPECT_FALSE(projection().committed().rolesOf("bob").has(Role::kAdmin));
  EXPECT_TRUE(projection().committed().rolesOf("carol").has(Role::kAuditor));
  EXPECT_REJECTED(ErrorCode::kPermissionDenied, w.bob.actor, GrantRole{"bob", Role::kAdmin});
}

// The index rows (owner index, per-token history) are checked too, and a person reading the diff
// must be able to tell which row is wrong.
TEST_F(Projections, DiffNamesDamagedIndexRows) {
  Workload w = workload();
  auto db = rawStore();
  const std::string sid = w.rotatedSid;  // bob's Vendor A
  const uint64_t firstEvent = replayLog(*db).eventsOf(sid).at(0);
  rocksdb::WriteBatch batch;
  batch.Delete(db->family(Family::kOwnerTokens), ownerTokenKey("bob", sid));
  batch.Delete(db->family(Family::kTokenEvents), tokenEventKey(sid, firstEvent));
  const std::string stray = Credential::generate().sidHex();
  batch.Put(db->family(Family::kOwnerTokens), ownerTokenKey("mallory", stray), "");
  db->write(batch, true);

  auto diff = diffStored(*db, replayLog(*db));
  EXPECT_EQ(diff.size(), 3u) << joined(diff);
  EXPECT_TRUE(anyLineNames(diff, "owner index")) << joined(diff);
  EXPECT_TRUE(anyLineNames(diff, "token event index")) << joined(diff);
  // Which rows:
  EXPECT_TRUE(std::any_of(diff.begin(), diff.end(), [&](const std::string& l) {
    return l.find("owner index") != std::string::npos && l.find(sid) != std::string::npos;
  })) << "the missing owner-index row of " << sid << " is not named:" << joined(diff);
  EXPECT_TRUE(std::any_of(diff.begin(), diff.end(), [&](const std::string& l) {
    return l.find("token event index") != std::string::npos && l.find(sid) != std::string::npos;
  })) << "the missing history row of " << sid << " is not named:" << joined(diff);
  EXPECT_TRUE(anyLineNames(diff, stray)) << "the stray owner-index row is not named:" << joined(diff);

  rebuildStored(*db);
  diff = diffStored(*db, replayLog(*db));
  EXPECT_TRUE(diff.empty()) << joined(diff);
  db.reset();
  open();
  EXPECT_EQ(projection().listTokens("bob").size(), 4u);
  EXPECT_EQ(projection().eventsOf(sid).size(), 4u);
  EXPECT_TRUE(projection().listTokens("mallory").empty());
}

// ---------------------------------------------------------------------------------------------
// apply(): the one function from events to state.

TEST(Apply, RejectsEventsThatCannotFollowTheState) {
  MemoryState state;
  capnp::MallocMessageBuilder message;
  auto e = message.initRoot<schema::Event>();
  e.setSeq(7);
  e.setTimeMicros(kStartMicros);
  e.initActor().setBootstrap();
  e.initTokenRevoked().setSid(std::string(32, 'a'));
  try {
    apply(state, e.asReader());
    FAIL() << "revoked a token that does not exist";
  } catch (const Error& err) {
    EXPECT_EQ(errorCodeText(err.code()), errorCodeText(ErrorCode::kIntegrity));
    EXPECT_NE(std::string(err.what()).find("7"), std::string::npos) << err.what();
  }

  Credential c = Credential::generate();
  Digest hash = sha256(c.secret);
  auto created = e.initTokenCreated();
  created.setSid(c.sidHex());
  created.setOwner("svc");
  created.setDescription("d");
  created.setSecretHash(kj::arrayPtr(hash.data(), hash.size()));
  created.initScopes().setAll();
  apply(state, e.asReader());
  ASSERT_TRUE(state.token(c.sidHex()).has_value());
  EXPECT_EQ(state.token(c.sidHex())->secretHash, hash);
  EXPECT_EQ(state.token(c.sidHex())->lastSeq, 7u);
  EXPECT_EQ(state.eventsOf(c.sidHex()), std::vector<uint64_t>{7});
  try {
    apply(state, e.asReader());
    FAIL() << "created the same token twice";
  } catch (const Error& err) {
    EXPECT_EQ(errorCodeText(err.code()), errorCodeText(ErrorCode::kIntegrity));
  }
  created.setSid(Credential::generate().sidHex());
  created.setSecretHash(kj::arrayPtr(hash.data(), 31));
  EXPECT_THROW(apply(state, e.asReader()), Error);

  // A role this version does not know (found by event_fuzz: it reached a bit shift by 200).
  auto grant = e.initRoleGranted();
  grant.setPrincipal("mallory");
  grant.setRole(static_cast<schema::Role>(200));
  try {
    apply(state, e.asReader());
    FAIL() << "granted an unknown role";
  } catch (const Error& err) {
    EXPECT_EQ(errorCodeText(err.code()), errorCodeText(ErrorCode::kIntegrity));
    EXPECT_NE(std::string(err.what()).find("role"), std::string::npos) << err.what();
  }
  EXPECT_TRUE(state.rolesOf("mallory").empty());
}

// ---------------------------------------------------------------------------------------------
// The verification index.

class VerifyIndexTest : public LedgerFixture {
 protected:
  const VerifyIndex& index() { return projection().verifyIndex(); }
  std::optional<ScopeMask> need(std::vector<std::string> ids) { return index().requiredMask(ids); }
  VerifyReason reason(const std::string& credential, std::optional<ScopeMask> required, int64_t now) {
    return index().verify(credential, required, now).reason;
  }
};

TEST_F(VerifyIndexTest, Reasons) {
  CommandResult r = run(admin, CreateToken{"svc", "vendor", {Kind::kDays90, 0}, scopes({"assignment:read", "contact:read"})});
  const Credential c = *r.credential;
  const std::string text = c.encode();
  const int64_t now = clock.now();
  const int64_t expiry = now + 90 * kDay;

  VerifyResult ok = index().verify(text, need({"assignment:read"}), now);
  EXPECT_EQ(reasonText(ok.reason), "ok");
  EXPECT_TRUE(ok.valid());
  EXPECT_EQ(ok.sidHex(), c.sidHex());
  EXPECT_EQ(ok.owner, "svc");
  EXPECT_EQ(ok.scopes, ScopeCatalog::builtin().maskOf({"assignment:read", "contact:read"}));
  EXPECT_EQ(ok.expiresAtMicros, expiry);
  EXPECT_EQ(reason(text, need({"assignment:read", "contact:read"}), now), VerifyReason::kOk);
  EXPECT_EQ(reason(text, need({}), now), VerifyReason::kOk);

  VerifyResult narrow = index().verify(text, need({"assignment:write"}), now);
  EXPECT_EQ(reasonText(narrow.reason), "insufficientScope");
  EXPECT_FALSE(narrow.valid());
  EXPECT_EQ(narrow.owner, "svc");
  EXPECT_EQ(reason(text, need({"assignment:read", "assignment:write"}), now), VerifyReason::kInsufficientScope);
  EXPECT_FALSE(need({"payroll:read"}).has_value());
  EXPECT_EQ(reason(text, need({"assignment:read", "payroll:read"}), now), VerifyReason::kInsufficientScope);

  // Unknown SID and wrong secret: the same answer, revealing nothing.
  VerifyResult unknown = index().verify(Credential::generate().encode(), need({"assignment:read"}), now);
  Credential wrong = Credential::withNewSecret(c.sid);
  VerifyResult badSecret = index().verify(wrong.encode(), need({"assignment:read"}), now);
  EXPECT_EQ(reasonText(unknown.reason), "invalidCredentials");
  EXPECT_EQ(verdictOf(unknown), verdictOf(badSecret));
  EXPECT_TRUE(badSecret.owner.empty());
  EXPECT_TRUE(badSecret.sidHex().empty());
  EXPECT_EQ(badSecret.sid, Sid{}) << "a refused credential's SID is not echoed";
  Credential zero{c.sid, {}};
  EXPECT_EQ(index().verify(zero, need({}), now).reason, VerifyReason::kInvalidCredentials);

  // Malformed strings never reach the index.
  std::string typo = text;
  typo[20] = typo[20] == 'a' ? 'b' : 'a';
  for (const std::string& bad : {std::string(), std::string("tlp_"), text.substr(0, 107), typo,
                                 c.sidHex() + toHex(c.secret)}) {
    VerifyResult m = index().verify(bad, need({}), now);
    EXPECT_EQ(reasonText(m.reason), "malformed") << bad.size();
    EXPECT_TRUE(m.owner.empty());
  }

  // Expiry is derived from the time asked about.
  EXPECT_EQ(reason(text, need({"assignment:read"}), expiry - 1), VerifyReason::kOk);
  EXPECT_EQ(reasonText(reason(text, need({"assignment:read"}), expiry)), "expired");
  EXPECT_EQ(reason(text, need({"assignment:write"}), expiry), VerifyReason::kExpired) << "expired beats scope";
  EXPECT_EQ(reason(wrong.encode(), need({}), expiry), VerifyReason::kInvalidCredentials);

  // Revoked beats expired and scope; a wrong secret still learns nothing.
  run(admin, RevokeToken{c.sidHex()});
  EXPECT_EQ(reasonText(reason(text, need({"assignment:read"}), now)), "revoked");
  EXPECT_EQ(reason(text, need({"assignment:write"}), expiry + kDay), VerifyReason::kRevoked);
  EXPECT_EQ(reason(wrong.encode(), need({}), now), VerifyReason::kInvalidCredentials);
}

TEST_F(VerifyIndexTest, ExpiryFollowsTheInjectedClock) {
  Login bob = user("bob");
  CommandResult r = run(bob.actor, CreateToken{"bob", "short", Expiration::custom(clock.now() + kDay), scopes({"contact:read"})});
  const std::string text = r.credential->encode();
  EXPECT_EQ(reason(text, need({"contact:read"}), clock.now()), VerifyReason::kOk);
  clock.advance(kDay);
  EXPECT_EQ(reason(text, need({"contact:read"}), clock.now()), VerifyReason::kExpired);
  EXPECT_EQ(projection().committed().token(r.sids.at(0))->statusAt(clock.now()), TokenStatus::kExpired);
}

TEST_F(VerifyIndexTest, AllScopesCoversEveryCatalogScope) {
  const std::string adminText = adminCredential.encode();
  std::vector<std::string> every;
  for (const auto& s : ScopeCatalog::builtin().scopes()) {
    every.push_back(s.id);
    EXPECT_EQ(reason(adminText, need({s.id}), clock.now()), VerifyReason::kOk) << s.id;
  }
  EXPECT_EQ(reason(adminText, need(every), clock.now()), VerifyReason::kOk);
  EXPECT_EQ(reason(adminText, need({"payroll:read"}), clock.now()), VerifyReason::kInsufficientScope);
  EXPECT_EQ(reason(adminText, std::nullopt, clock.now()), VerifyReason::kInsufficientScope);

  // Every scope selected one by one is as good as All Scopes for catalog scopes.
  CommandResult r = run(admin, CreateToken{"svc", "everything", {}, Scopes::of(every)});
  for (const auto& id : every) EXPECT_EQ(reason(r.credential->encode(), need({id}), clock.now()), VerifyReason::kOk) << id;
  // A single scope at either end of the bitset.
  for (const auto& id : {every.front(), every.back()}) {
    CommandResult one = run(admin, CreateToken{"svc", "one " + id, {}, scopes({id})});
    EXPECT_EQ(reason(one.credential->encode(), need({id}), clock.now()), VerifyReason::kOk) << id;
    EXPECT_EQ(reason(one.credential->encode(), need({every[1]}), clock.now()), VerifyReason::kInsufficientScope) << id;
  }
}

TEST_F(VerifyIndexTest, TwoValueFormAnswersLikeTheString) {
  CommandResult r = run(admin, CreateToken{"svc", "pair", {}, scopes({"email:read"})});
  auto pair = parseCredentialPair(r.credential->sidHex(), toHex(r.credential->secret));
  ASSERT_TRUE(pair.has_value());
  EXPECT_EQ(verdictOf(index().verify(*pair, need({"email:read"}), clock.now())),
            verdictOf(index().verify(r.credential->encode(), need({"email:read"}), clock.now())));
  EXPECT_EQ(index().verify(*pair, need({"email:read"}), clock.now()).reason, VerifyReason::kOk);
}

// A verifying service sees a revocation as soon as the command that made it is acknowledged.
TEST_F(VerifyIndexTest, RevocationIsVisibleToEveryThreadOnceAcknowledged) {
  CommandResult r = run(admin, CreateToken{"svc", "hot", {}, scopes({"email:read"})});
  const std::string text = r.credential->encode();
  const auto mask = need({"email:read"});
  std::atomic<bool> acknowledged{false};
  std::atomic<int> bad{0};
  std::vector<VerifyReason> after(4, VerifyReason::kOk);
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&, t] {
      while (!acknowledged.load()) {
        VerifyReason seen = index().verify(text, mask, clock.now()).reason;
        if (seen != VerifyReason::kOk && seen != VerifyReason::kRevoked) ++bad;
      }
      after[t] = index().verify(text, mask, clock.now()).reason;
    });
  }
  run(admin, RevokeToken{r.sids.at(0)});
  acknowledged = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0);
  for (int t = 0; t < 4; ++t) EXPECT_EQ(after[t], VerifyReason::kRevoked) << t;
}

TEST(VerifyIndexUnit, UpsertAndVerifyWithoutALedger) {
  // A catalog at the 64-scope limit: the last bit of the mask must work.
  std::string json = R"({"scopes": [)";
  for (int i = 0; i < 64; ++i) {
    json += (i ? "," : "") + std::string(R"({"id": "r)") + std::to_string(i) +
            R"(:read", "displayName": "R", "description": "r"})";
  }
  json += "]}";
  const ScopeCatalog catalog = ScopeCatalog::fromJson(json);
  VerifyIndex index(catalog);
  EXPECT_EQ(index.size(), 0u);

  Credential c = Credential::generate();
  Token t;
  t.sid = c.sidHex();
  t.owner = "svc";
  t.secretHash = sha256(c.secret);
  t.scopes = Scopes::of({"r63:read", "r0:read"});
  EXPECT_FALSE(index.contains(t.sid));
  index.upsert(t);
  EXPECT_EQ(index.size(), 1u);
  EXPECT_TRUE(index.contains(t.sid));
  EXPECT_FALSE(index.contains(Credential::generate().sidHex()));
  EXPECT_FALSE(index.contains("not-a-sid"));
  EXPECT_EQ(index.verify(c, index.requiredMask({"r63:read"}), kStartMicros).reason, VerifyReason::kOk);
  EXPECT_EQ(index.verify(c, index.requiredMask({"r0:read", "r63:read"}), kStartMicros).reason, VerifyReason::kOk);
  EXPECT_EQ(index.verify(c, index.requiredMask({"r62:read"}), kStartMicros).reason, VerifyReason::kInsufficientScope);
  EXPECT_EQ(index.verify(c, index.requiredMask({"r1:read"}), kStartMicros).reason, VerifyReason::kInsufficientScope);

  t.expiresAtMicros = kStartMicros + kSecond;
  index.upsert(t);  // replaces, does not add
  EXPECT_EQ(index.size(), 1u);
  EXPECT_EQ(index.verify(c, index.requiredMask({"r0:read"}), kStartMicros).reason, VerifyReason::kOk);
  EXPECT_EQ(index.verify(c, index.requiredMask({"r0:read"}), kStartMicros + kSecond).reason, VerifyReason::kExpired);
  t.revoked = true;
  index.upsert(t);
  EXPECT_EQ(index.verify(c, index.requiredMask({"r0:read"}), kStartMicros).reason, VerifyReason::kRevoked);
  EXPECT_TRUE(index.contains(t.sid)) << "a revoked token was still issued";

  Token malformed = t;
  malformed.sid = "not-a-sid";
  index.upsert(malformed);
  EXPECT_EQ(index.size(), 1u);
  EXPECT_EQ(index.verify(Credential::generate(), index.requiredMask({}), kStartMicros).reason,
            VerifyReason::kInvalidCredentials);
}

// Enough tokens that every shard's table grows many times over, half of them sharing the bytes
// the table hashes, so look-ups probe past one another: each still finds its own entry.
TEST(VerifyIndexUnit, ManyTokensAndCollidingHashesEachFindTheirOwn) {
  VerifyIndex index(ScopeCatalog::builtin());
  std::vector<Credential> issued;
  for (int i = 0; i < 20000; ++i) {
    Credential c = Credential::generate();
    if (i % 2 == 0) std::fill(c.sid.begin(), c.sid.begin() + 4, uint8_t{0xab});
    Token t;
    t.sid = c.sidHex();
    t.owner = "owner" + std::to_string(i);
    t.secretHash = sha256(c.secret);
    t.scopes = Scopes::of({"email:read"});
    t.revoked = i % 3 == 0;
    index.upsert(t);
    issued.push_back(c);
  }
  EXPECT_EQ(index.size(), issued.size());
  const auto required = index.requiredMask({"email:read"});
  for (size_t i = 0; i < issued.size(); ++i) {
    VerifyResult r = index.verify(issued[i], required, kStartMicros);
    ASSERT_EQ(r.reason, i % 3 == 0 ? VerifyReason::kRevoked : VerifyReason::kOk) << i;
    ASSERT_EQ(r.owner, "owner" + std::to_string(i));
    Credential wrongSecret = issued[i];
    wrongSecret.secret[5] ^= 1;
    ASSERT_EQ(index.verify(wrongSecret, required, kStartMicros).reason, VerifyReason::kInvalidCredentials) << i;
    Credential unknown = issued[i];
    unknown.sid[15] ^= 1;  // same hash, same shard, never issued
    ASSERT_FALSE(index.contains(unknown.sidHex())) << i;
    ASSERT_EQ(index.verify(unknown, required, kStartMicros).reason, VerifyReason::kInvalidCredentials) << i;
  }
}

// Readers on every CPU verify while one writer grows every shard's table many times over (each
// growth moves all of a shard's entries): a reader must never see a table mid-move. Bounded by
// the writer's count; the readers stop when it is done.
TEST(VerifyIndexUnit, ReadersOnEveryCpuSeeWholeTablesWhileTheyGrow) {
  VerifyIndex index(ScopeCatalog::builtin());
  const auto required = index.requiredMask({"email:read"});
  auto tokenFor = [](const Credential& c, const std::string& owner) {
    Token t;
    t.sid = c.sidHex();
    t.owner = owner;
    t.secretHash = sha256(c.secret);
    t.scopes = Scopes::of({"email:read"});
    return t;
  };
  std::vector<Credential> early;
  for (int i = 0; i < 64; ++i) {
    early.push_back(Credential::generate());
    index.upsert(tokenFor(early.back(), "early"));
  }
  std::atomic<bool> done{false};
  std::atomic<int> wrong{0};
  std::atomic<uint64_t> reads{0};
  std::vector<std::thread> readers;
  const unsigned readerCount = std::max(2u, std::thread::hardware_concurrency()) * 2;
  for (unsigned t = 0; t < readerCount; ++t) {
    readers.emplace_back([&, t] {
      for (size_t i = t; !done.load(); ++i) {
        VerifyResult r = index.verify(early[i % early.size()], required, kStartMicros);
        if (r.reason != VerifyReason::kOk || r.owner != "early") ++wrong;
        ++reads;
      }
    });
  }
  for (int i = 0; i < 30000; ++i) index.upsert(tokenFor(Credential::generate(), "late"));
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(reads.load(), 0u);
  EXPECT_EQ(index.size(), 30064u);
}

}  // namespace
}  // namespace tokenledger::test
