// ledger-replay, the forensics tool: the real binary run as a process (offline on a data
// directory, read-only beside a running writer, and remote through an auditor's token against a
// real server on 127.0.0.1), checked against the live ledger, the stored projection, the stock
// `capnp` and `openssl` tools, and against logs tampered with in every way the spec names.
#include <capnp/compat/json.h>
#include <capnp/serialize.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "ledger/crypto.h"
#include "ledger/log_export.h"
#include "ledger/log_verifier.h"
#include "ledger/scope_catalog.h"
#include "projections/event_text.h"
#include "projections/forensics.h"
#include "projections/rebuild.h"
#include "process_support.h"
#include "rpc/server.h"
#include "test_support.h"

#ifndef LEDGER_REPLAY
#error "LEDGER_REPLAY must name the built ledger-replay binary"
#endif
#ifndef TOKENCTL
#error "TOKENCTL must name the built tokenctl binary"
#endif
#ifndef SCHEMA_DIR
#error "SCHEMA_DIR must name the repository's schemas/ directory"
#endif

namespace tokenledger::test {
namespace {

using Kind = Expiration::Kind;

constexpr int64_t kHour = 3600 * kSecond;
const std::string kUnknownSid(32, '0');

// ---------------------------------------------------------------------------------------------
// What the real tools print (they run through runProcess, in process_support.h).

// "INTEGRITY FAILURE at seq N: ..." -> N, or 0.
uint64_t failureSeq(const std::string& out) {
  const std::string marker = "INTEGRITY FAILURE at seq ";
  size_t at = out.find(marker);
  if (at == std::string::npos) return 0;
  return std::strtoull(out.c_str() + at + marker.size(), nullptr, 10);
}

// "intact: N entries, ..." -> N, or -1.
int64_t intactEntries(const std::string& out) {
  if (!out.starts_with("intact: ")) return -1;
  return std::strtoll(out.c_str() + 8, nullptr, 10);
}

// The seq at the start of a history line ("    42  2026-...").
uint64_t historySeq(const std::string& line) { return std::strtoull(line.c_str(), nullptr, 10); }

std::string seqText(uint64_t seq) {
  char buffer[24];
  std::snprintf(buffer, sizeof(buffer), "%6llu", static_cast<unsigned long long>(seq));
  return buffer;
}

std::string checkpointJson(const CheckpointInfo& cp) {
  capnp::MallocMessageBuilder message;
  auto out = message.initRoot<schema::Checkpoint>();
  out.setSeq(cp.seq);
  out.setEntryHash(kj::arrayPtr(cp.entryHash.data(), cp.entryHash.size()));
  out.setTimeMicros(cp.timeMicros);
  out.setKeyId(cp.keyId);
  out.setSignature(kj::arrayPtr(cp.signature.data(), cp.signature.size()));
  capnp::JsonCodec codec;
  codec.handleByAnnotation<schema::Checkpoint>();
  return codec.encode(out.asReader()).cStr();
}

std::string sealBytesWith(std::string_view original, const Ed25519Signature& signature,
                          const std::string& keyId) {
  CanonicalReader reader(original);
  capnp::MallocMessageBuilder message;
  message.setRoot(reader.root<schema::Seal>());
  auto seal = message.getRoot<schema::Seal>();
  seal.setSignature(kj::arrayPtr(signature.data(), signature.size()));
  seal.setKeyId(keyId);
  return canonicalBytes(seal.asReader());
}

Digest sealHash(std::string_view sealBytes) {
  CanonicalReader reader(sealBytes);
  auto h = reader.root<schema::Seal>().getEntryHash();
  Digest out{};
  EXPECT_EQ(h.size(), out.size());
  std::copy(h.begin(), h.begin() + std::min<size_t>(h.size(), out.size()), out.begin());
  return out;
}

// The CLI's table rows: OWNER, DESCRIPTION, ACCOUNT SID, SCOPES, EXPIRATION, STATUS.
using Row = std::vector<std::string>;
Row tableRow(const Token& t, TokenStatus status) {
  return {t.owner, t.description, t.sid, t.scopes.describe(), formatTime(t.expiresAtMicros),
          statusName(status)};
}

class Replay : public LedgerFixture {
 protected:
  void TearDown() override {
    server.reset();
    LedgerFixture::TearDown();
  }

  // Runs argv[0] with the arguments, a clean TOKENLEDGER_* environment plus `env`, stdin from
  // `input`, under a hard time limit.
  ProcessResult command(const std::vector<std::string>& argv, const Environment& env = {},
                        const std::string& input = "/dev/null") {
    return runProcess(argv, scratch.path(), std::chrono::seconds(40), toolEnvironment(env), input);
  }
  ProcessResult replay(std::vector<std::string> args, const Environment& env = {}) {
    args.insert(args.begin(), LEDGER_REPLAY);
    return command(args, env);
  }
  ProcessResult offline(std::vector<std::string> args) {
    args.insert(args.begin(), {"--data-dir", dataDir().string()});
    return replay(std::move(args));
  }
  std::filesystem::path scratchFile(const std::string& name, const std::string& content) {
    auto path = scratch.path() / name;
    std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
    return path;
  }

  // Opens the closed ledger's database read-write for tampering, then closes it again.
  void tamper(const std::function<void(Store&)>& change) {
    close();
    auto db = Store::open(dataDir() / "db", Store::Mode::kReadWrite, /*create=*/false);
    change(*db);
  }
  static std::string get(Store& db, Family f, uint64_t seq) { return db.get(f, seqKey(seq)).value(); }
  static void put(Store& db, Family f, uint64_t seq, const std::string& value) {
    rocksdb::WriteBatch batch;
    batch.Put(db.family(f), seqKey(seq), value);
    db.write(batch, true);
  }

  // A table row's status by the verification index (not by replaying): what a verifying service
  // would have answered for the token's current credential at `at`.
  TokenStatus liveStatus(const Credential& credential, int64_t at) {
    VerifyResult r = projection().verifyIndex().verify(credential, ScopeMask{}, at);
    switch (r.reason) {
      case VerifyReason::kOk: return TokenStatus::kActive;
      case VerifyReason::kExpired: return TokenStatus::kExpired;
      case VerifyReason::kRevoked: return TokenStatus::kRevoked;
      default:
        ADD_FAILURE() << "verify index says " << verifyReasonName(r.reason) << " for "
                      << credential.sidHex();
        return TokenStatus::kActive;
    }
  }

  // `n` tokens for `owner`, submitted at once so group commit takes them in few batches.
  void bulkCreate(int n, const std::string& owner) {
    struct Wait {
      std::mutex mutex;
      std::condition_variable cv;
      int done = 0;
      int failed = 0;
    };
    auto wait = std::make_shared<Wait>();
    for (int i = 0; i < n; ++i) {
      ledger().submit(Request{admin, "127.0.0.1:4000", "", CreateToken{owner, "Bulk " + std::to_string(i),
                                                                        {Kind::kNever, 0}, scopes({"email:read"})}},
                      [wait](Outcome o) {
                        std::lock_guard lock(wait->mutex);
                        ++wait->done;
                        if (o.error) ++wait->failed;
                        wait->cv.notify_all();
                      });
    }
    std::unique_lock lock(wait->mutex);
    ASSERT_TRUE(wait->cv.wait_for(lock, std::chrono::seconds(30), [&] { return wait->done == n; }))
        << wait->done << " of " << n << " bulk commands finished";
    EXPECT_EQ(wait->failed, 0);
  }

  // -------------------------------------------------------------------------------------------
  // A randomized history: a few hundred commands of every kind from admins, users and an
  // auditor, many of them rejected, with the clock moving, tokens expiring, keys rotating and
  // checkpoints made. Every few commands a snapshot records the live table at a seq.

  struct Snapshot {
    uint64_t seq = 0;
    int64_t time = 0;   // of the event at `seq`; no other event has this time
    int64_t later = 0;  // a moment after `time`, still before the next event
    std::vector<Token> tokens;  // StoredProjection::listTokens right after `seq`
    std::map<std::string, TokenStatus> statusAt, statusLater;  // by the verify index
  };
  struct RandomHistory {
    std::vector<Snapshot> snapshots;
    std::map<std::string, int> accepted, rejected;  // by command name
    std::vector<Credential> issued;
    std::map<std::string, Credential> current;      // sid -> the credential that works now
    std::vector<std::string> pool;                  // SIDs the workload created
  };

