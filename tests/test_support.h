// Shared helpers for the tokenledger tests: a temporary directory per test, an injectable clock,
// and a fixture holding one initialised ledger (admin "alice") opened through LedgerInstance.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ledger/chain.h"
#include "ledger/commands.h"
#include "ledger/credential.h"
#include "ledger/error.h"
#include "ledger/ledger.h"
#include "ledger/store.h"
#include "ledger/temp_dir.h"
#include "projections/ledger_instance.h"
#include "schemas/ledger.capnp.h"

namespace tokenledger::test {

inline constexpr int64_t kSecond = 1'000'000;
inline constexpr int64_t kDay = 86400 * kSecond;
// 2026-01-01T00:00:00Z: every fixture starts its clock here.
inline constexpr int64_t kStartMicros = 1'767'225'600LL * kSecond;

// A fresh directory under /tmp, removed with everything in it when the test ends.
using TempDir = tokenledger::TempDir;

// A clock the test moves by hand; copies of fn() all read the same value.
class TestClock {
 public:
  TestClock() : now_(std::make_shared<std::atomic<int64_t>>(kStartMicros)) {}
  int64_t now() const { return now_->load(); }
  void set(int64_t micros) { now_->store(micros); }
  void advance(int64_t micros) { now_->fetch_add(micros); }
  std::function<int64_t()> fn() const {
    auto now = now_;
    return [now] { return now->load(); };
  }

