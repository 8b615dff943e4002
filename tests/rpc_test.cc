// The RPC layer end to end: a real tokenledgerd server (rpc::Server) on 127.0.0.1 over a real
// RocksDB ledger in a temporary directory, spoken to by real clients: our rpc::Client, the stock
// capnp::EzRpcClient and raw sockets. No mocks.
//
// Threads: KJ allows one event loop per thread, so the fixture's main client lives on the test
// thread and every further client runs on its own thread (ClientThread). Every wait is bounded:
// waitFor() polls the event loop until the promise settles or a deadline passes.
//
// Clocks: the server answers verify/login/reads with the real clock (nowMicros()), not
// LedgerOptions::clock, so these tests open the ledger with the real clock and test expiry with
// tokens that expire a couple of seconds ahead. ServerUsesTheLedgerClock pins that mismatch.
#include <capnp/ez-rpc.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <future>
#include <iostream>
#include <mutex>
#include <set>
#include <thread>

#include "ledger/chain.h"
#include "ledger/crypto.h"
#include "ledger/scope_catalog.h"
#include "ledger/token_codec.h"
#include "process_support.h"
#include "rpc/client.h"
#include "rpc/server.h"
#include "rpc/wire.h"
#include "rpc_support.h"

// Designated initializers leave the other members at their defaults, which is the point.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace tokenledger::test {
namespace {

using namespace std::chrono_literals;
using Kind = Expiration::Kind;

// ---------------------------------------------------------------------------------------------
// Bounded waiting on a KJ event loop (waitFor, in rpc_support.h).

template <typename Params, typename Results>
capnp::Response<Results> send(capnp::Request<Params, Results>& request, kj::WaitScope& scope) {
  return waitFor(request.send(), scope);
}

// Runs the loop until `done()` holds; false if it did not within `timeout`.
template <typename Cond>
bool pollUntil(kj::WaitScope& scope, Cond&& done, std::chrono::milliseconds timeout = kCallTimeout) {
  const auto deadline = SteadyClock::now() + timeout;
  while (!done()) {
    if (SteadyClock::now() > deadline) return false;
    scope.poll();
    std::this_thread::sleep_for(200us);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Outcomes of calls (outcomeOf, in rpc_support.h) as expectations.

#define EXPECT_OUTCOME(expected, ...)                         \
  do {                                                        \
    CallOutcome outcome_ = outcomeOf([&] { __VA_ARGS__; });   \
    EXPECT_EQ(outcome_.code, expected) << outcome_.message;   \
  } while (false)

// ---------------------------------------------------------------------------------------------
// Small conversions.

std::string reasonName(wire::VerifyReason reason) {
  switch (reason) {
    case wire::VerifyReason::OK: return "ok";
    case wire::VerifyReason::INVALID_CREDENTIALS: return "invalidCredentials";
    case wire::VerifyReason::REVOKED: return "revoked";
    case wire::VerifyReason::EXPIRED: return "expired";
    case wire::VerifyReason::INSUFFICIENT_SCOPE: return "insufficientScope";
    case wire::VerifyReason::MALFORMED: return "malformed";
  }
  return "unknown(" + std::to_string(static_cast<int>(reason)) + ")";
}

std::string statusName(wire::TokenStatus status) {
  switch (status) {
    case wire::TokenStatus::ACTIVE: return "active";
    case wire::TokenStatus::EXPIRED: return "expired";
    case wire::TokenStatus::REVOKED: return "revoked";
  }
  return "unknown";
}

std::string scopesText(schema::Scopes::Reader reader) { return scopesFrom(reader).describe(); }

void setScopes(schema::Scopes::Builder out, const std::vector<std::string>& ids) {
  auto list = out.initSelected(static_cast<unsigned>(ids.size()));
  for (unsigned i = 0; i < ids.size(); ++i) list.set(i, ids[i]);
}

Digest digestOf(capnp::Data::Reader data) {
  Digest out{};
  if (data.size() == out.size()) std::copy(data.begin(), data.end(), out.begin());
  return out;
}

Bytes bytesOf(capnp::Data::Reader data) { return Bytes(data.begin(), data.size()); }

std::vector<schema::Role> rolesOf(capnp::List<schema::Role>::Reader list) {
  std::vector<schema::Role> out;
  for (auto role : list) out.push_back(role);
  return out;
}

// The two-value form of a credential: its SID and the secret as 64 hex characters.
std::string secretHex(const Credential& credential) { return toHex(credential.secret); }

const std::vector<std::string> kUserScopes = {"tokens:read", "tokens:write", "assignment:read",
                                              "assignment:write", "contact:read"};

// What a VerifyResult says, comparable and printable.
struct Verdict {
  bool valid = false;
  std::string reason;
  std::string sid;
  std::string owner;
  std::string scopes;  // empty when not set
  int64_t expiresAtMicros = 0;
  bool operator==(const Verdict&) const = default;
};

std::ostream& operator<<(std::ostream& out, const Verdict& v) {
  return out << "{valid=" << v.valid << " reason=" << v.reason << " sid=" << v.sid
             << " owner=" << v.owner << " scopes=" << v.scopes << " expires=" << v.expiresAtMicros
             << "}";
}

Verdict verdictOf(wire::VerifyResult::Reader r) {
  Verdict v;
  v.valid = r.getValid();
  v.reason = reasonName(r.getReason());
  v.sid = r.getSid();
  v.owner = r.getOwner();
  if (r.hasScopes()) v.scopes = scopesText(r.getScopes());
  v.expiresAtMicros = r.getExpiresAtMicros();
  return v;
}

// ---------------------------------------------------------------------------------------------
// Calls shared by the main client, client threads and the stock client.

void setCredential(wire::Credential::Builder out, const std::string& token) { out.setToken(token); }

Verdict verifyVia(wire::TokenLedger::Client ledger, kj::WaitScope& scope, const std::string& token,
                  const std::vector<std::string>& required = {}) {
  auto request = ledger.verifyRequest();
  auto body = request.initRequest();
  setCredential(body.initCredential(), token);
  auto list = body.initRequiredScopes(static_cast<unsigned>(required.size()));
  for (unsigned i = 0; i < required.size(); ++i) list.set(i, required[i]);
  return verdictOf(send(request, scope).getResult());
}

// createToken parameters with sensible defaults.
struct NewToken {
  std::string owner;  // empty: the caller
  std::string description = "Vendor integration";
  std::vector<std::string> scopes = {"assignment:read"};
  bool allScopes = false;
  Kind expiry = Kind::kDays90;
  int64_t customMicros = 0;
  std::string reason;
};

capnp::Request<wire::Session::CreateTokenParams, wire::Session::CreateTokenResults> createRequest(
    wire::Session::Client& session, const NewToken& spec) {
  auto request = session.createTokenRequest();
  request.setOwner(spec.owner);
  request.setDescription(spec.description);
  auto expiration = request.initExpiration();
  switch (spec.expiry) {
    case Kind::kDays90: expiration.setDays90(); break;
    case Kind::kDays180: expiration.setDays180(); break;
    case Kind::kYear: expiration.setYear(); break;
    case Kind::kNever: expiration.setNever(); break;
    case Kind::kCustom: expiration.setCustomMicros(spec.customMicros); break;
  }
  if (spec.allScopes) {
    request.initScopes().setAll();
  } else {
    setScopes(request.initScopes(), spec.scopes);
  }
  request.setReason(spec.reason);
  return request;
}

// ---------------------------------------------------------------------------------------------
// A client on its own thread (KJ allows one event loop per thread). run() executes a job on
// that thread with the client and hands back its result or exception.

class ClientThread {
 public:
  explicit ClientThread(uint16_t port) {
    std::promise<void> ready;
    auto started = ready.get_future();
    thread_ = std::thread([this, port, &ready] { main(port, ready); });
    if (started.wait_for(kCallTimeout) != std::future_status::ready) {
      ADD_FAILURE() << "a client thread did not connect within " << kCallTimeout.count() << " ms";
    }
    try {
      started.get();
    } catch (...) {
      thread_.join();
      throw;
    }
  }
  ~ClientThread() { close(); }
  ClientThread(const ClientThread&) = delete;
  ClientThread& operator=(const ClientThread&) = delete;

  // Every wait inside a job is bounded (waitFor), so a job always ends; a slow one is reported.
  template <typename F>
  auto run(F&& f) {
    using R = std::invoke_result_t<F&, rpc::Client&>;
    auto task = std::make_shared<std::packaged_task<R()>>([this, &f] { return f(*client_); });
    auto result = task->get_future();
    {
      std::lock_guard lock(mutex_);
      jobs_.emplace_back([task] { (*task)(); });
    }
    wake_.notify_one();
    if (result.wait_for(3 * kCallTimeout) != std::future_status::ready) {
      ADD_FAILURE() << "a client thread's job is taking longer than " << 3 * kCallTimeout.count()
                    << " ms";
    }
    return result.get();
  }

  // Destroys the client (closing its connection) and ends the thread.
  void close() {
    {
      std::lock_guard lock(mutex_);
      quit_ = true;
    }
    wake_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void main(uint16_t port, std::promise<void>& ready) {
    try {
      client_ = std::make_unique<rpc::Client>(rpc::ClientOptions{.port = port});
    } catch (...) {
      ready.set_exception(std::current_exception());
      return;
    }
    ready.set_value();
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [this] { return quit_ || !jobs_.empty(); });
        if (jobs_.empty()) break;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
    client_.reset();
  }

  std::unique_ptr<rpc::Client> client_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  bool quit_ = false;
  std::thread thread_;
};

// ---------------------------------------------------------------------------------------------
// A Watcher implemented by the test: records every entry it is sent.

struct Seen {
  uint64_t seq;
  schema::Event::Which kind;
  std::string sid;
};

struct WatchLog {
  std::vector<Seen> entries;
  std::vector<size_t> batches;  // entries per onEntries call
  bool has(schema::Event::Which kind, const std::string& sid) const {
    return std::any_of(entries.begin(), entries.end(),
                       [&](const Seen& s) { return s.kind == kind && s.sid == sid; });
  }
  uint64_t lastSeq() const { return entries.empty() ? 0 : entries.back().seq; }
};

class CollectingWatcher final : public wire::Watcher::Server {
 public:
  explicit CollectingWatcher(std::shared_ptr<WatchLog> log) : log_(std::move(log)) {}

 protected:
  kj::Promise<void> onEntries(OnEntriesContext call) override {
    auto entries = call.getParams().getEntries();
    log_->batches.push_back(entries.size());
    for (auto entry : entries) {
      auto event = entry.getEvent();
      log_->entries.push_back({event.getSeq(), event.which(), sidOf(event)});
    }
    return kj::READY_NOW;
  }

 private:
  std::shared_ptr<WatchLog> log_;
};

// ---------------------------------------------------------------------------------------------
// The fixture: one ledger (admin "alice"), one server on 127.0.0.1:<any port>, one client on the
// test thread.

// The ledger reads the real clock, as the server itself does (see ServerUsesTheLedgerClock).
class RpcTest : public ServedLedgerFixture {
 protected:
  void SetUp() override {
    ServedLedgerFixture::SetUp();
    client = std::make_unique<rpc::Client>(rpc::ClientOptions{.port = server->port()});
  }
  void TearDown() override {
    client.reset();
    ServedLedgerFixture::TearDown();
  }

  kj::WaitScope& ws() { return client->waitScope(); }
  wire::TokenLedger::Client bootstrap() { return client->ledger(); }

  template <typename Params, typename Results>
  capnp::Response<Results> call(capnp::Request<Params, Results>& request) {
    return send(request, ws());
  }

  Verdict verify(const std::string& token, const std::vector<std::string>& required = {}) {
    return verifyVia(bootstrap(), ws(), token, required);
  }
  Verdict verify(const Credential& credential, const std::vector<std::string>& required = {}) {
    return verify(credential.encode(), required);
  }
  wire::Session::Client login(const std::string& token) { return loginVia(bootstrap(), ws(), token); }
  wire::Session::Client login(const Credential& credential) { return login(credential.encode()); }
  // The head as the server reports it (ServerInfo.headSeq).
  uint64_t rpcHead() { return headVia(bootstrap(), ws()); }

  capnp::Response<wire::Session::CreateTokenResults> create(wire::Session::Client& session,
                                                            const NewToken& spec) {
    auto request = createRequest(session, spec);
    return call(request);
  }

  // Runs `calls` and checks it was refused with `code` and appended nothing.
  template <typename F>
  void expectRefused(const std::string& code, F&& calls, const std::string& what) {
    SCOPED_TRACE(what);
    const uint64_t before = rpcHead();
    CallOutcome outcome = outcomeOf(calls);
    EXPECT_EQ(outcome.code, code) << outcome.message;
    EXPECT_EQ(rpcHead(), before) << "a refused call appended events";
    EXPECT_EQ(head(), before);
  }

  // Runs every request concurrently so the writer commits them in few groups; returns the
  // results in order, failing the test for any refusal.
  std::vector<CommandResult> runAll(std::vector<Command> commands) {
    std::vector<std::future<tokenledger::Outcome>> pending;
    for (auto& command : commands) {
      auto promise = std::make_shared<std::promise<tokenledger::Outcome>>();
      pending.push_back(promise->get_future());
      ledger().submit(Request{admin, "127.0.0.1:4000", "", std::move(command)},
                      [promise](tokenledger::Outcome o) { promise->set_value(std::move(o)); });
    }
    std::vector<CommandResult> out;
    for (auto& f : pending) {
      if (f.wait_for(60s) != std::future_status::ready) throw std::runtime_error("ledger stalled");
      auto o = f.get();
      if (o.error) throw *o.error;
      out.push_back(std::move(o.result));
    }
    return out;
  }

  // Polls verify until `credential` reads as expired (its custom expiry is a few seconds ahead).
  void waitUntilExpired(const Credential& credential) {
    const auto deadline = SteadyClock::now() + 10s;
    while (verify(credential).reason != "expired") {
      ASSERT_LT(SteadyClock::now(), deadline) << "the token did not expire in time";
      std::this_thread::sleep_for(20ms);
    }
  }

  std::unique_ptr<rpc::Client> client;
};

// =============================================================================================
// 1. Any Cap'n Proto client works from the schema alone.

TEST_F(RpcTest, StockEzRpcClientSpeaksTheProtocol) {
  Login bob = user("bob");
  Login vendor = tokenFor("bob", scopes({"assignment:read"}), {}, "Vendor A");
  const uint16_t serverPort = port();

  struct Seen {
    Verdict verdict;
    std::string principal;
    std::string tokenSid;
    std::vector<std::string> listed;
    std::string failure;
  } seen;
  // EzRpcClient runs KJ's own event loop, which must be the only one on its thread.
  std::thread stock([&] {
    try {
      capnp::EzRpcClient ez("127.0.0.1", serverPort);
      auto& scope = ez.getWaitScope();
      auto ledger = ez.getMain<wire::TokenLedger>();
      seen.verdict = verifyVia(ledger, scope, vendor.credential.encode(), {"assignment:read"});
      auto session = loginVia(ledger, scope, bob.credential.encode());
      auto who = session.whoamiRequest();
      auto whoami = send(who, scope);
      seen.principal = whoami.getPrincipal();
      seen.tokenSid = whoami.getTokenSid();
      auto list = session.listTokensRequest();
      auto listed = send(list, scope);
      for (auto t : listed.getTokens()) seen.listed.push_back(t.getSid());
    } catch (const std::exception& e) {
      seen.failure = e.what();
    }
  });
  stock.join();

  ASSERT_EQ(seen.failure, "");
  EXPECT_EQ(seen.verdict, (Verdict{true, "ok", vendor.credential.sidHex(), "bob", "assignment:read",
                                   seen.verdict.expiresAtMicros}));
  EXPECT_GT(seen.verdict.expiresAtMicros, nowMicros());
  EXPECT_EQ(seen.principal, "bob");
  EXPECT_EQ(seen.tokenSid, bob.credential.sidHex());
  std::vector<std::string> expected{bob.credential.sidHex(), vendor.credential.sidHex()};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(seen.listed, expected);
}

// =============================================================================================
// 2. TokenLedger: verify, verifyBatch, login, info.

TEST_F(RpcTest, VerifyReportsEveryReason) {
  Login bob = user("bob");
  Login vendor = tokenFor("bob", scopes({"assignment:read", "contact:read"}), {Kind::kYear, 0});
  Login gone = tokenFor("bob", scopes({"assignment:read"}));
  run(admin, RevokeToken{gone.credential.sidHex()});
  const int64_t vendorExpiry = projection().committed().token(vendor.credential.sidHex())->expiresAtMicros;
  const std::string sid = vendor.credential.sidHex();

  EXPECT_EQ(verify(vendor.credential, {"assignment:read"}),
            (Verdict{true, "ok", sid, "bob", "assignment:read, contact:read", vendorExpiry}));
  EXPECT_EQ(verify(vendor.credential), (Verdict{true, "ok", sid, "bob", "assignment:read, contact:read",
                                                vendorExpiry}))
      << "no required scopes: any valid token";
  EXPECT_EQ(verify(vendor.credential, {"assignment:read", "contact:read"}).reason, "ok");
  EXPECT_EQ(verify(vendor.credential, {"assignment:write"}),
            (Verdict{false, "insufficientScope", sid, "bob", "assignment:read, contact:read", vendorExpiry}));
  EXPECT_EQ(verify(vendor.credential, {"assignment:read", "nosuch:scope"}).reason, "insufficientScope")
      << "a scope outside the catalog is held by nobody";
  EXPECT_EQ(verify(adminCredential, {"everify:write"}).reason, "ok") << "All Scopes";
  EXPECT_EQ(verify(gone.credential).reason, "revoked");
  EXPECT_EQ(verify(gone.credential).sid, gone.credential.sidHex()) << "secret matched: sid is set";
  EXPECT_FALSE(verify(gone.credential).valid);

  Credential unknown = Credential::generate();
  EXPECT_EQ(verify(unknown), (Verdict{false, "invalidCredentials", "", "", "", 0}));
  Credential wrongSecret = Credential::withNewSecret(vendor.credential.sid);
  EXPECT_EQ(verify(wrongSecret), (Verdict{false, "invalidCredentials", "", "", "", 0}));

  // Malformed: rejected before any look-up, nothing about the token revealed.
  std::string good = vendor.credential.encode();
  std::string badChecksum = good;
  badChecksum.back() = badChecksum.back() == '0' ? '1' : '0';
  std::string badSecret = good;
  badSecret[40] = badSecret[40] == '0' ? '1' : '0';  // inside the secret: checksum no longer fits
  const Verdict malformed{false, "malformed", "", "", "", 0};
  for (const std::string& text :
       {std::string(), std::string("hello"), badChecksum, badSecret, good.substr(0, good.size() - 1),
        good + "0", "ghp_" + good.substr(4), std::string("tlp_") + std::string(good.size() - 4, 'z'),
        sid}) {
    EXPECT_EQ(verify(text), malformed) << "credential text: " << text.substr(0, 20) << "...";
  }
  // A request with no credential set at all.
  auto empty = bootstrap().verifyRequest();
  empty.initRequest();
  EXPECT_EQ(verdictOf(call(empty).getResult()), malformed);
}

TEST_F(RpcTest, UnknownSidAndWrongSecretGiveTheSameAnswer) {
  Login bob = user("bob");
  Credential unknown = Credential::generate();
  Credential wrongSecret = Credential::withNewSecret(bob.credential.sid);
  auto answer = [&](const Credential& credential) {
    auto request = bootstrap().verifyRequest();
    setCredential(request.initRequest().initCredential(), credential.encode());
    auto required = request.getRequest().initRequiredScopes(1);
    required.set(0, "tokens:read");
    auto response = call(request);
    return canonicalBytes(response.getResult());  // every field, bit for bit
  };
  const std::string a = answer(unknown);
  const std::string b = answer(wrongSecret);
  EXPECT_EQ(a, b) << "unknown SID and wrong secret must be indistinguishable";
  EXPECT_EQ(verify(unknown), (Verdict{false, "invalidCredentials", "", "", "", 0}));
  // The same through the two-value form.
  auto pairAnswer = [&](const Credential& credential) {
    auto request = bootstrap().verifyRequest();
    auto pair = request.initRequest().initCredential().initPair();
    pair.setSid(credential.sidHex());
    pair.setSecret(secretHex(credential));
    auto response = call(request);
    return canonicalBytes(response.getResult());
  };
  EXPECT_EQ(pairAnswer(unknown), pairAnswer(wrongSecret));
  EXPECT_EQ(pairAnswer(unknown), a);
}

TEST_F(RpcTest, VerifyAcceptsTheTwoValuePairForm) {
  Login bob = user("bob");
  Login vendor = tokenFor("bob", scopes({"assignment:read"}));
  auto pairVerdict = [&](const std::string& sid, const std::string& secret,
                         std::vector<std::string> required = {}) {
    auto request = bootstrap().verifyRequest();
    auto body = request.initRequest();
    auto pair = body.initCredential().initPair();
    pair.setSid(sid);
    pair.setSecret(secret);
    auto list = body.initRequiredScopes(static_cast<unsigned>(required.size()));
    for (unsigned i = 0; i < required.size(); ++i) list.set(i, required[i]);
    return verdictOf(call(request).getResult());
  };
  const std::string sid = vendor.credential.sidHex();
  const std::string secret = secretHex(vendor.credential);
  EXPECT_EQ(pairVerdict(sid, secret, {"assignment:read"}), verify(vendor.credential, {"assignment:read"}));
  EXPECT_EQ(pairVerdict(sid, secret, {"assignment:read"}).reason, "ok");
  EXPECT_EQ(pairVerdict(sid, secret, {"assignment:write"}).reason, "insufficientScope");
  EXPECT_EQ(pairVerdict(sid, secretHex(Credential::generate())).reason, "invalidCredentials");
  EXPECT_EQ(pairVerdict(sid, secret.substr(1)).reason, "malformed");
  EXPECT_EQ(pairVerdict(sid, secret + "00").reason, "malformed");
  EXPECT_EQ(pairVerdict(sid.substr(1), secret).reason, "malformed");
  std::string upperSid = sid;
  std::transform(upperSid.begin(), upperSid.end(), upperSid.begin(), ::toupper);
  if (upperSid != sid) {
    EXPECT_EQ(pairVerdict(upperSid, secret).reason, "malformed");
  }
  EXPECT_EQ(pairVerdict(sid, std::string(64, 'g')).reason, "malformed");
  EXPECT_EQ(pairVerdict("", "").reason, "malformed");

  // Logging in with the pair works as well.
  auto request = bootstrap().loginRequest();
  auto pair = request.initCredential().initPair();
  pair.setSid(bob.credential.sidHex());
  pair.setSecret(secretHex(bob.credential));
  auto session = call(request).getSession();
  auto who = session.whoamiRequest();
  EXPECT_EQ(std::string(call(who).getPrincipal()), "bob");
}

TEST_F(RpcTest, VerifyBatchKeepsOrderAndCapsTheSize) {
  Login bob = user("bob");
  Login vendor = tokenFor("bob", scopes({"assignment:read"}));
  Login gone = tokenFor("bob", scopes({"assignment:read"}));
  run(admin, RevokeToken{gone.credential.sidHex()});

  struct Item {
    std::string token;
    std::vector<std::string> required;
    std::string reason;
  };
  std::vector<Item> items = {
      {vendor.credential.encode(), {"assignment:read"}, "ok"},
      {"garbage", {}, "malformed"},
      {gone.credential.encode(), {}, "revoked"},
      {vendor.credential.encode(), {"contact:read"}, "insufficientScope"},
      {Credential::generate().encode(), {}, "invalidCredentials"},
      {bob.credential.encode(), {"tokens:read"}, "ok"},
  };
  auto request = bootstrap().verifyBatchRequest();
  auto list = request.initRequests(static_cast<unsigned>(items.size()));
  for (unsigned i = 0; i < items.size(); ++i) {
    setCredential(list[i].initCredential(), items[i].token);
    auto required = list[i].initRequiredScopes(static_cast<unsigned>(items[i].required.size()));
    for (unsigned k = 0; k < items[i].required.size(); ++k) required.set(k, items[i].required[k]);
  }
  auto response = call(request);
  auto results = response.getResults();
  ASSERT_EQ(results.size(), items.size());
  for (unsigned i = 0; i < items.size(); ++i) {
    EXPECT_EQ(reasonName(results[i].getReason()), items[i].reason) << "request " << i;
    EXPECT_EQ(verdictOf(results[i]), verify(items[i].token, items[i].required)) << "request " << i;
  }

  // An empty batch, exactly the maximum, and one more than that.
  auto none = bootstrap().verifyBatchRequest();
  none.initRequests(0);
  EXPECT_EQ(call(none).getResults().size(), 0u);

  auto batch = [&](unsigned n) {
    auto r = bootstrap().verifyBatchRequest();
    auto requests = r.initRequests(n);
    for (unsigned i = 0; i < n; ++i) {
      setCredential(requests[i].initCredential(),
                    i % 2 == 0 ? vendor.credential.encode() : gone.credential.encode());
    }
    return r;
  };
  auto full = batch(1000);
  auto fullResponse = call(full);
  ASSERT_EQ(fullResponse.getResults().size(), 1000u);
  for (unsigned i = 0; i < 1000; ++i) {
    ASSERT_EQ(reasonName(fullResponse.getResults()[i].getReason()), i % 2 == 0 ? "ok" : "revoked")
        << "request " << i;
  }
  // ~128 KiB of credentials: within the default 1 MiB message limit (see SmallMessageTest).
  auto large = bootstrap().verifyBatchRequest();
  auto largeList = large.initRequests(8);
  for (unsigned i = 0; i < 8; ++i) setCredential(largeList[i].initCredential(), std::string(16 << 10, 'a'));
  auto largeResponse = call(large);
  ASSERT_EQ(largeResponse.getResults().size(), 8u);
  EXPECT_EQ(reasonName(largeResponse.getResults()[7].getReason()), "malformed");
  auto tooMany = batch(1001);
  EXPECT_OUTCOME("invalid-argument", call(tooMany));
  EXPECT_EQ(verify(vendor.credential).reason, "ok") << "the connection survives a refused batch";
}

TEST_F(RpcTest, LoginAcceptsOnlyUsableCredentials) {
  Login bob = user("bob");
  Login gone = tokenFor("bob", scopes({"tokens:read"}));
  run(admin, RevokeToken{gone.credential.sidHex()});

  auto session = login(bob.credential);
  auto who = session.whoamiRequest();
  EXPECT_EQ(std::string(call(who).getPrincipal()), "bob");

  EXPECT_OUTCOME("unauthenticated", login(gone.credential));
  EXPECT_OUTCOME("unauthenticated", login(Credential::generate()));
  EXPECT_OUTCOME("unauthenticated", login(Credential::withNewSecret(bob.credential.sid)));
  EXPECT_OUTCOME("unauthenticated", login("tlp_nonsense"));
  EXPECT_OUTCOME("unauthenticated", login(""));

  // A call pipelined on a refused login never runs as anyone.
  const uint64_t before = rpcHead();
  auto request = bootstrap().loginRequest();
  setCredential(request.initCredential(), gone.credential.encode());
  auto pipelined = request.send().getSession();
  auto create = createRequest(pipelined, NewToken{.owner = "bob"});
  EXPECT_OUTCOME("unauthenticated", call(create));
  auto who2 = pipelined.whoamiRequest();
  EXPECT_OUTCOME("unauthenticated", call(who2));
  EXPECT_EQ(rpcHead(), before);
}

TEST_F(RpcTest, InfoReportsVersionHeadCheckpointAndKeys) {
  user("bob");
  auto request = bootstrap().infoRequest();
  auto response = call(request);
  auto info = response.getInfo();
  EXPECT_EQ(std::string(info.getVersion()), TOKENLEDGER_VERSION);
  EXPECT_EQ(info.getHeadSeq(), head());
  ASSERT_EQ(info.getPublicKeys().size(), 1u);
  auto key = info.getPublicKeys()[0];
  EXPECT_EQ(key.getIntroducedAtSeq(), 1u);
  EXPECT_EQ(std::string(key.getKeyId()), sealKeyId(store(), 1));
  ASSERT_EQ(key.getPublicKey().size(), 32u);
  Ed25519PublicKey raw{};
  std::copy(key.getPublicKey().begin(), key.getPublicKey().end(), raw.begin());
  EXPECT_EQ(keyIdOf(raw), std::string(key.getKeyId()));

  // `tokenledgerd init` leaves a signed checkpoint; the published key verifies it.
  auto cp = info.getLatestCheckpoint();
  EXPECT_GE(cp.getSeq(), 1u);
  EXPECT_EQ(std::string(cp.getKeyId()), std::string(key.getKeyId()));
  Digest digest = checkpointDigest(cp.getSeq(), digestOf(cp.getEntryHash()), cp.getTimeMicros());
  EXPECT_TRUE(VerifyingKey(raw).verify(digest, bytesOf(cp.getSignature())));

  // A key rotation adds the new key, introduced at its own seq, and a checkpoint signed by a
  // published key.
  CommandResult rotated = run(admin, RotateSigningKey{});
  auto again = bootstrap().infoRequest();
  auto response2 = call(again);
  auto info2 = response2.getInfo();
  EXPECT_EQ(info2.getHeadSeq(), rotated.lastSeq);
  ASSERT_EQ(info2.getPublicKeys().size(), 2u);
  EXPECT_EQ(info2.getPublicKeys()[0].getIntroducedAtSeq(), 1u);
  EXPECT_EQ(info2.getPublicKeys()[1].getIntroducedAtSeq(), rotated.lastSeq);
  EXPECT_NE(std::string(info2.getPublicKeys()[1].getKeyId()), std::string(key.getKeyId()));
  auto cp2 = info2.getLatestCheckpoint();
  EXPECT_EQ(cp2.getSeq(), rotated.lastSeq);
  bool verified = false;
  for (auto k : info2.getPublicKeys()) {
    if (k.getKeyId() != cp2.getKeyId()) continue;
    Ed25519PublicKey r{};
    std::copy(k.getPublicKey().begin(), k.getPublicKey().end(), r.begin());
    verified = VerifyingKey(r).verify(
        checkpointDigest(cp2.getSeq(), digestOf(cp2.getEntryHash()), cp2.getTimeMicros()),
        bytesOf(cp2.getSignature()));
  }
  EXPECT_TRUE(verified) << "the newest checkpoint is signed by a published key";
}

TEST_F(RpcTest, AnonymousCallersReachNoSessionMethod) {
  Login bob = user("bob");
  const uint64_t before = rpcHead();
  // verify, verifyBatch, info and login need no session...
  EXPECT_EQ(verify(bob.credential).reason, "ok");
  auto batch = bootstrap().verifyBatchRequest();
  batch.initRequests(1);
  EXPECT_EQ(call(batch).getResults().size(), 1u);
  EXPECT_EQ(rpcHead(), before);
  // ...and the bootstrap capability is not a Session, whatever the caller claims.
  auto fake = bootstrap().castAs<wire::Session>();
  auto who = fake.whoamiRequest();
  auto create = createRequest(fake, NewToken{.owner = "mallory"});
  auto revokeAll = fake.revokeAllForRequest();
  revokeAll.setOwner("bob");
  auto grant = fake.grantRoleRequest();
  grant.setPrincipal("mallory");
  grant.setRole(schema::Role::ADMIN);
  auto unimplemented = [&](auto& request) {
    try {
      call(request);
      return std::string("succeeded");
    } catch (const kj::Exception& e) {
      return std::string(e.getType() == kj::Exception::Type::UNIMPLEMENTED ? "unimplemented"
                                                                             : e.getDescription().cStr());
    }
  };
  EXPECT_EQ(unimplemented(who), "unimplemented");
  EXPECT_EQ(unimplemented(create), "unimplemented");
  EXPECT_EQ(unimplemented(revokeAll), "unimplemented");
  EXPECT_EQ(unimplemented(grant), "unimplemented");
  EXPECT_EQ(rpcHead(), before);
  EXPECT_EQ(verify(bob.credential).reason, "ok");
}

// =============================================================================================
// 2. Session: every method.

TEST_F(RpcTest, WhoamiDescribesTheLogin) {
  Login bob = user("bob");
  Login carol = principal("carol", Role::kAuditor, scopes({"audit:read", "tokens:read"}));
  auto check = [&](const Credential& credential, const std::string& principalName,
                   std::vector<schema::Role> roles, const std::string& scopeText) {
    SCOPED_TRACE(principalName);
    auto session = login(credential);
    auto request = session.whoamiRequest();
    auto response = call(request);
    EXPECT_EQ(std::string(response.getPrincipal()), principalName);
    EXPECT_EQ(std::string(response.getTokenSid()), credential.sidHex());
    std::vector<schema::Role> got = rolesOf(response.getRoles());
    EXPECT_EQ(got, roles);
    EXPECT_EQ(scopesText(response.getScopes()), scopeText);
  };
  check(adminCredential, "alice", {schema::Role::ADMIN}, "All Scopes");
  check(bob.credential, "bob", {schema::Role::USER},
        "assignment:read, assignment:write, contact:read, tokens:read, tokens:write");
  check(carol.credential, "carol", {schema::Role::AUDITOR}, "audit:read, tokens:read");
  run(admin, GrantRole{"carol", Role::kUser});
  check(carol.credential, "carol", {schema::Role::USER, schema::Role::AUDITOR},
        "audit:read, tokens:read");
  // A principal without any role still logs in; it just may do nothing.
  Login svc = tokenFor("svc-payroll", scopes({"assignment:read"}));
  check(svc.credential, "svc-payroll", {}, "assignment:read");
}

TEST_F(RpcTest, CreateTokenReturnsACredentialThatVerifies) {
  Login bob = user("bob");
  auto session = login(bob.credential);
  const uint64_t before = rpcHead();
  const int64_t t0 = nowMicros();
  auto created = create(session, NewToken{.description = "  Vendor A  ",
                                          .scopes = {"contact:read", "assignment:read"},
                                          .reason = "onboarding vendor A"});
  const int64_t t1 = nowMicros();
  EXPECT_EQ(rpcHead(), before + 1);
  auto token = created.getToken();
  const std::string credential = created.getCredential();
  const std::string sid = token.getSid();
  EXPECT_TRUE(isSidText(sid)) << sid;
  EXPECT_EQ(std::string(token.getOwner()), "bob") << "an empty owner means the caller";
  EXPECT_EQ(std::string(token.getDescription()), "Vendor A") << "trimmed";
  EXPECT_EQ(statusName(token.getStatus()), "active");
  EXPECT_EQ(scopesText(token.getScopes()), "assignment:read, contact:read");
  EXPECT_EQ(actorFrom(token.getCreatedBy()), Actor::token("bob", bob.credential.sidHex()));
  EXPECT_GE(token.getCreatedAtMicros(), t0);
  EXPECT_LE(token.getCreatedAtMicros(), t1);
  EXPECT_EQ(token.getExpiresAtMicros(), token.getCreatedAtMicros() + 90 * kDay);
  EXPECT_EQ(token.getLastSeq(), before + 1);
  EXPECT_EQ(token.getRevokedAtMicros(), 0);

  // The credential shown once is the one-string form, and it works at once.
  ASSERT_EQ(credential.size(), kCredentialLength);
  EXPECT_EQ(credential.substr(0, 4), "tlp_");
  EXPECT_EQ(credential.substr(4, 32), sid);
  EXPECT_EQ(verify(credential, {"assignment:read", "contact:read"}),
            (Verdict{true, "ok", sid, "bob", "assignment:read, contact:read", token.getExpiresAtMicros()}));
  EXPECT_EQ(verify(credential, {"assignment:write"}).reason, "insufficientScope");
  // The stored row never holds the secret.
  auto parsed = parseCredential(credential);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(projection().committed().token(sid)->secretHash, sha256(parsed->secret));

  // The other expirations.
  auto year = create(session, NewToken{.expiry = Kind::kYear});
  EXPECT_EQ(year.getToken().getExpiresAtMicros(), year.getToken().getCreatedAtMicros() + 365 * kDay);
  auto half = create(session, NewToken{.expiry = Kind::kDays180});
  EXPECT_EQ(half.getToken().getExpiresAtMicros(), half.getToken().getCreatedAtMicros() + 180 * kDay);
  const int64_t custom = nowMicros() + 10 * kDay;
  auto dated = create(session, NewToken{.expiry = Kind::kCustom, .customMicros = custom});
  EXPECT_EQ(dated.getToken().getExpiresAtMicros(), custom);

  // Admins create for anyone, and only they may choose "never".
  auto adminSession = login(adminCredential);
  auto forever = create(adminSession, NewToken{.owner = "svc-payroll", .allScopes = true,
                                               .expiry = Kind::kNever});
  EXPECT_EQ(std::string(forever.getToken().getOwner()), "svc-payroll");
  EXPECT_EQ(forever.getToken().getExpiresAtMicros(), 0);
  EXPECT_EQ(scopesText(forever.getToken().getScopes()), "All Scopes");
  EXPECT_EQ(verify(std::string(forever.getCredential()), {"everify:write"}).reason, "ok");

  // Refusals: a clear code, and nothing appended.
  auto refused = [&](const std::string& code, NewToken spec, const std::string& what) {
    expectRefused(code, [&] { create(session, spec); }, what);
  };
  refused("permission-denied", NewToken{.expiry = Kind::kNever}, "never is admin-only");
  refused("permission-denied", NewToken{.owner = "carol"}, "someone else's token");
  refused("permission-denied", NewToken{.allScopes = true}, "escalation to All Scopes");
  refused("permission-denied", NewToken{.scopes = {"roles:write"}}, "escalation to a scope not held");
  refused("invalid-argument", NewToken{.scopes = {"nosuch:read"}}, "unknown scope");
  refused("invalid-argument", NewToken{.scopes = {}}, "empty scope set");
  refused("invalid-argument", NewToken{.description = ""}, "empty description");
  refused("invalid-argument", NewToken{.description = "   "}, "blank description");
  refused("invalid-argument", NewToken{.description = std::string(10'000, 'x')}, "10 000 characters");
  refused("invalid-argument", NewToken{.description = std::string(201, 'x')}, "201 characters");
  refused("invalid-argument", NewToken{.description = "tab\tinside\x01"}, "control characters");
  refused("invalid-argument", NewToken{.expiry = Kind::kCustom, .customMicros = nowMicros() - kSecond},
          "expiry in the past");
  refused("invalid-argument", NewToken{.expiry = Kind::kCustom, .customMicros = nowMicros() + 400 * kDay},
          "expiry beyond the maximum");
  refused("invalid-argument", NewToken{.owner = "bad/owner"}, "bad principal name");
  refused("invalid-argument", NewToken{.reason = std::string(501, 'r')}, "reason too long");

  // The unknown scope is named in the message.
  CallOutcome unknown = outcomeOf([&] { create(session, NewToken{.scopes = {"nosuch:read"}}); });
  EXPECT_NE(unknown.message.find("nosuch:read"), std::string::npos) << unknown.message;
  // Exactly 200 characters are fine.
  auto longest = create(session, NewToken{.description = std::string(200, 'y')});
  EXPECT_EQ(std::string(longest.getToken().getDescription()).size(), 200u);
}

TEST_F(RpcTest, ListTokensFiltersByStatusAndOwnerAndPagesExactlyOnce) {
  Login bob = user("bob");
  Login dave = user("dave");
  std::vector<std::string> svc;
  for (int i = 0; i < 9; ++i) {
    svc.push_back(tokenFor("svc", scopes({"assignment:read"}), {}, "svc " + std::to_string(i))
                      .credential.sidHex());
  }
  std::set<std::string> revokedSvc = {svc[1], svc[4], svc[5], svc[8]};
  for (const auto& sid : revokedSvc) run(admin, RevokeToken{sid});
  Login bobVendor = tokenFor("bob", scopes({"assignment:read"}));
  Login bobOld = tokenFor("bob", scopes({"assignment:read"}));
  run(admin, RevokeToken{bobOld.credential.sidHex()});

  auto list = [&](wire::Session::Client& session, const std::string& owner, bool showAll,
                  const std::string& after, uint32_t limit) {
    auto request = session.listTokensRequest();
    auto filter = request.initFilter();
    filter.setOwner(owner);
    filter.setShowAll(showAll);
    filter.setAfter(after);
    filter.setLimit(limit);
    return call(request);
  };
  auto sidsOf = [](const capnp::Response<wire::Session::ListTokensResults>& r) {
    std::vector<std::string> out;
    for (auto t : r.getTokens()) out.push_back(t.getSid());
    return out;
  };
  // All pages of a listing, checking each page's size and the cursor.
  auto allPages = [&](wire::Session::Client& session, const std::string& owner, bool showAll,
                      uint32_t limit) {
    std::vector<std::string> out;
    std::string after;
    for (int page = 0; page < 100; ++page) {
      auto r = list(session, owner, showAll, after, limit);
      auto sids = sidsOf(r);
      EXPECT_LE(sids.size(), limit);
      out.insert(out.end(), sids.begin(), sids.end());
      after = r.getNextAfter();
      if (after.empty()) return out;
      EXPECT_EQ(after, sids.back()) << "nextAfter is the last SID of the page";
    }
    ADD_FAILURE() << "paging did not end";
    return out;
  };
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };

  auto adminSession = login(adminCredential);
  std::vector<std::string> activeSvc;
  for (const auto& sid : svc) {
    if (!revokedSvc.count(sid)) activeSvc.push_back(sid);
  }
  // Default: active only, ordered by SID.
  EXPECT_EQ(sidsOf(list(adminSession, "svc", false, "", 0)), sorted(activeSvc));
  // Show all: revoked too, with their status.
  auto everything = list(adminSession, "svc", true, "", 0);
  EXPECT_EQ(sidsOf(everything), sorted(svc));
  for (auto t : everything.getTokens()) {
    EXPECT_EQ(statusName(t.getStatus()), revokedSvc.count(t.getSid()) ? "revoked" : "active");
    EXPECT_EQ(std::string(t.getOwner()), "svc");
  }
  // Paging covers every token exactly once, whatever the page size.
  for (uint32_t limit : {1u, 2u, 3u, 4u, 5u, 9u, 10u}) {
    SCOPED_TRACE("limit " + std::to_string(limit));
    EXPECT_EQ(allPages(adminSession, "svc", true, limit), sorted(svc));
    EXPECT_EQ(allPages(adminSession, "svc", false, limit), sorted(activeSvc));
  }
  // Admins without an owner filter see everyone's tokens.
  std::vector<std::string> every;
  for (const Token& t : projection().listTokens(std::nullopt)) every.push_back(t.sid);
  EXPECT_EQ(allPages(adminSession, "", true, 3), every);
  EXPECT_EQ(every.size(), 1u + 3u + 9u + 1u);  // alice; bob's login, vendor and old; svc x9; dave

  // A user sees only their own, with or without naming themselves.
  auto bobSession = login(bob.credential);
  auto bobsActive = sorted({bob.credential.sidHex(), bobVendor.credential.sidHex()});
  EXPECT_EQ(sidsOf(list(bobSession, "", false, "", 0)), bobsActive);
  EXPECT_EQ(sidsOf(list(bobSession, "bob", false, "", 0)), bobsActive);
  EXPECT_EQ(sidsOf(list(bobSession, "", true, "", 0)),
            sorted({bob.credential.sidHex(), bobVendor.credential.sidHex(), bobOld.credential.sidHex()}));
  EXPECT_EQ(allPages(bobSession, "", true, 1),
            sorted({bob.credential.sidHex(), bobVendor.credential.sidHex(), bobOld.credential.sidHex()}));
  EXPECT_OUTCOME("permission-denied", list(bobSession, "svc", false, "", 0));
  EXPECT_OUTCOME("permission-denied", list(bobSession, "dave", true, "", 0));
  // Page size limits.
  EXPECT_OUTCOME("ok", list(adminSession, "", true, "", 500));
  EXPECT_OUTCOME("invalid-argument", list(adminSession, "", true, "", 501));
  // An owner with no tokens, and a cursor past the end.
  EXPECT_EQ(list(adminSession, "nobody", true, "", 0).getTokens().size(), 0u);
  EXPECT_EQ(list(adminSession, "svc", true, std::string(32, 'f'), 0).getTokens().size(), 0u);
}

// A table the server cannot read back (a byte flipped on disk in the owner index) fails the
// call that reads it, with the reason, instead of answering with a shorter list; the operator
// finds the same reason in the server's log.
TEST_F(RpcTest, ADamagedIndexFailsTheCallAndIsLogged) {
  for (int i = 0; i < 2000; ++i) tokenFor("svc", scopes({"email:read"}), {}, "t" + std::to_string(i));
  client.reset();
  server.reset();
  close();
  flipByteOnDisk(dataDir() / "db", Family::kOwnerTokens);
  open();
  // The server's log, captured. spdlog's default logger may be replaced only while no other
  // thread logs: before the server's threads start, and again once they are gone.
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "test", std::make_shared<spdlog::sinks::ostream_sink_mt>(log)));
  server = std::make_unique<rpc::Server>(*instance, serverOptions);
  client = std::make_unique<rpc::Client>(rpc::ClientOptions{.port = server->port()});

  // Page through svc's tokens until a page fails or the list ends.
  CallOutcome outcome{"ok", ""};
  size_t listed = 0;
  {  // the session goes before its client
    auto session = login(adminCredential);
    std::string after;
    for (bool more = true; more && outcome.ok();) {
      auto request = session.listTokensRequest();
      auto filter = request.initFilter();
      filter.setOwner("svc");
      filter.setAfter(after);
      filter.setLimit(500);
      outcome = outcomeOf([&] {
        auto page = call(request);
        listed += page.getTokens().size();
        more = page.getTokens().size() == 500;
        if (more) after = page.getTokens()[499].getSid();
      });
    }
  }
  // Verification does not read that table: it goes on.
  EXPECT_TRUE(verify(adminCredential).valid);
  client.reset();
  server.reset();
  spdlog::set_default_logger(previous);
  EXPECT_EQ(outcome.code, "integrity") << outcome.message << " after listing " << listed;
  EXPECT_LT(listed, 2000u);
  EXPECT_NE(outcome.message.find("column family \"owner_tokens\" does not read back"), std::string::npos)
      << outcome.message;
  EXPECT_NE(log.str().find("column family \"owner_tokens\" does not read back"), std::string::npos)
      << "server log:\n" << log.str();
}

TEST_F(RpcTest, GetTokenShowsOneToken) {
  Login bob = user("bob");
  Login vendor = tokenFor("bob", scopes({"assignment:read"}), {Kind::kDays180, 0}, "Vendor B");
  CommandResult revoked = run(admin, RevokeToken{vendor.credential.sidHex()}, "contract ended");
  auto bobSession = login(bob.credential);
  auto get = [&](wire::Session::Client& session, const std::string& sid) {
    auto request = session.getTokenRequest();
    request.setSid(sid);
    return call(request);
  };
  auto response = get(bobSession, vendor.credential.sidHex());
  auto t = response.getToken();
  const Token stored = *projection().committed().token(vendor.credential.sidHex());
  EXPECT_EQ(std::string(t.getSid()), stored.sid);
  EXPECT_EQ(std::string(t.getOwner()), "bob");
  EXPECT_EQ(std::string(t.getDescription()), "Vendor B");
  EXPECT_EQ(statusName(t.getStatus()), "revoked");
  EXPECT_EQ(t.getCreatedAtMicros(), stored.createdAtMicros);
  EXPECT_EQ(actorFrom(t.getCreatedBy()), admin);
  EXPECT_EQ(t.getExpiresAtMicros(), stored.expiresAtMicros);
  EXPECT_EQ(scopesText(t.getScopes()), "assignment:read");
  EXPECT_EQ(t.getRevokedAtMicros(), stored.revokedAtMicros);
  EXPECT_GT(t.getRevokedAtMicros(), 0);
  EXPECT_EQ(actorFrom(t.getRevokedBy()), admin);
  EXPECT_EQ(std::string(t.getRevokeReason()), "contract ended");
  EXPECT_EQ(t.getLastSeq(), revoked.lastSeq);

  auto adminSession = login(adminCredential);
  EXPECT_EQ(std::string(get(adminSession, bob.credential.sidHex()).getToken().getOwner()), "bob");
  EXPECT_OUTCOME("not-found", get(bobSession, adminCredential.sidHex()));
  EXPECT_OUTCOME("not-found", get(bobSession, Credential::generate().sidHex()));
  EXPECT_OUTCOME("not-found", get(adminSession, Credential::generate().sidHex()));
  EXPECT_OUTCOME("invalid-argument", get(adminSession, "not-a-sid"));
  EXPECT_OUTCOME("invalid-argument", get(adminSession, ""));
}

TEST_F(RpcTest, ChangeScopesAndSetDescription) {
  Login bob = user("bob");
  Login vendor = tokenFor("bob", scopes({"assignment:read"}), {}, "Vendor A");
  const std::string sid = vendor.credential.sidHex();
  auto session = login(bob.credential);
  auto changeScopes = [&](const std::string& target, std::vector<std::string> ids, bool all = false) {
    auto request = session.changeScopesRequest();
    request.setSid(target);
    if (all) {
      request.initScopes().setAll();
    } else {
      setScopes(request.initScopes(), ids);
    }
    request.setReason("needs contacts");
    return call(request);
  };
  auto describe = [&](const std::string& target, const std::string& text) {
    auto request = session.setDescriptionRequest();
    request.setSid(target);
    request.setDescription(text);
    return call(request);
  };

  EXPECT_EQ(verify(vendor.credential, {"contact:read"}).reason, "insufficientScope");
  auto changed = changeScopes(sid, {"contact:read", "assignment:read"});
  EXPECT_EQ(scopesText(changed.getToken().getScopes()), "assignment:read, contact:read");
  EXPECT_EQ(changed.getToken().getLastSeq(), head());
  EXPECT_EQ(verify(vendor.credential, {"contact:read"}).reason, "ok") << "verification sees it at once";
  auto event = readEvent(store(), head());
  EXPECT_EQ(std::string(event.event().getReason()), "needs contacts");
  EXPECT_TRUE(std::string(event.event().getClientAddress()).starts_with("127.0.0.1:"));

  auto renamed = describe(sid, "  Vendor A (billing)  ");
  EXPECT_EQ(std::string(renamed.getToken().getDescription()), "Vendor A (billing)");
  EXPECT_EQ(renamed.getToken().getLastSeq(), head());

  expectRefused("failed-precondition", [&] { changeScopes(sid, {"assignment:read", "contact:read"}); },
                "the same scopes again");
  expectRefused("permission-denied", [&] { changeScopes(sid, {}, true); }, "escalation to All Scopes");
  expectRefused("permission-denied", [&] { changeScopes(sid, {"everify:read"}); }, "a scope not held");
  expectRefused("invalid-argument", [&] { changeScopes(sid, {"nosuch:read"}); }, "unknown scope");
  expectRefused("invalid-argument", [&] { changeScopes(sid, {}); }, "empty scope set");
  expectRefused("invalid-argument", [&] { changeScopes("nonsense", {"assignment:read"}); }, "bad SID");
  expectRefused("not-found", [&] { changeScopes(Credential::generate().sidHex(), {"assignment:read"}); },
                "unknown SID");
  expectRefused("failed-precondition", [&] { describe(sid, "Vendor A (billing)"); }, "same description");
  expectRefused("invalid-argument", [&] { describe(sid, std::string(10'000, 'd')); }, "10 000 characters");
  expectRefused("invalid-argument", [&] { describe(sid, ""); }, "empty description");
  run(admin, RevokeToken{sid});
  expectRefused("failed-precondition", [&] { changeScopes(sid, {"assignment:read"}); }, "revoked token");
  expectRefused("failed-precondition", [&] { describe(sid, "Renamed"); }, "revoked token");
}

TEST_F(RpcTest, RevokeAndRevokeAllFor) {
  Login bob = user("bob");
  Login vendor = tokenFor("bob", scopes({"assignment:read"}));
  const std::string sid = vendor.credential.sidHex();
  auto session = login(bob.credential);
  auto revoke = [&](wire::Session::Client& s, const std::string& target) {
    auto request = s.revokeRequest();
    request.setSid(target);
    request.setReason("vendor contract ended");
    return call(request);
  };
  EXPECT_EQ(verify(vendor.credential).reason, "ok");
  const int64_t t0 = nowMicros();
  auto response = revoke(session, sid);
  auto t = response.getToken();
  EXPECT_EQ(statusName(t.getStatus()), "revoked");
  EXPECT_EQ(actorFrom(t.getRevokedBy()), Actor::token("bob", bob.credential.sidHex()));
  EXPECT_EQ(std::string(t.getRevokeReason()), "vendor contract ended");
  EXPECT_GE(t.getRevokedAtMicros(), t0);
  EXPECT_EQ(t.getLastSeq(), head());
  const Verdict afterRevoke = verify(vendor.credential);
  EXPECT_EQ(afterRevoke.reason, "revoked");
  EXPECT_FALSE(afterRevoke.valid);
  EXPECT_EQ(afterRevoke.owner, "bob");
  EXPECT_OUTCOME("unauthenticated", login(vendor.credential));
  expectRefused("failed-precondition", [&] { revoke(session, sid); }, "already revoked");
  expectRefused("not-found", [&] { revoke(session, Credential::generate().sidHex()); }, "unknown SID");
  expectRefused("invalid-argument", [&] { revoke(session, "zz"); }, "bad SID");

  // Offboarding: every token of the owner that is not revoked yet, in one call.
  std::set<std::string> payroll;
  std::vector<Credential> payrollCredentials;
  for (int i = 0; i < 3; ++i) {
    Login l = tokenFor("svc-payroll", scopes({"employee:read"}));
    payroll.insert(l.credential.sidHex());
    payrollCredentials.push_back(l.credential);
  }
  Login already = tokenFor("svc-payroll", scopes({"employee:read"}));
  run(admin, RevokeToken{already.credential.sidHex()});
  auto adminSession = login(adminCredential);
  const uint64_t before = rpcHead();
  auto all = adminSession.revokeAllForRequest();
  all.setOwner("svc-payroll");
  all.setReason("offboarding");
  auto offboarded = call(all);
  std::set<std::string> got;
  for (auto s : offboarded.getRevoked()) got.insert(s);
  EXPECT_EQ(got, payroll);
  EXPECT_EQ(rpcHead(), before + 3);
  for (const auto& c : payrollCredentials) EXPECT_EQ(verify(c).reason, "revoked");
  // Nothing left to revoke: an empty answer and nothing appended.
  auto again = adminSession.revokeAllForRequest();
  again.setOwner("svc-payroll");
  EXPECT_EQ(call(again).getRevoked().size(), 0u);
  EXPECT_EQ(rpcHead(), before + 3);
  // A user may offboard only themselves.
  auto other = session.revokeAllForRequest();
  other.setOwner("alice");
  expectRefused("permission-denied", [&] { call(other); }, "someone else's offboarding");
  EXPECT_EQ(verify(adminCredential).reason, "ok");
  auto bad = adminSession.revokeAllForRequest();
  bad.setOwner("");
  expectRefused("invalid-argument", [&] { call(bad); }, "empty owner");
}

TEST_F(RpcTest, RotateReplacesTheSecret) {
  Login bob = user("bob");
  Login vendor = tokenFor("bob", scopes({"assignment:read"}));
  const std::string sid = vendor.credential.sidHex();
  auto session = login(bob.credential);
  auto rotate = [&](const std::string& target) {
    auto request = session.rotateRequest();
    request.setSid(target);
    request.setReason("suspected leak");
    return call(request);
  };
  auto rotated = rotate(sid);
  const std::string fresh = rotated.getCredential();
  EXPECT_EQ(std::string(rotated.getToken().getSid()), sid);
  EXPECT_EQ(fresh.substr(4, 32), sid) << "same SID, new secret";
  EXPECT_NE(fresh, vendor.credential.encode());
  EXPECT_EQ(rotated.getToken().getLastSeq(), head());
  EXPECT_EQ(statusName(rotated.getToken().getStatus()), "active");
  EXPECT_EQ(verify(vendor.credential), (Verdict{false, "invalidCredentials", "", "", "", 0}))
      << "the old secret stops working at once";
  EXPECT_EQ(verify(fresh, {"assignment:read"}).reason, "ok");
  EXPECT_OUTCOME("unauthenticated", login(vendor.credential));
  // Rotating again invalidates the previous rotation's secret too.
  auto twice = rotate(sid);
  EXPECT_EQ(verify(fresh).reason, "invalidCredentials");
  EXPECT_EQ(verify(std::string(twice.getCredential())).reason, "ok");
  run(admin, RevokeToken{sid});
  expectRefused("failed-precondition", [&] { rotate(sid); }, "revoked token");
  expectRefused("not-found", [&] { rotate(Credential::generate().sidHex()); }, "unknown SID");
}

TEST_F(RpcTest, HistoryFiltersPagesAndMatchesTheSignedChain) {
  Login bob = user("bob");
  Login carol = principal("carol", Role::kAuditor, scopes({"audit:read", "tokens:read"}));
  auto bobSession = login(bob.credential);
  std::vector<Credential> issued = {adminCredential, bob.credential, carol.credential};
  auto a = create(bobSession, NewToken{.description = "Vendor A", .reason = "vendor A"});
  auto b = create(bobSession, NewToken{.description = "Vendor B"});
  const std::string sidA = a.getToken().getSid();
  const std::string sidB = b.getToken().getSid();
  issued.push_back(*parseCredential(std::string(a.getCredential())));
  issued.push_back(*parseCredential(std::string(b.getCredential())));
  {
    auto r = bobSession.changeScopesRequest();
    r.setSid(sidA);
    setScopes(r.initScopes(), {"assignment:read", "contact:read"});
    call(r);
  }
  {
    auto r = bobSession.rotateRequest();
    r.setSid(sidA);
    issued.push_back(*parseCredential(std::string(call(r).getCredential())));
  }
  run(admin, RevokeToken{sidB}, "contract ended");
  Login dave = user("dave");
  const uint64_t last = head();

  struct Page {
    std::vector<uint64_t> seqs;
    std::vector<std::string> bytes;  // canonical LogEntry
    uint64_t next;
  };
  auto history = [&](wire::Session::Client& session, auto setFilter) {
    auto request = session.historyRequest();
    setFilter(request.initFilter());
    auto response = call(request);
    Page page;
    for (auto e : response.getEntries()) {
      page.seqs.push_back(e.getEvent().getSeq());
      page.bytes.push_back(canonicalBytes(e));
    }
    page.next = response.getNextFromSeq();
    return page;
  };
  auto seqsRange = [](uint64_t from, uint64_t to) {
    std::vector<uint64_t> out;
    for (uint64_t s = from; s <= to; ++s) out.push_back(s);
    return out;
  };
  auto carolSession = login(carol.credential);

  // By token: exactly that token's events, in order.
  auto byToken = history(bobSession, [&](auto f) { f.setToken(sidA); });
  EXPECT_EQ(byToken.seqs, projection().eventsOf(sidA));
  EXPECT_EQ(byToken.seqs.size(), 3u);  // created, scopes changed, rotated
  EXPECT_EQ(byToken.next, 0u);
  // By owner: every event about bob's tokens.
  std::vector<uint64_t> bobs;
  for (const auto& sid : {bob.credential.sidHex(), sidA, sidB}) {
    auto more = projection().eventsOf(sid);
    bobs.insert(bobs.end(), more.begin(), more.end());
  }
  auto roleEvents = projection().principalEventsOf("bob");  // and every change of bob's roles
  bobs.insert(bobs.end(), roleEvents.begin(), roleEvents.end());
  std::sort(bobs.begin(), bobs.end());
  EXPECT_EQ(history(carolSession, [&](auto f) { f.setOwner("bob"); }).seqs, bobs);
  EXPECT_EQ(history(bobSession, [&](auto f) { f.setOwner("bob"); }).seqs, bobs);
  // By actor: what bob did (over RPC), with his address and reason recorded.
  auto byActor = history(bobSession, [&](auto f) { f.setActor("bob"); });
  EXPECT_EQ(byActor.seqs.size(), 4u);  // create A, create B, change scopes, rotate
  {
    auto request = carolSession.historyRequest();
    request.initFilter().setActor("bob");
    auto response = call(request);
    ASSERT_EQ(response.getEntries().size(), 4u);
    for (auto e : response.getEntries()) {
      auto event = e.getEvent();
      EXPECT_EQ(actorFrom(event.getActor()), Actor::token("bob", bob.credential.sidHex()));
      EXPECT_TRUE(std::string(event.getClientAddress()).starts_with("127.0.0.1:"));
    }
    EXPECT_EQ(std::string(response.getEntries()[0].getEvent().getReason()), "vendor A");
  }
  // All: every entry, and the entries are exactly what was hashed and signed.
  auto all = history(carolSession, [&](auto f) { f.setAll(); });
  EXPECT_EQ(all.seqs, seqsRange(1, last));
  EXPECT_EQ(all.next, 0u);
  {
    auto keysRequest = bootstrap().infoRequest();
    auto info = call(keysRequest);
    std::map<std::string, Ed25519PublicKey> keys;
    for (auto k : info.getInfo().getPublicKeys()) {
      Ed25519PublicKey raw{};
      std::copy(k.getPublicKey().begin(), k.getPublicKey().end(), raw.begin());
      keys[k.getKeyId()] = raw;
    }
    auto request = carolSession.historyRequest();
    request.initFilter().setAll();
    auto response = call(request);
    Digest previous = genesisHash();
    for (auto e : response.getEntries()) {
      SCOPED_TRACE("seq " + std::to_string(e.getEvent().getSeq()));
      Digest hash = entryHash(previous, asBytes(canonicalBytes(e.getEvent())));
      EXPECT_EQ(hash, digestOf(e.getSeal().getEntryHash()));
      ASSERT_TRUE(keys.count(e.getSeal().getKeyId()));
      EXPECT_TRUE(VerifyingKey(keys[e.getSeal().getKeyId()]).verify(hash, bytesOf(e.getSeal().getSignature())));
      previous = hash;
    }
  }
  // No secret travels in any entry, in raw bytes or in hex.
  for (const auto& entry : all.bytes) {
    for (const auto& c : issued) {
      std::string raw(c.secret.begin(), c.secret.end());
      EXPECT_EQ(entry.find(raw), std::string::npos);
      EXPECT_EQ(entry.find(secretHex(c)), std::string::npos);
    }
  }

  // Paging with nextFromSeq covers everything exactly once, in order.
  for (uint32_t limit : {1u, 2u, 3u, 5u}) {
    SCOPED_TRACE("limit " + std::to_string(limit));
    std::vector<uint64_t> seen;
    uint64_t from = 0;
    for (int page = 0; page < 100; ++page) {
      auto p = history(carolSession, [&](auto f) {
        f.setAll();
        f.setFromSeq(from);
        f.setLimit(limit);
      });
      EXPECT_LE(p.seqs.size(), limit);
      seen.insert(seen.end(), p.seqs.begin(), p.seqs.end());
      if (p.next == 0) break;
      EXPECT_GT(p.next, p.seqs.back());
      from = p.next;
    }
    EXPECT_EQ(seen, seqsRange(1, last));
    std::vector<uint64_t> ownerSeen;
    from = 0;
    for (int page = 0; page < 100; ++page) {
      auto p = history(carolSession, [&](auto f) {
        f.setOwner("bob");
        f.setFromSeq(from);
        f.setLimit(limit);
      });
      ownerSeen.insert(ownerSeen.end(), p.seqs.begin(), p.seqs.end());
      if (p.next == 0) break;
      from = p.next;
    }
    EXPECT_EQ(ownerSeen, bobs);
  }
  // Seq and time ranges.
  EXPECT_EQ(history(carolSession, [&](auto f) {
              f.setAll();
              f.setFromSeq(3);
              f.setToSeq(5);
            }).seqs,
            seqsRange(3, 5));
  const int64_t revokedAt = projection().committed().token(sidB)->revokedAtMicros;
  auto since = history(carolSession, [&](auto f) {
    f.setAll();
    f.setFromTimeMicros(revokedAt);
  });
  ASSERT_FALSE(since.seqs.empty());
  EXPECT_EQ(since.seqs.back(), last);
  EXPECT_LE(since.seqs.front(), projection().eventsOf(sidB).back());
  auto until = history(carolSession, [&](auto f) {
    f.setAll();
    f.setToTimeMicros(revokedAt - 1);
  });
  EXPECT_LT(until.seqs.size(), last);
  for (uint64_t s : until.seqs) EXPECT_LT(readEvent(store(), s).event().getTimeMicros(), revokedAt);
  EXPECT_EQ(history(carolSession, [&](auto f) { f.setToken(sidA); f.setFromSeq(byToken.seqs[1]); }).seqs,
            std::vector<uint64_t>(byToken.seqs.begin() + 1, byToken.seqs.end()));

  // Limits and refusals.
  EXPECT_OUTCOME("ok", history(carolSession, [&](auto f) { f.setAll(); f.setLimit(1000); }));
  EXPECT_OUTCOME("invalid-argument", history(carolSession, [&](auto f) { f.setAll(); f.setLimit(1001); }));
  EXPECT_OUTCOME("permission-denied", history(bobSession, [&](auto f) { f.setAll(); }));
  EXPECT_OUTCOME("permission-denied", history(bobSession, [&](auto f) { f.setActor("alice"); }));
  EXPECT_OUTCOME("permission-denied", history(bobSession, [&](auto f) { f.setOwner("dave"); }));
  EXPECT_OUTCOME("not-found", history(bobSession, [&](auto f) { f.setToken(dave.credential.sidHex()); }));
  EXPECT_OUTCOME("invalid-argument", history(bobSession, [&](auto f) { f.setToken("nope"); }));
}

// rpc.capnp: HistoryFilter.owner is "events about this owner's tokens, or this principal's
// roles". Role grants and removals of the owner must be part of its history.
TEST_F(RpcTest, HistoryByOwnerIncludesTheOwnersRoleChanges) {
  Login bob = user("bob");  // seq: RoleGranted(bob, user), then TokenCreated
  CommandResult granted = run(admin, GrantRole{"bob", Role::kAuditor});
  CommandResult removed = run(admin, RevokeRole{"bob", Role::kAuditor});
  auto session = login(adminCredential);
  auto request = session.historyRequest();
  request.initFilter().setOwner("bob");
  auto response = call(request);
  std::set<uint64_t> seqs;
  std::set<schema::Event::Which> kinds;
  for (auto e : response.getEntries()) {
    seqs.insert(e.getEvent().getSeq());
    kinds.insert(e.getEvent().which());
  }
  EXPECT_TRUE(seqs.count(granted.lastSeq)) << "RoleGranted(bob, auditor) missing from bob's history";
  EXPECT_TRUE(seqs.count(removed.lastSeq)) << "RoleRevoked(bob, auditor) missing from bob's history";
  EXPECT_TRUE(kinds.count(schema::Event::ROLE_GRANTED));
  EXPECT_TRUE(kinds.count(schema::Event::TOKEN_CREATED));
}

// rights.h: "What a caller may do: its principal's roles intersected with the ledger scopes of
// the token it logged in with". A vendor's token without tokens:read / audit:read must not read
// the history of everything its owner did.
TEST_F(RpcTest, TokenWithoutLedgerScopesCannotReadHistory) {
  Login bob = user("bob");
  auto bobSession = login(bob.credential);
  auto vendorToken = create(bobSession, NewToken{.description = "Vendor A", .scopes = {"assignment:read"}});
  create(bobSession, NewToken{.description = "Vendor B (secret project)"});
  auto vendor = login(std::string(vendorToken.getCredential()));
  // The vendor's token holds no ledger scope: it may not read tokens...
  auto list = vendor.listTokensRequest();
  EXPECT_OUTCOME("permission-denied", call(list));
  auto get = vendor.getTokenRequest();
  get.setSid(vendorToken.getToken().getSid());
  EXPECT_OUTCOME("not-found", call(get));
  // ...so it may not read the same facts through the history of its owner's actions.
  auto history = vendor.historyRequest();
  history.initFilter().setActor("bob");
  CallOutcome outcome = outcomeOf([&] {
    auto response = call(history);
    for (auto e : response.getEntries()) {
      ADD_FAILURE() << "leaked seq " << e.getEvent().getSeq() << " (" << sidOf(e.getEvent()) << ")";
    }
  });
  EXPECT_EQ(outcome.code, "permission-denied") << outcome.message;
}

TEST_F(RpcTest, RolesAreGrantedRevokedAndListed) {
  Login carol = principal("carol", Role::kAuditor, scopes({"audit:read", "tokens:read"}));
  auto adminSession = login(adminCredential);
  auto carolSession = login(carol.credential);
  auto grant = [&](const std::string& who, schema::Role role) {
    auto request = adminSession.grantRoleRequest();
    request.setPrincipal(who);
    request.setRole(role);
    request.setReason("new hire");
    call(request);
  };
  auto revokeRole = [&](const std::string& who, schema::Role role) {
    auto request = adminSession.revokeRoleRequest();
    request.setPrincipal(who);
    request.setRole(role);
    call(request);
  };
  auto roles = [&](wire::Session::Client& session) {
    auto request = session.listRolesRequest();
    auto response = call(request);
    std::map<std::string, std::vector<schema::Role>> out;
    for (auto p : response.getPrincipals()) {
      out[p.getPrincipal()] = rolesOf(p.getRoles());
    }
    return out;
  };
  using R = schema::Role;
  using Table = std::map<std::string, std::vector<schema::Role>>;
  EXPECT_EQ(roles(adminSession), (Table{{"alice", {R::ADMIN}}, {"carol", {R::AUDITOR}}}));

  const uint64_t before = rpcHead();
  grant("dave", R::ADMIN);
  grant("dave", R::USER);
  EXPECT_EQ(rpcHead(), before + 2);
  auto event = readEvent(store(), before + 1);
  ASSERT_TRUE(event.event().isRoleGranted());
  EXPECT_EQ(std::string(event.event().getRoleGranted().getPrincipal()), "dave");
  EXPECT_EQ(event.event().getRoleGranted().getRole(), R::ADMIN);
  EXPECT_EQ(std::string(event.event().getReason()), "new hire");
  EXPECT_EQ(roles(carolSession),
            (Table{{"alice", {R::ADMIN}}, {"carol", {R::AUDITOR}}, {"dave", {R::USER, R::ADMIN}}}))
      << "auditors may list roles";
  revokeRole("dave", R::ADMIN);
  EXPECT_EQ(roles(adminSession),
            (Table{{"alice", {R::ADMIN}}, {"carol", {R::AUDITOR}}, {"dave", {R::USER}}}));
  revokeRole("dave", R::USER);
  EXPECT_EQ(roles(adminSession), (Table{{"alice", {R::ADMIN}}, {"carol", {R::AUDITOR}}}));

  expectRefused("failed-precondition", [&] { grant("carol", R::AUDITOR); }, "already held");
  expectRefused("failed-precondition", [&] { revokeRole("dave", R::USER); }, "not held");
  expectRefused("failed-precondition", [&] { revokeRole("alice", R::ADMIN); }, "the last admin");
  expectRefused("invalid-argument", [&] { grant("dave", static_cast<R>(7)); }, "unknown role");
  expectRefused("invalid-argument", [&] { grant("bad/name", R::USER); }, "bad principal name");
  expectRefused("invalid-argument", [&] { grant("", R::USER); }, "empty principal");

  // Rights are recomputed on every call: a session loses what its principal lost.
  auto all = [&] {
    auto request = carolSession.historyRequest();
    request.initFilter().setAll();
    call(request);
  };
  EXPECT_OUTCOME("ok", all());
  revokeRole("carol", R::AUDITOR);
  EXPECT_OUTCOME("permission-denied", all());
  auto listed = carolSession.listRolesRequest();
  EXPECT_OUTCOME("permission-denied", call(listed));
}

TEST_F(RpcTest, CheckpointsAreSignedListedAndPublished) {
  Login carol = principal("carol", Role::kAuditor, scopes({"audit:read", "tokens:read"}));
  user("bob");
  auto session = login(carol.credential);
  auto make = [&] {
    auto request = session.makeCheckpointRequest();
    return call(request);
  };
  auto list = [&](uint64_t from, uint32_t limit) {
    auto request = session.checkpointsRequest();
    request.setFromSeq(from);
    request.setLimit(limit);
    auto response = call(request);
    std::vector<std::string> out;
    for (auto cp : response.getCheckpoints()) out.push_back(canonicalBytes(cp));
    return out;
  };
  auto keyRequest = bootstrap().infoRequest();
  auto info = call(keyRequest);
  Ed25519PublicKey key{};
  std::copy(info.getInfo().getPublicKeys()[0].getPublicKey().begin(),
            info.getInfo().getPublicKeys()[0].getPublicKey().end(), key.begin());
  const size_t initial = list(0, 0).size();
  EXPECT_GE(initial, 1u) << "init makes the first checkpoint";

  const uint64_t before = rpcHead();
  auto made = make();
  auto cp = made.getCheckpoint();
  EXPECT_EQ(cp.getSeq(), head());
  EXPECT_EQ(rpcHead(), before) << "a checkpoint is not an event";
  ASSERT_EQ(cp.getEntryHash().size(), 32u);
  ASSERT_EQ(cp.getSignature().size(), 64u);
  Digest digest = checkpointDigest(cp.getSeq(), digestOf(cp.getEntryHash()), cp.getTimeMicros());
  EXPECT_TRUE(VerifyingKey(key).verify(digest, bytesOf(cp.getSignature())));
  // The checkpoint's hash is the head entry's hash.
  EXPECT_EQ(digestOf(cp.getEntryHash()), [&] {
    auto seal = store().get(Family::kSeals, seqKey(cp.getSeq()));
    CanonicalReader reader(*seal);
    return digestOf(reader.root<schema::Seal>().getEntryHash());
  }());
  const std::string madeBytes = canonicalBytes(cp);

  auto all = list(0, 0);
  ASSERT_EQ(all.size(), initial + 1);
  EXPECT_EQ(all.back(), madeBytes);
  EXPECT_EQ(list(cp.getSeq(), 1), std::vector<std::string>{madeBytes});
  EXPECT_EQ(list(0, 1).size(), 1u);
  EXPECT_EQ(list(cp.getSeq() + 1, 0).size(), 0u);
  auto latest = bootstrap().infoRequest();
  EXPECT_EQ(canonicalBytes(call(latest).getInfo().getLatestCheckpoint()), madeBytes);

  // A later checkpoint extends the list in seq order.
  user("dave");
  auto second = make();
  EXPECT_EQ(second.getCheckpoint().getSeq(), head());
  auto after = list(0, 0);
  ASSERT_EQ(after.size(), initial + 2);
  EXPECT_EQ(after[initial], madeBytes);
  EXPECT_EQ(after.back(), canonicalBytes(second.getCheckpoint()));
}

TEST_F(RpcTest, ScopeCatalogMatchesTheBuiltinCatalog) {
  Login bob = user("bob");
  auto session = login(bob.credential);
  auto request = session.scopeCatalogRequest();
  auto response = call(request);
  auto scopes = response.getCatalog().getScopes();
  const auto& builtin = ScopeCatalog::builtin().scopes();
  ASSERT_EQ(scopes.size(), builtin.size());
  std::set<std::string> ids;
  for (unsigned i = 0; i < scopes.size(); ++i) {
    EXPECT_EQ(std::string(scopes[i].getId()), builtin[i].id);
    EXPECT_EQ(std::string(scopes[i].getDisplayName()), builtin[i].displayName);
    EXPECT_EQ(std::string(scopes[i].getDescription()), builtin[i].description);
    EXPECT_FALSE(std::string(scopes[i].getDescription()).empty());
    ids.insert(scopes[i].getId());
  }
  for (const char* id : {"assessoncloudresults:write", "assignment:read", "everify:write",
                         "onboardingeeo:read", "tokens:read", "tokens:write", "audit:read", "roles:write"}) {
    EXPECT_TRUE(ids.count(id)) << id;
  }
  EXPECT_EQ(std::string(scopes[1].getDisplayName()), "Assignment Read");
}

// =============================================================================================
// Expiry, with the real clock: a token that expires a couple of seconds from now.

TEST_F(RpcTest, ExpiredTokensFailVerifyLoginAndSessions) {
  run(admin, GrantRole{"bob", Role::kUser});
  const int64_t expiry = nowMicros() + 1500 * 1000;
  Login bob = tokenFor("bob", scopes(kUserScopes), Expiration::custom(expiry));
  Login vendor = tokenFor("bob", scopes({"assignment:read"}), Expiration::custom(expiry));
  auto session = login(bob.credential);  // while it is still valid
  auto whoami = [&] {
    auto request = session.whoamiRequest();
    call(request);
  };
  EXPECT_OUTCOME("ok", whoami());
  EXPECT_EQ(verify(vendor.credential).reason, "ok");

  waitUntilExpired(vendor.credential);
  EXPECT_EQ(verify(vendor.credential, {"assignment:read"}),
            (Verdict{false, "expired", vendor.credential.sidHex(), "bob", "assignment:read", expiry}));
  EXPECT_OUTCOME("unauthenticated", login(bob.credential));
  EXPECT_OUTCOME("unauthenticated", whoami());  // a session ends when its token expires
  expectRefused("unauthenticated", [&] { create(session, NewToken{}); }, "write with an expired login");

  auto adminSession = login(adminCredential);
  auto get = adminSession.getTokenRequest();
  get.setSid(vendor.credential.sidHex());
  EXPECT_EQ(statusName(call(get).getToken().getStatus()), "expired");
  auto list = [&](bool showAll) {
    auto request = adminSession.listTokensRequest();
    request.initFilter().setOwner("bob");
    request.getFilter().setShowAll(showAll);
    std::set<std::string> out;
    auto response = call(request);
    for (auto t : response.getTokens()) out.insert(t.getSid());
    return out;
  };
  EXPECT_EQ(list(false).size(), 0u) << "expired tokens are not active";
  EXPECT_EQ(list(true), (std::set<std::string>{bob.credential.sidHex(), vendor.credential.sidHex()}));
  auto rename = adminSession.setDescriptionRequest();
  rename.setSid(vendor.credential.sidHex());
  rename.setDescription("renamed");
  expectRefused("failed-precondition", [&] { call(rename); }, "changing an expired token");
}

// =============================================================================================
// 3. The authorization matrix: every Session method x every kind of caller.

enum Caller { kUser, kOtherUser, kAdmin, kAuditor, kRevokedLogin, kExpiredLogin, kCallers };
const char* const kCallerNames[kCallers] = {"user (own tokens)", "other user", "admin",
                                            "auditor", "revoked login", "expired login"};

// The world one cell acts on: a user principal with its own login token and one more token.
struct Cell {
  std::string owner;
  Credential ownerLogin;
  std::string target;  // SID of another of the owner's tokens
  std::string fresh;   // a principal without roles
};

struct MatrixOp {
  std::string name;
  bool appends;  // on success it appends events
  std::function<kj::Promise<void>(wire::Session::Client&, const Cell&)> call;
  std::array<std::string, kCallers> expected;  // "ok" or a code; "a|b": either
};

bool matches(const std::string& expected, const std::string& got) {
  size_t start = 0;
  for (;;) {
    size_t bar = expected.find('|', start);
    if (expected.substr(start, bar - start) == got) return true;
    if (bar == std::string::npos) return false;
    start = bar + 1;
  }
}

// Does nothing with what it is sent.
class IgnoringWatcher final : public wire::Watcher::Server {
 protected:
  kj::Promise<void> onEntries(OnEntriesContext) override { return kj::READY_NOW; }
};

std::vector<MatrixOp> matrixOps() {
  const std::string ok = "ok", denied = "permission-denied", missing = "not-found",
                    unauth = "unauthenticated";
  // Someone else's SID: either answer is acceptable as long as nothing happens.
  const std::string foreign = "not-found|permission-denied";
  using S = wire::Session::Client;
  auto history = [](auto set) {
    return [set](S& s, const Cell& c) {
      auto r = s.historyRequest();
      set(r.initFilter(), c);
      return r.send().ignoreResult();
    };
  };
  return {
      {"whoami", false, [](S& s, const Cell&) { return s.whoamiRequest().send().ignoreResult(); },
       {ok, ok, ok, ok, unauth, unauth}},
      {"scopeCatalog", false,
       [](S& s, const Cell&) { return s.scopeCatalogRequest().send().ignoreResult(); },
       {ok, ok, ok, ok, unauth, unauth}},
      {"createToken(owner)", true,
       [](S& s, const Cell& c) { return createRequest(s, NewToken{.owner = c.owner}).send().ignoreResult(); },
       {ok, denied, ok, denied, unauth, unauth}},
      {"listTokens(owner)", false,
       [](S& s, const Cell& c) {
         auto r = s.listTokensRequest();
         r.initFilter().setOwner(c.owner);
         r.getFilter().setShowAll(true);
         return r.send().ignoreResult();
       },
       {ok, denied, ok, ok, unauth, unauth}},
      {"getToken", false,
       [](S& s, const Cell& c) {
         auto r = s.getTokenRequest();
         r.setSid(c.target);
         return r.send().ignoreResult();
       },
       {ok, missing, ok, ok, unauth, unauth}},
      {"changeScopes", true,
       [](S& s, const Cell& c) {
         auto r = s.changeScopesRequest();
         r.setSid(c.target);
         setScopes(r.initScopes(), {"assignment:read", "contact:read"});
         return r.send().ignoreResult();
       },
       {ok, foreign, ok, denied, unauth, unauth}},
      {"setDescription", true,
       [](S& s, const Cell& c) {
         auto r = s.setDescriptionRequest();
         r.setSid(c.target);
         r.setDescription("Renamed in the matrix");
         return r.send().ignoreResult();
       },
       {ok, foreign, ok, denied, unauth, unauth}},
      {"revoke", true,
       [](S& s, const Cell& c) {
         auto r = s.revokeRequest();
         r.setSid(c.target);
         return r.send().ignoreResult();
       },
       {ok, foreign, ok, denied, unauth, unauth}},
      {"rotate", true,
       [](S& s, const Cell& c) {
         auto r = s.rotateRequest();
         r.setSid(c.target);
         return r.send().ignoreResult();
       },
       {ok, foreign, ok, denied, unauth, unauth}},
      {"revokeAllFor(owner)", true,
       [](S& s, const Cell& c) {
         auto r = s.revokeAllForRequest();
         r.setOwner(c.owner);
         return r.send().ignoreResult();
       },
       {ok, denied, ok, denied, unauth, unauth}},
      {"history(token)", false, history([](auto f, const Cell& c) { f.setToken(c.target); }),
       {ok, missing, ok, ok, unauth, unauth}},
      {"history(owner)", false, history([](auto f, const Cell& c) { f.setOwner(c.owner); }),
       {ok, denied, ok, ok, unauth, unauth}},
      {"history(actor=owner)", false, history([](auto f, const Cell& c) { f.setActor(c.owner); }),
       {ok, denied, ok, ok, unauth, unauth}},
      {"history(all)", false, history([](auto f, const Cell&) { f.setAll(); }),
       {denied, denied, ok, ok, unauth, unauth}},
      {"grantRole", true,
       [](S& s, const Cell& c) {
         auto r = s.grantRoleRequest();
         r.setPrincipal(c.fresh);
         r.setRole(schema::Role::USER);
         return r.send().ignoreResult();
       },
       {denied, denied, ok, denied, unauth, unauth}},
      {"grantRole(admin to self)", true,
       [](S& s, const Cell& c) {
         auto r = s.grantRoleRequest();
         r.setPrincipal(c.owner);
         r.setRole(schema::Role::ADMIN);
         return r.send().ignoreResult();
       },
       {denied, denied, ok, denied, unauth, unauth}},
      {"revokeRole", true,
       [](S& s, const Cell& c) {
         auto r = s.revokeRoleRequest();
         r.setPrincipal(c.owner);
         r.setRole(schema::Role::USER);
         return r.send().ignoreResult();
       },
       {denied, denied, ok, denied, unauth, unauth}},
      {"listRoles", false, [](S& s, const Cell&) { return s.listRolesRequest().send().ignoreResult(); },
       {denied, denied, ok, ok, unauth, unauth}},
      {"checkpoints", false,
       [](S& s, const Cell&) { return s.checkpointsRequest().send().ignoreResult(); },
       {denied, denied, ok, ok, unauth, unauth}},
      // Checkpoints are the auditor's own tool (SPEC: auditors read history, export, checkpoints);
      // a checkpoint appends no event.
      {"makeCheckpoint", false,
       [](S& s, const Cell&) { return s.makeCheckpointRequest().send().ignoreResult(); },
       {denied, denied, ok, ok, unauth, unauth}},
      {"watch", false,
       [](S& s, const Cell&) {
         auto r = s.watchRequest();
         r.setFromSeq(uint64_t{1} << 40);  // nothing to stream; the subscription is dropped at once
         r.setWatcher(kj::heap<IgnoringWatcher>());
         return r.send().ignoreResult();
       },
       {denied, denied, ok, ok, unauth, unauth}},
  };
}

TEST_F(RpcTest, AuthorizationMatrix) {
  // Shared callers. The expiring login is made first so that it has expired by the time the
  // per-cell worlds are built.
  run(admin, GrantRole{"eve", Role::kUser});
  const int64_t expiry = nowMicros() + 1500 * 1000;
  Login expiring = tokenFor("eve", scopes(kUserScopes), Expiration::custom(expiry));
  std::vector<wire::Session::Client> sessions;
  for (int c = 0; c < kCallers; ++c) sessions.emplace_back(nullptr);
  sessions[kExpiredLogin] = login(expiring.credential);
  Login other = user("dave");
  Login auditor = principal("carol", Role::kAuditor, scopes({"audit:read", "tokens:read"}));
  Login revoked = user("rick");
  sessions[kOtherUser] = login(other.credential);
  sessions[kAdmin] = login(adminCredential);
  sessions[kAuditor] = login(auditor.credential);
  sessions[kRevokedLogin] = login(revoked.credential);
  run(admin, RevokeToken{revoked.credential.sidHex()});  // after its login

  const std::vector<MatrixOp> ops = matrixOps();
  // One fresh world per cell: role, login token and target token, committed in few groups.
  std::vector<Cell> cells;
  std::vector<Command> setup;
  for (size_t i = 0; i < ops.size() * kCallers; ++i) {
    Cell cell;
    cell.owner = "p" + std::to_string(i);
    cell.fresh = "q" + std::to_string(i);
    setup.push_back(GrantRole{cell.owner, Role::kUser});
    setup.push_back(CreateToken{cell.owner, "login", {}, scopes(kUserScopes)});
    setup.push_back(CreateToken{cell.owner, "target", {}, scopes({"assignment:read"})});
    cells.push_back(cell);
  }
  std::vector<CommandResult> results = runAll(std::move(setup));
  for (size_t i = 0; i < cells.size(); ++i) {
    cells[i].ownerLogin = *results[3 * i + 1].credential;
    cells[i].target = results[3 * i + 2].sids.front();
  }
  waitUntilExpired(expiring.credential);
  if (HasFatalFailure()) return;

  size_t index = 0;
  for (const MatrixOp& op : ops) {
    for (int c = 0; c < kCallers; ++c) {
      const Cell& cell = cells[index++];
      SCOPED_TRACE(op.name + " as " + kCallerNames[c]);
      wire::Session::Client session = c == kUser ? login(cell.ownerLogin) : sessions[c];
      const uint64_t before = rpcHead();
      CallOutcome outcome = outcomeOf([&] { waitFor(op.call(session, cell), ws()); });
      const uint64_t after = rpcHead();
      EXPECT_TRUE(matches(op.expected[c], outcome.code))
          << op.name << " as " << kCallerNames[c] << ": expected " << op.expected[c] << ", got "
          << outcome.code << " (" << outcome.message << ")";
      if (outcome.code == "ok" && op.appends) {
        EXPECT_GT(after, before) << op.name << " as " << kCallerNames[c] << " appended nothing";
      } else {
        EXPECT_EQ(after, before) << op.name << " as " << kCallerNames[c]
                                 << " changed the log although it " << outcome.code;
      }
    }
  }
  // The refused callers' tokens are all still as they were.
  EXPECT_EQ(verify(other.credential).reason, "ok");
  EXPECT_EQ(verify(auditor.credential).reason, "ok");
  EXPECT_EQ(verify(revoked.credential).reason, "revoked");
}

// =============================================================================================
// 5. watch: catch-up, live changes from another client, and dropping the subscription.

class WatchTest : public RpcTest {
 protected:
  WatchTest() { serverOptions.limits.maxWatchBatch = 3; }  // so catch-up takes several calls

  struct Watch {
    std::shared_ptr<WatchLog> log = std::make_shared<WatchLog>();
    wire::Subscription::Client subscription{nullptr};
  };
  Watch watch(wire::Session::Client& session, uint64_t fromSeq) {
    Watch w;
    auto request = session.watchRequest();
    request.setFromSeq(fromSeq);
    request.setWatcher(kj::heap<CollectingWatcher>(w.log));
    w.subscription = call(request).getSubscription();
    return w;
  }
};

TEST_F(WatchTest, CatchUpThenLiveChangesFromAnotherClient) {
  Login bob = user("bob");
  Login carol = principal("carol", Role::kAuditor, scopes({"audit:read", "tokens:read"}));
  std::vector<Credential> vendors;
  for (int i = 0; i < 4; ++i) vendors.push_back(tokenFor("bob", scopes({"assignment:read"})).credential);
  const uint64_t head0 = head();
  auto session = login(carol.credential);

  Watch w = watch(session, 2);
  ASSERT_TRUE(pollUntil(ws(), [&] { return w.log->lastSeq() >= head0; }))
      << "catch-up stopped at seq " << w.log->lastSeq() << " of " << head0;
  std::vector<uint64_t> seqs;
  for (const auto& s : w.log->entries) seqs.push_back(s.seq);
  std::vector<uint64_t> expected;
  for (uint64_t s = 2; s <= head0; ++s) expected.push_back(s);
  EXPECT_EQ(seqs, expected) << "every entry from fromSeq, once, in order";
  for (size_t n : w.log->batches) EXPECT_LE(n, 3u);
  EXPECT_GE(w.log->batches.size(), (head0 - 1 + 2) / 3);

  // Another client revokes a token: the watcher sees it without asking.
  ClientThread other(port());
  other.run([&](rpc::Client& c) {
    auto bobSession = loginVia(c.ledger(), c.waitScope(), bob.credential.encode());
    auto request = bobSession.revokeRequest();
    request.setSid(vendors[2].sidHex());
    send(request, c.waitScope());
  });
  ASSERT_TRUE(pollUntil(ws(), [&] {
    return w.log->has(schema::Event::TOKEN_REVOKED, vendors[2].sidHex());
  })) << "the revocation was not streamed";
  EXPECT_EQ(w.log->entries.back().seq, head());
  EXPECT_EQ(w.log->entries.size(), head() - 1);

  // A burst of changes arrives complete and in order.
  for (int i = 0; i < 7; ++i) tokenFor("bob", scopes({"assignment:read"}));
  ASSERT_TRUE(pollUntil(ws(), [&] { return w.log->lastSeq() == head(); }));
  for (size_t i = 0; i < w.log->entries.size(); ++i) EXPECT_EQ(w.log->entries[i].seq, i + 2);

  // A watch from the future waits for the log to get there.
  Watch later = watch(session, head() + 2);
  tokenFor("bob", scopes({"assignment:read"}));
  CommandResult second = run(admin, RevokeToken{vendors[3].sidHex()});
  ASSERT_TRUE(pollUntil(ws(), [&] { return later.log->lastSeq() == second.lastSeq; }));
  ASSERT_EQ(later.log->entries.size(), 1u);
  EXPECT_TRUE(later.log->has(schema::Event::TOKEN_REVOKED, vendors[3].sidHex()));
}

TEST_F(WatchTest, DroppingTheSubscriptionStopsDelivery) {
  Login bob = user("bob");
  auto session = login(adminCredential);  // admins may watch too
  Watch dropped = watch(session, head());
  Watch kept = watch(session, head());
  ASSERT_TRUE(pollUntil(ws(), [&] {
    return dropped.log->lastSeq() == head() && kept.log->lastSeq() == head();
  }));
  Login first = tokenFor("bob", scopes({"assignment:read"}));
  ASSERT_TRUE(pollUntil(ws(), [&] {
    return dropped.log->has(schema::Event::TOKEN_CREATED, first.credential.sidHex()) &&
           kept.log->has(schema::Event::TOKEN_CREATED, first.credential.sidHex());
  }));

  const size_t deliveredBefore = dropped.log->entries.size();
  dropped.subscription = nullptr;  // the only reference: the server drops the watch
  rpcHead();                       // a round trip: the release has reached the server

  Login second = tokenFor("bob", scopes({"assignment:read"}));
  ASSERT_TRUE(pollUntil(ws(), [&] {
    return kept.log->has(schema::Event::TOKEN_CREATED, second.credential.sidHex());
  }));
  rpcHead();  // anything the server sent before this reply has been delivered
  EXPECT_EQ(dropped.log->entries.size(), deliveredBefore) << "a dropped subscription still streams";
  EXPECT_FALSE(dropped.log->has(schema::Event::TOKEN_CREATED, second.credential.sidHex()));
}

TEST_F(WatchTest, UsersMayNotWatch) {
  Login bob = user("bob");
  auto session = login(bob.credential);
  auto log = std::make_shared<WatchLog>();
  auto request = session.watchRequest();
  request.setFromSeq(1);
  request.setWatcher(kj::heap<CollectingWatcher>(log));
  EXPECT_OUTCOME("permission-denied", call(request));
  tokenFor("bob", scopes({"assignment:read"}));
  rpcHead();
  EXPECT_TRUE(log->entries.empty());
}

// A connection may hold at most maxSessionsPerConnection sessions and maxWatchesPerConnection
// watches; releasing one gives its place back (the Release travels after the call that drops
// it, so the retry is bounded rather than immediate). Other connections are not affected.

// Runs `attempt` until it succeeds, at most 50 times; its last outcome.
template <typename F>
CallOutcome retried(F&& attempt, kj::WaitScope& scope) {
  CallOutcome outcome;
  for (int i = 0; i < 50; ++i) {
    outcome = outcomeOf(attempt);
    if (outcome.ok()) break;
    kj::evalLater([] {}).wait(scope);  // let queued Release messages go out
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return outcome;
}

class HoldingsTest : public RpcTest {
 protected:
  HoldingsTest() { serverOptions.limits.maxSessionsPerConnection = 4; }
};

TEST_F(HoldingsTest, SessionsPerConnectionAreBoundedAndReleasingOneFreesItsPlace) {
  Login bob = user("bob");
  std::vector<wire::Session::Client> sessions;
  for (int i = 0; i < 4; ++i) sessions.push_back(login(bob.credential));
  for (auto& session : sessions) {
    auto who = session.whoamiRequest();
    EXPECT_EQ(std::string(call(who).getPrincipal()), "bob");
  }
  const CallOutcome fifth = outcomeOf([&] { login(bob.credential); });
  EXPECT_EQ(fifth.code, "failed-precondition") << fifth.message;
  EXPECT_NE(fifth.message.find("already holds 4 sessions"), std::string::npos) << fifth.message;

  // Another connection (on its own thread: one event loop per thread) has places of its own.
  auto elsewhere = std::async(std::launch::async, [&] {
    rpc::Client other(rpc::ClientOptions{.port = port()});
    return outcomeOf([&] { loginVia(other.ledger(), other.waitScope(), bob.credential.encode()); });
  }).get();
  EXPECT_TRUE(elsewhere.ok()) << elsewhere;

  sessions.pop_back();
  const CallOutcome again = retried([&] { sessions.push_back(login(bob.credential)); }, ws());
  EXPECT_TRUE(again.ok()) << "a released session did not give its place back: " << again;
}

class WatchLimitTest : public WatchTest {
 protected:
  WatchLimitTest() { serverOptions.limits.maxWatchesPerConnection = 2; }
};

TEST_F(WatchLimitTest, WatchesPerConnectionAreBoundedAndDroppingOneFreesItsPlace) {
  Login carol = principal("carol", Role::kAuditor, scopes({"audit:read"}));
  auto session = login(carol.credential);
  std::vector<Watch> watches;
  watches.push_back(watch(session, 1));
  watches.push_back(watch(session, 1));
  const CallOutcome third = outcomeOf([&] { watch(session, 1); });
  EXPECT_EQ(third.code, "failed-precondition") << third.message;
  EXPECT_NE(third.message.find("already holds 2 watches"), std::string::npos) << third.message;

  watches.pop_back();
  const CallOutcome again = retried([&] { watches.push_back(watch(session, 1)); }, ws());
  EXPECT_TRUE(again.ok()) << "a dropped watch did not give its place back: " << again;
}

// =============================================================================================
// 6-8. Failure isolation: vanishing clients, garbage, oversized messages, stopping the server.

TEST_F(RpcTest, ClientVanishingMidCallDoesNotDisturbOthers) {
  Login bob = user("bob");
  Login vendor = tokenFor("bob", scopes({"assignment:read"}));
  const uint64_t before = head();
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const uint64_t start = head();
    {
      ClientThread victim(port());
      victim.run([&](rpc::Client& c) {
        auto session = loginVia(c.ledger(), c.waitScope(), bob.credential.encode());
        auto pending = createRequest(session, NewToken{.description = "never answered"}).send();
        // Answered only after the server has dispatched the createToken sent before it.
        verifyVia(c.ledger(), c.waitScope(), vendor.credential.encode());
        // Return without waiting for createToken: the client goes away with it in flight.
      });
      victim.close();
    }
    // The other client carries on, and the server finishes the write it accepted.
    for (int i = 0; i < 20; ++i) ASSERT_EQ(verify(vendor.credential, {"assignment:read"}).reason, "ok");
    EXPECT_TRUE(pollUntil(ws(), [&] { return head() == start + 1; }))
        << "the accepted write was lost or doubled: head " << head() << ", expected " << start + 1;
  }
  EXPECT_EQ(head(), before + 3);
  EXPECT_EQ(rpcHead(), head());
  // New clients are still served.
  ClientThread late(port());
  EXPECT_EQ(late.run([&](rpc::Client& c) {
              return verifyVia(c.ledger(), c.waitScope(), vendor.credential.encode()).reason;
            }),
            "ok");
}

TEST_F(RpcTest, GarbageAndTruncatedStreamsCloseOnlyThatConnection) {
  Login bob = user("bob");
  auto session = login(bob.credential);
  auto whoami = [&] {
    auto request = session.whoamiRequest();
    return std::string(call(request).getPrincipal());
  };
  EXPECT_EQ(whoami(), "bob");
  {
    RawSocket garbage(port());
    ASSERT_TRUE(garbage.write(std::string(64, '\xff')));  // 2^32 segments: not a message
    EXPECT_TRUE(garbage.closedByServerWithin(5s)) << "the server kept a garbage connection open";
  }
  {
    RawSocket http(port());
    ASSERT_TRUE(http.write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    EXPECT_TRUE(http.closedByServerWithin(5s));
  }
  {
    // A frame announcing 1000 words, cut off after a few bytes, then the client vanishes.
    RawSocket truncated(port());
    std::string frame("\x00\x00\x00\x00\xe8\x03\x00\x00", 8);
    ASSERT_TRUE(truncated.write(frame + std::string(16, '\x01')));
  }
  {
    // A segment table claiming a 1 GiB message.
    RawSocket huge(port());
    std::string frame("\x00\x00\x00\x00\x00\x00\x00\x08", 8);
    ASSERT_TRUE(huge.write(frame));
    EXPECT_TRUE(huge.closedByServerWithin(5s));
  }
  EXPECT_EQ(whoami(), "bob") << "an existing session is undisturbed";
  EXPECT_EQ(verify(bob.credential).reason, "ok");
  ClientThread fresh(port());
  EXPECT_EQ(fresh.run([&](rpc::Client& c) { return headVia(c.ledger(), c.waitScope()); }), head());
}

class SmallMessageTest : public RpcTest {
 protected:
  SmallMessageTest() { serverOptions.maxMessageBytes = 64 << 10; }
};

TEST_F(SmallMessageTest, OversizedMessageClosesOnlyThatConnection) {
  Login bob = user("bob");
  Login vendor = tokenFor("bob", scopes({"assignment:read"}));
  auto session = login(bob.credential);
  auto batch = [&](wire::TokenLedger::Client ledger, kj::WaitScope& scope, unsigned n, size_t length) {
    auto request = ledger.verifyBatchRequest();
    auto list = request.initRequests(n);
    for (unsigned i = 0; i < n; ++i) setCredential(list[i].initCredential(), std::string(length, 'a'));
    return send(request, scope).getResults().size();
  };
  // Under the limit: fine (and each is merely malformed).
  EXPECT_EQ(batch(bootstrap(), ws(), 4, 8 << 10), 4u);

  ClientThread victim(port());
  CallOutcome big = victim.run([&](rpc::Client& c) {
    return outcomeOf([&] { batch(c.ledger(), c.waitScope(), 8, 16 << 10); });  // ~128 KiB
  });
  EXPECT_NE(big.code, "ok") << "a message over maxMessageBytes was accepted";
  CallOutcome after = victim.run([&](rpc::Client& c) {
    return outcomeOf([&] { headVia(c.ledger(), c.waitScope()); });
  });
  EXPECT_EQ(after.code, "unavailable") << "the offending connection should be closed: " << after.message;

  // Everyone else is unaffected.
  EXPECT_EQ(verify(vendor.credential).reason, "ok");
  auto who = session.whoamiRequest();
  EXPECT_EQ(std::string(call(who).getPrincipal()), "bob");
  ClientThread next(port());
  EXPECT_EQ(next.run([&](rpc::Client& c) {
              return verifyVia(c.ledger(), c.waitScope(), vendor.credential.encode()).reason;
            }),
            "ok");
  // A large description inside the limit is refused by the rules, not by the transport.
  expectRefused("invalid-argument", [&] { create(session, NewToken{.description = std::string(10'000, 'x')}); },
                "10 000 characters");
}

TEST_F(RpcTest, StopWithConnectedClientsReturnsPromptlyAndDisconnectsThem) {
  Login bob = user("bob");
  Login carol = principal("carol", Role::kAuditor, scopes({"audit:read", "tokens:read"}));
  auto session = login(carol.credential);
  auto log = std::make_shared<WatchLog>();
  auto watchRequest = session.watchRequest();
  watchRequest.setFromSeq(1);
  watchRequest.setWatcher(kj::heap<CollectingWatcher>(log));
  auto subscription = call(watchRequest).getSubscription();
  ClientThread other(port());
  auto otherSession = other.run([&](rpc::Client& c) {
    auto s = loginVia(c.ledger(), c.waitScope(), bob.credential.encode());
    auto who = s.whoamiRequest();
    send(who, c.waitScope());
    return std::string("connected");
  });
  EXPECT_EQ(otherSession, "connected");
  // A call in flight while the server stops.
  auto inFlight = createRequest(session, NewToken{}).send();

  std::promise<void> stopped;
  auto done = stopped.get_future();
  const auto t0 = SteadyClock::now();
  std::thread stopper([&] {
    server->stop();
    stopped.set_value();
  });
  if (done.wait_for(10s) != std::future_status::ready) {
    std::cerr << "Server::stop() did not return within 10 s with clients connected\n";
    std::abort();  // bounded: a hang here would otherwise hang the suite
  }
  stopper.join();
  EXPECT_LT(SteadyClock::now() - t0, 5s);

  // Clients see the connection go, promptly, with a disconnected error.
  auto disconnected = [](const std::function<void()>& f) {
    try {
      f();
      return std::string("succeeded");
    } catch (const kj::Exception& e) {
      return std::string(e.getType() == kj::Exception::Type::DISCONNECTED ? "disconnected"
                                                                            : e.getDescription().cStr());
    }
  };
  EXPECT_NO_THROW(outcomeOf([&] { waitFor(kj::mv(inFlight), ws()); })) << "in-flight call settles";
  EXPECT_EQ(disconnected([&] { rpcHead(); }), "disconnected");
  EXPECT_EQ(disconnected([&] {
              auto who = session.whoamiRequest();
              call(who);
            }),
            "disconnected");
  EXPECT_EQ(other.run([&](rpc::Client& c) {
              return disconnected([&] { headVia(c.ledger(), c.waitScope()); });
            }),
            "disconnected");
  EXPECT_EQ(rpc::fromKjException(kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                                               kj::str("Peer disconnected.")))
                .code(),
            ErrorCode::kUnavailable);
  // Nobody new gets in, and stop() stays idempotent.
  try {
    ClientThread late(port());  // its own thread: this one already runs the main client's loop
    ADD_FAILURE() << "connected to a stopped server";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable) << e.what();
  }
  server->stop();
  // The ledger itself is intact and still takes writes directly.
  EXPECT_NO_THROW(tokenFor("bob", scopes({"assignment:read"})));
}

// =============================================================================================
// The server decides expiry with the real clock while the ledger it serves uses
// LedgerOptions::clock: two answers to "is this token expired?" from one server.

class LedgerClockTest : public RpcTest {
 protected:
  LedgerOptions options() override {
    clock.set(nowMicros() + 30 * kDay);  // the ledger's clock runs a month ahead of the real one
    return LedgerFixture::options();
  }
};

TEST_F(LedgerClockTest, ServerUsesTheLedgerClock) {
  Login bob = user("bob");
  Login vendor = tokenFor("bob", scopes({"assignment:read"}), Expiration::custom(clock.now() + kDay));
  EXPECT_EQ(verify(vendor.credential).reason, "ok");
  clock.advance(2 * kDay);  // by the ledger's clock the token has now expired
  auto session = login(adminCredential);
  auto change = session.setDescriptionRequest();
  change.setSid(vendor.credential.sidHex());
  change.setDescription("renamed");
  CallOutcome write = outcomeOf([&] { call(change); });
  EXPECT_EQ(write.code, "failed-precondition") << "the ledger treats the token as expired";
  auto get = session.getTokenRequest();
  get.setSid(vendor.credential.sidHex());
  EXPECT_EQ(statusName(call(get).getToken().getStatus()), "expired")
      << "getToken disagrees with the ledger it serves (" << write.message << ")";
  EXPECT_EQ(verify(vendor.credential).reason, "expired")
      << "verify disagrees with the ledger it serves";
}


// =============================================================================================
// TLS: the same protocol over asio::ssl, with a certificate made by the stock openssl tool.

// A self-signed certificate for localhost, made by the stock openssl tool in `dir`.
rpc::TlsFiles selfSignedCertificate(const std::filesystem::path& dir) {
  rpc::TlsFiles files{(dir / "cert.pem").string(), (dir / "key.pem").string()};
  ProcessResult made = runProcess({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                   "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                                   "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-keyout",
                                   files.privateKey, "-out", files.certificateChain},
                                  dir, 30s);
  if (!made.exitedWith(0)) throw std::runtime_error("openssl could not make a certificate: " + made.describe());
  return files;
}

class TlsTest : public RpcTest {
 protected:
  // The plaintext client of the fixture cannot speak to a TLS server: connect ours with TLS.
  void SetUp() override {
    serverOptions.tls = selfSignedCertificate(tlsDir.path());
    ServedLedgerFixture::SetUp();
    client = std::make_unique<rpc::Client>(rpc::ClientOptions{
        .host = "localhost", .port = server->port(), .tlsCaFile = serverOptions.tls->certificateChain});
  }
  TempDir tlsDir;
};

TEST_F(TlsTest, VerifyAndLoginOverTls) {
  Login vendor = tokenFor("alice", scopes({"assignment:read"}), {}, "Vendor over TLS");
  EXPECT_EQ(verify(vendor.credential, {"assignment:read"}).reason, "ok");
  auto session = login(adminCredential);
  auto who = session.whoamiRequest();
  EXPECT_EQ(std::string(call(who).getPrincipal()), "alice");
}

TEST_F(TlsTest, PlaintextClientIsNotServed) {
  // A client that skips the handshake gets no answer, and the TLS server keeps serving.
  ClientThread plain(port());
  bool refused = plain.run([](rpc::Client& c) {
    try {
      c.ledger().infoRequest().send().wait(c.waitScope());
      return false;
    } catch (const kj::Exception&) {
      return true;
    }
  });
  EXPECT_TRUE(refused) << "a plaintext client was answered by the TLS server";
  auto info = bootstrap().infoRequest();
  EXPECT_GT(call(info).getInfo().getHeadSeq(), 0u);
}

TEST_F(TlsTest, UntrustedCertificateIsRefused) {
  TempDir other;
  const std::string cert = selfSignedCertificate(other.path()).certificateChain;  // not the server's
  std::string outcome;
  std::thread connector([&, serverPort = port()] {  // one KJ event loop per thread
    try {
      rpc::Client wrong(rpc::ClientOptions{.host = "localhost", .port = serverPort, .tlsCaFile = cert});
      outcome = "connected";
    } catch (const Error& e) {
      outcome = std::string(errorCodeName(e.code())) + ": " + e.what();
    }
  });
  connector.join();
  EXPECT_TRUE(outcome.starts_with("unavailable: TLS")) << outcome;
}

}  // namespace
}  // namespace tokenledger::test