  RandomHistory randomWorkload(uint32_t seed, int commands, int snapshotEvery) {
    RandomHistory h;
    std::mt19937 rng(seed);
    auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
    auto index = [&](size_t size) { return std::uniform_int_distribution<size_t>(0, size - 1)(rng); };
    auto remember = [&](const CommandResult& r) {
      if (!r.credential) return;
      h.issued.push_back(*r.credential);
      h.current[r.credential->sidHex()] = *r.credential;
    };
    h.issued.push_back(adminCredential);
    h.current[adminCredential.sidHex()] = adminCredential;

    const Scopes userScopes =
        scopes({"tokens:read", "tokens:write", "assignment:read", "assignment:write", "contact:read"});
    std::vector<Login> users;
    for (std::string name : {"u0", "u1", "u2"}) {
      run(admin, GrantRole{name, Role::kUser});
      CommandResult r = run(admin, CreateToken{name, "Login of " + name, {Kind::kNever, 0}, userScopes});
      remember(r);
      users.push_back(Login{Actor::token(name, r.credential->sidHex()), *r.credential});
    }
    run(admin, GrantRole{"carol", Role::kAuditor});
    CommandResult c = run(admin, CreateToken{"carol", "Audit login", {Kind::kNever, 0},
                                             scopes({"audit:read", "tokens:read"})});
    remember(c);
    const Actor carol = Actor::token("carol", c.credential->sidHex());

    const std::vector<std::string> services = {"svc-a", "svc-b"};
    const std::vector<std::string> scopePool = {"assignment:read", "assignment:write", "contact:read",
                                                "email:read", "message:write"};
    const std::vector<std::string> rolePrincipals = {"dave", "erin", "frank"};

    // Users hold only the first three of scopePool: mostly they ask for those.
    auto randomScopes = [&](const Actor& actor) -> Scopes {
      if (chance(0.04)) return Scopes{};                  // empty: rejected
      if (chance(0.03)) return scopes({"nosuch:read"});   // unknown: rejected
      if (chance(0.06)) return Scopes::allScopes();        // users may not: rejected for them
      const size_t choices = actor == admin || chance(0.15) ? scopePool.size() : 3;
      std::vector<std::string> ids;
      for (size_t k = 0; k < choices; ++k) {
        if (chance(0.4)) ids.push_back(scopePool[k]);
      }
      if (ids.empty()) ids.push_back(scopePool[index(choices)]);
      return scopes(ids);
    };
    int descriptions = 0;
    auto randomDescription = [&]() -> std::string {
      if (chance(0.03)) return "   ";                // empty once trimmed: rejected
      if (chance(0.03)) return std::string(201, 'x');  // too long: rejected
      return "Integration " + std::to_string(++descriptions) + (chance(0.5) ? " sync" : " export");
    };
    auto randomExpiration = [&](const Actor& actor) -> Expiration {
      double r = std::uniform_real_distribution<double>(0, 1)(rng);
      if (!(actor == admin) && r >= 0.7 && r < 0.9 && chance(0.8)) r = 0.1;  // users rarely ask for never
      if (r < 0.2) return {};
      if (r < 0.3) return {Kind::kDays180, 0};
      if (r < 0.35) return {Kind::kYear, 0};
      if (r < 0.7) {  // soon: many of these expire during the workload
        return Expiration::custom(clock.now() + std::uniform_int_distribution<int64_t>(1, 72)(rng) * kHour);
      }
      if (r < 0.9) return {Kind::kNever, 0};  // admin-only: rejected for users
      if (r < 0.95) return Expiration::custom(clock.now() - kHour);  // past: rejected
      return Expiration::custom(clock.now() + 400 * kDay);           // beyond the maximum
    };
    // Mostly a live token the actor may manage; sometimes any token (maybe revoked, expired or
    // someone else's) or one that does not exist.
    auto randomTarget = [&](const Actor& actor) -> std::string {
      if (h.pool.empty() || chance(0.04)) return kUnknownSid;
      std::vector<std::string> fitting;
      if (chance(0.8)) {
        for (const auto& sid : h.pool) {
          auto t = projection().committed().token(sid);
          if (t && t->statusAt(clock.now()) == TokenStatus::kActive &&
              (actor == admin || t->owner == actor.principal)) {
            fitting.push_back(sid);
          }
        }
      }
      if (!fitting.empty()) return fitting[index(fitting.size())];
      return h.pool[index(h.pool.size())];
    };
    auto randomUser = [&]() -> const Login& { return users[index(users.size())]; };

    auto snapshot = [&]() {
      clock.advance(kSecond);
      CommandResult r = run(admin, CreateToken{services[index(services.size())],
                                               "Marker " + std::to_string(h.snapshots.size()),
                                               {Kind::kNever, 0}, scopes({"message:write"})});
      remember(r);
      h.pool.push_back(r.sids.front());
      Snapshot s;
      s.seq = head();
      EXPECT_EQ(r.lastSeq, s.seq);
      s.time = clock.now();
      const int64_t quiet = std::uniform_int_distribution<int64_t>(2, 4 * 3600)(rng) * kSecond;
      s.later = s.time + (quiet / 2 / kSecond) * kSecond;
      s.tokens = projection().listTokens(std::nullopt);
      for (const Token& t : s.tokens) {
        s.statusAt[t.sid] = liveStatus(h.current.at(t.sid), s.time);
        s.statusLater[t.sid] = liveStatus(h.current.at(t.sid), s.later);
      }
      h.snapshots.push_back(std::move(s));
      clock.advance(quiet);
    };

    for (int i = 0; i < commands; ++i) {
      if (i % snapshotEvery == snapshotEvery - 1) {
        snapshot();
        continue;
      }
      const double actorDraw = std::uniform_real_distribution<double>(0, 1)(rng);
      Actor actor = actorDraw < 0.4 ? admin : actorDraw < 0.9 ? randomUser().actor : carol;
      const bool isAdmin = actor == admin;
      Command command;
      switch (std::discrete_distribution<int>({24, 10, 10, 10, 5, 8, 6, 6, 4, 4})(rng)) {
        case 0: {
          std::string owner = actor.principal;
          if (isAdmin) {
            owner = chance(0.6) ? services[index(services.size())] : randomUser().actor.principal;
          } else if (chance(0.1)) {
            owner = randomUser().actor.principal;  // maybe someone else's: rejected
          }
          command = CreateToken{owner, randomDescription(), randomExpiration(actor), randomScopes(actor)};
          break;
        }
        case 1: command = ChangeScopes{randomTarget(actor), randomScopes(actor)}; break;
        case 2: {
          std::string sid = randomTarget(actor);
          std::string description = randomDescription();
          if (auto t = projection().committed().token(sid); t && chance(0.1)) description = t->description;
          command = SetDescription{sid, description};
          break;
        }
        case 3: command = RevokeToken{randomTarget(actor)}; break;
        case 4:
          if (chance(0.7)) actor = admin;
          command = RevokeAllFor{services[index(services.size())]};
          break;
        case 5: command = RotateToken{randomTarget(actor)}; break;
        case 6:
          if (chance(0.8)) actor = admin;
          command = GrantRole{rolePrincipals[index(rolePrincipals.size())],
                              kAllRoles[index(std::size(kAllRoles))]};
          break;
        case 7:
          if (chance(0.8)) actor = admin;
          command = RevokeRole{rolePrincipals[index(rolePrincipals.size())],
                               kAllRoles[index(std::size(kAllRoles))]};
          break;
        case 8:
          actor = chance(0.7) ? admin : randomUser().actor;
          command = RotateSigningKey{};
          break;
        default:
          actor = chance(0.7) ? carol : randomUser().actor;
          command = MakeCheckpoint{};
          break;
      }
      const std::string name = commandName(command);
      std::string reason = chance(0.2) ? "change " + std::to_string(i) : "";
      if (chance(0.01)) reason = std::string(501, 'r');  // too long: rejected
      const uint64_t before = head();
      const bool create = std::holds_alternative<CreateToken>(command);
      try {
        CommandResult r = run(actor, std::move(command), reason);
        remember(r);
        if (create) h.pool.push_back(r.sids.front());
        if (r.firstSeq != 0) {
          EXPECT_EQ(r.firstSeq, before + 1) << name;
        }
        ++h.accepted[name];
      } catch (const Error& e) {
        EXPECT_EQ(head(), before) << name << " was rejected (" << e.what() << ") but appended";
        ++h.rejected[name];
      }
      if (chance(0.5)) clock.advance(std::uniform_int_distribution<int64_t>(1, 3 * 3600)(rng) * kSecond);
    }
    return h;
  }

