// Storage faults and secrets, against the real tokenledgerd process (SPEC, "Reliability and
// security": bad input gets a clear error and changes nothing; secrets never reach logs, the
// database or exports).
//
// Storage faults are injected with a file-size limit (RLIMIT_FSIZE) on the running server,
// set and lifted from outside with prlimit(2) as util-linux `prlimit --pid` would: the server
// ignores SIGXFSZ (ChildProcess does that before exec, as a service manager could), so every
// write that would grow a file past the limit fails with EFBIG, which is what RocksDB sees on a
// full disk. A limit just above the current WAL size cuts the next WAL record in the middle; a
// limit of 0 then keeps every file (WAL, SST, MANIFEST) from growing until it is lifted. Needs
// no mount and no root. One more test fills a real (tmpfs) filesystem for ENOSPC, where
// mounting one in a private mount namespace is allowed, and is skipped elsewhere.
//
// The secrets test runs a full workload through tokenledgerd --verbose and scans its logs,
// every file of its data directory, every key and value in its database and every error
// message clients got for every issued secret.
#include <capnp/message.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
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
#ifndef LEDGER_REPLAY
#error "LEDGER_REPLAY must name the built ledger-replay binary"
#endif

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace tokenledger::test {
namespace {

using namespace std::chrono_literals;

// The last lines of a log, for failure messages.
std::string tail(const std::string& text, size_t bytes = 6000) {
  return text.size() <= bytes ? text : "..." + text.substr(text.size() - bytes);
}

// ---------------------------------------------------------------------------------------------
// One client on the test thread, logged in as one principal, with the calls the tests make.
class Caller {
 public:
  Caller(uint16_t port, const std::string& token)
      : client_(rpc::ClientOptions{.port = port}), session_(login(token)) {}

  kj::WaitScope& ws() { return client_.waitScope(); }
  wire::TokenLedger::Client ledger() { return client_.ledger(); }
  wire::Session::Client& session() { return session_; }

  wire::Session::Client login(const std::string& token) { return loginVia(ledger(), ws(), token); }
  uint64_t head() { return headVia(ledger(), ws()); }
  // A new token; returns its credential.
  Credential create(const std::string& owner, const std::string& description,
                    const std::vector<std::string>& scopes = {"assignment:read"},
                    wire::Session::Client* as = nullptr) {
    auto request = (as ? *as : session_).createTokenRequest();
    request.setOwner(owner);
    request.setDescription(description);
    request.initExpiration().setDays90();
    auto list = request.initScopes().initSelected(static_cast<unsigned>(scopes.size()));
    for (unsigned i = 0; i < list.size(); ++i) list.set(i, scopes[i]);
    auto response = waitFor(request.send(), ws());
    auto credential = parseCredential(response.getCredential().cStr());
    if (!credential) throw std::runtime_error("createToken returned no credential");
    return *credential;
  }
  void revoke(const std::string& sid, wire::Session::Client* as = nullptr) {
    auto request = (as ? *as : session_).revokeRequest();
    request.setSid(sid);
    request.setReason("no longer needed");
    waitFor(request.send(), ws());
  }
  void setDescription(const std::string& sid, const std::string& description) {
    auto request = session_.setDescriptionRequest();
    request.setSid(sid);
    request.setDescription(description);
    waitFor(request.send(), ws());
  }
  void grantRole(const std::string& principal, schema::Role role) {
    auto request = session_.grantRoleRequest();
    request.setPrincipal(principal);
    request.setRole(role);
    waitFor(request.send(), ws());
  }
  void makeCheckpoint() {
    auto request = session_.makeCheckpointRequest();
    waitFor(request.send(), ws());
  }
  wire::VerifyReason verify(const std::string& token) {
    auto request = ledger().verifyRequest();
    request.initRequest().initCredential().setToken(token);
    return waitFor(request.send(), ws()).getResult().getReason();
  }
  // Every token of every owner (active and revoked): sid -> description.
  std::map<std::string, std::string> allTokens() {
    std::map<std::string, std::string> out;
    forEachToken([&](wire::TokenInfo::Reader t) { out[t.getSid()] = t.getDescription(); });
    return out;
  }
  std::set<std::string> revokedSids() {
    std::set<std::string> out;
    forEachToken([&](wire::TokenInfo::Reader t) {
      if (t.getStatus() == wire::TokenStatus::REVOKED) out.insert(t.getSid());
    });
    return out;
  }
  template <typename F>
  void forEachToken(F&& f) {
    std::string after;
    for (int page = 0; page < 1000; ++page) {
      auto request = session_.listTokensRequest();
      auto filter = request.initFilter();
      filter.setShowAll(true);
      filter.setAfter(after);
      filter.setLimit(500);
      auto response = waitFor(request.send(), ws());
      for (auto t : response.getTokens()) f(t);
      after = response.getNextAfter();
      if (after.empty()) return;
    }
    throw std::runtime_error("listTokens did not end");
  }

 private:
  rpc::Client client_;
  wire::Session::Client session_;
};

// ---------------------------------------------------------------------------------------------
// The fault: RLIMIT_FSIZE of the running server.

void setFileSizeLimit(pid_t pid, std::optional<uint64_t> bytes) {
  rlimit current{};
  ASSERT_EQ(::prlimit(pid, RLIMIT_FSIZE, nullptr, &current), 0) << "prlimit: errno " << errno;
  rlimit wanted = current;
  wanted.rlim_cur = bytes ? static_cast<rlim_t>(*bytes) : current.rlim_max;
  ASSERT_EQ(::prlimit(pid, RLIMIT_FSIZE, &wanted, nullptr), 0) << "prlimit: errno " << errno;
}

// The size of the newest RocksDB write-ahead log (<number>.log) in `dbDir`.
uint64_t walBytes(const std::filesystem::path& dbDir) {
  uint64_t newest = 0, size = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dbDir)) {
    if (entry.path().extension() != ".log") continue;
    uint64_t number = std::strtoull(entry.path().stem().c_str(), nullptr, 10);
    if (number >= newest) {
      newest = number;
      size = entry.file_size();
    }
  }
  return size;
}

