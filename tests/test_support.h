// Shared helpers for the tokenledger tests: a temporary directory per test, an injectable clock,
// a fixture holding one initialised ledger (admin "alice") opened through LedgerInstance, taking
// tool output apart (lines, table columns, credentials) and searching text for leaked secrets.
// Processes: process_support.h; RPC clients, raw sockets and a served ledger: rpc_support.h.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ledger/chain.h"
#include "ledger/commands.h"
#include "ledger/credential.h"
#include "ledger/crypto.h"
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

// The SID of the token an event is about; empty for role and key events.
inline std::string sidOf(schema::Event::Reader event) {
  switch (event.which()) {
    case schema::Event::TOKEN_CREATED: return event.getTokenCreated().getSid();
    case schema::Event::TOKEN_SCOPES_CHANGED: return event.getTokenScopesChanged().getSid();
    case schema::Event::TOKEN_DESCRIPTION_CHANGED: return event.getTokenDescriptionChanged().getSid();
    case schema::Event::TOKEN_REVOKED: return event.getTokenRevoked().getSid();
    case schema::Event::TOKEN_ROTATED: return event.getTokenRotated().getSid();
    default: return "";
  }
}

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

// ---------------------------------------------------------------------------------------------
// Text: what the tools print, taken apart.

// The lines of `text`, without their line ends.
inline std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

// The columns of one line of a table (tokenctl's, ledger-replay's): columns are separated by runs
// of at least two spaces (no value in these tests holds two in a row).
inline std::vector<std::string> columns(const std::string& line) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < line.size()) {
    size_t gap = line.find("  ", i);
    if (gap == std::string::npos) {
      out.push_back(line.substr(i));
      break;
    }
    out.push_back(line.substr(i, gap - i));
    i = line.find_first_not_of(' ', gap);
  }
  return out;
}

// The lines of `text` that are exactly a tlp_ credential (what `tokenledgerd init` prints).
inline std::vector<std::string> credentialLines(const std::string& text) {
  std::vector<std::string> out;
  for (const std::string& line : lines(text)) {
    if (line.starts_with(kCredentialPrefix) && parseCredential(line)) out.push_back(line);
  }
  return out;
}

// Every form in which a credential's secret could leak, named for a failure message: the whole
// tlp_ string, the secret as lower- and upper-case hex, as raw bytes and as base64.
inline std::vector<std::pair<std::string, std::string>> secretForms(const Credential& credential) {
  const Bytes secret(credential.secret.data(), credential.secret.size());
  std::string lower = toHex(secret);
  std::string upper = lower;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::string raw(reinterpret_cast<const char*>(credential.secret.data()), credential.secret.size());
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string base64;
  for (size_t i = 0; i + 2 < raw.size(); i += 3) {  // the first 30 bytes: no padding needed
    uint32_t v = static_cast<uint32_t>(credential.secret[i]) << 16 |
                 static_cast<uint32_t>(credential.secret[i + 1]) << 8 | credential.secret[i + 2];
    for (int shift = 18; shift >= 0; shift -= 6) base64 += kAlphabet[(v >> shift) & 63];
  }
  const std::string sid = credential.sidHex();
  return {{"the credential tlp_ string of " + sid, credential.encode()},
          {"the secret (hex) of " + sid, lower},
          {"the secret (upper-case hex) of " + sid, upper},
          {"the secret (raw bytes) of " + sid, raw},
          {"the secret (base64, first 30 bytes) of " + sid, base64}};
}

// What leaks in `haystack`: one line per credential form found, empty if none.
inline std::vector<std::string> leakedSecrets(std::string_view haystack,
                                              const std::vector<Credential>& credentials) {
  std::vector<std::string> found;
  for (const Credential& credential : credentials) {
    for (const auto& [what, form] : secretForms(credential)) {
      size_t at = haystack.find(form);
      if (at != std::string_view::npos) found.push_back(what + " at byte " + std::to_string(at));
    }
  }
  return found;
}

// Flips one byte in the middle of the largest table file of `family` in the closed database at
// `dbDir`, as a failing disk would. Returns how many keys a plain RocksDB scan of the family
// still reads before the damage (for the log: the last good seq).
inline uint64_t flipByteOnDisk(const std::filesystem::path& dbDir, Family family) {
  std::filesystem::path largest;
  uint64_t largestSize = 0;
  {
    auto store = Store::open(dbDir, Store::Mode::kReadWrite, /*create=*/false);
    std::vector<rocksdb::LiveFileMetaData> files;
    store->db().GetLiveFilesMetaData(&files);
    for (const auto& file : files) {
      if (file.column_family_name == familyName(family) && file.size > largestSize) {
        largest = file.db_path + file.name;
        largestSize = file.size;
      }
    }
  }
  EXPECT_GT(largestSize, 64u * 1024) << familyName(family) << " is not in a table file of several blocks";
  {
    std::fstream f(largest, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(largestSize / 2));
    char byte = 0;
    f.read(&byte, 1);
    byte = static_cast<char>(byte ^ 0x10);
    f.seekp(static_cast<std::streamoff>(largestSize / 2));
    f.write(&byte, 1);
    EXPECT_TRUE(f.good());
  }
  auto store = Store::open(dbDir, Store::Mode::kReadWrite, /*create=*/false);
  // RocksDB's own iterator: the Store's throws at the damage.
  std::unique_ptr<rocksdb::Iterator> it(
      store->db().NewIterator(rocksdb::ReadOptions(), store->family(family)));
  uint64_t read = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) ++read;
  EXPECT_TRUE(it->status().IsCorruption()) << it->status().ToString();
  return read;
}

}  // namespace tokenledger::test