  TempDir scratch;
  std::unique_ptr<rpc::Server> server;
};

// Every file in `dir` with its inode, size and modification time: equal listings mean nothing
// in it was created, removed, renamed or written.
std::map<std::string, std::tuple<uint64_t, uint64_t, int64_t>> listing(const std::filesystem::path& dir) {
  std::map<std::string, std::tuple<uint64_t, uint64_t, int64_t>> out;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    struct stat st {};
    if (::stat(entry.path().c_str(), &st) != 0) continue;
    out[entry.path().filename().string()] = {st.st_ino, static_cast<uint64_t>(st.st_size),
                                             st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec};
  }
  return out;
}

// The CLI's table (after its one-line title and the header) as rows.
std::vector<Row> cliRows(const ProcessResult& r, std::string* title = nullptr) {
  std::vector<std::string> all = lines(r.out);
  std::vector<Row> rows;
  if (all.size() < 2) {
    ADD_FAILURE() << "no table in the output\n" << r;
    return rows;
  }
  if (title) *title = all[0];
  EXPECT_EQ(columns(all[1]), (Row{"OWNER", "DESCRIPTION", "ACCOUNT SID", "SCOPES", "EXPIRATION", "STATUS"}));
  for (size_t i = 2; i < all.size(); ++i) rows.push_back(columns(all[i]));
  return rows;
}

std::string describeDifference(const std::vector<Token>& want, const std::vector<Token>& have) {
  std::string out;
  std::map<std::string, const Token*> a, b;
  for (const auto& t : want) a[t.sid] = &t;
  for (const auto& t : have) b[t.sid] = &t;
  for (const auto& [sid, t] : a) {
    if (!b.count(sid)) out += "\n  missing " + sid;
    else if (!(*b[sid] == *t)) out += "\n  differs " + sid;
  }
  for (const auto& [sid, t] : b) {
    if (!a.count(sid)) out += "\n  extra " + sid;
  }
  return out;
}

std::vector<Token> tokensOf(const MemoryState& state) {
  std::vector<Token> out;
  for (const auto& [sid, t] : state.tokens()) out.push_back(t);
  return out;
}

// ---------------------------------------------------------------------------------------------
// 1. Replay equals the live state.

TEST_F(Replay, RandomWorkloadReplaysToTheStoredTableAndTheCliDiffAgreesBesideARunningWriter) {
  RandomHistory h = randomWorkload(20260101, 400, 40);
  // Every kind of command was both accepted and rejected at least once.
  for (const char* name : {"create-token", "change-scopes", "set-description", "revoke", "revoke-all",
                           "rotate", "grant-role", "revoke-role", "rotate-signing-key", "checkpoint"}) {
    EXPECT_GT(h.accepted[name], 0) << name << " never accepted";
    EXPECT_GT(h.rejected[name], 0) << name << " never rejected";
  }
  const uint64_t n = head();
  std::string counts;
  for (const auto& [name, k] : h.accepted) counts += " " + name + "=" + std::to_string(k) + "/" + std::to_string(h.rejected[name]);
  ASSERT_GT(n, 200u) << "accepted/rejected:" << counts;

  MemoryState replayed = replayLog(store());
  EXPECT_EQ(replayed.lastSeq(), n);
  std::vector<std::string> differences = diffStored(store(), replayed);
  EXPECT_TRUE(differences.empty()) << differences.size() << " differences, first: "
                                   << (differences.empty() ? "" : differences.front());
  const std::vector<Token> live = projection().listTokens(std::nullopt);
  EXPECT_EQ(tokensOf(replayed), live) << describeDifference(live, tokensOf(replayed));
  EXPECT_EQ(live.size(), h.current.size());
  for (const std::string p : {"alice", "u0", "u1", "u2", "carol", "dave", "erin", "frank"}) {
    EXPECT_EQ(replayed.rolesOf(p), projection().committed().rolesOf(p)) << p;
  }
  // Some tokens expired and some were revoked along the way: the comparison covered all states.
  std::set<TokenStatus> seen;
  for (const Token& t : live) seen.insert(t.statusAt(clock.now()));
  EXPECT_EQ(seen.size(), 3u);

  // The CLI opens the database read-only while the ledger still holds it open for writing.
  ProcessResult diff = offline({"diff"});
  EXPECT_EQ(diff.exitCode, 0) << diff;
  EXPECT_EQ(diff.out, "the stored projection equals a replay of " + std::to_string(n) + " entries\n") << diff;
  ProcessResult verify = offline({"verify"});
  EXPECT_EQ(verify.exitCode, 0) << verify;
  EXPECT_EQ(intactEntries(verify.out), static_cast<int64_t>(n)) << verify;

  // And once the ledger is closed. Read-only means the database directory is left as it was.
  close();
  const auto files = listing(dataDir() / "db");
  diff = offline({"diff"});
  EXPECT_EQ(diff.exitCode, 0) << diff;
  EXPECT_EQ(diff.out, "the stored projection equals a replay of " + std::to_string(n) + " entries\n") << diff;
  for (const char* c : {"verify", "export"}) {
    ProcessResult r = c == std::string("verify") ? offline({c}) : offline({c, "--format", "capnp"});
    EXPECT_EQ(r.exitCode, 0) << r;
  }
  EXPECT_EQ(listing(dataDir() / "db"), files) << "the read-only tool changed the database directory";

  // A stored row that disagrees with the log is a difference the CLI names.
  const std::string victim = h.pool.at(h.pool.size() / 2);
  tamper([&](Store& db) {
    rocksdb::WriteBatch batch;
    batch.Delete(db.family(Family::kTokens), victim);
    db.write(batch, true);
  });
  diff = offline({"diff"});
  EXPECT_EQ(diff.exitCode, 1) << diff;
  EXPECT_NE(diff.out.find("token " + victim), std::string::npos) << diff;
  EXPECT_NE(diff.out.find("1 difference(s)"), std::string::npos) << diff;
}

TEST_F(Replay, RebuildRepairsTheStoredProjectionOnlyFromAVerifiedLogWithTheServerStopped) {
  Workload w = workload();
  const uint64_t n = head();
  const std::string bob = w.bob.credential.sidHex();

  // Beside the running ledger it cannot take the database, and says why.
  ProcessResult busy = offline({"rebuild"});
  EXPECT_EQ(busy.exitCode, 2) << busy;
  EXPECT_NE(busy.err.find("a running tokenledgerd?"), std::string::npos) << busy;

  // A row deleted from the table and a role forged into it are put right.
  tamper([&](Store& db) {
    rocksdb::WriteBatch batch;
    batch.Delete(db.family(Family::kTokens), bob);
    batch.Put(db.family(Family::kRoles), "mallory", std::string(1, '\x01'));
    db.write(batch, true);
  });
  EXPECT_EQ(offline({"diff"}).exitCode, 1);
  ProcessResult rebuilt = offline({"rebuild"});
  EXPECT_EQ(rebuilt.exitCode, 0) << rebuilt;
  EXPECT_EQ(rebuilt.out.rfind("rebuilt the stored projection from " + std::to_string(n) + " verified entries: ", 0), 0u)
      << rebuilt;
  ProcessResult diff = offline({"diff"});
  EXPECT_EQ(diff.exitCode, 0) << diff;
  open();
  EXPECT_EQ(projection().verifyIndex().verify(w.bob.credential, ScopeMask{}, clock.now()).reason,
            VerifyReason::kOk);
  EXPECT_FALSE(store().get(Family::kRoles, "mallory").has_value());

  // From a log that does not verify nothing is rebuilt: the damaged table stays as it was.
  tamper([&](Store& db) {
    std::string bad = get(db, Family::kEvents, n / 2);
    bad[bad.size() / 2] = static_cast<char>(bad[bad.size() / 2] ^ 0x08);
    put(db, Family::kEvents, n / 2, bad);
    rocksdb::WriteBatch batch;
    batch.Delete(db.family(Family::kTokens), bob);
    db.write(batch, true);
  });
  ProcessResult refused = offline({"rebuild"});
  EXPECT_EQ(refused.exitCode, 1) << refused;
  EXPECT_NE(refused.err.find("the log does not verify at seq " + std::to_string(n / 2)), std::string::npos) << refused;
  EXPECT_NE(refused.err.find("nothing was rebuilt"), std::string::npos) << refused;
  tamper([&](Store& db) { EXPECT_FALSE(db.get(Family::kTokens, bob).has_value()); });

  // It works on a data directory only.
  ProcessResult remote = replay({"--server", "127.0.0.1:1", "rebuild"}, {{"TOKENLEDGER_TOKEN", "x"}});
  EXPECT_EQ(remote.exitCode, 2) << remote;
}

TEST_F(Replay, ReadOnlyOpenIsConsistentWhileTheWriterKeepsAppending) {
  Workload w = workload();
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::string writerError;
  std::thread writer([&] {
    try {
      for (int i = 0; i < 4000 && !stop.load(); ++i) {
        run(admin, CreateToken{"svc-load", "Load " + std::to_string(i), {Kind::kNever, 0}, scopes({"email:read"})});
        ++written;
      }
    } catch (const std::exception& e) {
      writerError = e.what();
    }
  });
  // Let the writer get going first (bounded: it writes a few hundred commands a second at least).
  for (int i = 0; i < 1000 && written.load() < 20; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  uint64_t appendedDuringRuns = 0;
  for (int round = 0; round < 3; ++round) {
    const uint64_t before = head();
    ProcessResult verify = offline({"verify"});
    const uint64_t after = head();
    EXPECT_EQ(verify.exitCode, 0) << verify;
    int64_t seen = intactEntries(verify.out);
    EXPECT_GE(seen, static_cast<int64_t>(before)) << verify;
    EXPECT_LE(seen, static_cast<int64_t>(after)) << verify;
    ProcessResult diff = offline({"diff"});
    EXPECT_EQ(diff.exitCode, 0) << diff;
    appendedDuringRuns += head() - before;
  }
  stop = true;
  writer.join();
  EXPECT_EQ(writerError, "");
  EXPECT_GT(appendedDuringRuns, 0u) << "the tool never ran while the writer appended";
}

// ---------------------------------------------------------------------------------------------
// 2. Tampering, found by `ledger-replay verify` with exit 1 and the first bad seq.

class TamperCli : public Replay {
 protected:
  void SetUp() override {
    Replay::SetUp();
    w = workload();
    n = head();
    mid = n / 2;
    ASSERT_GT(mid, 3u);
    close();
    ProcessResult clean = offline({"verify"});
    ASSERT_EQ(clean.exitCode, 0) << clean;
    ASSERT_EQ(intactEntries(clean.out), static_cast<int64_t>(n)) << clean;
  }
  void expectFailureAt(const std::vector<std::string>& args, uint64_t seq, const std::string& problem = "") {
    ProcessResult r = offline(args);
    EXPECT_EQ(r.exitCode, 1) << r;
    EXPECT_EQ(failureSeq(r.out), seq) << r;
    EXPECT_EQ(lines(r.out).size(), 1u) << r;
    if (!problem.empty()) {
      EXPECT_NE(r.out.find(problem), std::string::npos) << r;
    }
  }

  Workload w;
  uint64_t n = 0;
  uint64_t mid = 0;
};

TEST_F(TamperCli, FlippedEventByteFailsAtItsSeqAlsoWithChainOnly) {
  for (uint64_t seq : {uint64_t{1}, mid, n}) {
    std::string original;
    tamper([&](Store& db) {
      original = get(db, Family::kEvents, seq);
      std::string bad = original;
      bad[bad.size() / 2] = static_cast<char>(bad[bad.size() / 2] ^ 0x04);
      put(db, Family::kEvents, seq, bad);
    });
    SCOPED_TRACE("seq " + std::to_string(seq));
    expectFailureAt({"verify"}, seq);
    expectFailureAt({"verify", "--chain-only"}, seq);
    tamper([&](Store& db) { put(db, Family::kEvents, seq, original); });
  }
  EXPECT_EQ(offline({"verify"}).exitCode, 0);
}

TEST_F(TamperCli, DeletedEntryFailsAtItsSeq) {
  tamper([&](Store& db) {
    rocksdb::WriteBatch batch;
    batch.Delete(db.family(Family::kEvents), seqKey(mid));
    batch.Delete(db.family(Family::kSeals), seqKey(mid));
    db.write(batch, true);
  });
  expectFailureAt({"verify"}, mid, "missing");
  expectFailureAt({"verify", "--chain-only"}, mid, "missing");
}

TEST_F(TamperCli, SwappedEventsFailAtTheFirstOfThem) {
  tamper([&](Store& db) {
    std::string a = get(db, Family::kEvents, mid);
    std::string b = get(db, Family::kEvents, mid + 2);
    put(db, Family::kEvents, mid, b);
    put(db, Family::kEvents, mid + 2, a);
  });
  expectFailureAt({"verify"}, mid);
  expectFailureAt({"verify", "--chain-only"}, mid);
}

TEST_F(TamperCli, TruncatedTailFailsOnlyAgainstASavedCheckpointFileAlsoWithChainOnly) {
  const CheckpointInfo saved = w.checkpoint;
  ASSERT_LT(saved.seq, n);
  ASSERT_GT(saved.seq, 5u);
  const auto cp = scratchFile("cp.json", checkpointJson(saved) + "\n");
  ProcessResult extends = offline({"verify", "--against", cp.string()});
  EXPECT_EQ(extends.exitCode, 0) << extends;
  EXPECT_NE(extends.out.find("extends the given checkpoint at seq " + std::to_string(saved.seq)),
            std::string::npos) << extends;

  const uint64_t keep = saved.seq - 3;
  tamper([&](Store& db) {  // the tail and every stored checkpoint that would give it away
    rocksdb::WriteBatch batch;
    for (uint64_t seq = keep + 1; seq <= n; ++seq) {
      for (Family f : {Family::kEvents, Family::kSeals, Family::kCheckpoints}) batch.Delete(db.family(f), seqKey(seq));
    }
    db.write(batch, true);
  });
  ProcessResult bare = offline({"verify"});  // a bare hash chain cannot tell
  EXPECT_EQ(bare.exitCode, 0) << bare;
  EXPECT_EQ(intactEntries(bare.out), static_cast<int64_t>(keep)) << bare;
  expectFailureAt({"verify", "--against", cp.string()}, keep + 1, "truncated");
  expectFailureAt({"verify", "--chain-only", "--against", cp.string()}, keep + 1, "truncated");

  // A checkpoint that was forged (another hash at its seq) is no proof of anything either.
  CheckpointInfo forged = saved;
  forged.seq = keep - 1;
  forged.entryHash[3] ^= 0x40;
  const auto bad = scratchFile("forged.json", checkpointJson(forged));
  expectFailureAt({"verify", "--chain-only", "--against", bad.string()}, keep - 1, "checkpoint");
}

TEST_F(TamperCli, ForgedStoredCheckpointFailsEvenWithChainOnly) {
  const uint64_t at = w.checkpoint.seq;
  tamper([&](Store& db) {
    std::string stored = get(db, Family::kCheckpoints, at);
    CanonicalReader reader(stored);
    capnp::MallocMessageBuilder message;
    message.setRoot(reader.root<schema::Checkpoint>());
    auto cp = message.getRoot<schema::Checkpoint>();
    cp.setTimeMicros(cp.getTimeMicros() + kSecond);  // a claim its signature does not cover
    put(db, Family::kCheckpoints, at, canonicalBytes(cp.asReader()));
  });
  expectFailureAt({"verify"}, at, "checkpoint");
  expectFailureAt({"verify", "--chain-only"}, at, "checkpoint");
}

TEST_F(TamperCli, ResignedWithAnotherKeyUnderTheSameKeyIdFailsButChainOnlyDoesNotCheckSignatures) {
  std::string keyId;
  tamper([&](Store& db) {
    const std::string original = get(db, Family::kSeals, mid);
    keyId = sealKeyId(db, mid);
    SigningKey impostor = SigningKey::generate();
    ASSERT_NE(impostor.keyId(), keyId);
    put(db, Family::kSeals, mid, sealBytesWith(original, impostor.sign(sealHash(original)), keyId));
  });
  expectFailureAt({"verify"}, mid, "signature does not verify");
  // By design: --chain-only checks the chain and checkpoint signatures, not entry signatures.
  ProcessResult chainOnly = offline({"verify", "--chain-only"});
  EXPECT_EQ(chainOnly.exitCode, 0) << chainOnly;
  EXPECT_NE(chainOnly.out.find("signatures not checked"), std::string::npos) << chainOnly;
}

TEST_F(TamperCli, SignedByAKeyIdTheLogNeverIntroducedFailsEvenWithChainOnly) {
  std::string impostorId;
  tamper([&](Store& db) {
    const std::string original = get(db, Family::kSeals, mid);
    SigningKey impostor = SigningKey::generate();
    impostorId = impostor.keyId();
    put(db, Family::kSeals, mid, sealBytesWith(original, impostor.sign(sealHash(original)), impostorId));
  });
  expectFailureAt({"verify"}, mid, impostorId);
  expectFailureAt({"verify", "--chain-only"}, mid, impostorId);
}

// Usage: an intact, closed ledger to point the tool at.
class CliUsage : public TamperCli {};

TEST_F(CliUsage, UsageErrorsExitTwoWithTheUsageOnStderr) {
  const std::string d = dataDir().string();
  const std::vector<std::vector<std::string>> usage = {
      {},
      {"--data-dir", d},
      {"--data-dir", d, "verify", "--bogus"},
      {"--data-dir", d, "verify", "extra"},
      {"--data-dir", d, "frobnicate"},
      {"--data-dir", d, "table"},
      {"--data-dir", d, "table", "--as-of-seq"},
      {"--data-dir", d, "table", "--as-of-time", "yesterday"},
      {"--data-dir", d, "who-could", "--scope", "assignment:read"},
      {"--data-dir", d, "who-could", "--scope", "assignment:read", "--at", "2026-13-45"},
      {"--data-dir", d, "history"},
      {"--data-dir", d, "export"},
      {"--data-dir", d, "export", "--format", "xml"},
      {"--server", "127.0.0.1:1", "diff"},
      {"--server", "127.0.0.1:1", "verify"},  // no TOKENLEDGER_TOKEN
  };
  for (const auto& args : usage) {
    ProcessResult r = replay(args);
    EXPECT_EQ(r.exitCode, 2) << r;
    EXPECT_EQ(r.out, "") << r;
    EXPECT_TRUE(r.err.starts_with("ledger-replay: ")) << r;
    EXPECT_NE(r.err.find("usage: ledger-replay"), std::string::npos) << r;
  }
  // Well-formed requests that cannot be answered are exit 2 too, with a reason and no usage.
  const auto garbage = scratchFile("garbage.json", "{\"seq\": \"not a number\"");
  const std::vector<std::pair<std::vector<std::string>, std::string>> refused = {
      {{"table", "--as-of-seq", "abc"}, "number"},
      {{"table", "--as-of-seq", "999999"}, "999999"},
      {{"who-could", "--scope", "nosuch:read", "--at", "2026-06-01"}, "nosuch:read"},
      {{"verify", "--against", (scratch.path() / "absent.json").string()}, "absent.json"},
      {{"verify", "--against", garbage.string()}, "checkpoint"},
      {{"export-key", "--key-id", "0123456789abcdef"}, "0123456789abcdef"},
  };
  for (const auto& [args, reason] : refused) {
    ProcessResult r = offline(args);
    EXPECT_EQ(r.exitCode, 2) << r;
    EXPECT_EQ(r.out, "") << r;
    EXPECT_NE(r.err.find(reason), std::string::npos) << r;
    EXPECT_EQ(lines(r.err).size(), 1u) << r;
  }
  // $TOKENLEDGER_DATA_DIR stands in for --data-dir.
  ProcessResult env = command({LEDGER_REPLAY, "verify"}, {{"TOKENLEDGER_DATA_DIR", d}});
  EXPECT_EQ(env.exitCode, 0) << env;
  EXPECT_EQ(intactEntries(env.out), static_cast<int64_t>(n)) << env;
}

TEST_F(Replay, MissingDataDirExitsTwoWithAOneLineReason) {
  const auto missing = scratch.path() / "no-such-ledger";
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"verify"}, {"diff"}, {"table", "--as-of-seq", "1"}, {"export", "--format", "jsonl"}}) {
    args.insert(args.begin(), {"--data-dir", missing.string()});
    ProcessResult r = replay(args);
    EXPECT_EQ(r.exitCode, 2) << r;
    EXPECT_EQ(r.out, "") << r;
    EXPECT_EQ(lines(r.err).size(), 1u) << r;
    EXPECT_NE(r.err.find(missing.string()), std::string::npos) << r;
  }
  EXPECT_FALSE(std::filesystem::exists(missing)) << "a read-only tool created the data directory";
}