class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    adminToken = initLedger(tokenledgerd(), dataDir(), "admin", logs.path());
    server = std::make_unique<ServerProcess>(
        ServerProcess::Spec{tokenledgerd(), dataDir(), logs.path(), false, {}});
  }

  // On failure: whether the server still runs and what it logged, for the diagnosis.
  void TearDown() override {
    if (HasFailure() && server && server->starts() > 0) {
      const bool running = server->running();
      std::cout << "[fault] tokenledgerd " << (running ? "still runs" : "has ended: ")
                << (running ? "" : describeWaitStatus(server->kill())) << "; its stderr:\n"
                << tail(readFile(server->stderrPath())) << "\n";
    }
  }

  std::filesystem::path dataDir() const { return data.path() / "ledger"; }
  std::filesystem::path dbDir() const { return dataDir() / "db"; }

  // A read-only Store, retried while RocksDB reports a file that vanished between reading the
  // MANIFEST and opening it: beside a running writer that has just flushed and compacted (as
  // DB::Resume() does), OpenForReadOnly races with the writer deleting obsolete SST files.
  std::unique_ptr<Store> openReadOnly(const std::filesystem::path& db) {
    std::string last;
    for (int attempt = 0; attempt < 20; ++attempt) {
      try {
        return Store::open(db, Store::Mode::kReadOnly, false);
      } catch (const Error& e) {
        last = e.what();
        if (last.find("No such file") == std::string::npos) break;
        ++readOnlyRetries;
        std::this_thread::sleep_for(50ms);
      }
    }
    ADD_FAILURE() << "cannot open the database read-only: " << last;
    return nullptr;
  }

  // The stored log and projection (read-only; also beside the running server): intact, with
  // `head` entries, the projection equal to the replayed log, every `present` token in it with
  // its description and none of the `absent` descriptions anywhere.
  void checkStored(uint64_t head, const std::map<std::string, std::string>& present,
                   const std::vector<std::string>& absentDescriptions) {
    checkStoredIn(dbDir(), head, present, absentDescriptions);
  }
  void checkStoredIn(const std::filesystem::path& db, uint64_t head,
                     const std::map<std::string, std::string>& present,
                     const std::vector<std::string>& absentDescriptions) {
    auto store = openReadOnly(db);
    if (!store) return;
    VerifyReport report = verifyLog(*store, {.signatures = true});
    EXPECT_TRUE(report.intact) << "seq " << report.firstBadSeq << ": " << report.problem;
    EXPECT_EQ(report.entries, head) << "the stored head is not the one the server reports";
    MemoryState replayed = replayLog(*store);
    auto diff = diffStored(*store, replayed);
    EXPECT_TRUE(diff.empty()) << diff.size() << " differences, first: " << diff.front();
    for (const auto& [sid, description] : present) {
      auto token = replayed.token(sid);
      ASSERT_TRUE(token.has_value()) << "acknowledged token " << sid << " is missing";
      EXPECT_EQ(token->description, description);
    }
    for (const auto& [sid, token] : replayed.tokens()) {
      for (const auto& absent : absentDescriptions) {
        EXPECT_NE(token.description, absent) << "a failed command left token " << sid;
      }
    }
  }

  TempDir data{"tokenledger-fault"};
  TempDir logs{"tokenledger-fault-logs"};
  std::string adminToken;
  std::unique_ptr<ServerProcess> server;
  int readOnlyRetries = 0;
};

