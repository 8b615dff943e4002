// Crash safety, against the real thing (SPEC, "Reliability and security": kill -9 at any moment
// loses no acknowledged event and leaves chain, signatures and projection intact).
//
// The tokenledgerd binary runs as a process on one data directory. In every cycle four client
// threads (one rpc::Client each, logged in with the admin token `tokenledgerd init` printed)
// create and revoke tokens as fast as the server acknowledges them; 20-200 ms into the writes
// (seeded RNG) the server gets SIGKILL. Every few cycles it is also killed while it starts up,
// i.e. during RocksDB's recovery. After every kill, with the server down, the database is opened
// read-only and checked:
//   - seqs of events and seals run gap-free from 1 to the head;
//   - the head grew by at least the acknowledged events and at most by what was in flight;
//   - every acknowledged write is there with the content the client was told (its event at the
//     acknowledged seq, and the token row: owner, description, scopes, secret hash, revocation);
//   - verifyLog (chain, every signature, every checkpoint) is intact;
//   - diffStored(store, replayLog(store)) is empty.
// After every restart, over RPC: the head is the one found offline and verifyBatch answers
// every acknowledged credential as its state says (ok / revoked).
//
// TOKENLEDGER_CRASH_SEED and TOKENLEDGER_CRASH_CYCLES override the seed and the cycle count.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ledger/log_verifier.h"
#include "ledger/token_codec.h"
#include "projections/rebuild.h"
#include "process_support.h"
#include "rpc/client.h"
#include "rpc/wire.h"
#include "rpc_support.h"

