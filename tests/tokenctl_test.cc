// tokenctl, the CLI, end to end: the real binary run as a child process against a real server
// (rpc::Server on 127.0.0.1:<any port> over a real ledger in a temporary directory), checked by
// its exit code, stdout and stderr, and against the ledger itself (the stored token table, the
// events). The login token reaches it only through $TOKENLEDGER_TOKEN or --token-file, a
// credential to verify only through stdin. --json output is decoded with capnp's JsonCodec into
// the struct it claims to be.
//
// Exit codes (tools/tokenctl.cc): 0 ok, 1 refused by the server (or `verify`: not valid),
// 2 usage, 3 server unreachable, 4 not authenticated.
//
// Every run is recorded; when a test ends, the stderr of every run (failing ones above all) is
// searched for every secret the test knows (issued directly or printed by tokenctl).
#include <capnp/compat/json.h>
#include <capnp/message.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "ledger/scope_catalog.h"
#include "ledger/token_codec.h"
#include "process_support.h"
#include "projections/event_text.h"
#include "rpc_support.h"
#include "test_support.h"

#ifndef TOKENCTL
#error "TOKENCTL must name the built tokenctl binary"
#endif

namespace tokenledger::test {
namespace {

using namespace std::chrono_literals;
using Kind = Expiration::Kind;

// The binary under test: TOKENCTL from the build, or $TOKENCTL_BINARY.
std::string tokenctlBinary() { return binaryUnderTest("TOKENCTL_BINARY", TOKENCTL); }

constexpr int kOk = 0, kRefused = 1, kUsage = 2, kUnreachable = 3, kUnauthenticated = 4;

// `text` (one JSON value, as tokenctl prints it) decoded into `message` as a T, with the codec
// tokenctl encodes with. A failure to decode fails the test and leaves the root empty.
template <typename T>
typename T::Reader decodeJson(std::string text, capnp::MallocMessageBuilder& message) {
  while (!text.empty() && text.back() == '\n') text.pop_back();
  auto root = message.initRoot<T>();
  EXPECT_TRUE(text.starts_with("{") && text.ends_with("}")) << "not a JSON object: " << text;
  try {
    capnp::JsonCodec codec;
    codec.handleByAnnotation<T>();
    codec.decode(kj::StringPtr(text.c_str(), text.size()), root);
  } catch (const kj::Exception& e) {
    ADD_FAILURE() << "does not decode as JSON: " << e.getDescription().cStr() << "\n" << text;
  }
  return root.asReader();
}

// "a, b" -> {a, b}
std::set<std::string> commaSet(const std::string& text) {
  std::set<std::string> out;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find(", ", start);
    if (end == std::string::npos) end = text.size();
    out.insert(text.substr(start, end - start));
    start = end + 2;
  }
  return out;
}

// The value beside `key` in a two-column table (show, whoami), or "" when there is no such row.
std::string field(const std::string& out, const std::string& key) {
  for (const std::string& line : lines(out)) {
    auto cells = columns(line);
    if (cells.size() == 2 && cells[0] == key) return cells[1];
  }
  return "";
}

size_t occurrences(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
  return n;
}

class TokenctlTest : public ServedLedgerFixture {
 protected:
  void SetUp() override {
    ServedLedgerFixture::SetUp();
    known.push_back(adminCredential);
  }
  void TearDown() override {
    int failing = 0;
    for (const ProcessResult& r : runs) {
      if (r.exitCode != kOk) ++failing;
      for (const std::string& leak : leakedSecrets(r.err, known)) {
        ADD_FAILURE() << leak << " on the stderr of " << r;
      }
    }
    RecordProperty("tokenctl_runs", static_cast<int>(runs.size()));
    RecordProperty("failing_runs_scanned_for_secrets", failing);
    ServedLedgerFixture::TearDown();
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(port()); }

  // tokenctl with exactly `args`, a clean TOKENLEDGER_* environment plus `env`, and `input` on
  // stdin; SIGKILLed if it takes longer than 20 s.
  ProcessResult tokenctl(std::vector<std::string> args, const Environment& env = {}, const std::string& input = "") {
    args.insert(args.begin(), tokenctlBinary());
    const auto stdinPath = scratch.path() / ("stdin" + std::to_string(runs.size()));
    std::ofstream(stdinPath, std::ios::binary | std::ios::trunc) << input;
    runs.push_back(runProcess(args, scratch.path(), 20s, toolEnvironment(env), stdinPath));
    return runs.back();
  }
  // tokenctl --server <the fixture's server> args..., logged in with `token` ($TOKENLEDGER_TOKEN;
  // none if empty).
  ProcessResult as(const std::string& token, std::vector<std::string> args, const std::string& input = "") {
    args.insert(args.begin(), {"--server", address()});
    return tokenctl(std::move(args), token.empty() ? Environment{} : Environment{{"TOKENLEDGER_TOKEN", token}},
               input);
  }
  ProcessResult as(const Login& who, std::vector<std::string> args) {
    return as(who.credential.encode(), std::move(args));
  }
  ProcessResult asAdmin(std::vector<std::string> args) { return as(adminCredential.encode(), std::move(args)); }
  // `tokenctl verify [--scopes IDS]` with `credential` on stdin, anonymously.
  ProcessResult verify(const std::string& credential, std::vector<std::string> args = {}) {
    args.insert(args.begin(), "verify");
    return as("", std::move(args), credential + "\n");
  }

  // Tokens made directly in the ledger; their secrets join those searched for.
  Login issue(const std::string& owner, Scopes s, const std::string& description = "test token") {
    Login login = tokenFor(owner, std::move(s), {}, description);
    known.push_back(login.credential);
    return login;
  }
  Login bobUser() {
    Login bob = user("bob");
    known.push_back(bob.credential);
    return bob;
  }

  // The one credential a create or rotate printed (its secret joins those searched for).
  Credential printedCredential(const ProcessResult& r) {
    auto printed = credentialLines(r.out);
    EXPECT_EQ(printed.size(), 1u) << r;
    if (printed.size() != 1) return Credential{};
    auto credential = parseCredential(printed.front());
    known.push_back(*credential);
    EXPECT_EQ(occurrences(r.out + r.err, printed.front()), 1u) << "the credential is shown exactly once\n" << r;
    return *credential;
  }

  Token stored(const std::string& sid) {
    auto token = projection().committed().token(sid);
    EXPECT_TRUE(token.has_value()) << "no token " << sid << " in the stored table";
    return token.value_or(Token{});
  }