// A seq is a whole number: "2e9" is not seq 2 and "-1" is not seq 18446744073709551615; a port
// is at most 65535, and 65537 is not port 1. Answering a forensic question about another point
// of the log (or another server) than the one asked is worse than refusing.
TEST_F(Replay, MalformedNumbersAreUsageErrors) {
  workload();
  close();
  ProcessResult ok = offline({"table", "--as-of-seq", "2"});
  EXPECT_EQ(ok.exitCode, 0) << ok;
  EXPECT_TRUE(ok.out.starts_with("Token table as of seq 2 (")) << ok;
  for (const std::string bad : {"2e9", "2abc", "3.5", "-1", ""}) {
    ProcessResult r = offline({"table", "--as-of-seq", bad});
    EXPECT_EQ(r.exitCode, 2) << r;
    EXPECT_EQ(r.out, "") << r;
    EXPECT_EQ(r.err.find("18446744073709551615"), std::string::npos) << r;
  }
  ProcessResult port = replay({"--server", "127.0.0.1:65537", "verify"}, {{"TOKENLEDGER_TOKEN", adminCredential.encode()}});
  EXPECT_EQ(port.exitCode, 2) << port;
  EXPECT_EQ(port.err.find("127.0.0.1:1:"), std::string::npos) << "65537 was taken as port 1\n" << port;
}