// (a) commands fail with storage errors that say the write failed, (b) nothing of them is
// visible (head, table, log), (c) verification keeps answering during the fault, (d) the
// service recovers once the fault clears; and after a restart everything acknowledged is there
// and nothing of the failed commands is. Three rounds, each cutting a WAL record at another
// point (no room at all, 100 bytes, 700 bytes).
TEST_F(FaultTest, WritesFailCleanlyDuringADiskFaultAndTheServiceRecoversAfterIt) {
  auto caller = std::make_unique<Caller>(server->start(), adminToken);
  Caller& admin = *caller;
  std::map<std::string, std::string> acknowledged;  // sid -> description
  std::vector<std::string> failedDescriptions;
  std::vector<Credential> revokedCredentials;
  int faultsInjected = 0, faultsRecovered = 0, failedCommands = 0, verifiesDuringFault = 0;
  std::vector<int> attemptsToRecover;

  const uint64_t slacks[] = {0, 100, 700};
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round) + ", slack " + std::to_string(slacks[round]));
    // Acknowledged state before the fault: an active token and a revoked one.
    Credential active = admin.create("vendor", "active before fault " + std::to_string(round));
    acknowledged[active.sidHex()] = "active before fault " + std::to_string(round);
    Credential gone = admin.create("vendor", "revoked before fault " + std::to_string(round));
    acknowledged[gone.sidHex()] = "revoked before fault " + std::to_string(round);
    admin.revoke(gone.sidHex());
    revokedCredentials.push_back(gone);

    // The fault: the WAL may grow by `slack` bytes at most, so a record is cut there.
    setFileSizeLimit(server->pid(), walBytes(dbDir()) + slacks[round]);
    if (HasFatalFailure()) return;
    ++faultsInjected;
    CallOutcome first;
    for (int attempt = 0; attempt < 20; ++attempt) {
      const std::string description = "written into the fault " + std::to_string(round) + "." +
                                      std::to_string(attempt);
      Credential made{};
      first = outcomeOf([&] { made = admin.create("vendor", description); });
      if (first.ok()) {
        acknowledged[made.sidHex()] = description;  // it fit under the limit: acknowledged
        continue;
      }
      failedDescriptions.push_back(description);
      break;
    }
    ASSERT_FALSE(first.ok()) << "no write failed under the file-size limit";
    ++failedCommands;
    EXPECT_EQ(first.code, "storage") << first;
    EXPECT_NE(first.message.find("write"), std::string::npos) << first;
    EXPECT_NE(first.message.find("fail"), std::string::npos) << first;
    // From here on no file may grow at all (no WAL, SST or MANIFEST byte) until it is lifted.
    setFileSizeLimit(server->pid(), 0);
    if (HasFatalFailure()) return;
    const uint64_t head = admin.head();
    const auto tableBefore = admin.allTokens();

    // Every kind of write fails the same way, and moves nothing.
    const std::string during = "during fault " + std::to_string(round);
    std::vector<std::pair<std::string, CallOutcome>> writes = {
        {"createToken", outcomeOf([&] { admin.create("vendor", during); })},
        {"revoke", outcomeOf([&] { admin.revoke(active.sidHex()); })},
        {"setDescription", outcomeOf([&] { admin.setDescription(active.sidHex(), during); })},
        {"grantRole", outcomeOf([&] { admin.grantRole("fault-user", schema::Role::USER); })},
        {"makeCheckpoint", outcomeOf([&] { admin.makeCheckpoint(); })},
    };
    failedDescriptions.push_back(during);
    for (const auto& [what, outcome] : writes) {
      SCOPED_TRACE(what);
      ++failedCommands;
      EXPECT_EQ(outcome.code, "storage") << outcome;
      EXPECT_NE(outcome.message.find("fail"), std::string::npos) << outcome;
    }

    // (b) Nothing partial: the head, the table and the stored log are as before.
    EXPECT_EQ(admin.head(), head);
    EXPECT_EQ(admin.allTokens(), tableBefore) << "a failed command changed the token table";
    checkStored(head, acknowledged, failedDescriptions);

    // (c) Verification keeps answering, from memory, with the acknowledged state.
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(admin.verify(active.encode()), wire::VerifyReason::OK);
      EXPECT_EQ(admin.verify(gone.encode()), wire::VerifyReason::REVOKED);
      EXPECT_EQ(admin.verify(adminToken), wire::VerifyReason::OK);
      EXPECT_EQ(admin.verify("tlp_not-a-token"), wire::VerifyReason::MALFORMED);
      verifiesDuringFault += 4;
    }
    EXPECT_EQ(outcomeOf([&] { admin.login(active.encode()); }).code, "ok") << "login during the fault";

    // (d) The fault clears: a later command succeeds, then every kind of write does.
    setFileSizeLimit(server->pid(), std::nullopt);
    if (HasFatalFailure()) return;
    CallOutcome after;
    int attempts = 0;
    const std::string recovered = "after fault " + std::to_string(round);
    Credential made{};
    for (; attempts < 20 && !after.ok(); ++attempts) {
      if (attempts > 0) std::this_thread::sleep_for(100ms);
      after = outcomeOf([&] { made = admin.create("vendor", recovered); });
    }
    ASSERT_TRUE(after.ok()) << "the service did not recover within 20 attempts: " << after;
    ++faultsRecovered;
    attemptsToRecover.push_back(attempts);
    acknowledged[made.sidHex()] = recovered;
    EXPECT_EQ(admin.head(), head + 1);
    EXPECT_EQ(admin.verify(made.encode()), wire::VerifyReason::OK);
    const std::string described = "recovered " + std::to_string(round);
    EXPECT_EQ(outcomeOf([&] { admin.setDescription(active.sidHex(), described); }).code, "ok");
    acknowledged[active.sidHex()] = described;
    EXPECT_EQ(outcomeOf([&] { admin.makeCheckpoint(); }).code, "ok");
    checkStored(admin.head(), acknowledged, failedDescriptions);
  }

  // A clean stop and a restart replay the WALs that hold the cut records.
  const uint64_t finalHead = admin.head();
  caller.reset();  // one event loop per thread: the next client comes after it
  auto stopped = server->stop();
  ASSERT_TRUE(stopped && WIFEXITED(*stopped) && WEXITSTATUS(*stopped) == 0)
      << (stopped ? describeWaitStatus(*stopped) : "did not stop") << "\n"
      << readFile(server->stderrPath());
  checkStored(finalHead, acknowledged, failedDescriptions);
  Caller again(server->start(), adminToken);
  EXPECT_EQ(again.head(), finalHead);
  for (const auto& c : revokedCredentials) EXPECT_EQ(again.verify(c.encode()), wire::VerifyReason::REVOKED);
  auto table = again.allTokens();
  for (const auto& [sid, description] : acknowledged) {
    ASSERT_TRUE(table.count(sid)) << "acknowledged token " << sid << " is gone after the restart";
    EXPECT_EQ(table[sid], description);
  }
  EXPECT_EQ(outcomeOf([&] { again.create("vendor", "after the restart"); }).code, "ok");
  EXPECT_EQ(again.head(), finalHead + 1);

  std::string attemptsText;
  for (int a : attemptsToRecover) attemptsText += (attemptsText.empty() ? "" : ",") + std::to_string(a);
  RecordProperty("faults_injected", faultsInjected);
  RecordProperty("faults_recovered", faultsRecovered);
  RecordProperty("failed_commands", failedCommands);
  RecordProperty("verifies_during_fault", verifiesDuringFault);
  RecordProperty("attempts_to_recover", attemptsText);
  RecordProperty("read_only_open_retries", readOnlyRetries);
  std::cout << "[fault] " << faultsInjected << " disk faults injected, " << faultsRecovered
            << " recovered (commands needed after the fault cleared: " << attemptsText << "), "
            << failedCommands << " commands failed cleanly, " << verifiesDuringFault
            << " verifications answered during faults; read-only opens retried "
            << readOnlyRetries << " times (SST deleted under them)\n";
}