#ifndef TOKENLEDGERD
#error "TOKENLEDGERD must name the built tokenledgerd binary"
#endif

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace tokenledger::test {
namespace {

using namespace std::chrono_literals;

constexpr int kWorkers = 4;
constexpr int kDefaultCycles = 24;
constexpr int kMinCycles = 20;
constexpr uint64_t kDefaultSeed = 20261123;
constexpr int kMaxOpsPerWorkerPerCycle = 20'000;
constexpr auto kCycleLimit = 20s;      // a cycle's writes: the kill comes long before
constexpr auto kTimeBudget = 42s;      // after kMinCycles, no new cycle starts past this
const std::vector<std::string> kScopeIds = {"assignment:read", "assignment:write", "contact:read",
                                            "message:read",    "message:write",    "email:read"};

uint64_t envNumber(const char* name, uint64_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  return std::strtoull(text, nullptr, 10);
}

// ---------------------------------------------------------------------------------------------
// What the clients were told.

struct AckedToken {
  Credential credential;
  std::string sid;
  std::string owner;
  std::string description;
  Scopes scopes;
  int worker = 0;
  uint64_t createdSeq = 0;
  uint64_t revokedSeq = 0;      // > 0: a revoke of it was acknowledged at this seq
  bool revoked = false;         // what its state must be from now on
  bool revokeUnknown = false;   // a revoke was sent but not answered: either state until checked
};

struct WorkerReport {
  std::vector<AckedToken> created;
  std::vector<std::pair<std::string, uint64_t>> revoked;  // sid, acknowledged seq
  std::vector<std::string> revokeInFlight;                // sid of an unanswered revoke
  int createsInFlight = 0;                                // unanswered creates (0 or 1)
  std::vector<std::string> unexpected;                    // failures other than the kill
};

std::string describeError(const kj::Exception& e) {
  Error error = rpc::fromKjException(e);
  return std::string(errorCodeName(error.code())) + ": " + e.getDescription().cStr();
}

// One client thread's cycle: creates (3 of 4) and revokes of its own active tokens until the
// server goes away. `killed` is set just before the SIGKILL: a lost connection after it is
// expected, any failure before it (or any failure that is not a lost connection) is not.
void runWorker(int worker, int cycle, uint16_t port, const std::string& adminToken, uint64_t seed,
               std::vector<std::string> revocable, const std::atomic<bool>& killed,
               std::atomic<int>& acknowledged, WorkerReport& out) {
  std::mt19937_64 rng(seed);
  const auto deadline = SteadyClock::now() + kCycleLimit;
  std::string pendingRevoke;
  bool pendingCreate = false;
  auto failed = [&](const std::string& what, bool lostConnection) {
    if (!pendingRevoke.empty()) out.revokeInFlight.push_back(pendingRevoke);
    if (pendingCreate) ++out.createsInFlight;
    if (!lostConnection || !killed.load()) {
      out.unexpected.push_back("worker " + std::to_string(worker) + " (killed: " +
                               (killed.load() ? "yes" : "no") + "): " + what);
    }
  };
  try {
    rpc::Client client(rpc::ClientOptions{.port = port});
    auto& ws = client.waitScope();
    auto session = loginVia(client.ledger(), ws, adminToken);
    for (int i = 0; i < kMaxOpsPerWorkerPerCycle; ++i) {
      if (SteadyClock::now() > deadline) {
        out.unexpected.push_back("worker " + std::to_string(worker) +
                                 ": the server was not killed within the cycle limit");
        return;
      }
      if (!revocable.empty() && rng() % 4 == 0) {
        size_t pick = rng() % revocable.size();
        std::string sid = revocable[pick];
        revocable.erase(revocable.begin() + static_cast<std::ptrdiff_t>(pick));
        auto request = session.revokeRequest();
        request.setSid(sid);
        request.setReason("crash test cycle " + std::to_string(cycle));
        pendingRevoke = sid;
        auto response = waitFor(request.send(), ws);
        pendingRevoke.clear();
        auto token = response.getToken();
        if (token.getSid() != sid || token.getStatus() != wire::TokenStatus::REVOKED) {
          out.unexpected.push_back("revoke of " + sid + " answered with token " +
                                   std::string(token.getSid().cStr()) + " not revoked");
        }
        out.revoked.emplace_back(sid, token.getLastSeq());
      } else {
        AckedToken t;
        t.worker = worker;
        t.owner = "crash-w" + std::to_string(worker);
        t.description = "cycle " + std::to_string(cycle) + " worker " + std::to_string(worker) +
                        " #" + std::to_string(i);
        std::vector<std::string> ids;
        for (const auto& id : kScopeIds) {
          if (rng() % 2 == 0) ids.push_back(id);
        }
        if (ids.empty()) ids.push_back(kScopeIds[rng() % kScopeIds.size()]);
        t.scopes = Scopes::of(ids);
        auto request = session.createTokenRequest();
        request.setOwner(t.owner);
        request.setDescription(t.description);
        request.initExpiration().setYear();
        auto list = request.initScopes().initSelected(static_cast<unsigned>(t.scopes.selected.size()));
        for (unsigned k = 0; k < list.size(); ++k) list.set(k, t.scopes.selected[k]);
        pendingCreate = true;
        auto response = waitFor(request.send(), ws);
        pendingCreate = false;
        auto credential = parseCredential(response.getCredential().cStr());
        auto token = response.getToken();
        if (!credential || credential->sidHex() != token.getSid().cStr()) {
          out.unexpected.push_back("createToken answered with a credential that is not the token's");
          continue;
        }
        t.credential = *credential;
        t.sid = token.getSid();
        t.createdSeq = token.getLastSeq();
        if (token.getOwner() != t.owner || token.getDescription() != t.description ||
            !(scopesFrom(token.getScopes()) == t.scopes)) {
          out.unexpected.push_back("createToken answered with other content for " + t.sid);
        }
        revocable.push_back(t.sid);
        out.created.push_back(std::move(t));
      }
      acknowledged.fetch_add(1);
    }
    out.unexpected.push_back("worker " + std::to_string(worker) + " ran out of operations");
  } catch (const kj::Exception& e) {
    failed(describeError(e), e.getType() == kj::Exception::Type::DISCONNECTED);
  } catch (const std::exception& e) {
    failed(e.what(), false);
  }
}

// ---------------------------------------------------------------------------------------------

class CrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    adminToken = initLedger(tokenledgerd(), dataDir(), "crash-admin", logs.path());
    auto store = Store::open(dataDir() / "db", Store::Mode::kReadOnly, false);
    head = verifyLog(*store, {.signatures = true}).entries;
    ASSERT_GT(head, 0u);
    server = std::make_unique<ServerProcess>(
        ServerProcess::Spec{tokenledgerd(), dataDir(), logs.path(), false, {}});
  }

  std::filesystem::path dataDir() const { return data.path() / "ledger"; }

  // With the server down: the stored log and projection against everything acknowledged.
  // `minGrowth`/`maxGrowth` bound how far the head may have moved since the last check.
  void checkOffline(const std::string& when, uint64_t minGrowth, uint64_t maxGrowth) {
    SCOPED_TRACE(when);
    auto store = Store::open(dataDir() / "db", Store::Mode::kReadOnly, false);

    uint64_t events = 0;
    auto it = store->iterate(Family::kEvents);
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      ++events;
      if (seqFromKey(it->key().ToStringView()) != events) {
        ADD_FAILURE() << "event seqs are not gap-free: the " << events << "th event has seq "
                      << seqFromKey(it->key().ToStringView());
        return;
      }
    }
    uint64_t seals = 0;
    auto sealIt = store->iterate(Family::kSeals);
    for (sealIt->SeekToFirst(); sealIt->Valid(); sealIt->Next()) {
      ++seals;
      if (seqFromKey(sealIt->key().ToStringView()) != seals) {
        ADD_FAILURE() << "seal seqs are not gap-free at " << seals;
        return;
      }
    }
    EXPECT_EQ(seals, events) << "events and seals disagree on the head";
    EXPECT_GE(events, head + minGrowth) << "acknowledged events are missing: head " << events
                                        << ", before " << head << ", acknowledged since "
                                        << minGrowth;
    EXPECT_LE(events, head + maxGrowth) << "more events than commands were sent: head " << events
                                        << ", before " << head << ", sent at most " << maxGrowth;
    head = events;

    VerifyReport report = verifyLog(*store, {.signatures = true, .threads = 2});
    EXPECT_TRUE(report.intact) << "seq " << report.firstBadSeq << ": " << report.problem;
    EXPECT_EQ(report.entries, events);
    ++verifications;

    MemoryState replayed = replayLog(*store);
    auto diff = diffStored(*store, replayed);
    EXPECT_TRUE(diff.empty()) << diff.size() << " differences between the stored projection and "
                              << "the replayed log, first: " << diff.front();

    for (AckedToken& t : tokens) {
      SCOPED_TRACE("token " + t.sid + " (" + t.description + ")");
      ASSERT_LE(t.createdSeq, events) << "an acknowledged create is beyond the head";
      auto created = readEvent(*store, t.createdSeq);
      auto e = created.event();
      ASSERT_TRUE(e.isTokenCreated()) << "seq " << t.createdSeq << " is not the acknowledged create";
      auto c = e.getTokenCreated();
      EXPECT_EQ(std::string(c.getSid().cStr()), t.sid);
      EXPECT_EQ(std::string(c.getOwner().cStr()), t.owner);
      EXPECT_EQ(std::string(c.getDescription().cStr()), t.description);
      EXPECT_EQ(scopesFrom(c.getScopes()), t.scopes);
      const Digest secretHash = sha256(Bytes(t.credential.secret.data(), t.credential.secret.size()));
      EXPECT_TRUE(std::equal(secretHash.begin(), secretHash.end(), c.getSecretHash().begin(),
                             c.getSecretHash().end()))
          << "the stored secret hash is not the acknowledged secret's";
      ++eventChecks;
      if (t.revokedSeq != 0) {
        ASSERT_LE(t.revokedSeq, events) << "an acknowledged revoke is beyond the head";
        auto revoked = readEvent(*store, t.revokedSeq);
        ASSERT_TRUE(revoked.event().isTokenRevoked()) << "seq " << t.revokedSeq
                                                      << " is not the acknowledged revoke";
        EXPECT_EQ(std::string(revoked.event().getTokenRevoked().getSid().cStr()), t.sid);
        ++eventChecks;
      }
      auto row = replayed.token(t.sid);
      ASSERT_TRUE(row.has_value()) << "an acknowledged token is not in the table";
      EXPECT_EQ(row->owner, t.owner);
      EXPECT_EQ(row->description, t.description);
      EXPECT_EQ(row->scopes, t.scopes);
      EXPECT_EQ(row->secretHash, secretHash);
      if (t.revokeUnknown) {
        t.revoked = row->revoked;  // settled now: it must stay so
        t.revokeUnknown = false;
      } else {
        EXPECT_EQ(row->revoked, t.revoked) << (t.revoked ? "an acknowledged revoke was lost"
                                                         : "a token was revoked without a revoke");
      }
    }
  }

  // After a restart, over RPC: the head and every acknowledged credential.
  void checkOnline(uint16_t port) {
    rpc::Client client(rpc::ClientOptions{.port = port});
    EXPECT_EQ(headVia(client.ledger(), client.waitScope()), head) << "the restarted server reports another head";
    std::vector<const AckedToken*> all;
    for (const auto& t : tokens) all.push_back(&t);
    for (size_t from = 0; from < all.size(); from += 1000) {
      const size_t n = std::min<size_t>(1000, all.size() - from);
      auto request = client.ledger().verifyBatchRequest();
      auto list = request.initRequests(static_cast<unsigned>(n));
      for (size_t i = 0; i < n; ++i) {
        list[static_cast<unsigned>(i)].initCredential().setToken(all[from + i]->credential.encode());
      }
      auto response = waitFor(request.send(), client.waitScope());  // owns `results`
      auto results = response.getResults();
      ASSERT_EQ(results.size(), n);
      for (size_t i = 0; i < n; ++i) {
        const AckedToken& t = *all[from + i];
        auto r = results[static_cast<unsigned>(i)];
        auto expected = t.revoked ? wire::VerifyReason::REVOKED : wire::VerifyReason::OK;
        EXPECT_EQ(static_cast<int>(r.getReason()), static_cast<int>(expected))
            << "verify of " << t.sid << " (revoked: " << t.revoked << ")";
        EXPECT_EQ(r.getValid(), !t.revoked);
        ++verifyChecks;
      }
    }
  }

  TempDir data{"tokenledger-crash"};
  TempDir logs{"tokenledger-crash-logs"};
  std::string adminToken;
  std::unique_ptr<ServerProcess> server;
  uint64_t head = 0;           // the head found by the last offline check
  std::vector<AckedToken> tokens;
  uint64_t eventChecks = 0;    // acknowledged events found again, summed over all checks
  uint64_t verifyChecks = 0;   // credentials verified over RPC after restarts
  uint64_t verifications = 0;  // full verifyLog runs
};