// ---------------------------------------------------------------------------------------------
// 3. The table as of a seq or a time.

TEST_F(Replay, TableAsOfSeqAndTimeMatchesTheLiveTableCapturedThen) {
  RandomHistory h = randomWorkload(7, 260, 37);
  ASSERT_GE(h.snapshots.size(), 6u);
  std::set<TokenStatus> statusesSeen;
  for (const Snapshot& s : h.snapshots) {
    SCOPED_TRACE("snapshot at seq " + std::to_string(s.seq) + ", " + formatTime(s.time));
    std::vector<Row> atRows, laterRows;
    for (const Token& t : s.tokens) {
      atRows.push_back(tableRow(t, s.statusAt.at(t.sid)));
      laterRows.push_back(tableRow(t, s.statusLater.at(t.sid)));
      statusesSeen.insert(s.statusAt.at(t.sid));
    }

    // The library, bounded by seq and by time.
    MemoryState bySeq = replayLog(store(), ReplayBound{.toSeq = s.seq});
    EXPECT_EQ(bySeq.lastSeq(), s.seq);
    EXPECT_EQ(tokensOf(bySeq), s.tokens) << describeDifference(s.tokens, tokensOf(bySeq));
    for (const Token& t : tokensOf(bySeq)) {
      EXPECT_EQ(t.statusAt(s.time), s.statusAt.at(t.sid)) << t.sid;
      EXPECT_EQ(t.statusAt(s.later), s.statusLater.at(t.sid)) << t.sid;
    }
    for (int64_t moment : {s.time, s.later}) {
      MemoryState byTime = replayLog(store(), ReplayBound{.toTimeMicros = moment});
      EXPECT_EQ(byTime.lastSeq(), s.seq) << formatTime(moment);
      EXPECT_EQ(tokensOf(byTime), s.tokens) << describeDifference(s.tokens, tokensOf(byTime));
    }

    // The CLI.
    std::string title;
    ProcessResult r = offline({"table", "--as-of-seq", std::to_string(s.seq)});
    EXPECT_EQ(r.exitCode, 0) << r;
    EXPECT_EQ(cliRows(r, &title), atRows) << r;
    EXPECT_EQ(title, "Token table as of seq " + std::to_string(s.seq) + " (" + formatTime(s.time) + ")");
    r = offline({"table", "--as-of-time", formatTime(s.time)});
    EXPECT_EQ(r.exitCode, 0) << r;
    EXPECT_EQ(cliRows(r, &title), atRows) << r;
    EXPECT_EQ(title, "Token table as of seq " + std::to_string(s.seq) + " (" + formatTime(s.time) + ")");
    r = offline({"table", "--as-of-time", formatTime(s.later)});
    EXPECT_EQ(r.exitCode, 0) << r;
    EXPECT_EQ(cliRows(r, &title), laterRows) << r;
    EXPECT_EQ(title, "Token table as of seq " + std::to_string(s.seq) + " (" + formatTime(s.later) + ")");
  }
  EXPECT_EQ(statusesSeen.size(), 3u) << "the snapshots should include active, expired and revoked tokens";
  // The seconds before a snapshot's event belong to the state before it.
  const Snapshot& last = h.snapshots.back();
  MemoryState before = replayLog(store(), ReplayBound{.toTimeMicros = last.time - kSecond});
  EXPECT_EQ(before.lastSeq(), last.seq - 1);
  EXPECT_EQ(before.tokens().size(), last.tokens.size() - 1) << "only the snapshot's marker token is new";

  // Before the first event: an empty table. A bare date means midnight UTC.
  ProcessResult r = offline({"table", "--as-of-time", "2025-12-31"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_TRUE(cliRows(r).empty()) << r;
  EXPECT_TRUE(r.out.starts_with("Token table as of seq 0 (2025-12-31T00:00:00Z)\n")) << r;
}

// ---------------------------------------------------------------------------------------------
// 4. Who could use a scope at a moment.

TEST_F(Replay, WhoCouldExcludesRevokedExpiredLaterAndUnscopedTokensAndIncludesAllScopes) {
  const int64_t t0 = clock.now();
  const int64_t T = t0 + 4 * kHour;  // the moment asked about
  const Scopes S = scopes({"assignment:read"});
  auto create = [&](const std::string& owner, Scopes s, Expiration e = {Kind::kNever, 0}) {
    return run(admin, CreateToken{owner, "Token of " + owner, e, std::move(s)}).sids.front();
  };
  clock.set(t0 + kHour);
  const std::string A = create("svc-a", S);                                   // in
  const std::string B = create("svc-b", scopes({"assignment:read", "contact:read"}));
  const std::string C = create("svc-c", S, Expiration::custom(t0 + 3 * kHour));
  const std::string E = create("svc-e", scopes({"contact:read"}));            // lacks S
  const std::string F = create("svc-f", Scopes::allScopes());                 // in: All Scopes
  const std::string G = create("svc-g", S);                                   // revoked after T: in
  const std::string H = create("svc-h", S, Expiration::custom(T + kHour));    // expires after T: in
  const std::string I = create("svc-i", scopes({"contact:read"}));            // gains S after T
  const std::string J = create("svc-j", S);                                   // loses S after T: in
  const std::string K = create("svc-k", scopes({"assignment:write"}));        // write is not read
  const std::string L = create("svc-l", S, Expiration::custom(T));            // expires at T exactly
  const std::string M = create("svc-m", S);                                   // revoked at T exactly
  const std::string R = create("svc-r", S);                                   // rotated before T: in
  clock.set(t0 + 2 * kHour);
  run(admin, RevokeToken{B});
  run(admin, RotateToken{R});
  clock.set(T);
  run(admin, RevokeToken{M});
  const std::string N = create("svc-n", S);                                   // created at T: in
  clock.set(T + 30 * 60 * kSecond);
  const std::string D = create("svc-d", S);                                   // created after T
  clock.set(T + kHour);
  run(admin, RevokeToken{G});
  run(admin, ChangeScopes{I, scopes({"assignment:read", "contact:read"})});
  run(admin, ChangeScopes{J, scopes({"contact:read"})});
  const std::string alice = adminCredential.sidHex();  // the init token: All Scopes, never expires

  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  struct Question {
    std::string scope;
    int64_t at;
    std::vector<std::string> want;
  };
  const std::vector<Question> questions = {
      {"assignment:read", T, sorted({alice, A, F, G, H, J, N, R})},
      {"assignment:read", T + 2 * kHour, sorted({alice, A, F, I, N, R, D})},
      {"contact:read", T, sorted({alice, E, F, I})},
      {"roles:write", T, sorted({alice, F})},
      {"assignment:read", t0 - kDay, {}},
  };
  close();
  auto db = Store::open(dataDir() / "db", Store::Mode::kReadOnly, false);
  for (const auto& q : questions) {
    SCOPED_TRACE(q.scope + " at " + formatTime(q.at));
    std::vector<std::string> library;
    for (const Token& t : whoCould(*db, ScopeCatalog::builtin(), q.scope, q.at)) library.push_back(t.sid);
    EXPECT_EQ(library, q.want);

    ProcessResult r = offline({"who-could", "--scope", q.scope, "--at", formatTime(q.at)});
    EXPECT_EQ(r.exitCode, 0) << r;
    std::vector<std::string> out = lines(r.out);
    ASSERT_FALSE(out.empty()) << r;
    EXPECT_EQ(out[0], std::to_string(q.want.size()) + " token(s) could use " + q.scope + " at " + formatTime(q.at));
    std::vector<std::string> cli;
    for (size_t i = 2; i < out.size(); ++i) {
      Row row = columns(out[i]);
      ASSERT_EQ(row.size(), 5u) << out[i];
      cli.push_back(row[2]);
    }
    EXPECT_EQ(cli, q.want) << r;
  }
}

// ---------------------------------------------------------------------------------------------
// 5. History of a token, an owner, an actor.

TEST_F(Replay, HistoryByTokenOwnerAndActorPrintsExactlyTheirEventsInOrder) {
  std::vector<uint64_t> byBob, aboutBob, aboutA;  // expected seqs
  const uint64_t grantBob = run(admin, GrantRole{"bob", Role::kUser}).firstSeq;
  Login bob = tokenFor("bob", scopes({"tokens:read", "tokens:write", "assignment:read", "assignment:write"}));
  const uint64_t bobLogin = head();
  clock.advance(kHour);
  const int64_t t1 = clock.now();
  CommandResult a = run(bob.actor, CreateToken{"bob", "Vendor A", {}, scopes({"assignment:read"})}, "onboarding vendor A");
  const std::string sidA = a.sids.front();
  CommandResult b = run(admin, CreateToken{"bob", "Vendor B", {Kind::kYear, 0}, scopes({"assignment:write"})});
  const std::string sidB = b.sids.front();
  CommandResult other = run(admin, CreateToken{"carl", "Carl's", {}, scopes({"email:read"})});
  clock.advance(kHour);
  const int64_t t2 = clock.now();
  const uint64_t scopesA = run(bob.actor, ChangeScopes{sidA, scopes({"assignment:read", "assignment:write"})}).firstSeq;
  const uint64_t describeB = run(admin, SetDescription{sidB, "Vendor B (billing)"}).firstSeq;
  const uint64_t rotateA = run(bob.actor, RotateToken{sidA}, "suspected leak").firstSeq;
  run(admin, SetDescription{other.sids.front(), "Carl's integration"});
  clock.advance(kHour);
  const int64_t t3 = clock.now();
  const uint64_t revokeA = run(admin, RevokeToken{sidA}, "vendor contract ended").firstSeq;
  const uint64_t auditorBob = run(admin, GrantRole{"bob", Role::kAuditor}).firstSeq;
  run(admin, GrantRole{"carl", Role::kUser});
  CommandResult offboard = run(admin, RevokeAllFor{"bob"}, "offboarding");
  ASSERT_EQ(offboard.lastSeq - offboard.firstSeq, 1u) << "bob's login and Vendor B";
  EXPECT_REJECTED(ErrorCode::kUnauthenticated, bob.actor, RevokeToken{sidB});  // nothing recorded

  aboutA = {a.firstSeq, scopesA, rotateA, revokeA};
  byBob = {a.firstSeq, scopesA, rotateA};
  aboutBob = {grantBob, bobLogin, a.firstSeq, b.firstSeq, scopesA, describeB, rotateA, revokeA, auditorBob,
              offboard.firstSeq, offboard.lastSeq};
  close();

  auto seqsOf = [&](const ProcessResult& r) {
    EXPECT_EQ(r.exitCode, 0) << r;
    std::vector<uint64_t> seqs;
    for (const auto& line : lines(r.out)) seqs.push_back(historySeq(line));
    return seqs;
  };
  ProcessResult token = offline({"history", "--token", sidA});
  EXPECT_EQ(seqsOf(token), aboutA) << token;
  std::vector<std::string> tokenLines = lines(token.out);
  ASSERT_EQ(tokenLines.size(), 4u);
  EXPECT_EQ(tokenLines[0], seqText(a.firstSeq) + "  " + formatTime(t1) + "  bob  created " + sidA +
                               " for bob \"Vendor A\" scopes: assignment:read, expires " +
                               formatTime(t1 + 90 * kDay) + "  (onboarding vendor A)");
  EXPECT_EQ(tokenLines[1], seqText(scopesA) + "  " + formatTime(t2) + "  bob  scopes of " + sidA +
                               " set to assignment:read, assignment:write");
  EXPECT_EQ(tokenLines[2], seqText(rotateA) + "  " + formatTime(t2) + "  bob  rotated the secret of " +
                               sidA + "  (suspected leak)");
  EXPECT_EQ(tokenLines[3], seqText(revokeA) + "  " + formatTime(t3) + "  alice  revoked " + sidA +
                               "  (vendor contract ended)");

  ProcessResult owner = offline({"history", "--owner", "bob"});
  EXPECT_EQ(seqsOf(owner), aboutBob) << owner;
  EXPECT_NE(owner.out.find("granted auditor to bob"), std::string::npos) << owner;
  EXPECT_EQ(owner.out.find("carl"), std::string::npos) << owner;

  ProcessResult actor = offline({"history", "--actor", "bob"});
  EXPECT_EQ(seqsOf(actor), byBob) << actor;

  // A time window: only bob's events from t2 up to and including t2's last second.
  ProcessResult window = offline({"history", "--owner", "bob", "--from", formatTime(t2), "--to", formatTime(t2)});
  EXPECT_EQ(seqsOf(window), (std::vector<uint64_t>{scopesA, describeB, rotateA})) << window;

  ProcessResult nobody = offline({"history", "--token", kUnknownSid});
  EXPECT_EQ(nobody.exitCode, 0) << nobody;
  EXPECT_EQ(nobody.out, "") << nobody;
}

// ---------------------------------------------------------------------------------------------
// 6. Exports: JSON lines, Cap'n Proto messages for the stock `capnp`, keys for the stock `openssl`.

class ExportCli : public Replay {
 protected:
  void SetUp() override {
    Replay::SetUp();
    w = workload();
    n = head();
    close();
    auto db = Store::open(dataDir() / "db", Store::Mode::kReadOnly, false);
    for (uint64_t seq = 1; seq <= n; ++seq) {
      events.push_back(db->get(Family::kEvents, seqKey(seq)).value());
      seals.push_back(db->get(Family::kSeals, seqKey(seq)).value());
    }
  }
  Workload w;
  uint64_t n = 0;
  std::vector<std::string> events, seals;  // stored bytes, [seq - 1]
};

TEST_F(ExportCli, JsonLinesRoundTripToTheStoredCanonicalBytes) {
  const auto file = scratch.path() / "log.jsonl";
  ProcessResult toFile = offline({"export", "--format", "jsonl", "--out", file.string()});
  ASSERT_EQ(toFile.exitCode, 0) << toFile;
  ProcessResult toStdout = offline({"export", "--format", "jsonl"});
  ASSERT_EQ(toStdout.exitCode, 0) << toStdout;
  const std::string text = readFile(file);
  EXPECT_EQ(toStdout.out, text);

  std::vector<std::string> entries = lines(text);
  ASSERT_EQ(entries.size(), n);
  EXPECT_TRUE(text.ends_with("}\n"));
  capnp::JsonCodec codec;
  codec.handleByAnnotation<schema::LogEntry>();
  for (uint64_t seq = 1; seq <= n; ++seq) {
    const std::string& line = entries[seq - 1];
    SCOPED_TRACE("seq " + std::to_string(seq) + ": " + line.substr(0, 200));
    ASSERT_TRUE(line.starts_with("{") && line.ends_with("}"));
    capnp::MallocMessageBuilder message;
    auto entry = message.initRoot<schema::LogEntry>();
    ASSERT_NO_THROW(codec.decode(kj::ArrayPtr<const char>(line.data(), line.size()), entry));
    EXPECT_EQ(entry.asReader().getEvent().getSeq(), seq);
    EXPECT_TRUE(canonicalBytes(entry.asReader().getEvent()) == events[seq - 1]) << "event bytes differ";
    EXPECT_TRUE(canonicalBytes(entry.asReader().getSeal()) == seals[seq - 1]) << "seal bytes differ";
    // Hashes and signatures are hex, as the schema's $Json.hex asks.
    EXPECT_NE(line.find("\"entryHash\":\"" + toHex(sealHash(seals[seq - 1])) + "\""), std::string::npos);
  }
}

TEST_F(ExportCli, CapnpStreamReadsBackEntryByEntryAndThroughTheStockCapnpDecode) {
  const auto file = scratch.path() / "log.bin";
  ProcessResult r = offline({"export", "--format", "capnp", "--out", file.string()});
  ASSERT_EQ(r.exitCode, 0) << r;
  ProcessResult toStdout = offline({"export", "--format", "capnp"});
  ASSERT_EQ(toStdout.exitCode, 0) << toStdout;
  EXPECT_TRUE(toStdout.out == readFile(file)) << "stdout and --out differ";

  // Independently of the ledger's code: the chain as schemas/ledger.capnp documents it.
  Digest previous = sha256(asBytes("tokenledger/genesis/v1"));
  const uint8_t zero = 0;
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  struct stat st {};
  ASSERT_EQ(::fstat(fd, &st), 0);
  uint64_t count = 0;
  for (uint64_t seq = 1; seq <= n + 1 && ::lseek(fd, 0, SEEK_CUR) < st.st_size; ++seq) {
    capnp::StreamFdMessageReader message(fd);
    auto entry = message.getRoot<schema::LogEntry>();
    ++count;
    EXPECT_EQ(entry.getEvent().getSeq(), seq);
    ASSERT_LE(seq, n);
    EXPECT_TRUE(canonicalBytes(entry.getEvent()) == events[seq - 1]) << "seq " << seq;
    EXPECT_TRUE(canonicalBytes(entry.getSeal()) == seals[seq - 1]) << "seq " << seq;
    const std::string bytes = canonicalBytes(entry.getEvent());
    Digest hash = sha256({asBytes("tokenledger/entry/v1"), Bytes(&zero, 1), previous, asBytes(bytes)});
    EXPECT_EQ(toHex(hash), toHex(sealHash(seals[seq - 1]))) << "seq " << seq;
    previous = hash;
  }
  ::close(fd);
  EXPECT_EQ(count, n);

  ProcessResult decoded = command({"capnp", "decode", std::string(SCHEMA_DIR) + "/ledger.capnp", "LogEntry"}, {},
                               file.string());
  EXPECT_EQ(decoded.exitCode, 0) << decoded;
  for (uint64_t seq = 1; seq <= n; ++seq) {
    EXPECT_NE(decoded.out.find("seq = " + std::to_string(seq) + ",\n"), std::string::npos) << "seq " << seq;
  }
  size_t entries = 0;
  for (size_t at = decoded.out.find("( event = ("); at != std::string::npos; at = decoded.out.find("( event = (", at + 1)) {
    ++entries;
  }
  EXPECT_EQ(entries, n);
  EXPECT_NE(decoded.out.find("tokenRevoked"), std::string::npos);
  EXPECT_NE(decoded.out.find("signingKeyRotated"), std::string::npos);
}

TEST_F(ExportCli, ExportedKeyVerifiesExportedSignaturesWithTheStockOpenssl) {
  const std::string oldKey = sealKeyId(*Store::open(dataDir() / "db", Store::Mode::kReadOnly, false), 2);
  const std::string newKey = sealKeyId(*Store::open(dataDir() / "db", Store::Mode::kReadOnly, false), n);
  ASSERT_NE(oldKey, newKey) << "the workload rotates the signing key";

  auto exportKey = [&](std::vector<std::string> args, const std::string& name) {
    args.insert(args.begin(), "export-key");
    ProcessResult r = offline(args);
    EXPECT_EQ(r.exitCode, 0) << r;
    EXPECT_TRUE(r.out.starts_with("-----BEGIN PUBLIC KEY-----\n")) << r;
    return scratchFile(name, r.out);
  };
  const auto newest = exportKey({}, "newest.pem");
  const auto newById = exportKey({"--key-id", newKey}, "new.pem");
  const auto old = exportKey({"--key-id", oldKey}, "old.pem");
  EXPECT_EQ(readFile(newest), readFile(newById));
  EXPECT_NE(readFile(newest), readFile(old));

  // The entries to check come out of the JSON export, as an auditor would take them.
  ProcessResult json = offline({"export", "--format", "jsonl"});
  ASSERT_EQ(json.exitCode, 0) << json;
  std::vector<std::string> entries = lines(json.out);
  ASSERT_EQ(entries.size(), n);
  capnp::JsonCodec codec;
  codec.handleByAnnotation<schema::LogEntry>();
  auto openssl = [&](uint64_t seq, const std::filesystem::path& key, bool flip) {
    capnp::MallocMessageBuilder message;
    auto entry = message.initRoot<schema::LogEntry>();
    codec.decode(kj::ArrayPtr<const char>(entries[seq - 1].data(), entries[seq - 1].size()), entry);
    auto seal = entry.asReader().getSeal();
    std::string hash(reinterpret_cast<const char*>(seal.getEntryHash().begin()), seal.getEntryHash().size());
    std::string sig(reinterpret_cast<const char*>(seal.getSignature().begin()), seal.getSignature().size());
    EXPECT_EQ(hash.size(), 32u);
    EXPECT_EQ(sig.size(), 64u);
    if (flip) sig[17] = static_cast<char>(sig[17] ^ 0x01);
    const auto hashFile = scratchFile("hash.bin", hash);
    const auto sigFile = scratchFile("sig.bin", sig);
    return command({"openssl", "pkeyutl", "-verify", "-pubin", "-inkey", key.string(), "-rawin", "-in",
                    hashFile.string(), "-sigfile", sigFile.string()});
  };
  ProcessResult ok = openssl(n, newest, false);
  EXPECT_EQ(ok.exitCode, 0) << ok;
  EXPECT_NE(ok.out.find("Signature Verified Successfully"), std::string::npos) << ok;
  ok = openssl(2, old, false);
  EXPECT_EQ(ok.exitCode, 0) << ok;
  EXPECT_NE(ok.out.find("Signature Verified Successfully"), std::string::npos) << ok;

  ProcessResult flipped = openssl(n, newest, true);
  EXPECT_NE(flipped.exitCode, 0) << flipped;
  EXPECT_EQ(flipped.out.find("Signature Verified Successfully"), std::string::npos) << flipped;
  EXPECT_NE((flipped.out + flipped.err).find("Signature Verification Failure"), std::string::npos) << flipped;
  ProcessResult wrongKey = openssl(2, newest, false);
  EXPECT_NE(wrongKey.exitCode, 0) << wrongKey;
}

TEST_F(ExportCli, NoIssuedSecretAppearsInEitherExport) {
  ProcessResult json = offline({"export", "--format", "jsonl"});
  ASSERT_EQ(json.exitCode, 0) << json;
  ProcessResult binary = offline({"export", "--format", "capnp"});
  ASSERT_EQ(binary.exitCode, 0) << binary;
  ASSERT_GE(w.issued.size(), 10u);
  auto lower = [](std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
  };
  const std::string jsonLower = lower(json.out);
  for (const Credential& c : w.issued) {
    const std::string raw(reinterpret_cast<const char*>(c.secret.data()), c.secret.size());
    const std::string hex = toHex(c.secret);
    SCOPED_TRACE("credential of " + c.sidHex());
    for (const std::string* exported : {&json.out, &binary.out}) {
      EXPECT_EQ(exported->find(c.encode()), std::string::npos);
      EXPECT_EQ(exported->find(raw), std::string::npos);
      EXPECT_EQ(exported->find(hex), std::string::npos);
    }
    EXPECT_EQ(jsonLower.find(hex), std::string::npos);
    // What is there instead: the secret's SHA-256 (hex in JSON, raw in the binary). Finding it
    // proves the searches above looked in the right place.
    Digest hash = sha256(c.secret);
    EXPECT_NE(json.out.find(toHex(hash)), std::string::npos);
    EXPECT_NE(binary.out.find(std::string(reinterpret_cast<const char*>(hash.data()), hash.size())),
              std::string::npos);
  }
}

// ---------------------------------------------------------------------------------------------
// 7. Remote mode: the log mirrored through an auditor's session from a real server.

class RemoteReplay : public Replay {
 protected:
  void SetUp() override {
    // The server judges login tokens by the real clock: start the ledger's clock at now.
    clock.set(nowMicros() / kSecond * kSecond);
    Replay::SetUp();
  }
  void startServer() {
    rpc::ServerOptions options;
    options.port = 0;
    options.threads = 1;
    server = std::make_unique<rpc::Server>(*instance, options);
    address = "127.0.0.1:" + std::to_string(server->port());
  }
  // The tool's temporary mirror goes under mirrorTmp(), which must be empty again afterwards.
  ProcessResult remote(const std::string& token, std::vector<std::string> args) {
    args.insert(args.begin(), {"--server", address});
    std::filesystem::create_directories(mirrorTmp());
    return replay(std::move(args), {{"TOKENLEDGER_TOKEN", token}, {"TMPDIR", mirrorTmp().string()}});
  }
  std::filesystem::path mirrorTmp() const { return scratch.path() / "tmp"; }
  std::string address;
};

TEST_F(RemoteReplay, AuditorVerifiesRemotelyLikeOfflineAndAUserWithoutAuditReadIsRefused) {
  Login carol = principal("carol", Role::kAuditor, scopes({"audit:read", "tokens:read"}));
  Login bob = user("bob");
  Login dan = principal("dan", Role::kAuditor, scopes({"tokens:read"}));  // auditor, token lacks audit:read
  bulkCreate(1100, "svc-bulk");  // more than one page of history, and an automatic checkpoint
  CommandResult vendor = run(bob.actor, CreateToken{"bob", "Vendor A", {}, scopes({"assignment:read"})});
  run(bob.actor, RevokeToken{vendor.sids.front()}, "done");
  ASSERT_GT(head(), 1100u);
  startServer();

  ProcessResult local = offline({"verify"});  // beside the running server
  ASSERT_EQ(local.exitCode, 0) << local;
  EXPECT_EQ(intactEntries(local.out), static_cast<int64_t>(head())) << local;
  ProcessResult mirrored = remote(carol.credential.encode(), {"verify"});
  EXPECT_EQ(mirrored.exitCode, 0) << mirrored;
  EXPECT_EQ(mirrored.out, local.out) << "same entries, checkpoints and head hash";

  // A checkpoint saved with tokenctl is what --against reads.
  ProcessResult cp = command({TOKENCTL, "--server", address, "checkpoint"}, {{"TOKENLEDGER_TOKEN", carol.credential.encode()}});
  ASSERT_EQ(cp.exitCode, 0) << cp;
  const auto cpFile = scratchFile("cp.json", cp.out);
  const uint64_t cpSeq = head();
  for (ProcessResult r : {offline({"verify", "--against", cpFile.string()}),
                       remote(carol.credential.encode(), {"verify", "--chain-only", "--against", cpFile.string()})}) {
    EXPECT_EQ(r.exitCode, 0) << r;
    EXPECT_NE(r.out.find("extends the given checkpoint at seq " + std::to_string(cpSeq)), std::string::npos) << r;
  }

  // The other questions give the same answers remotely.
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"history", "--owner", "bob"},
           {"table", "--as-of-seq", std::to_string(head() - 1)},
           {"who-could", "--scope", "assignment:read", "--at", formatTime(clock.now())},
           {"export", "--format", "jsonl"}}) {
    ProcessResult there = remote(carol.credential.encode(), args);
    ProcessResult here = offline(args);
    EXPECT_EQ(there.exitCode, 0) << there;
    EXPECT_EQ(here.exitCode, 0) << here;
    EXPECT_TRUE(there.out == here.out) << args[0] << "\n" << there << "\n" << here;
  }

  // Without audit:read (a user; an auditor whose token lacks the scope): refused, exit 2.
  for (const Login* who : {&bob, &dan}) {
    ProcessResult refused = remote(who->credential.encode(), {"verify"});
    EXPECT_EQ(refused.exitCode, 2) << refused;
    EXPECT_EQ(refused.out, "") << refused;
    EXPECT_NE(refused.err.find("audit:read"), std::string::npos) << refused;
    EXPECT_NE(refused.err.find("may not read the audit history"), std::string::npos) << refused;
  }
  ProcessResult garbage = remote("tlp_not-a-credential", {"verify"});
  EXPECT_EQ(garbage.exitCode, 2) << garbage;
  EXPECT_EQ(garbage.out, "") << garbage;
  // Every mirror, including those of refused runs, was removed.
  EXPECT_TRUE(std::filesystem::is_empty(mirrorTmp()));

  // No server there any more: exit 2, naming the address.
  server.reset();
  ProcessResult unreachable = remote(carol.credential.encode(), {"verify"});
  EXPECT_EQ(unreachable.exitCode, 2) << unreachable;
  EXPECT_EQ(unreachable.out, "") << unreachable;
  EXPECT_NE(unreachable.err.find(address), std::string::npos) << unreachable;
  EXPECT_TRUE(std::filesystem::is_empty(mirrorTmp()));

  // The saved checkpoint later shows a truncation that the log alone cannot.
  const uint64_t n = head();
  const uint64_t keep = cpSeq - 4;
  tamper([&](Store& db) {
    rocksdb::WriteBatch batch;
    for (uint64_t seq = keep + 1; seq <= n; ++seq) {
      for (Family f : {Family::kEvents, Family::kSeals, Family::kCheckpoints}) batch.Delete(db.family(f), seqKey(seq));
    }
    db.write(batch, true);
  });
  ProcessResult bare = offline({"verify"});
  EXPECT_EQ(bare.exitCode, 0) << bare;
  ProcessResult against = offline({"verify", "--against", cpFile.string()});
  EXPECT_EQ(against.exitCode, 1) << against;
  EXPECT_EQ(failureSeq(against.out), keep + 1) << against;
}

}  // namespace
}  // namespace tokenledger::test