// The same fault under concurrent writers, so that it strikes while the ledger's pipeline holds
// a group being written and the next one already validated on top of it. All writers work on
// the same token at a time: one revokes it (each token gets one attempt), the others keep
// describing it, then they move on to the next. Every command must succeed (and be durable) or
// fail with a storage error (and be nowhere). "Token is revoked" is right only if that token's
// one revocation is durable: otherwise the refusal was validated against the failed write.
// And no gap in the log, the table equal to the replayed log.
TEST_F(FaultTest, ConcurrentWritersAcrossADiskFaultGetDurableSuccessOrAStorageError) {
  const uint16_t port = server->start();
  constexpr int kWriters = 8;
  constexpr size_t kShared = 600;
  std::vector<std::string> shared;
  {
    Caller admin(port, adminToken);
    std::vector<capnp::RemotePromise<wire::Session::CreateTokenResults>> creating;
    for (size_t i = 0; i < kShared; ++i) {  // all in flight at once: a few large groups
      auto request = admin.session().createTokenRequest();
      request.setOwner("vendor");
      request.setDescription("shared " + std::to_string(i));
      request.initExpiration().setDays90();
      request.initScopes().initSelected(1).set(0, "assignment:read");
      creating.push_back(request.send());
    }
    for (auto& promise : creating) {
      shared.push_back(parseCredential(waitFor(kj::mv(promise), admin.ws()).getCredential().cStr())->sidHex());
    }
  }
  std::atomic<size_t> current{0};  // the shared token everyone works on
  std::atomic<bool> done{false};
  std::atomic<int> failuresSeen{0}, writesSeen{0};
  std::mutex mutex;  // guards everything below
  std::vector<bool> revokeTried(kShared, false), revoked(kShared, false);
  std::map<std::string, std::set<std::string>> described;  // sid -> descriptions acknowledged
  std::vector<std::string> failedDescriptions;
  std::vector<std::pair<size_t, std::string>> refusals;    // shared token, why
  std::vector<std::string> unexpected;
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      Caller caller(port, adminToken);
      for (int i = 0; i < 5000 && !done; ++i) {
        const size_t t = current;
        const std::string description = "writer " + std::to_string(w) + " #" + std::to_string(i);
        if (t >= kShared) {  // every shared token had its turn: keep writing all the same
          Credential made{};
          CallOutcome outcome = outcomeOf([&] { made = caller.create("vendor", description); });
          std::lock_guard lock(mutex);
          if (outcome.ok()) ++writesSeen, described[made.sidHex()].insert(description);
          else if (outcome.code == "storage") ++failuresSeen, failedDescriptions.push_back(description);
          else unexpected.push_back(description + ": " + outcome.code + " (" + outcome.message + ")");
          continue;
        }
        const std::string& sid = shared[t];
        bool revoke = false;
        {
          std::lock_guard lock(mutex);
          revoke = !revokeTried[t];
          revokeTried[t] = true;
        }
        CallOutcome outcome = revoke ? outcomeOf([&] { caller.revoke(sid); })
                                     : outcomeOf([&] { caller.setDescription(sid, description); });
        if (revoke) ++current;  // answered: everyone moves on
        std::lock_guard lock(mutex);
        if (outcome.ok()) {
          ++writesSeen;
          if (revoke) revoked[t] = true;
          else described[sid].insert(description);
        } else if (outcome.code == "storage") {
          ++failuresSeen;
          if (!revoke) failedDescriptions.push_back(description);
        } else if (outcome.code == "failed-precondition" && !revoke) {
          refusals.emplace_back(t, outcome.message);  // judged once every answer is in
        } else {
          unexpected.push_back(description + ": " + outcome.code + " (" + outcome.message + ")");
        }
      }
    });
  }
  // Faults, each cutting a WAL record and then refusing all growth for a moment.
  constexpr int kFaults = 5;
  int faults = 0;
  for (int round = 0; round < kFaults; ++round) {
    // Writes flow again: the service has recovered and writes to the WAL the limit is set from.
    const int written = writesSeen;
    for (auto deadline = SteadyClock::now() + 10s; writesSeen == written && SteadyClock::now() < deadline;) {
      std::this_thread::sleep_for(1ms);
    }
    std::this_thread::sleep_for(50ms);
    const int before = failuresSeen;
    setFileSizeLimit(server->pid(), walBytes(dbDir()) + 200);
    for (auto deadline = SteadyClock::now() + 5s; failuresSeen == before && SteadyClock::now() < deadline;) {
      std::this_thread::sleep_for(1ms);
    }
    setFileSizeLimit(server->pid(), 0);
    std::this_thread::sleep_for(50ms);
    setFileSizeLimit(server->pid(), std::nullopt);
    faults += failuresSeen > before;
  }
  std::this_thread::sleep_for(100ms);  // and recover
  done = true;
  for (auto& t : writers) t.join();

  EXPECT_EQ(faults, kFaults) << "a fault failed no write";
  EXPECT_TRUE(unexpected.empty()) << unexpected.size() << " commands failed otherwise than with a "
                                  << "storage error, first: " << unexpected.front();
  for (const auto& [t, why] : refusals) {
    EXPECT_TRUE(revoked[t]) << "refused for a revocation that never became durable: " << why;
  }
  Caller admin(port, adminToken);
  EXPECT_EQ(outcomeOf([&] { admin.create("vendor", "after the concurrent fault"); }).code, "ok");
  const uint64_t head = admin.head();
  checkStored(head, {}, failedDescriptions);
  auto table = admin.allTokens();
  for (const auto& [sid, descriptions] : described) {
    EXPECT_TRUE(descriptions.count(table[sid])) << sid << " is described as \"" << table[sid]
                                                << "\", which no acknowledged command wrote";
  }
  auto revokedNow = admin.revokedSids();
  for (size_t t = 0; t < kShared; ++t) {
    EXPECT_EQ(revokedNow.count(shared[t]) > 0, static_cast<bool>(revoked[t]))
        << "shared token " << t << ": the revocation's answer and the table disagree";
  }
  std::cout << "[fault] concurrent: " << std::min<size_t>(current, kShared) << " tokens revoked or tried, "
            << failuresSeen << " storage errors, " << refusals.size()
            << " refusals after durable revocations, head " << head << "\n";
}