 private:
  std::shared_ptr<std::atomic<int64_t>> now_;
};

inline std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::string errorCodeText(ErrorCode code) { return std::string(errorCodeName(code)); }

// The decoded form of one stored event (a copy that outlives the bytes it came from).
struct StoredEvent {
  std::string bytes;
  std::unique_ptr<CanonicalReader> reader;
  schema::Event::Reader event() { return reader->root<schema::Event>(); }
};

inline StoredEvent readEvent(const Store& store, uint64_t seq) {
  StoredEvent out;
  auto bytes = store.get(Family::kEvents, seqKey(seq));
  if (!bytes) throw std::runtime_error("no event " + std::to_string(seq));
  out.bytes = *bytes;
  out.reader = std::make_unique<CanonicalReader>(out.bytes);
  return out;
}

// The keyId in the seal of entry `seq`.
inline std::string sealKeyId(const Store& store, uint64_t seq) {
  auto bytes = store.get(Family::kSeals, seqKey(seq));
  if (!bytes) throw std::runtime_error("no seal " + std::to_string(seq));
  CanonicalReader reader(*bytes);
  return reader.root<schema::Seal>().getKeyId();
}

inline Scopes scopes(std::vector<std::string> ids) { return Scopes::of(std::move(ids)); }

// One initialised ledger in a temporary directory, opened with an injectable clock. The first
// admin is "alice", logged in with the token `tokenledgerd init` printed.
class LedgerFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    adminCredential = LedgerInstance::init(dataDir(), "alice", options());
    admin = Actor::token("alice", adminCredential.sidHex());
    open();
  }
  void TearDown() override { close(); }

  const std::filesystem::path& dataDir() const { return dir.path(); }

  virtual LedgerOptions options() {
    LedgerOptions o;
    o.clock = clock.fn();
    return o;
  }
  void open() { instance = LedgerInstance::open(dataDir(), options()); }
  void close() { instance.reset(); }
  void reopen() {
    close();
    open();
  }

  Ledger& ledger() { return instance->ledger(); }
  StoredProjection& projection() { return instance->projection(); }
  Store& store() { return instance->store(); }
  uint64_t head() { return ledger().headSeq(); }

  CommandResult run(const Actor& actor, Command command, std::string reason = {}) {
    return ledger().execute(Request{actor, "127.0.0.1:4000", std::move(reason), std::move(command)});
  }

  // Runs a command that must be rejected with `code` and must append nothing; returns the
  // error message (empty when the command was not rejected as expected).
  std::string rejected(const Actor& actor, Command command, ErrorCode code) {
    const uint64_t before = head();
    std::string message;
    try {
      CommandResult r = run(actor, std::move(command));
      ADD_FAILURE() << "expected " << errorCodeText(code) << " but the command succeeded (seqs "
                    << r.firstSeq << ".." << r.lastSeq << ")";
    } catch (const Error& e) {
      EXPECT_EQ(errorCodeText(e.code()), errorCodeText(code)) << e.what();
      message = e.what();
    }
    EXPECT_EQ(head(), before) << "a rejected command moved the head";
    return message;
  }

  // A token for `owner` created by the admin; returns the actor that logs in with it.
  struct Login {
    Actor actor;
    Credential credential;
  };
  Login tokenFor(const std::string& owner, Scopes s, Expiration e = {},
                 const std::string& description = "test token") {
    CommandResult r = run(admin, CreateToken{owner, description, e, std::move(s)});
    return Login{Actor::token(owner, r.credential->sidHex()), *r.credential};
  }
  // `name` gets `role` and one login token with `s`.
  Login principal(const std::string& name, Role role, Scopes s) {
    run(admin, GrantRole{name, role});
    return tokenFor(name, std::move(s));
  }
  Login user(const std::string& name) {
    return principal(name, Role::kUser, scopes({"tokens:read", "tokens:write", "assignment:read",
                                                 "assignment:write", "contact:read"}));
  }

  // A varied history: users, an auditor, tokens with every kind of change, role grants and
  // removals, a signing key rotation, a checkpoint and an offboarding. The clock moves between
  // steps.
  struct Workload {
    std::vector<Credential> issued;             // every credential ever shown, rotated ones too
    std::map<std::string, Credential> current;  // sid -> the credential that works now
    Login bob, carol;
    std::string rotatedSid, revokedSid, describedSid, rescopedSid;
    std::vector<std::string> offboardedSids;
    CheckpointInfo checkpoint;
  };
  Workload workload() {
    Workload w;
    auto issued = [&](const CommandResult& r) {
      w.issued.push_back(*r.credential);
      w.current[r.credential->sidHex()] = *r.credential;
      return r.credential->sidHex();
    };
    w.issued.push_back(adminCredential);
    w.current[adminCredential.sidHex()] = adminCredential;
    w.bob = user("bob");
    issued(CommandResult{0, 0, {}, w.bob.credential, {}});
    w.carol = principal("carol", Role::kAuditor, scopes({"audit:read", "tokens:read"}));
    issued(CommandResult{0, 0, {}, w.carol.credential, {}});
    clock.advance(kDay);
    std::string a = issued(run(w.bob.actor, CreateToken{"bob", "Vendor A", {}, scopes({"assignment:read"})},
                               "onboarding vendor A"));
    std::string b = issued(run(w.bob.actor, CreateToken{"bob", "Vendor B", {Expiration::Kind::kYear, 0},
                                                        scopes({"contact:read", "assignment:write"})}));
    std::string c = issued(run(w.bob.actor, CreateToken{"bob", "Vendor C", {Expiration::Kind::kDays180, 0},
                                                        scopes({"assignment:read"})}));
    for (int i = 0; i < 2; ++i) {
      std::string sid = issued(run(admin, CreateToken{"svc-payroll", "Payroll " + std::to_string(i),
                                                      {Expiration::Kind::kNever, 0}, Scopes::allScopes()}));
      w.offboardedSids.push_back(sid);
    }
    clock.advance(kSecond);
    run(w.bob.actor, ChangeScopes{a, scopes({"assignment:read", "assignment:write"})});
    w.rescopedSid = a;
    run(w.bob.actor, SetDescription{b, "Vendor B (billing)"});
    w.describedSid = b;
    issued(run(w.bob.actor, RotateToken{a}, "suspected leak"));
    w.rotatedSid = a;
    run(admin, RevokeToken{c}, "vendor contract ended");
    w.revokedSid = c;
    run(admin, GrantRole{"dave", Role::kUser});
    run(admin, RevokeRole{"dave", Role::kUser});
    clock.advance(kSecond);
    run(admin, RotateSigningKey{}, "yearly key rotation");
    std::string d = issued(run(admin, CreateToken{"erin", "Erin's integration", {}, scopes({"email:read"})}));
    issued(run(admin, RotateToken{d}));
    w.checkpoint = *run(w.carol.actor, MakeCheckpoint{}).checkpoint;
    run(admin, RevokeAllFor{"svc-payroll"}, "offboarding");
    run(w.bob.actor, SetDescription{a, "Vendor A (rotated)"});
    return w;
  }

  // Closes the instance and opens its database directly, for tampering.
  std::unique_ptr<Store> rawStore() {
    close();
    return Store::open(dataDir() / "db", Store::Mode::kReadWrite, /*create=*/false);
  }

  TempDir dir;
  TestClock clock;
  Credential adminCredential;
  Actor admin;
  std::unique_ptr<LedgerInstance> instance;
};

// EXPECT_REJECTED(code, actor, command...): the command (which may contain commas) is rejected
// with `code` and the head does not move. Evaluates to the error message.
#define EXPECT_REJECTED(code, actor, ...)                  \
  [&] {                                                    \
    SCOPED_TRACE("EXPECT_REJECTED " #__VA_ARGS__);         \
    return rejected((actor), Command{__VA_ARGS__}, (code)); \
  }()

}  // namespace tokenledger::test