TEST_F(CrashTest, SigkillUnderConcurrentWritesLosesNoAcknowledgedEvent) {
  const uint64_t seed = envNumber("TOKENLEDGER_CRASH_SEED", kDefaultSeed);
  const int cycles = static_cast<int>(envNumber("TOKENLEDGER_CRASH_CYCLES", kDefaultCycles));
  std::cout << "[crash] seed " << seed << " (TOKENLEDGER_CRASH_SEED), " << cycles << " cycles\n";
  std::mt19937_64 rng(seed);
  const auto started = SteadyClock::now();

  int survived = 0;
  int startupKills = 0;
  int killsBeforeServing = 0;  // of the start-up kills: before it logged that it serves
  uint64_t acknowledgedEvents = 0;
  uint64_t createsAcked = 0, revokesAcked = 0, unanswered = 0;
  for (int cycle = 0; cycle < cycles; ++cycle) {
    SCOPED_TRACE("cycle " + std::to_string(cycle) + " of seed " + std::to_string(seed));
    if (cycle >= kMinCycles && SteadyClock::now() - started > kTimeBudget) {
      std::cout << "[crash] time budget reached after " << cycle << " cycles\n";
      break;
    }

    // Every fourth cycle: a kill while the server starts (RocksDB recovery, projection load).
    if (cycle % 4 == 3) {
      server->launch();
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 60));
      server->kill();
      ++startupKills;
      if (!ServerProcess::servingPort(readFile(server->stderrPath()))) ++killsBeforeServing;
      checkOffline("after a kill during start-up", 0, 0);
      if (HasFatalFailure()) return;
    }

    uint16_t port = 0;
    try {
      port = server->start();
    } catch (const std::exception& e) {
      FAIL() << "tokenledgerd did not restart after the crash: " << e.what();
    }
    checkOnline(port);
    if (HasFatalFailure()) return;

    // The writers. Each gets its own active tokens of earlier cycles to revoke.
    std::atomic<bool> killed{false};
    std::atomic<int> acknowledged{0};
    std::vector<WorkerReport> reports(kWorkers);
    std::vector<std::thread> threads;
    for (int w = 0; w < kWorkers; ++w) {
      std::vector<std::string> revocable;
      for (const auto& t : tokens) {
        if (t.worker == w && !t.revoked && !t.revokeUnknown) revocable.push_back(t.sid);
      }
      threads.emplace_back(runWorker, w, cycle, port, adminToken, rng(), std::move(revocable),
                           std::cref(killed), std::ref(acknowledged), std::ref(reports[w]));
    }
    // Wait for the writes to flow, then kill 20-200 ms into them.
    const auto flowDeadline = SteadyClock::now() + 10s;
    while (acknowledged.load() < kWorkers && SteadyClock::now() < flowDeadline) {
      std::this_thread::sleep_for(1ms);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 181));
    const bool wasRunning = server->running();
    killed.store(true);
    const int status = server->kill();
    for (auto& t : threads) t.join();
    EXPECT_TRUE(wasRunning) << "tokenledgerd died by itself under load: "
                            << describeWaitStatus(status) << "\n"
                            << readFile(server->stderrPath());
    EXPECT_GE(acknowledged.load(), kWorkers) << "the writes never got going";

    uint64_t acked = 0, inFlight = 0;
    for (auto& report : reports) {
      for (const auto& u : report.unexpected) ADD_FAILURE() << u;
      for (auto& t : report.created) tokens.push_back(std::move(t));
      acked += report.created.size() + report.revoked.size();
      createsAcked += report.created.size();
      revokesAcked += report.revoked.size();
      inFlight += report.revokeInFlight.size() + static_cast<uint64_t>(report.createsInFlight);
    }
    for (auto& report : reports) {
      for (const auto& revoked : report.revoked) {
        auto it = std::find_if(tokens.begin(), tokens.end(),
                               [&](const AckedToken& t) { return t.sid == revoked.first; });
        ASSERT_NE(it, tokens.end());
        it->revoked = true;
        it->revokedSeq = revoked.second;
      }
      for (const auto& sid : report.revokeInFlight) {
        auto it = std::find_if(tokens.begin(), tokens.end(), [&](const AckedToken& t) { return t.sid == sid; });
        ASSERT_NE(it, tokens.end());
        it->revokeUnknown = true;
      }
    }
    acknowledgedEvents += acked;
    unanswered += inFlight;

    checkOffline("after the kill", acked, acked + inFlight);
    if (HasFatalFailure()) return;
    if (!HasFailure()) ++survived;
  }

  // One last start: the final state serves and answers for every credential.
  try {
    checkOnline(server->start());
  } catch (const std::exception& e) {
    FAIL() << "tokenledgerd did not start after the last crash: " << e.what();
  }
  auto stopped = server->stop();
  ASSERT_TRUE(stopped.has_value()) << "tokenledgerd did not stop on SIGTERM";
  EXPECT_TRUE(WIFEXITED(*stopped) && WEXITSTATUS(*stopped) == 0) << describeWaitStatus(*stopped);

  const double seconds = std::chrono::duration<double>(SteadyClock::now() - started).count();
  EXPECT_GE(survived, kMinCycles);
  RecordProperty("seed", std::to_string(seed));
  RecordProperty("cycles_survived", survived);
  RecordProperty("startup_kills", startupKills);
  RecordProperty("startup_kills_before_serving", killsBeforeServing);
  RecordProperty("acknowledged_events", std::to_string(acknowledgedEvents));
  RecordProperty("event_checks", std::to_string(eventChecks));
  RecordProperty("verify_checks", std::to_string(verifyChecks));
  RecordProperty("head", std::to_string(head));
  std::cout << "[crash] " << survived << " kill -9 cycles survived (" << startupKills
            << " more kills during start-up, " << killsBeforeServing
            << " of them before it served), " << acknowledgedEvents
            << " acknowledged events (" << createsAcked << " creates, " << revokesAcked
            << " revokes; " << unanswered << " commands unanswered at the kill), "
            << eventChecks << " acknowledged-event checks, " << verifyChecks
            << " credential verifications over RPC, " << verifications
            << " full verifyLog runs; final head " << head << "; " << seconds << " s\n";
}

}  // namespace
}  // namespace tokenledger::test