// A real full disk (ENOSPC rather than EFBIG): the server runs in its own mount namespace on a
// 128 MiB tmpfs (`unshare --mount`; skipped where mounting is not allowed), the test fills that
// filesystem through /proc/PID/root, then frees it again. The same four promises as above:
// clean storage errors, nothing partial, verification answering, recovery once there is room.
// (The tmpfs lives only as long as the process, so there is no restart check here.)
TEST_F(FaultTest, FullDiskFailsCleanlyAndRecoversWhenSpaceIsFreed) {
  const auto mountPoint = data.path() / "mnt";
  std::filesystem::create_directories(mountPoint);
  auto probe = runProcess({"/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                           "mount -t tmpfs -o size=1m tmpfs " + mountPoint.string()},
                          logs.path(), 20s);
  if (!probe.exitedWith(0)) GTEST_SKIP() << "cannot mount a tmpfs here: " << probe.describe();

  const std::string command = "mount -t tmpfs -o size=128m,mode=0700 tmpfs " +
                              mountPoint.string() + " && exec " + tokenledgerd() +
                              " serve --data-dir " + (mountPoint / "ledger").string() +
                              " --listen 127.0.0.1:0";
  ChildProcess child(ChildProcess::Spec{{"/usr/bin/unshare", "--mount", "--propagation", "private",
                                         "/bin/sh", "-c", command},
                                        logs.path() / "tmpfs.out", logs.path() / "tmpfs.err", {}});
  std::optional<uint16_t> port;
  for (auto deadline = SteadyClock::now() + 30s; !port && SteadyClock::now() < deadline;) {
    port = ServerProcess::servingPort(readFile(logs.path() / "tmpfs.err"));
    if (!port) {
      ASSERT_TRUE(child.running()) << readFile(logs.path() / "tmpfs.err");
      std::this_thread::sleep_for(5ms);
    }
  }
  ASSERT_TRUE(port) << "did not serve: " << readFile(logs.path() / "tmpfs.err");
  auto tokens = credentialLines(readFile(logs.path() / "tmpfs.out"));
  ASSERT_EQ(tokens.size(), 1u);
  // The tmpfs as the test sees it: through the server's root in its own mount namespace.
  const std::filesystem::path root =
      "/proc/" + std::to_string(child.pid()) + "/root" + mountPoint.string();
  ASSERT_TRUE(std::filesystem::exists(root / "ledger" / "db" / "CURRENT"));

  // On failure: whether the server still runs and what it logged.
  struct Diagnose {
    ChildProcess& child;
    std::filesystem::path log;
    ~Diagnose() {
      if (!::testing::Test::HasFailure()) return;
      auto status = child.poll();
      std::cout << "[fault] tokenledgerd on the tmpfs " << (status ? describeWaitStatus(*status) : "still runs")
                << "; the end of its stderr:\n" << tail(readFile(log)) << "\n";
    }
  } diagnose{child, logs.path() / "tmpfs.err"};

  Caller admin(*port, tokens.front());
  std::map<std::string, std::string> acknowledged;
  std::vector<std::string> failed;
  // No write before the disk is full: the first WAL append would preallocate ~70 MiB of WAL
  // (fallocate), behind which the disk could fill without the ledger noticing for a long while.
  const uint64_t startHead = admin.head();

  // Fill the filesystem (again): 64 KiB writes, then 4 KiB, then single bytes, until ENOSPC.
  const auto filler = root / "filler";
  uint64_t filled = 0;
  auto fill = [&]() -> int {
    int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd < 0) return errno;
    int error = 0;
    for (size_t chunk : {size_t{65536}, size_t{4096}, size_t{1}}) {
      std::string bytes(chunk, 'f');
      for (int i = 0; i < 100'000; ++i) {
        ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n <= 0) {
          error = errno;
          break;
        }
        filled += static_cast<uint64_t>(n);
      }
    }
    ::close(fd);
    return error;
  };
  const int fillErrno = fill();
  ASSERT_EQ(fillErrno, ENOSPC) << "filling the tmpfs ended with errno " << fillErrno;

  // (a) Writes fail with storage errors (the first few may still fit in the WAL's last page).
  CallOutcome first;
  for (int attempt = 0; attempt < 50; ++attempt) {
    std::string description = "into the full disk " + std::to_string(attempt);
    Credential made{};
    first = outcomeOf([&] { made = admin.create("vendor", description); });
    if (!first.ok()) {
      failed.push_back(description);
      break;
    }
    acknowledged[made.sidHex()] = description;
  }
  ASSERT_FALSE(first.ok()) << "no write failed on the full disk";
  EXPECT_EQ(first.code, "storage") << first;
  EXPECT_NE(first.message.find("fail"), std::string::npos) << first;
  EXPECT_NE(first.message.find("No space left"), std::string::npos) << first;
  // Later writes fail the same way, or succeed where the ledger made room again (RocksDB
  // deletes obsolete files while it recovers); either way the head moves by the successes only.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(fill(), ENOSPC);
    const std::string description = "while full " + std::to_string(i);
    Credential more{};
    CallOutcome o = outcomeOf([&] { more = admin.create("vendor", description); });
    if (o.ok()) {
      acknowledged[more.sidHex()] = description;
    } else {
      failed.push_back(description);
      EXPECT_EQ(o.code, "storage") << o;
    }
  }
  const uint64_t head = admin.head();
  EXPECT_EQ(head, startHead + acknowledged.size());
  // (b) nothing partial, (c) verification answers.
  checkStoredIn(root / "ledger" / "db", head, acknowledged, failed);
  EXPECT_EQ(admin.verify(tokens.front()), wire::VerifyReason::OK);
  EXPECT_EQ(admin.verify("tlp_not-a-token"), wire::VerifyReason::MALFORMED);
  EXPECT_EQ(outcomeOf([&] { admin.login(tokens.front()); }).code, "ok") << "login while full";
  EXPECT_TRUE(child.running()) << "tokenledgerd died on the full disk: " << readFile(logs.path() / "tmpfs.err");
  if (HasFatalFailure()) return;

  // (d) Free the space; a later write succeeds.
  std::filesystem::remove(filler);
  CallOutcome after;
  int attempts = 0;
  const auto freedAt = SteadyClock::now();
  Credential made{};
  // (RocksDB's own recovery from a full disk, DB::Resume() and its SstFileManager, waits for
  // 64 MiB free and polls every 5 s, hence the 20 s bound.)
  while (!after.ok() && attempts < 200 && SteadyClock::now() - freedAt < 20s) {
    if (attempts++ > 0) std::this_thread::sleep_for(100ms);
    after = outcomeOf([&] { made = admin.create("vendor", "after space was freed"); });
  }
  const auto recoveryMs =
      std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - freedAt).count();
  ASSERT_TRUE(after.ok()) << "no recovery within 20 s after freeing the disk: " << after;
  acknowledged[made.sidHex()] = "after space was freed";
  EXPECT_EQ(admin.head(), head + 1);
  EXPECT_EQ(admin.verify(made.encode()), wire::VerifyReason::OK);
  checkStoredIn(root / "ledger" / "db", head + 1, acknowledged, failed);
  RecordProperty("enospc_filled_bytes", std::to_string(filled));
  RecordProperty("enospc_attempts_to_recover", attempts);
  RecordProperty("enospc_recovery_ms", std::to_string(recoveryMs));
  std::cout << "[fault] full tmpfs (" << filled << " filler bytes): " << failed.size()
            << " writes failed cleanly (" << acknowledged.size() - 1
            << " fit in the space the ledger freed), recovered " << recoveryMs
            << " ms after the space was freed (" << attempts << " attempts)\n";
}