  // The CLI's history lines for the events 1..head that `pick` selects, as the ledger has them.
  template <typename Pick>
  std::string historyOf(Pick&& pick) {
    std::string out;
    for (uint64_t seq = 1; seq <= head(); ++seq) {
      StoredEvent event = readEvent(store(), seq);
      if (pick(event.event())) out += historyLine(event.event()) + "\n";
    }
    return out;
  }

  // A failure: `code`, nothing on stdout, and one "tokenctl: ..." message naming `what`.
  void expectFailure(const ProcessResult& r, int code, const std::string& what) {
    EXPECT_EQ(r.exitCode, code) << r;
    EXPECT_EQ(r.out, "") << r;
    EXPECT_TRUE(r.err.starts_with("tokenctl: ")) << r;
    EXPECT_NE(r.err.find(what), std::string::npos) << "expected \"" << what << "\"\n" << r;
  }
  void expectUsageError(const ProcessResult& r, const std::string& what) {
    expectFailure(r, kUsage, what);
    EXPECT_NE(r.err.find("usage: tokenctl"), std::string::npos) << "no usage text\n" << r;
  }

  TempDir scratch;
  std::vector<Credential> known;  // every secret the test has seen
  std::vector<ProcessResult> runs;
};

// ---------------------------------------------------------------------------------------------
// create, list, show

TEST_F(TokenctlTest, CreatePrintsTheCredentialOnceAndStoresWhatWasAsked) {
  const int64_t before = nowMicros();
  ProcessResult r = asAdmin({"create", "--owner", "kevin.prow", "--description", "ZipWhip", "--scopes",
                             "message:read, message:write", "--expires", "180d", "--reason", "vendor onboarding"});
  const int64_t after = nowMicros();
  ASSERT_EQ(r.exitCode, kOk) << r;
  EXPECT_EQ(r.err, "");
  Credential credential = printedCredential(r);
  const std::string sid = credential.sidHex();
  Token t = stored(sid);
  EXPECT_EQ(t.owner, "kevin.prow");
  EXPECT_EQ(t.description, "ZipWhip");
  EXPECT_EQ(t.scopes, scopes({"message:read", "message:write"}));
  EXPECT_GE(t.expiresAtMicros, before + 180 * kDay);
  EXPECT_LE(t.expiresAtMicros, after + 180 * kDay);
  EXPECT_TRUE(r.out.starts_with("Token " + sid + " for kevin.prow (expires " + formatTime(t.expiresAtMicros) +
                                ").\nCopy the credential now; it is shown only this once:\n\n"))
      << r;
  StoredEvent created = readEvent(store(), head());
  EXPECT_EQ(std::string(created.event().getReason().cStr()), "vendor onboarding");

  // The credential works, with the scopes it was given.
  ProcessResult ok = verify(credential.encode(), {"--scopes", "message:write"});
  EXPECT_EQ(ok.exitCode, kOk) << ok;
  EXPECT_EQ(ok.out, "valid (ok): " + sid + " of kevin.prow, scopes message:read, message:write, expires " +
                        formatTime(t.expiresAtMicros) + "\n");

  // A custom date, never (admins only), All Scopes; the default expiry is 90 days.
  const std::string date = formatTime(nowMicros() + 30 * kDay).substr(0, 10);
  int64_t dateMicros = 0;
  ASSERT_TRUE(parseTime(date, dateMicros));
  ProcessResult custom = asAdmin({"create", "--owner", "svc-a", "--description", "Dated", "--scopes",
                                  "email:read", "--expires", date});
  ASSERT_EQ(custom.exitCode, kOk) << custom;
  EXPECT_EQ(stored(printedCredential(custom).sidHex()).expiresAtMicros, dateMicros);
  ProcessResult never = asAdmin({"create", "--owner", "svc-a", "--description", "Forever", "--all-scopes",
                                 "--expires", "never"});
  ASSERT_EQ(never.exitCode, kOk) << never;
  Token forever = stored(printedCredential(never).sidHex());
  EXPECT_EQ(forever.expiresAtMicros, 0);
  EXPECT_EQ(forever.scopes, Scopes::allScopes());
  EXPECT_NE(never.out.find("(expires never)"), std::string::npos) << never;
  const int64_t beforeDefault = nowMicros();
  ProcessResult byDefault = asAdmin({"create", "--description", "Mine", "--scopes", "tokens:read"});
  ASSERT_EQ(byDefault.exitCode, kOk) << byDefault;
  Token mine = stored(printedCredential(byDefault).sidHex());
  EXPECT_EQ(mine.owner, "alice") << "no --owner: the caller";
  EXPECT_GE(mine.expiresAtMicros, beforeDefault + 90 * kDay);
  EXPECT_LE(mine.expiresAtMicros, nowMicros() + 90 * kDay);

  // --json: the whole CreateTokenResults, credential included.
  ProcessResult json = asAdmin({"--json", "create", "--owner", "svc-b", "--description", "Scripted", "--scopes",
                                "contact:read"});
  ASSERT_EQ(json.exitCode, kOk) << json;
  capnp::MallocMessageBuilder message;
  auto results = decodeJson<wire::Session::CreateTokenResults>(json.out, message);
  auto scripted = parseCredential(results.getCredential().cStr());
  ASSERT_TRUE(scripted.has_value()) << json;
  known.push_back(*scripted);
  EXPECT_EQ(std::string(results.getToken().getSid().cStr()), scripted->sidHex());
  EXPECT_EQ(std::string(results.getToken().getOwner().cStr()), "svc-b");
  EXPECT_EQ(results.getToken().getStatus(), wire::TokenStatus::ACTIVE);
  EXPECT_EQ(stored(scripted->sidHex()).description, "Scripted");
}

TEST_F(TokenctlTest, ListAndShowPrintTheTableAndNeverASecret) {
  Login bob = bobUser();
  Login a = issue("bob", scopes({"assignment:read"}), "Vendor A");
  Login b = issue("bob", scopes({"contact:read", "assignment:write"}), "Vendor B");
  Login c = issue("carol", scopes({"email:read"}), "Carol's vendor");
  run(admin, RevokeToken{b.credential.sidHex()}, "contract ended");

  auto rowsOf = [](const ProcessResult& r) {
    std::set<std::vector<std::string>> rows;
    auto all = lines(r.out);
    EXPECT_FALSE(all.empty()) << r;
    if (all.empty()) return rows;
    EXPECT_EQ(columns(all[0]), (std::vector<std::string>{"USER", "DESCRIPTION", "ACCOUNT SID", "EXPIRATION", "STATUS"}));
    for (size_t i = 1; i < all.size(); ++i) rows.insert(columns(all[i]));
    return rows;
  };
  auto row = [&](const Login& l, const std::string& status) {
    Token t = stored(l.credential.sidHex());
    return std::vector<std::string>{t.owner, t.description, t.sid, formatTime(t.expiresAtMicros), status};
  };

  ProcessResult active = asAdmin({"list"});
  ASSERT_EQ(active.exitCode, kOk) << active;
  EXPECT_EQ(rowsOf(active), (std::set<std::vector<std::string>>{
                                row(Login{admin, adminCredential}, "Active"), row(bob, "Active"),
                                row(a, "Active"), row(c, "Active")}));
  ProcessResult all = asAdmin({"list", "--all", "--owner", "bob"});
  ASSERT_EQ(all.exitCode, kOk) << all;
  EXPECT_EQ(rowsOf(all), (std::set<std::vector<std::string>>{row(bob, "Active"), row(a, "Active"),
                                                             row(b, "Revoked")}));
  // A user sees their own tokens only.
  ProcessResult own = as(bob, {"list"});
  ASSERT_EQ(own.exitCode, kOk) << own;
  EXPECT_EQ(rowsOf(own), (std::set<std::vector<std::string>>{row(bob, "Active"), row(a, "Active")}));
  ProcessResult none = asAdmin({"list", "--owner", "nobody"});
  EXPECT_EQ(none.exitCode, kOk) << none;
  EXPECT_EQ(none.out, "No active access tokens (--all shows every token)\n");

  // --json: one TokenInfo per line.
  ProcessResult json = asAdmin({"--json", "list", "--all"});
  ASSERT_EQ(json.exitCode, kOk) << json;
  std::set<std::string> sids;
  for (const std::string& line : lines(json.out)) {
    capnp::MallocMessageBuilder message;
    auto info = decodeJson<wire::TokenInfo>(line, message);
    sids.insert(info.getSid());
    EXPECT_EQ(std::string(info.getOwner().cStr()), stored(info.getSid()).owner);
  }
  EXPECT_EQ(sids, (std::set<std::string>{adminCredential.sidHex(), bob.credential.sidHex(), a.credential.sidHex(),
                                         b.credential.sidHex(), c.credential.sidHex()}));

  // show: every field, the revocation with who and why.
  ProcessResult shown = asAdmin({"show", b.credential.sidHex()});
  ASSERT_EQ(shown.exitCode, kOk) << shown;
  Token tb = stored(b.credential.sidHex());
  EXPECT_EQ(field(shown.out, "AccountSID"), tb.sid);
  EXPECT_EQ(field(shown.out, "Owner"), "bob");
  EXPECT_EQ(field(shown.out, "Description"), "Vendor B");
  EXPECT_EQ(field(shown.out, "Status"), "Revoked");
  EXPECT_EQ(field(shown.out, "Scopes"), "assignment:write, contact:read");
  EXPECT_EQ(field(shown.out, "Expiration"), formatTime(tb.expiresAtMicros));
  EXPECT_EQ(field(shown.out, "Created"), formatTime(tb.createdAtMicros) + " by alice");
  EXPECT_EQ(field(shown.out, "Revoked"), formatTime(tb.revokedAtMicros) + " by alice (contract ended)");
  EXPECT_EQ(field(shown.out, "Last event"), std::to_string(tb.lastSeq));
  EXPECT_EQ(field(asAdmin({"show", a.credential.sidHex()}).out, "Revoked"), "-");
  ProcessResult shownJson = asAdmin({"show", a.credential.sidHex(), "--json"});
  ASSERT_EQ(shownJson.exitCode, kOk) << shownJson;
  capnp::MallocMessageBuilder message;
  auto info = decodeJson<wire::TokenInfo>(shownJson.out, message);
  EXPECT_EQ(std::string(info.getDescription().cStr()), "Vendor A");
  EXPECT_EQ(scopesFrom(info.getScopes()), scopes({"assignment:read"}));

  // Only create and rotate ever print a secret.
  for (const ProcessResult& r : runs) EXPECT_TRUE(leakedSecrets(r.out, known).empty()) << r;
}

// ---------------------------------------------------------------------------------------------
// scopes, describe, revoke, rotate, revoke-all

// --add and --remove start from the token's current scopes, read with getToken. (They once read
// them out of an RPC response that was already destroyed: a use-after-free only ASan saw. The
// exact resulting sets are asserted, so reading garbage or nothing fails here too.)
TEST_F(TokenctlTest, ScopesSetAddRemoveAndAllScopesChangeExactlyWhatWasAsked) {
  Login vendor = issue("bob", scopes({"assignment:read", "contact:read"}), "Vendor A");
  const std::string sid = vendor.credential.sidHex();
  struct Step {
    std::vector<std::string> args;
    Scopes expected;
  };
  const std::vector<Step> steps = {
      {{"--add", "assignment:write,email:read"},
       scopes({"assignment:read", "assignment:write", "contact:read", "email:read"})},
      {{"--remove", "contact:read,assignment:read"}, scopes({"assignment:write", "email:read"})},
      {{"--add", "message:read", "--remove", "email:read"}, scopes({"assignment:write", "message:read"})},
      {{"--set", "contact:read"}, scopes({"contact:read"})},
      {{"--all-scopes"}, Scopes::allScopes()},
      {{"--set", "email:read, message:write"}, scopes({"email:read", "message:write"})},
  };
  for (const Step& step : steps) {
    std::vector<std::string> args = {"scopes", sid};
    args.insert(args.end(), step.args.begin(), step.args.end());
    args.insert(args.end(), {"--reason", "least privilege"});
    SCOPED_TRACE(commandLine(args));
    const uint64_t before = head();
    ProcessResult r = asAdmin(args);
    ASSERT_EQ(r.exitCode, kOk) << r;
    EXPECT_EQ(stored(sid).scopes, step.expected);
    EXPECT_EQ(field(r.out, "Scopes"), step.expected.describe()) << r;
    EXPECT_EQ(field(r.out, "AccountSID"), sid) << r;
    EXPECT_EQ(head(), before + 1);
    EXPECT_EQ(std::string(readEvent(store(), head()).event().getReason().cStr()), "least privilege");
  }
  // Adding what it holds or removing what it does not is no change, and refused as none.
  const uint64_t unchanged = head();
  expectFailure(asAdmin({"scopes", sid, "--remove", "assignment:read"}), kRefused,
                "already has exactly these scopes; nothing to change");
  expectFailure(asAdmin({"scopes", sid, "--add", "message:write"}), kRefused, "nothing to change");
  EXPECT_EQ(head(), unchanged);
  EXPECT_EQ(stored(sid).scopes, scopes({"email:read", "message:write"}));

  // The credential verifies with the final scopes only.
  EXPECT_EQ(verify(vendor.credential.encode(), {"--scopes", "message:write"}).exitCode, kOk);
  ProcessResult lacking = verify(vendor.credential.encode(), {"--scopes", "contact:read"});
  EXPECT_EQ(lacking.exitCode, kRefused) << lacking;
  EXPECT_TRUE(lacking.out.starts_with("not valid (insufficientScope)")) << lacking;

  // --add on All Scopes has no set to add to; no option at all is a usage error; nothing changes.
  ASSERT_EQ(asAdmin({"scopes", sid, "--all-scopes"}).exitCode, kOk);
  const uint64_t before = head();
  expectUsageError(asAdmin({"scopes", sid, "--add", "email:read"}), "the token has All Scopes; use --set");
  expectUsageError(asAdmin({"scopes", sid}), "scopes needs --set, --add, --remove or --all-scopes");
  expectFailure(asAdmin({"scopes", sid, "--set", "nosuch:read"}), kRefused, "nosuch:read");
  expectFailure(asAdmin({"scopes", sid, "--set", ""}), kRefused, "no scopes selected");
  EXPECT_EQ(head(), before);
  EXPECT_EQ(stored(sid).scopes, Scopes::allScopes());

  ProcessResult json = asAdmin({"--json", "scopes", sid, "--set", "assignment:read"});
  ASSERT_EQ(json.exitCode, kOk) << json;
  capnp::MallocMessageBuilder message;
  EXPECT_EQ(scopesFrom(decodeJson<wire::TokenInfo>(json.out, message).getScopes()), scopes({"assignment:read"}));
}

TEST_F(TokenctlTest, DescribeAndRevokeThenVerifySaysRevoked) {
  Login vendor = issue("bob", scopes({"assignment:read"}), "Vendor A");
  const std::string sid = vendor.credential.sidHex();
  ProcessResult described = asAdmin({"describe", sid, "Vendor A (billing)", "--reason", "renamed"});
  ASSERT_EQ(described.exitCode, kOk) << described;
  EXPECT_EQ(field(described.out, "Description"), "Vendor A (billing)");
  EXPECT_EQ(stored(sid).description, "Vendor A (billing)");
  EXPECT_EQ(std::string(readEvent(store(), head()).event().getReason().cStr()), "renamed");
  expectUsageError(asAdmin({"describe", sid}), "missing description");

  ProcessResult valid = verify(vendor.credential.encode());
  EXPECT_EQ(valid.exitCode, kOk) << valid;
  EXPECT_TRUE(valid.out.starts_with("valid (ok): " + sid + " of bob")) << valid;

  ProcessResult revoked = asAdmin({"revoke", sid, "--reason", "vendor contract ended"});
  ASSERT_EQ(revoked.exitCode, kOk) << revoked;
  Token t = stored(sid);
  EXPECT_TRUE(t.revoked);
  EXPECT_EQ(t.revokeReason, "vendor contract ended");
  EXPECT_EQ(field(revoked.out, "Status"), "Revoked");
  EXPECT_EQ(field(revoked.out, "Revoked"), formatTime(t.revokedAtMicros) + " by alice (vendor contract ended)");

  ProcessResult after = verify(vendor.credential.encode());
  EXPECT_EQ(after.exitCode, kRefused) << after;
  EXPECT_TRUE(after.out.starts_with("not valid (revoked): " + sid + " of bob")) << after;
  EXPECT_EQ(after.err, "");
  ProcessResult json = verify(vendor.credential.encode(), {"--json"});
  EXPECT_EQ(json.exitCode, kRefused) << json;
  capnp::MallocMessageBuilder message;
  auto result = decodeJson<wire::VerifyResult>(json.out, message);
  EXPECT_FALSE(result.getValid());
  EXPECT_EQ(result.getReason(), wire::VerifyReason::REVOKED);

  // A revoked token can no longer be changed, nor log in.
  const uint64_t before = head();
  expectFailure(asAdmin({"revoke", sid}), kRefused, "is already revoked");
  expectFailure(asAdmin({"describe", sid, "again"}), kRefused, "is revoked");
  expectFailure(as(vendor, {"whoami"}), kUnauthenticated, "");
  EXPECT_EQ(head(), before);
}

TEST_F(TokenctlTest, RotateGivesANewSecretAndTheOldOneStopsWorking) {
  Login bob = bobUser();
  Login vendor = issue("bob", scopes({"assignment:read"}), "Vendor A");
  const std::string sid = vendor.credential.sidHex();
  ProcessResult r = as(bob, {"rotate", sid, "--reason", "suspected leak"});
  ASSERT_EQ(r.exitCode, kOk) << r;
  Credential rotated = printedCredential(r);
  EXPECT_EQ(rotated.sidHex(), sid) << "same SID";
  EXPECT_NE(rotated.encode(), vendor.credential.encode());
  EXPECT_TRUE(r.out.starts_with("Token " + sid + " for bob (expires ")) << r;
  EXPECT_TRUE(readEvent(store(), head()).event().isTokenRotated());

  ProcessResult old = verify(vendor.credential.encode());
  EXPECT_EQ(old.exitCode, kRefused) << old;
  EXPECT_EQ(old.out, "not valid (invalidCredentials)\n");
  ProcessResult fresh = verify(rotated.encode(), {"--scopes", "assignment:read"});
  EXPECT_EQ(fresh.exitCode, kOk) << fresh;
  EXPECT_TRUE(fresh.out.starts_with("valid (ok): " + sid)) << fresh;

  ProcessResult json = as(bob, {"rotate", sid, "--json"});
  ASSERT_EQ(json.exitCode, kOk) << json;
  capnp::MallocMessageBuilder message;
  auto again = parseCredential(decodeJson<wire::Session::RotateResults>(json.out, message).getCredential().cStr());
  ASSERT_TRUE(again.has_value()) << json;
  known.push_back(*again);
  EXPECT_EQ(verify(rotated.encode()).exitCode, kRefused);
  EXPECT_EQ(verify(again->encode()).exitCode, kOk);
}

TEST_F(TokenctlTest, RevokeAllOffboardsOneOwnerOnly) {
  std::set<std::string> payroll;
  for (int i = 0; i < 3; ++i) payroll.insert(issue("svc-payroll", scopes({"email:read"}), "Payroll " + std::to_string(i)).credential.sidHex());
  Login other = issue("bob", scopes({"email:read"}), "Bob's");
  ProcessResult r = asAdmin({"revoke-all", "svc-payroll", "--reason", "offboarding"});
  ASSERT_EQ(r.exitCode, kOk) << r;
  auto out = lines(r.out);
  ASSERT_EQ(out.size(), 4u) << r;
  EXPECT_EQ(out[0], "Revoked 3 token(s) of svc-payroll");
  EXPECT_EQ(std::set<std::string>(out.begin() + 1, out.end()), payroll);
  for (const std::string& sid : payroll) {
    EXPECT_TRUE(stored(sid).revoked);
    EXPECT_EQ(stored(sid).revokeReason, "offboarding");
  }
  EXPECT_FALSE(stored(other.credential.sidHex()).revoked);
  EXPECT_EQ(verify(other.credential.encode()).exitCode, kOk);

  ProcessResult nothing = asAdmin({"--json", "revoke-all", "svc-payroll"});
  ASSERT_EQ(nothing.exitCode, kOk) << nothing;
  capnp::MallocMessageBuilder message;
  EXPECT_EQ(decodeJson<wire::Session::RevokeAllForResults>(nothing.out, message).getRevoked().size(), 0u);
  expectUsageError(asAdmin({"revoke-all"}), "missing OWNER");
}

// ---------------------------------------------------------------------------------------------
// history, roles, catalog, checkpoint, info, whoami

TEST_F(TokenctlTest, HistoryPrintsTheLedgersEventsForEachFilter) {
  Login bob = bobUser();
  Login vendor = issue("bob", scopes({"assignment:read"}), "Vendor A");
  const std::string sid = vendor.credential.sidHex();
  ASSERT_EQ(as(bob, {"describe", sid, "Vendor A (billing)", "--reason", "renamed"}).exitCode, kOk);
  ASSERT_EQ(as(bob, {"scopes", sid, "--add", "contact:read"}).exitCode, kOk);
  ASSERT_EQ(asAdmin({"revoke", sid, "--reason", "done"}).exitCode, kOk);
  issue("carol", scopes({"email:read"}));

  auto expectHistory = [&](std::vector<std::string> filter, const std::string& expected) {
    filter.insert(filter.begin(), "history");
    SCOPED_TRACE(commandLine(filter));
    ProcessResult r = asAdmin(filter);
    EXPECT_EQ(r.exitCode, kOk) << r;
    EXPECT_EQ(r.out, expected);
    EXPECT_FALSE(expected.empty());
  };
  auto about = [&](schema::Event::Reader e) { return sidOf(e) == sid; };
  expectHistory({"--token", sid}, historyOf(about));
  EXPECT_EQ(lines(historyOf(about)).size(), 4u) << "created, described, rescoped, revoked";
  expectHistory({"--actor", "bob"}, historyOf([](schema::Event::Reader e) { return describeActor(e.getActor()) == "bob"; }));
  expectHistory({}, historyOf([](schema::Event::Reader) { return true; }));
  expectHistory({"--from-seq", "2", "--to-seq", "4"},
                historyOf([](schema::Event::Reader e) { return e.getSeq() >= 2 && e.getSeq() <= 4; }));
  expectHistory({"--limit", "3"}, historyOf([](schema::Event::Reader e) { return e.getSeq() <= 3; }));
  ProcessResult owner = asAdmin({"history", "--owner", "bob"});
  ASSERT_EQ(owner.exitCode, kOk) << owner;
  for (const std::string& line : lines(historyOf(about))) {
    EXPECT_NE(owner.out.find(line + "\n"), std::string::npos) << line << "\n" << owner;
  }
  EXPECT_EQ(owner.out.find("carol"), std::string::npos) << owner;
  // A user sees their own tokens' history only.
  ProcessResult own = as(bob, {"history", "--owner", "carol"});
  EXPECT_NE(own.exitCode, kOk) << own;

  ProcessResult json = asAdmin({"--json", "history", "--token", sid});
  ASSERT_EQ(json.exitCode, kOk) << json;
  std::vector<uint64_t> seqs;
  for (const std::string& line : lines(json.out)) {
    capnp::MallocMessageBuilder message;
    auto entry = decodeJson<schema::LogEntry>(line, message);
    EXPECT_EQ(sidOf(entry.getEvent()), sid);
    seqs.push_back(entry.getEvent().getSeq());
  }
  EXPECT_EQ(seqs.size(), 4u) << json;
  EXPECT_TRUE(std::is_sorted(seqs.begin(), seqs.end()));
  expectUsageError(asAdmin({"history", "--limit", "ten"}), "--limit takes a whole number");
}

TEST_F(TokenctlTest, RolesAreGrantedRevokedAndListed) {
  Login bob = bobUser();
  auto rolesOf = [&](const std::string& principal) {
    ProcessResult r = asAdmin({"roles"});
    EXPECT_EQ(r.exitCode, kOk) << r;
    auto all = lines(r.out);
    EXPECT_FALSE(all.empty()) << r;
    if (!all.empty()) {
      EXPECT_EQ(columns(all[0]), (std::vector<std::string>{"PRINCIPAL", "ROLES"}));
    }
    for (const std::string& line : all) {
      auto cells = columns(line);
      if (cells.size() == 2 && cells[0] == principal) return commaSet(cells[1]);
    }
    return std::set<std::string>{};
  };
  EXPECT_EQ(rolesOf("alice"), (std::set<std::string>{"admin"}));
  EXPECT_EQ(rolesOf("dave"), (std::set<std::string>{}));

  ProcessResult granted = asAdmin({"roles", "grant", "dave", "user", "--reason", "joined"});
  EXPECT_EQ(granted.exitCode, kOk) << granted;
  EXPECT_EQ(granted.out, "ok\n");
  EXPECT_EQ(std::string(readEvent(store(), head()).event().getReason().cStr()), "joined");
  EXPECT_EQ(asAdmin({"roles", "grant", "dave", "auditor"}).exitCode, kOk);
  EXPECT_EQ(rolesOf("dave"), (std::set<std::string>{"user", "auditor"}));
  EXPECT_EQ(asAdmin({"roles", "revoke", "dave", "user"}).exitCode, kOk);
  EXPECT_EQ(rolesOf("dave"), (std::set<std::string>{"auditor"}));
  EXPECT_TRUE(projection().committed().rolesOf("dave").has(Role::kAuditor));
  EXPECT_FALSE(projection().committed().rolesOf("dave").has(Role::kUser));

  ProcessResult json = asAdmin({"roles", "list", "--json"});
  ASSERT_EQ(json.exitCode, kOk) << json;
  capnp::MallocMessageBuilder message;
  std::set<std::string> principals;
  for (auto p : decodeJson<wire::Session::ListRolesResults>(json.out, message).getPrincipals()) {
    principals.insert(p.getPrincipal());
  }
  EXPECT_EQ(principals, (std::set<std::string>{"alice", "bob", "dave"}));

  const uint64_t before = head();
  expectUsageError(asAdmin({"roles", "grant", "dave", "superuser"}), "ROLE is user, admin or auditor");
  expectUsageError(asAdmin({"roles", "grant", "dave"}), "missing ROLE");
  expectUsageError(asAdmin({"roles", "promote", "dave", "user"}), "roles takes list, grant or revoke");
  expectFailure(as(bob, {"roles", "grant", "bob", "admin"}), kRefused, "bob (roles: user) may not");
  EXPECT_EQ(head(), before);
  EXPECT_FALSE(projection().committed().rolesOf("bob").has(Role::kAdmin));
}

TEST_F(TokenctlTest, CatalogCheckpointInfoAndWhoami) {
  Login bob = bobUser();
  // catalog: the built-in catalog, in order.
  ProcessResult catalog = as(bob, {"catalog"});
  ASSERT_EQ(catalog.exitCode, kOk) << catalog;
  const auto& builtin = ScopeCatalog::builtin().scopes();
  auto rows = lines(catalog.out);
  ASSERT_EQ(rows.size(), builtin.size() + 1) << catalog;
  EXPECT_EQ(columns(rows[0]), (std::vector<std::string>{"SCOPE", "NAME", "WHAT IT ALLOWS"}));
  for (size_t i = 0; i < builtin.size(); ++i) {
    EXPECT_EQ(columns(rows[i + 1]),
              (std::vector<std::string>{builtin[i].id, builtin[i].displayName, builtin[i].description}));
  }
  ProcessResult catalogJson = as(bob, {"--json", "catalog"});
  ASSERT_EQ(catalogJson.exitCode, kOk) << catalogJson;
  {
    capnp::MallocMessageBuilder message;
    EXPECT_EQ(decodeJson<schema::ScopeCatalog>(catalogJson.out, message).getScopes().size(), builtin.size());
  }

  // checkpoint: always JSON, of the head, and it is in the ledger.
  Login carol = principal("carol", Role::kAuditor, scopes({"audit:read", "tokens:read"}));
  known.push_back(carol.credential);
  ProcessResult cp = as(carol, {"checkpoint"});
  ASSERT_EQ(cp.exitCode, kOk) << cp;
  {
    capnp::MallocMessageBuilder message;
    auto checkpoint = decodeJson<schema::Checkpoint>(cp.out, message);
    EXPECT_EQ(checkpoint.getSeq(), head());
    EXPECT_EQ(checkpoint.getEntryHash().size(), 32u);
    EXPECT_EQ(checkpoint.getSignature().size(), 64u);
    EXPECT_EQ(std::string(checkpoint.getKeyId().cStr()), sealKeyId(store(), head()));
  }
  expectFailure(as(bob, {"checkpoint"}), kRefused, "may not");

  // info: anonymous; version, head, latest checkpoint, signing keys.
  ProcessResult info = as("", {"info"});
  ASSERT_EQ(info.exitCode, kOk) << info;
  auto infoLines = lines(info.out);
  ASSERT_EQ(infoLines.size(), 2u) << info;
  EXPECT_TRUE(infoLines[0].starts_with("tokenledgerd ")) << info;
  EXPECT_TRUE(infoLines[0].ends_with(", head seq " + std::to_string(head()) + ", latest checkpoint at seq " +
                                     std::to_string(head())))
      << info;
  EXPECT_EQ(infoLines[1], "signing key " + sealKeyId(store(), 1) + " since seq 1");
  ProcessResult infoJson = as("", {"info", "--json"});
  ASSERT_EQ(infoJson.exitCode, kOk) << infoJson;
  {
    capnp::MallocMessageBuilder message;
    auto server = decodeJson<wire::ServerInfo>(infoJson.out, message);
    EXPECT_EQ(server.getHeadSeq(), head());
    EXPECT_EQ(server.getPublicKeys().size(), 1u);
  }

  // whoami: the principal, its roles, the token and that token's scopes.
  ProcessResult who = as(bob, {"whoami"});
  ASSERT_EQ(who.exitCode, kOk) << who;
  EXPECT_EQ(field(who.out, "Principal"), "bob");
  EXPECT_EQ(field(who.out, "Roles"), "user");
  EXPECT_EQ(field(who.out, "Token"), bob.credential.sidHex());
  EXPECT_EQ(field(who.out, "Token scopes"), stored(bob.credential.sidHex()).scopes.describe());
  ProcessResult whoJson = as(carol, {"whoami", "--json"});
  ASSERT_EQ(whoJson.exitCode, kOk) << whoJson;
  capnp::MallocMessageBuilder message;
  auto carolIs = decodeJson<wire::Session::WhoamiResults>(whoJson.out, message);
  EXPECT_EQ(std::string(carolIs.getPrincipal().cStr()), "carol");
  ASSERT_EQ(carolIs.getRoles().size(), 1u);
  EXPECT_EQ(carolIs.getRoles()[0], schema::Role::AUDITOR);
  EXPECT_EQ(std::string(carolIs.getTokenSid().cStr()), carol.credential.sidHex());
}

// ---------------------------------------------------------------------------------------------
// Where the token and the server come from

TEST_F(TokenctlTest, TheLoginTokenComesFromTheEnvironmentOrATokenFile) {
  Login bob = bobUser();
  const Environment bobEnv = {{"TOKENLEDGER_TOKEN", "  " + bob.credential.encode() + "\n"}};
  ProcessResult fromEnv = tokenctl({"--server", address(), "whoami"}, bobEnv);
  ASSERT_EQ(fromEnv.exitCode, kOk) << fromEnv;
  EXPECT_EQ(field(fromEnv.out, "Principal"), "bob");

  const auto file = scratch.path() / "token";
  std::ofstream(file) << adminCredential.encode() << "  \nsecond line is ignored\n";
  ProcessResult fromFile = tokenctl({"--server", address(), "--token-file", file.string(), "whoami"});
  ASSERT_EQ(fromFile.exitCode, kOk) << fromFile;
  EXPECT_EQ(field(fromFile.out, "Principal"), "alice");
  ProcessResult fileWins = tokenctl({"--token-file", file.string(), "--server", address(), "whoami"}, bobEnv);
  ASSERT_EQ(fileWins.exitCode, kOk) << fileWins;
  EXPECT_EQ(field(fileWins.out, "Principal"), "alice") << "--token-file is preferred to the environment";

  // The server from $TOKENLEDGER_SERVER, unless --server says otherwise.
  ProcessResult serverEnv = tokenctl({"whoami"}, {{"TOKENLEDGER_TOKEN", bob.credential.encode()},
                                             {"TOKENLEDGER_SERVER", address()}});
  ASSERT_EQ(serverEnv.exitCode, kOk) << serverEnv;
  EXPECT_EQ(field(serverEnv.out, "Principal"), "bob");
  ProcessResult flagWins = tokenctl({"--server", address(), "whoami"}, {{"TOKENLEDGER_TOKEN", bob.credential.encode()},
                                                                  {"TOKENLEDGER_SERVER", "127.0.0.1:1"}});
  EXPECT_EQ(flagWins.exitCode, kOk) << flagWins;

  // No token at all, or a token file that cannot be read, is a usage error naming the file.
  expectUsageError(as("", {"whoami"}), "no login token: set TOKENLEDGER_TOKEN or pass --token-file FILE");
  const auto missing = scratch.path() / "no-such-file";
  expectUsageError(tokenctl({"--server", address(), "--token-file", missing.string(), "whoami"}),
                   "cannot read a token from " + missing.string());
  const auto empty = scratch.path() / "empty";
  std::ofstream(empty).flush();
  expectUsageError(tokenctl({"--server", address(), "--token-file", empty.string(), "whoami"}),
                   "cannot read a token from " + empty.string());
}

// ---------------------------------------------------------------------------------------------
// Exit codes

TEST_F(TokenctlTest, UsageErrorsExitTwoAndChangeNothing) {
  Login vendor = issue("bob", scopes({"assignment:read"}));
  const std::string sid = vendor.credential.sidHex();
  const uint64_t before = head();
  expectUsageError(tokenctl({}), "no command given");
  expectUsageError(asAdmin({}), "no command given");
  expectUsageError(asAdmin({"frobnicate"}), "unknown command frobnicate");
  // Checked before connecting: a typo or a missing token is a usage error with no server too.
  expectUsageError(tokenctl({"--server", "127.0.0.1:1", "frobnicate"}), "unknown command frobnicate");
  expectUsageError(tokenctl({"--server", "127.0.0.1:1", "whoami"}), "no login token");
  expectUsageError(asAdmin({"list", "--frobnicate"}), "unknown option --frobnicate");
  expectUsageError(asAdmin({"list", "--owner"}), "--owner needs a value");
  expectUsageError(tokenctl({"--server", "localhost", "info"}), "--server takes HOST:PORT");
  expectUsageError(tokenctl({"--server", "127.0.0.1:65536", "info"}), "--server takes HOST:PORT");
  expectUsageError(asAdmin({"create", "--description", "x"}), "choose the token's scopes");
  expectUsageError(asAdmin({"create", "--description", "x", "--scopes", "email:read", "--expires", "soon"}),
                   "--expires takes 90d, 180d, 1y, never or a date");
  expectUsageError(asAdmin({"show"}), "missing SID");
  expectUsageError(asAdmin({"revoke"}), "missing SID");
  expectUsageError(asAdmin({"rotate"}), "missing SID");
  expectUsageError(asAdmin({"history", "--from-seq", "-1"}), "--from-seq takes a whole number");
  EXPECT_EQ(head(), before);
  EXPECT_FALSE(stored(sid).revoked);
}

TEST_F(TokenctlTest, RefusalsExitOneAndNameTheProblem) {
  Login bob = bobUser();
  Login carols = issue("carol", scopes({"email:read"}), "Carol's");
  const std::string unknown = Credential::generate().sidHex();
  const uint64_t before = head();
  // Not found.
  expectFailure(asAdmin({"show", unknown}), kRefused, "no token with AccountSID " + unknown);
  expectFailure(asAdmin({"revoke", unknown}), kRefused, "no token with AccountSID " + unknown);
  expectFailure(asAdmin({"show", "not-a-sid"}), kRefused, "is not an AccountSID");
  // Not allowed: other owners' tokens are not even visible to a user; roles, never-expiring
  // tokens and other owners are the admin's.
  expectFailure(as(bob, {"show", carols.credential.sidHex()}), kRefused, "that you may see");
  expectFailure(as(bob, {"revoke", carols.credential.sidHex()}), kRefused, "that you may see");
  expectFailure(as(bob, {"create", "--owner", "carol", "--description", "x", "--scopes", "assignment:read"}),
                kRefused, "may not");
  expectFailure(as(bob, {"create", "--description", "x", "--scopes", "assignment:read", "--expires", "never"}),
                kRefused, "only admins may create tokens that never expire");
  expectFailure(as(bob, {"create", "--description", "x", "--scopes", "email:read"}), kRefused, "cannot grant email:read");
  expectFailure(as(bob, {"revoke-all", "carol"}), kRefused, "may not");
  // Rejected input.
  expectFailure(asAdmin({"create", "--description", "x", "--scopes", "nosuch:read"}), kRefused, "nosuch:read");
  expectFailure(asAdmin({"create", "--description", "x", "--scopes", "email:read", "--expires", "2020-01-01"}),
                kRefused, "is in the past");
  expectFailure(asAdmin({"create", "--description", std::string(300, 'x'), "--scopes", "email:read"}), kRefused,
                "description");
  EXPECT_EQ(head(), before) << "a refused command appended events";
  EXPECT_FALSE(stored(carols.credential.sidHex()).revoked);

  // verify: not valid is exit 1 too, and says why.
  ProcessResult malformed = verify("tlp_not-a-credential");
  EXPECT_EQ(malformed.exitCode, kRefused) << malformed;
  EXPECT_EQ(malformed.out, "not valid (malformed)\n");
  ProcessResult empty = verify("");
  EXPECT_EQ(empty.exitCode, kRefused) << empty;
  EXPECT_EQ(empty.out, "not valid (malformed)\n");
  ProcessResult stranger = verify(Credential::generate().encode());
  EXPECT_EQ(stranger.exitCode, kRefused) << stranger;
  EXPECT_EQ(stranger.out, "not valid (invalidCredentials)\n");
}

TEST_F(TokenctlTest, UnauthenticatedExitsFourAndUnreachableExitsThree) {
  Login bob = bobUser();
  Login gone = issue("bob", scopes({"tokens:read"}));
  run(admin, RevokeToken{gone.credential.sidHex()});
  for (const std::string& token : {std::string("tlp_not-a-credential"), Credential::generate().encode(),
                                   Credential::withNewSecret(bob.credential.sid).encode(), gone.credential.encode()}) {
    expectFailure(as(token, {"whoami"}), kUnauthenticated, "");
    expectFailure(as(token, {"list"}), kUnauthenticated, "");
  }
  expectFailure(as("tlp_not-a-credential", {"create", "--description", "x", "--scopes", "email:read"}),
                kUnauthenticated, "");

  // Nothing listens: port 1, and the fixture's own port once its server has stopped.
  expectFailure(tokenctl({"--server", "127.0.0.1:1", "info"}, {{"TOKENLEDGER_TOKEN", bob.credential.encode()}}),
                kUnreachable, "127.0.0.1:1");
  const std::string was = address();
  server->stop();
  expectFailure(tokenctl({"--server", was, "whoami"}, {{"TOKENLEDGER_TOKEN", bob.credential.encode()}}), kUnreachable,
                was);
  expectFailure(tokenctl({"--server", was, "verify"}, {}), kUnreachable, was);
}

// Secrets pasted where a SID, an owner, a principal, a scope or a number belongs, and logins
// with unusable tokens: every one fails, and no secret reaches stderr (stdout is empty). The
// fixture's TearDown scans every run's stderr once more.
TEST_F(TokenctlTest, FailingCommandsNeverPrintASecret) {
  Login bob = bobUser();
  Login vendor = issue("bob", scopes({"assignment:read"}), "Vendor A");
  ProcessResult rotated = as(bob, {"rotate", vendor.credential.sidHex()});
  ASSERT_EQ(rotated.exitCode, kOk) << rotated;
  const Credential current = printedCredential(rotated);
  const std::string secretHex = toHex(Bytes(current.secret.data(), current.secret.size()));
  int failures = 0;
  for (const std::string& pasted : {current.encode(), secretHex, vendor.credential.encode()}) {
    SCOPED_TRACE(pasted.starts_with("tlp_") ? "the tlp_ string" : "the bare secret (hex)");
    // As bob (a user), owner filters are checked against the caller and refused; an admin may
    // ask for any owner name and merely gets an empty answer.
    for (std::vector<std::string> args : std::vector<std::vector<std::string>>{{"history", "--owner", pasted},
                                                                             {"list", "--owner", pasted}}) {
      SCOPED_TRACE(args.front());
      ProcessResult r = as(bob, args);
      EXPECT_NE(r.exitCode, kOk) << r;
      EXPECT_EQ(r.out, "") << r;
      EXPECT_EQ(leakedSecrets(r.err, known), std::vector<std::string>{}) << r;
      ++failures;
    }
    for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
             {"show", pasted},
             {"revoke", pasted},
             {"rotate", pasted},
             {"describe", pasted, "x"},
             {"scopes", pasted, "--set", "assignment:read"},
             {"scopes", pasted, "--add", "assignment:read"},
             {"history", "--token", pasted},
             {"revoke-all", pasted},
             {"create", "--owner", pasted, "--description", "x", "--scopes", "assignment:read"},
             {"create", "--description", "x", "--scopes", pasted},
             {"create", "--description", "x", "--scopes", "assignment:read", "--expires", pasted},
             {"roles", "grant", pasted, "user"},
             {"roles", "grant", "dave", pasted},
             {"history", "--limit", pasted},
             {"--server", pasted, "info"},
         }) {
      SCOPED_TRACE(args.front());
      ProcessResult r = asAdmin(args);
      EXPECT_NE(r.exitCode, kOk) << r;
      EXPECT_EQ(r.out, "") << r;
      EXPECT_TRUE(r.err.starts_with("tokenctl: ")) << r;
      EXPECT_EQ(leakedSecrets(r.err, known), std::vector<std::string>{}) << r;
      ++failures;
    }
  }
  // As the login token, or to verify: the rotated-away credential, the bare secret, a broken
  // credential. Refused without an echo, on stderr or stdout.
  for (const std::string& token : {vendor.credential.encode(), secretHex, current.encode() + "x"}) {
    for (ProcessResult r : {as(token, {"whoami"}), verify(token)}) {
      EXPECT_NE(r.exitCode, kOk) << r;
      EXPECT_EQ(leakedSecrets(r.err + r.out, known), std::vector<std::string>{}) << r;
      ++failures;
    }
  }
  RecordProperty("failing_commands_with_pasted_secrets", failures);
}

// A credential given where the command or the token file's path belongs (`tokenctl $TOKEN`,
// `--token-file $TOKEN`: typical slips) is a usage error that does not repeat it.
TEST_F(TokenctlTest, ASecretGivenAsTheCommandOrTheTokenFileIsNotEchoed) {
  Login vendor = issue("bob", scopes({"assignment:read"}), "Vendor A");
  for (ProcessResult r : {asAdmin({vendor.credential.encode()}),
                          tokenctl({"--server", address(), "--token-file", vendor.credential.encode(), "whoami"})}) {
    EXPECT_EQ(r.exitCode, kUsage) << r;
    EXPECT_EQ(leakedSecrets(r.err, known), std::vector<std::string>{}) << r;
  }
  runs.clear();  // reported above; TearDown need not repeat it
}

}  // namespace
}  // namespace tokenledger::test