// The process dies while the disk still refuses writes; restarted with a working disk, it serves
// everything acknowledged, nothing of the failed commands, an intact log, and takes writes.
TEST_F(FaultTest, KilledDuringADiskFaultRestartsIntact) {
  std::map<std::string, std::string> acknowledged;
  std::vector<std::string> failed;
  uint64_t head = 0;
  {
    Caller admin(server->start(), adminToken);
    for (int i = 0; i < 5; ++i) {
      Credential c = admin.create("vendor", "before " + std::to_string(i));
      acknowledged[c.sidHex()] = "before " + std::to_string(i);
    }
    head = admin.head();
    setFileSizeLimit(server->pid(), walBytes(dbDir()) + 50);
    if (HasFatalFailure()) return;
    for (int i = 0; i < 3; ++i) {
      failed.push_back("doomed " + std::to_string(i));
      CallOutcome o = outcomeOf([&] { admin.create("vendor", failed.back()); });
      EXPECT_EQ(o.code, "storage") << o;
      // After the cut record no file may grow at all (else RocksDB resumes into new files).
      if (i == 0) setFileSizeLimit(server->pid(), 0);
    }
    EXPECT_EQ(admin.head(), head);
    server->kill();
  }
  checkStored(head, acknowledged, failed);
  Caller admin(server->start(), adminToken);
  EXPECT_EQ(admin.head(), head);
  auto table = admin.allTokens();
  for (const auto& [sid, description] : acknowledged) EXPECT_EQ(table[sid], description);
  EXPECT_EQ(outcomeOf([&] { admin.create("vendor", "after"); }).code, "ok");
  EXPECT_EQ(admin.head(), head + 1);
  ASSERT_TRUE(server->stop().has_value());
}

// Started under a file-size limit too small for RocksDB to open its database (an open writes a
// new MANIFEST and OPTIONS file of more than 1000 bytes), tokenledgerd exits with a clear
// message instead of serving; without the limit it starts on the intact data.
TEST_F(FaultTest, StartingWithoutRoomToWriteFailsClearly) {
  ServerProcess limited(
      ServerProcess::Spec{tokenledgerd(), dataDir(), logs.path(), false, 1000, "limited"});
  try {
    limited.start(20s);
    limited.kill();
    ADD_FAILURE() << "tokenledgerd served although it could not write a file beyond 1000 bytes";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("exited 1"), std::string::npos) << what;
    EXPECT_NE(what.find("tokenledgerd: "), std::string::npos) << what;
    EXPECT_NE(what.find("IO error"), std::string::npos) << what;
  }
  Caller admin(server->start(), adminToken);
  const uint64_t head = admin.head();
  EXPECT_GT(head, 0u);
  EXPECT_EQ(outcomeOf([&] { admin.create("vendor", "after"); }).code, "ok");
  ASSERT_TRUE(server->stop().has_value());
  checkStored(head + 1, {}, {});
}

// ---------------------------------------------------------------------------------------------
// Secrets: a full workload through tokenledgerd --verbose, then every place a secret could end
// up is searched for every secret ever issued (the tlp_ string, the secret as hex, upper-case
// hex, the first half of the hex, raw bytes and base64): the server's stdout and stderr (except
// the one line where the first start prints the first admin's token, by design), every file of
// the data directory (before and after flushing and compacting everything into SST files),
// every key and value of every column family, both `ledger-replay export` formats, and every
// error message a client got.

std::string secretHex(const Credential& c) { return toHex(Bytes(c.secret.data(), c.secret.size())); }

class SecretsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    server = std::make_unique<ServerProcess>(
        ServerProcess::Spec{tokenledgerd(), dataDir(), logs.path(), /*verbose=*/true, {}});
    port = server->start();  // an empty directory: serve initialises it first
    firstStdout = readFile(server->stdoutPath());
    auto lines = credentialLines(firstStdout);
    ASSERT_EQ(lines.size(), 1u) << "the first start prints the first admin's token once:\n"
                                << firstStdout;
    adminToken = lines.front();
    issued.push_back(*parseCredential(adminToken));
  }

  std::filesystem::path dataDir() const { return data.path() / "ledger"; }

  Credential keep(const Credential& c) {
    issued.push_back(c);
    return c;
  }

  // A call that must be refused; its message joins `errors`.
  template <typename F>
  void expectRefused(const std::string& what, F&& call) {
    CallOutcome o = outcomeOf(call);
    EXPECT_FALSE(o.ok()) << what << " was not refused";
    errors += what + ": " + o.message + "\n";
    ++refused;
  }

  // Every kind of command, read and verification, right and wrong, through one connection.
  void workload(Caller& admin) {
    admin.grantRole("bob", schema::Role::USER);
    admin.grantRole("carol", schema::Role::AUDITOR);
    Credential bob = keep(admin.create("bob", "Bob's laptop",
                                       {"tokens:read", "tokens:write", "assignment:read", "contact:read"}));
    Credential carol = keep(admin.create("carol", "Carol's audit token", {"audit:read", "tokens:read"}));
    Credential svc1 = keep(admin.create("svc-payroll", "Payroll 1", {"assignment:read", "email:read"}));
    keep(admin.create("svc-payroll", "Payroll 2", {"message:read"}));

    auto bobSession = admin.login(bob.encode());
    vendorA = keep(admin.create("bob", "Vendor A", {"assignment:read"}, &bobSession));
    vendorB = keep(admin.create("bob", "Vendor B", {"contact:read"}, &bobSession));
    Credential vendorC = keep(admin.create("bob", "Vendor C", {"assignment:read"}, &bobSession));
    {
      auto request = bobSession.changeScopesRequest();
      request.setSid(vendorA.sidHex());
      auto list = request.initScopes().initSelected(2);
      list.set(0, "assignment:read");
      list.set(1, "contact:read");
      waitFor(request.send(), admin.ws());
    }
    {
      auto request = bobSession.setDescriptionRequest();
      request.setSid(vendorB.sidHex());
      request.setDescription("Vendor B (billing)");
      waitFor(request.send(), admin.ws());
    }
    {
      auto request = bobSession.rotateRequest();
      request.setSid(vendorA.sidHex());
      request.setReason("suspected leak");
      auto response = waitFor(request.send(), admin.ws());
      vendorARotated = keep(*parseCredential(response.getCredential().cStr()));
    }
    admin.revoke(vendorC.sidHex(), &bobSession);
    {
      auto request = admin.session().revokeAllForRequest();
      request.setOwner("svc-payroll");
      request.setReason("offboarding");
      waitFor(request.send(), admin.ws());
    }
    admin.makeCheckpoint();

    // Reads, as the auditor, the user and the admin.
    auto carolSession = admin.login(carol.encode());
    {
      auto request = carolSession.historyRequest();
      request.initFilter().setAll();
      EXPECT_GT(waitFor(request.send(), admin.ws()).getEntries().size(), 10u);
      auto checkpoints = carolSession.checkpointsRequest();
      waitFor(checkpoints.send(), admin.ws());
      auto list = carolSession.listTokensRequest();
      list.initFilter().setShowAll(true);
      waitFor(list.send(), admin.ws());
      auto get = carolSession.getTokenRequest();
      get.setSid(vendorA.sidHex());
      waitFor(get.send(), admin.ws());
      auto roles = admin.session().listRolesRequest();
      waitFor(roles.send(), admin.ws());
      auto who = bobSession.whoamiRequest();
      waitFor(who.send(), admin.ws());
    }

    // Verification in every form, right and wrong.
    for (const Credential& c : issued) admin.verify(c.encode());
    {
      auto request = admin.ledger().verifyBatchRequest();
      auto list = request.initRequests(static_cast<unsigned>(issued.size()));
      for (unsigned i = 0; i < list.size(); ++i) {
        auto pair = list[i].initCredential().initPair();
        pair.setSid(issued[i].sidHex());
        pair.setSecret(secretHex(issued[i]));
      }
      waitFor(request.send(), admin.ws());
    }
    EXPECT_EQ(admin.verify(vendorA.encode()), wire::VerifyReason::INVALID_CREDENTIALS);
    EXPECT_EQ(admin.verify(vendorC.encode()), wire::VerifyReason::REVOKED);
    std::string badChecksum = vendorB.encode();
    badChecksum.replace(badChecksum.size() - 8, 8, badChecksum.back() == '0' ? "11111111" : "00000000");
    EXPECT_EQ(admin.verify(badChecksum), wire::VerifyReason::MALFORMED);
    EXPECT_EQ(admin.verify(vendorB.encode() + "x"), wire::VerifyReason::MALFORMED);
    EXPECT_EQ(admin.verify(secretHex(vendorB)), wire::VerifyReason::MALFORMED);

    // Logins that must fail.
    expectRefused("login with a revoked token", [&] { admin.login(vendorC.encode()); });
    expectRefused("login with a rotated-away secret", [&] { admin.login(vendorA.encode()); });
    expectRefused("login with an offboarded token", [&] { admin.login(svc1.encode()); });
    expectRefused("login with a bad checksum", [&] { admin.login(badChecksum); });
    expectRefused("login with a secret as the token", [&] { admin.login(secretHex(vendorB)); });
    expectRefused("login with a pair whose secret is another's", [&] {
      auto request = admin.ledger().loginRequest();
      auto pair = request.initCredential().initPair();
      pair.setSid(vendorB.sidHex());
      pair.setSecret(secretHex(vendorARotated));
      waitFor(request.send(), admin.ws());
    });
    // Ordinary mistakes whose errors name the input.
    expectRefused("revoke(unknown SID)", [&] { admin.revoke(Credential::generate().sidHex()); });
    expectRefused("revoke(not a SID)", [&] { admin.revoke("not-a-sid"); });
    expectRefused("createToken(unknown scope)", [&] { admin.create("bob", "x", {"nope:read"}); });
  }

  // Stops the server and searches everything for every issued secret.
  void scanEverything() {
    auto stopped = server->stop();
    ASSERT_TRUE(stopped && WIFEXITED(*stopped) && WEXITSTATUS(*stopped) == 0)
        << (stopped ? describeWaitStatus(*stopped) : "did not stop");

    // The scanner finds what it looks for: the admin token is in the first stdout.
    ASSERT_EQ(leakedSecrets(firstStdout, {issued.front()}).size(), 3u)
        << "the tlp_ string, and the hex secret and its first half inside it";
    EXPECT_EQ(leakedSecrets("x" + secretHex(issued[1]) + "y", issued).size(), 2u);

    // Logs: stdout without the one admin-token line of the first start, and stderr.
    bool removed = false;
    for (const auto& path : server->logFiles()) {
      std::string text = readFile(path);
      if (path == server->logFiles().front()) {
        size_t at = text.find(adminToken + "\n");
        ASSERT_NE(at, std::string::npos);
        text.erase(at, adminToken.size() + 1);
        removed = true;
      }
      expectNoSecret(path.string(), text);
    }
    EXPECT_TRUE(removed);
    const std::string stderrText = readFile(server->stderrPath());
    EXPECT_NE(stderrText.find("connection from"), std::string::npos) << "not the verbose log?";
    EXPECT_NE(stderrText.find("refused"), std::string::npos);

    expectNoSecret("the error messages clients got", errors);
    if (std::getenv("TOKENLEDGER_SHOW_ERRORS")) std::cout << errors;

    // Every file of the data directory, as the server left it.
    for (const auto& [path, bytes] : filesUnder(dataDir())) expectNoSecret(path.string(), bytes);

    // Every key and value of every column family; then everything flushed and compacted into
    // SST files, and every file again.
    {
      auto store = Store::open(dataDir() / "db", Store::Mode::kReadWrite, false);
      for (size_t f = 0; f < kFamilyCount; ++f) {
        std::string all;
        auto it = store->iterate(static_cast<Family>(f));
        for (it->SeekToFirst(); it->Valid(); it->Next()) {
          all += it->key().ToString();
          all += '\0';
          all += it->value().ToString();
          all += '\0';
        }
        EXPECT_TRUE(it->status().ok()) << it->status().ToString();
        it.reset();
        expectNoSecret("column family " + std::to_string(f), all);
        auto* family = store->family(static_cast<Family>(f));
        EXPECT_TRUE(store->db().Flush(rocksdb::FlushOptions(), family).ok());
        EXPECT_TRUE(
            store->db().CompactRange(rocksdb::CompactRangeOptions(), family, nullptr, nullptr).ok());
      }
    }
    for (const auto& [path, bytes] : filesUnder(dataDir())) {
      expectNoSecret(path.string() + " (compacted)", bytes);
    }

    // Exports.
    for (const std::string format : {"jsonl", "capnp"}) {
      auto r = runProcess(
          {LEDGER_REPLAY, "--data-dir", dataDir().string(), "export", "--format", format},
          logs.path(), 60s);
      ASSERT_TRUE(r.exitedWith(0)) << r.describe();
      EXPECT_GT(r.out.size(), 1000u);
      expectNoSecret("ledger-replay export --format " + format, r.out + r.err);
    }
  }

  // Every regular file under `dir`, with its bytes.
  static std::vector<std::pair<std::filesystem::path, std::string>> filesUnder(
      const std::filesystem::path& dir) {
    std::vector<std::pair<std::filesystem::path, std::string>> out;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
      if (entry.is_regular_file()) out.emplace_back(entry.path(), readFile(entry.path()));
    }
    return out;
  }

  // Fails for every secret found in `text` (also its first half, as hex: a truncated echo).
  void expectNoSecret(const std::string& where, std::string_view text) {
    ++placesScanned;
    bytesScanned += text.size();
    for (const auto& leak : leakedSecrets(text, issued)) ADD_FAILURE() << leak << " in " << where;
  }

  static std::vector<std::string> leakedSecrets(std::string_view text,
                                                const std::vector<Credential>& credentials) {
    std::vector<std::string> found = test::leakedSecrets(text, credentials);
    for (const Credential& c : credentials) {
      const std::string half = secretHex(c).substr(0, kSecretBytes);
      size_t at = text.find(half);
      if (at != std::string_view::npos) {
        found.push_back("the first half of the secret (hex) of " + c.sidHex() + " at byte " +
                        std::to_string(at));
      }
    }
    return found;
  }

  void report(const std::string& name) {
    RecordProperty("secrets_issued", static_cast<int>(issued.size()));
    RecordProperty("places_scanned", std::to_string(placesScanned));
    RecordProperty("bytes_scanned", std::to_string(bytesScanned));
    RecordProperty("refused_calls", refused);
    std::cout << "[" << name << "] " << issued.size() << " issued secrets x 6 forms searched in "
              << placesScanned << " places (" << bytesScanned << " bytes: logs, data files "
              << "before and after compaction, every column family, both exports, " << refused
              << " error messages)" << (HasFailure() ? "" : ": none found") << "\n";
  }

  TempDir data{"tokenledger-secrets"};
  TempDir logs{"tokenledger-secrets-logs"};
  std::unique_ptr<ServerProcess> server;
  uint16_t port = 0;
  std::string firstStdout;
  std::string adminToken;
  std::vector<Credential> issued;  // every credential ever shown, rotated-away ones too
  Credential vendorA{}, vendorB{}, vendorARotated{};
  std::string errors;              // every error message a client got
  int refused = 0;
  uint64_t placesScanned = 0;
  uint64_t bytesScanned = 0;
};

TEST_F(SecretsTest, NoIssuedSecretReachesLogsFilesExportsOrErrors) {
  {
    Caller admin(port, adminToken);
    workload(admin);
    if (HasFatalFailure()) return;
  }
  scanEverything();
  report("secrets");
}

// A credential pasted into a field that takes none (a SID, an owner, a principal, a scope) must
// be refused without being echoed in the error (which the server also logs) and must never be
// stored. The bare 64-hex secret is how the seeds' two-value form (Account SID + Auth Token)
// hands it out, so it is pasted too.
TEST_F(SecretsTest, CredentialsPastedIntoOtherFieldsAreRefusedUnechoedAndUnstored) {
  {
    Caller admin(port, adminToken);
    workload(admin);
    if (HasFatalFailure()) return;
    auto bobSession = admin.login(issued[1].encode());
    for (const std::string& wrong : {vendorARotated.encode(), secretHex(vendorARotated)}) {
      SCOPED_TRACE(wrong.starts_with("tlp_") ? "the tlp_ string" : "the bare secret (hex)");
      expectRefused("getToken(sid: credential)", [&] {
        auto r = admin.session().getTokenRequest();
        r.setSid(wrong);
        waitFor(r.send(), admin.ws());
      });
      expectRefused("revoke(sid: credential)", [&] { admin.revoke(wrong); });
      expectRefused("setDescription(sid: credential)", [&] { admin.setDescription(wrong, "x"); });
      expectRefused("rotate(sid: credential)", [&] {
        auto r = admin.session().rotateRequest();
        r.setSid(wrong);
        waitFor(r.send(), admin.ws());
      });
      expectRefused("changeScopes(sid: credential)", [&] {
        auto r = admin.session().changeScopesRequest();
        r.setSid(wrong);
        r.initScopes().initSelected(1).set(0, "assignment:read");
        waitFor(r.send(), admin.ws());
      });
      expectRefused("history(token: credential)", [&] {
        auto r = admin.session().historyRequest();
        r.initFilter().setToken(wrong);
        waitFor(r.send(), admin.ws());
      });
      expectRefused("createToken(owner: credential)", [&] { admin.create(wrong, "x"); });
      expectRefused("createToken(scope: credential)", [&] { admin.create("bob", "x", {wrong}); });
      expectRefused("grantRole(principal: credential)",
                    [&] { admin.grantRole(wrong, schema::Role::USER); });
      expectRefused("revokeAllFor(owner: credential)", [&] {
        auto r = admin.session().revokeAllForRequest();
        r.setOwner(wrong);
        waitFor(r.send(), admin.ws());
      });
      expectRefused("listTokens(owner: credential), as bob", [&] {
        auto r = bobSession.listTokensRequest();
        r.initFilter().setOwner(wrong);
        waitFor(r.send(), admin.ws());
      });
      expectRefused("history(owner: credential), as bob", [&] {
        auto r = bobSession.historyRequest();
        r.initFilter().setOwner(wrong);
        waitFor(r.send(), admin.ws());
      });
    }
  }
  scanEverything();
  report("secrets-pasted");
}

}  // namespace
}  // namespace tokenledger::test
