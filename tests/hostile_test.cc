// Hostile input against a real server: rpc::Server on 127.0.0.1:<any port> over a real ledger,
// attacked over loopback with random, truncated, mutated and oversized Cap'n Proto traffic, with
// a flood of connections and with clients that never read their replies or never send Finish,
// while a well-behaved client (connected before the attack) keeps verifying. Every one of its
// verifications must succeed, the server must close every hostile connection itself, append
// nothing, and keep serving new clients afterwards.
//
// Randomness comes from one seeded generator (kSeed, or $HOSTILE_SEED) so a failure reproduces;
// the seed is printed with every failure. Every wait is bounded.
#include <capnp/message.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <thread>

#include "rpc/client.h"
#include "rpc/server.h"
#include "rpc/raw_frames.h"
#include "rpc_support.h"

// Designated initializers leave the other members at their defaults, which is the point.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace tokenledger::test {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kSeed = 20261123;

uint64_t seed() {
  const char* text = std::getenv("HOSTILE_SEED");
  return text != nullptr ? std::strtoull(text, nullptr, 10) : kSeed;
}

// "ok", or why the verification did not say "valid": a reason, an error, a timeout.
std::string verifyOnce(rpc::Client& client, const std::string& token,
                       std::chrono::milliseconds timeout = kCallTimeout) {
  try {
    auto request = client.ledger().verifyRequest();
    request.initRequest().initCredential().setToken(token);
    auto response = waitFor(request.send(), client.waitScope(), timeout);
    auto result = response.getResult();
    if (result.getValid() && result.getReason() == wire::VerifyReason::OK) return "ok";
    return "not valid, reason " + std::to_string(static_cast<int>(result.getReason()));
  } catch (const kj::Exception& e) {
    return std::string("error: ") + e.getDescription().cStr();
  } catch (const std::exception& e) {
    return std::string("error: ") + e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// The well-behaved client: connects on its own thread (one KJ loop per thread) and verifies one
// credential in a loop until stopped, counting successes and keeping the first failure.

class Verifier {
 public:
  Verifier(uint16_t port, std::string token) : token_(std::move(token)) {
    std::promise<void> connected;
    auto ready = connected.get_future();
    thread_ = std::thread([this, port, &connected] { run(port, connected); });
    if (ready.wait_for(kCallTimeout) != std::future_status::ready) {
      stop_ = true;
      thread_.join();
      throw std::runtime_error("the verifying client did not connect in time");
    }
    ready.get();
  }
  ~Verifier() { stop(); }

  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t ok() const { return ok_.load(); }
  uint64_t failures() const { return failures_.load(); }
  std::string firstFailure() {
    std::lock_guard lock(mutex_);
    return firstFailure_;
  }
  // Waits until at least `count` verifications have succeeded; false after `timeout`.
  bool waitForOk(uint64_t count, std::chrono::milliseconds timeout = 20s) const {
    const auto deadline = SteadyClock::now() + timeout;
    while (ok() < count) {
      if (SteadyClock::now() > deadline || (failures_.load() > 0 && done_.load())) return false;
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }

 private:
  void run(uint16_t port, std::promise<void>& connected) {
    std::unique_ptr<rpc::Client> client;
    try {
      client = std::make_unique<rpc::Client>(rpc::ClientOptions{.port = port});
    } catch (...) {
      connected.set_exception(std::current_exception());
      return;
    }
    connected.set_value();
    while (!stop_) {
      std::string outcome = verifyOnce(*client, token_);
      if (outcome == "ok") {
        ok_.fetch_add(1);
      } else {
        failures_.fetch_add(1);
        std::lock_guard lock(mutex_);
        if (firstFailure_.empty()) firstFailure_ = outcome;
        if (outcome.starts_with("error")) break;  // the connection is gone: nothing more to see
      }
      std::this_thread::sleep_for(500us);  // leave the server some of the two cores
    }
    done_ = true;
  }

  std::string token_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> done_{false};
  std::atomic<uint64_t> ok_{0};
  std::atomic<uint64_t> failures_{0};
  std::mutex mutex_;
  std::string firstFailure_;
  std::thread thread_;
};

// ---------------------------------------------------------------------------------------------
// Well-formed Cap'n Proto RPC traffic to mutate: framed rpc::Message values as a client sends them.

using TL = wire::TokenLedger;
using S = wire::Session;
using rpc::bootstrapMessage;
using rpc::callMessage;

// Bootstrap, verify, verifyBatch, info, a login with `credential` and calls on its session.
// Built with a credential that identifies no token, so no mutation of it can authenticate.
std::string wellFormedTraffic(const std::string& credential) {
  std::string out = bootstrapMessage(0);
  out += callMessage<TL, TL::VerifyParams>(1, 0, false, 0, [&](TL::VerifyParams::Builder p) {
    auto r = p.initRequest();
    r.initCredential().setToken(credential);
    r.initRequiredScopes(1).set(0, "assignment:read");
  });
  out += callMessage<TL, TL::VerifyBatchParams>(2, 0, false, 1, [&](TL::VerifyBatchParams::Builder p) {
    auto list = p.initRequests(2);
    list[0].initCredential().setToken(credential);
    auto pair = list[1].initCredential().initPair();
    pair.setSid(credential.substr(4, 32));
    pair.setSecret(credential.substr(36, 64));
  });
  out += callMessage<TL, TL::InfoParams>(3, 0, false, 3, [](TL::InfoParams::Builder) {});
  out += callMessage<TL, TL::LoginParams>(4, 0, false, 2, [&](TL::LoginParams::Builder p) {
    p.initCredential().setToken(credential);
  });
  out += callMessage<S, S::WhoamiParams>(5, 4, true, 0, [](S::WhoamiParams::Builder) {});
  out += callMessage<S, S::CreateTokenParams>(6, 4, true, 1, [](S::CreateTokenParams::Builder p) {
    p.setDescription("never created");
    p.initExpiration().setDays90();
    p.initScopes().setAll();
  });
  out += callMessage<S, S::HistoryParams>(7, 4, true, 9, [](S::HistoryParams::Builder p) {
    p.initFilter().setLimit(10);
  });
  return out;
}

// A segment table: `count` segments of the given sizes in words (count - 1 is what is sent).
std::string segmentTable(const std::vector<uint32_t>& sizes) {
  std::string out;
  auto put32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i) & 0xff));
  };
  put32(static_cast<uint32_t>(sizes.size() - 1));
  for (uint32_t s : sizes) put32(s);
  if (sizes.size() % 2 == 0) put32(0);  // padding to a whole word
  return out;
}

std::string randomBytes(std::mt19937_64& rng, size_t n) {
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

size_t uniform(std::mt19937_64& rng, size_t lo, size_t hi) {
  return std::uniform_int_distribution<size_t>(lo, hi)(rng);
}

// One hostile connection's bytes, of a kind chosen by `rng`; `kind` names it for diagnostics.
std::string hostileBytes(std::mt19937_64& rng, const std::string& traffic, std::string& kind) {
  switch (uniform(rng, 0, 6)) {
    case 0:
      kind = "random bytes";
      return randomBytes(rng, uniform(rng, 1, 4096));
    case 1:
      kind = "well-formed traffic cut short";
      return traffic.substr(0, uniform(rng, 1, traffic.size() - 1));
    case 2: {
      kind = "well-formed traffic with flipped bytes";
      std::string out = traffic;
      for (size_t i = 0, n = uniform(rng, 1, 16); i < n; ++i) {
        out[uniform(rng, 0, out.size() - 1)] = static_cast<char>(rng() & 0xff);
      }
      return out;
    }
    case 3: {
      kind = "a segment table promising a huge message";
      std::vector<uint32_t> sizes(uniform(rng, 1, 4));
      for (auto& s : sizes) s = static_cast<uint32_t>(uniform(rng, 1u << 17, 0xffffffffu));
      return segmentTable(sizes) + randomBytes(rng, uniform(rng, 0, 512));
    }
    case 4: {
      kind = "a segment table with hundreds of tiny segments";
      std::vector<uint32_t> sizes(uniform(rng, 64, 600));
      for (auto& s : sizes) s = static_cast<uint32_t>(uniform(rng, 0, 2));
      return segmentTable(sizes) + randomBytes(rng, uniform(rng, 0, 2048));
    }
    case 5:
      kind = "well-formed traffic followed by garbage";
      return traffic + randomBytes(rng, uniform(rng, 1, 1024));
    default: {
      kind = "well-formed messages with random bodies";
      // Valid framing (one segment of the stated size) around random words.
      const size_t words = uniform(rng, 1, 256);
      return segmentTable({static_cast<uint32_t>(words)}) + randomBytes(rng, 8 * words);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The fixture: one ledger (admin "alice"), a vendor token that the verifier checks, one server.

class HostileTest : public ServedLedgerFixture {
 protected:
  void SetUp() override {
    ServedLedgerFixture::SetUp();
    vendor = tokenFor("bob", scopes({"assignment:read"})).credential.encode();
  }

  // A client that connects now must be served: verify says ok within `timeout` (retrying on
  // refused connections). Returns the last outcome.
  std::string freshClientVerifies(std::chrono::milliseconds timeout = 10s) {
    const auto deadline = SteadyClock::now() + timeout;
    std::string outcome;
    do {
      try {
        rpc::Client client(rpc::ClientOptions{.port = port()});
        outcome = verifyOnce(client, vendor, 2s);
      } catch (const std::exception& e) {
        outcome = std::string("cannot connect: ") + e.what();
      }
      if (outcome == "ok") return outcome;
      std::this_thread::sleep_for(100ms);
    } while (SteadyClock::now() < deadline);
    return outcome;
  }

  // A verify call of the vendor's token on the bootstrap capability (question 0).
  std::string verifyCall(uint32_t question) const {
    return callMessage<TL, TL::VerifyParams>(question, 0, false, 0, [&](TL::VerifyParams::Builder p) {
      p.initRequest().initCredential().setToken(vendor);
    });
  }

  std::string vendor;
};

TEST_F(HostileTest, RandomTruncatedAndMutatedStreamsCloseOnlyTheirOwnConnection) {
  SCOPED_TRACE("HOSTILE_SEED=" + std::to_string(seed()));
  std::mt19937_64 rng(seed());
  const uint64_t headBefore = head();
  // A credential with a valid checksum that identifies no token: mutations cannot log in.
  const std::string traffic = wellFormedTraffic(Credential::generate().encode());

  Verifier verifier(port(), vendor);  // connected before the attack
  ASSERT_TRUE(verifier.waitForOk(5)) << verifier.firstFailure();

  constexpr int kConnections = 500;
  const uint64_t okBefore = verifier.ok();
  const auto start = SteadyClock::now();
  int lingering = 0;
  for (int i = 0; i < kConnections; ++i) {
    std::string kind;
    const std::string bytes = hostileBytes(rng, traffic, kind);
    SCOPED_TRACE("connection " + std::to_string(i) + ": " + kind + ", " + std::to_string(bytes.size()) +
                 " bytes");
    RawSocket socket(port());
    socket.write(bytes);  // the server may close before taking everything: fine
    if (rng() % 4 == 0) {
      socket.abort();  // the client vanishes mid-stream
      continue;
    }
    // The client is done sending: whatever it sent, the server must answer what it can and
    // then close the connection itself, promptly.
    socket.shutdownWrite();
    if (!socket.closedByServerWithin(5s)) {
      ++lingering;
      ADD_FAILURE() << "the server kept the connection open 5 s after the client's EOF";
    }
  }
  const auto elapsed = SteadyClock::now() - start;
  EXPECT_EQ(lingering, 0);

  // The verifier was served throughout and keeps being served.
  EXPECT_TRUE(verifier.waitForOk(verifier.ok() + 20)) << verifier.firstFailure();
  verifier.stop();
  EXPECT_EQ(verifier.failures(), 0u) << "first failure: " << verifier.firstFailure();
  std::cout << "[ hostile  ] " << kConnections << " hostile connections in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count() << " ms; "
            << verifier.ok() - okBefore << " verifications succeeded meanwhile, "
            << verifier.failures() << " failed\n";

  // Nothing was appended, and new clients are served.
  EXPECT_EQ(head(), headBefore) << "hostile input changed the ledger";
  EXPECT_EQ(freshClientVerifies(), "ok");
}

class OversizedTest : public HostileTest {
 protected:
  OversizedTest() { serverOptions.maxMessageBytes = 256 << 10; }
};

TEST_F(OversizedTest, OversizedMessagesCloseOnlyTheirOwnConnection) {
  SCOPED_TRACE("HOSTILE_SEED=" + std::to_string(seed()));
  std::mt19937_64 rng(seed() + 1);
  const uint64_t headBefore = head();
  Verifier verifier(port(), vendor);
  ASSERT_TRUE(verifier.waitForOk(5)) << verifier.firstFailure();

  // Raw: well-framed single-segment messages from just over the limit to 4 MiB, sent whole
  // (random words). The server must close the connection without the client's EOF.
  for (int i = 0; i < 8; ++i) {
    const size_t words = uniform(rng, (256 << 10) / 8 + 1, (4 << 20) / 8);
    SCOPED_TRACE("raw oversized message of " + std::to_string(8 * words) + " bytes");
    RawSocket socket(port());
    socket.write(segmentTable({static_cast<uint32_t>(words)}) + randomBytes(rng, 8 * words));
    EXPECT_TRUE(socket.closedByServerWithin(5s)) << "the server kept an oversized message's connection open";
  }

  // Through a real client: a verifyBatch over the message limit fails and loses only that
  // client's connection; one under the limit but over maxVerifyBatch is refused as a call.
  {
    rpc::Client client(rpc::ClientOptions{.port = port()});
    auto batch = [&](unsigned n, size_t length) {
      auto request = client.ledger().verifyBatchRequest();
      auto list = request.initRequests(n);
      for (unsigned i = 0; i < n; ++i) list[i].initCredential().setToken(std::string(length, 'a'));
      try {
        waitFor(request.send(), client.waitScope());
        return std::string("ok");
      } catch (const kj::Exception& e) {
        return std::string(e.getDescription().cStr());
      }
    };
    EXPECT_NE(batch(1001, 8), "ok") << "a batch over maxVerifyBatch was answered";
    EXPECT_EQ(verifyOnce(client, vendor), "ok") << "a refused call must not cost the connection";
    EXPECT_NE(batch(64, 8 << 10), "ok") << "a 512 KiB message was accepted over a 256 KiB limit";
    EXPECT_NE(verifyOnce(client, vendor), "ok") << "the offending connection should be closed";
  }

  EXPECT_TRUE(verifier.waitForOk(verifier.ok() + 20)) << verifier.firstFailure();
  verifier.stop();
  EXPECT_EQ(verifier.failures(), 0u) << "first failure: " << verifier.firstFailure();
  EXPECT_EQ(head(), headBefore);
  EXPECT_EQ(freshClientVerifies(), "ok");
}

// ---------------------------------------------------------------------------------------------
// A connection flood: 500 sockets from one client held open against maxConnections = 64.

class FloodTest : public HostileTest {
 protected:
  static constexpr size_t kMaxConnections = 64;
  static constexpr int kFlood = 500;
  FloodTest() { serverOptions.maxConnections = kMaxConnections; }
  void SetUp() override {
    // The flood's sockets plus the server's side of them, RocksDB's files and the rest.
    rlimit limit{};
    ::getrlimit(RLIMIT_NOFILE, &limit);
    if (limit.rlim_cur < 4096 && limit.rlim_cur < limit.rlim_max) {
      limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, 4096);
      ::setrlimit(RLIMIT_NOFILE, &limit);
    }
    // One "refusing a connection" warning per refused socket would bury the test's output.
    spdlog::set_level(spdlog::level::err);
    HostileTest::SetUp();
  }
  void TearDown() override {
    HostileTest::TearDown();
    spdlog::set_level(spdlog::level::info);
  }
};

TEST_F(FloodTest, AFloodOfConnectionsDoesNotStopAnEstablishedClientsVerifications) {
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < 2 * kFlood + 200) GTEST_SKIP() << "RLIMIT_NOFILE " << limit.rlim_cur << " too low";

  // The established client connects before the flood (it holds one of the 64 slots).
  Verifier verifier(port(), vendor);
  ASSERT_TRUE(verifier.waitForOk(5)) << verifier.firstFailure();
  const uint64_t okBefore = verifier.ok();

  std::vector<std::unique_ptr<RawSocket>> flood;
  flood.reserve(kFlood);
  const std::string partialHeader("\x00\x00\x00\x00", 4);  // half a segment table: a read stays pending
  for (int i = 0; i < kFlood; ++i) {
    flood.push_back(std::make_unique<RawSocket>(port()));
    if (i % 2 == 0) flood.back()->write(partialHeader);
  }

  // The server keeps at most 64 connections: it closes at least kFlood - 63 of the flood's.
  const auto deadline = SteadyClock::now() + 15s;
  std::vector<bool> closed(kFlood, false);
  size_t closedCount = 0;
  const size_t expectClosed = kFlood - (kMaxConnections - 1);
  while (closedCount < expectClosed && SteadyClock::now() < deadline) {
    std::vector<pollfd> fds;
    std::vector<int> index;
    for (int i = 0; i < kFlood; ++i) {
      if (closed[static_cast<size_t>(i)]) continue;
      fds.push_back(pollfd{flood[static_cast<size_t>(i)]->fd(), POLLIN, 0});
      index.push_back(i);
    }
    if (::poll(fds.data(), fds.size(), 50) <= 0) continue;
    for (size_t k = 0; k < fds.size(); ++k) {
      if ((fds[k].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      char buffer[256];
      if (::recv(fds[k].fd, buffer, sizeof(buffer), MSG_DONTWAIT) <= 0) {
        closed[static_cast<size_t>(index[k])] = true;
        ++closedCount;
      }
    }
  }
  EXPECT_GE(closedCount, expectClosed) << "the server held more than maxConnections connections";

  // While the flood holds the remaining slots, the established client keeps verifying.
  EXPECT_TRUE(verifier.waitForOk(verifier.ok() + 100)) << verifier.firstFailure();
  const uint64_t duringFlood = verifier.ok() - okBefore;

  // A newcomer during the flood: every slot is taken, so it is refused, but promptly (the
  // server closes the connection; nothing hangs).
  std::string newcomer;
  const auto t0 = SteadyClock::now();
  try {
    rpc::Client client(rpc::ClientOptions{.port = port()});
    newcomer = verifyOnce(client, vendor, 5s);
  } catch (const std::exception& e) {
    newcomer = std::string("cannot connect: ") + e.what();
  }
  const auto newcomerMs = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - t0).count();
  EXPECT_LT(newcomerMs, 5000) << "a connection attempt during the flood hung: " << newcomer;

  // The flood ends (the client vanishes); new clients are served again within 10 s.
  for (auto& s : flood) s->abort();
  flood.clear();
  EXPECT_EQ(freshClientVerifies(10s), "ok") << "the server did not recover after the flood";

  EXPECT_TRUE(verifier.waitForOk(verifier.ok() + 20)) << verifier.firstFailure();
  verifier.stop();
  EXPECT_EQ(verifier.failures(), 0u) << "first failure: " << verifier.firstFailure();
  std::cout << "[ hostile  ] flood of " << kFlood << ": server closed " << closedCount
            << "; established client verified " << duringFlood << " times meanwhile, "
            << verifier.failures() << " failures; a newcomer during the flood got \"" << newcomer
            << "\" after " << newcomerMs << " ms\n";
}

// What an idle connection costs the server: one that has bootstrapped and then sends nothing.
// Anyone can open thousands; a read buffer per connection that is zeroed up front costs its whole
// size in resident memory (64 KiB each: 330 MB for 4000 idle connections, where the server
// otherwise runs in ~25 MB).
class IdleConnectionsTest : public FloodTest {
 protected:
  IdleConnectionsTest() { serverOptions.maxConnections = rpc::ServerOptions{}.maxConnections; }

  static size_t residentKiB() {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6));
    }
    return 0;
  }

  // Opens `n` connections that each bootstrap and read the answer, so the server has set each up.
  void connectIdle(std::vector<std::unique_ptr<RawSocket>>& into, int n) {
    for (int i = 0; i < n; ++i) {
      into.push_back(std::make_unique<RawSocket>(port()));
      ASSERT_TRUE(into.back()->write(bootstrapMessage(0)));
    }
    for (size_t i = into.size() - static_cast<size_t>(n); i < into.size(); ++i) {
      pollfd p{into[i]->fd(), POLLIN, 0};
      ASSERT_EQ(::poll(&p, 1, 5000), 1) << "no bootstrap answer on connection " << i;
      char answer[4096];
      ASSERT_GT(::recv(into[i]->fd(), answer, sizeof(answer), 0), 0);
    }
  }
};

TEST_F(IdleConnectionsTest, CostLittleResidentMemory) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "sanitizers allocate and count memory their own way";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
  GTEST_SKIP() << "sanitizers allocate and count memory their own way";
#endif
#endif
  constexpr int kIdle = 1000;
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < 2 * kIdle + 200) GTEST_SKIP() << "RLIMIT_NOFILE " << limit.rlim_cur << " too low";
  std::vector<std::unique_ptr<RawSocket>> warm, idle;
  connectIdle(warm, 50);  // the loop threads' heaps and pools exist before measuring
  const size_t before = residentKiB();
  connectIdle(idle, kIdle);
  const size_t after = residentKiB();
  ASSERT_GT(before, 0u);
  const size_t perConnection = after > before ? (after - before) / kIdle : 0;
  std::cout << "[ hostile  ] " << kIdle << " idle connections: " << perConnection
            << " KiB resident each\n";
  EXPECT_LT(perConnection, 40u);
  EXPECT_EQ(freshClientVerifies(10s), "ok");
}


// ---------------------------------------------------------------------------------------------
// A client that keeps calling and never reads a reply: the server must stop reading its calls
// once their replies back up (or it would buffer replies without bound), and close the
// connection once those replies have made no progress for stalledReplyTimeout.

// A verifyBatch call of 500 credentials (about 50 KB of reply), followed by its Finish as a
// well-behaved client would send it: only the reading is missing.
std::string unreadBatchCall(const std::string& credential, uint32_t question) {
  return callMessage<TL, TL::VerifyBatchParams>(question, 0, false, 1, [&](TL::VerifyBatchParams::Builder p) {
           auto list = p.initRequests(500);
           for (unsigned i = 0; i < 500; ++i) list[i].initCredential().setToken(credential);
         }) +
         rpc::finishMessage(question);
}

class UnreadRepliesTest : public HostileTest {
 protected:
  static constexpr auto kStallTimeout = 1s;
  UnreadRepliesTest() { serverOptions.stalledReplyTimeout = kStallTimeout; }
};

TEST_F(UnreadRepliesTest, AClientThatNeverReadsItsRepliesIsThrottledThenClosed) {
  const uint64_t headBefore = head();
  Verifier verifier(port(), vendor);
  ASSERT_TRUE(verifier.waitForOk(5)) << verifier.firstFailure();

  auto batchCall = [&](uint32_t question) { return unreadBatchCall(vendor, question); };
  RawSocket socket(port());
  constexpr size_t kCeiling = 64 << 20;  // far beyond every buffer between the two ends
  std::string pending = bootstrapMessage(0);
  uint32_t question = 1;
  size_t sent = 0;
  auto lastProgress = SteadyClock::now();
  bool closedWhileSending = false;
  while (sent < kCeiling) {
    if (pending.empty()) pending = batchCall(question++);
    const ssize_t n = ::send(socket.fd(), pending.data(), pending.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      pending.erase(0, static_cast<size_t>(n));
      lastProgress = SteadyClock::now();
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (SteadyClock::now() - lastProgress > 3 * kStallTimeout) break;  // the server stopped reading
      pollfd p{socket.fd(), POLLOUT, 0};
      ::poll(&p, 1, 50);
      continue;
    }
    closedWhileSending = true;  // reset by the server
    break;
  }
  const auto stoppedAt = SteadyClock::now();
  EXPECT_LT(sent, kCeiling) << "the server kept reading calls while nobody took their replies";

  // The server closes the connection by itself: the client reads nothing, it only looks.
  bool closed = closedWhileSending;
  while (!closed && SteadyClock::now() - stoppedAt < kStallTimeout + 10s) {
    pollfd p{socket.fd(), POLLRDHUP, 0};
    closed = ::poll(&p, 1, 50) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
  }
  EXPECT_TRUE(closed) << "the server kept a connection whose replies made no progress";

  EXPECT_TRUE(verifier.waitForOk(verifier.ok() + 20)) << verifier.firstFailure();
  verifier.stop();
  EXPECT_EQ(verifier.failures(), 0u) << "first failure: " << verifier.firstFailure();
  std::cout << "[ hostile  ] a client that never read: sent " << (sent >> 10) << " KiB in "
            << question - 1 << " batches before the server stopped reading; closed by the server: "
            << (closed ? "yes" : "no") << "\n";
  EXPECT_EQ(head(), headBefore);
  EXPECT_EQ(freshClientVerifies(), "ok");
}

// Many clients that never read. Each alone is held at 256 KiB of unsent replies; together they
// are also held to the server-wide ServerOptions::maxBacklogBytes, counting what each holds
// beyond 16 KiB (without it, 4096 connections could make the server hold 1 GiB).
class ManyUnreadRepliesTest : public HostileTest {
 protected:
  static constexpr size_t kBacklogLimit = 256 << 10;
  static constexpr int kClients = 8;
  static constexpr size_t kReplyMargin = 128 << 10;  // one batch's reply, read before pausing
  ManyUnreadRepliesTest() {
    serverOptions.maxBacklogBytes = kBacklogLimit;
    serverOptions.stalledReplyTimeout = 60s;  // they stay connected, holding what they hold
  }
};

TEST_F(ManyUnreadRepliesTest, TogetherTheyHoldNoMoreThanTheServerWideLimit) {
  Verifier verifier(port(), vendor);
  ASSERT_TRUE(verifier.waitForOk(5)) << verifier.firstFailure();
  std::vector<std::unique_ptr<RawSocket>> sockets;
  std::vector<std::string> pending(kClients, bootstrapMessage(0));
  std::vector<uint32_t> question(kClients, 1);
  for (int i = 0; i < kClients; ++i) sockets.push_back(std::make_unique<RawSocket>(port()));
  // Send on every socket until the server has stopped reading from all of them.
  auto lastProgress = SteadyClock::now();
  size_t sent = 0;
  constexpr size_t kCeiling = size_t{kClients} * (64 << 20);
  while (sent < kCeiling && SteadyClock::now() - lastProgress < 2s) {
    bool moved = false;
    for (int i = 0; i < kClients; ++i) {
      if (pending[i].empty()) pending[i] = unreadBatchCall(vendor, question[i]++);
      const ssize_t n = ::send(sockets[i]->fd(), pending[i].data(), pending[i].size(),
                               MSG_DONTWAIT | MSG_NOSIGNAL);
      ASSERT_TRUE(n > 0 || errno == EAGAIN || errno == EWOULDBLOCK) << "connection " << i << " was closed";
      if (n <= 0) continue;
      sent += static_cast<size_t>(n);
      pending[i].erase(0, static_cast<size_t>(n));
      moved = true;
    }
    if (moved) {
      lastProgress = SteadyClock::now();
    } else {
      std::this_thread::sleep_for(10ms);
    }
  }
  EXPECT_LT(sent, kCeiling) << "the server kept reading calls while nobody took their replies";
  const size_t held = server->backlogBytes();
  EXPECT_LE(held, kBacklogLimit + kClients * kReplyMargin)
      << "unsent replies held beyond 16 KiB per connection";
  // A client that reads its replies is held up for a write at most.
  EXPECT_TRUE(verifier.waitForOk(verifier.ok() + 20)) << verifier.firstFailure();
  std::cout << "[ hostile  ] " << kClients << " clients that never read: sent " << (sent >> 10)
            << " KiB; the server holds " << (held >> 10) << " KiB counted against its "
            << (kBacklogLimit >> 10) << " KiB limit\n";
  // The connections go, and what they held with them.
  for (auto& socket : sockets) socket->abort();
  const auto deadline = SteadyClock::now() + 10s;
  while (server->backlogBytes() != 0 && SteadyClock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(server->backlogBytes(), 0u);
  verifier.stop();
  EXPECT_EQ(verifier.failures(), 0u) << "first failure: " << verifier.firstFailure();
}


// ---------------------------------------------------------------------------------------------
// A client that calls and never sends Finish: Cap'n Proto keeps an answer-table entry per call
// until its Finish, so without a limit such a client grows the server without bound.

// Reads everything the server sends on `socket` until it closes, on its own thread.
class Collector {
 public:
  explicit Collector(int fd)
      : thread_([this, fd] {
          char buffer[65536];
          for (;;) {
            pollfd p{fd, POLLIN, 0};
            if (stop_) return;
            if (::poll(&p, 1, 20) <= 0) continue;
            const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
            if (n <= 0) break;
            std::lock_guard lock(mutex_);
            bytes_.append(buffer, static_cast<size_t>(n));
          }
          ended_ = true;
        }) {}
  ~Collector() {
    stop_ = true;
    thread_.join();
  }
  bool endedWithin(std::chrono::milliseconds timeout) const {
    const auto deadline = SteadyClock::now() + timeout;
    while (!ended_ && SteadyClock::now() < deadline) std::this_thread::sleep_for(5ms);
    return ended_;
  }
  // The Return messages received so far, and the reason of an Abort if one came.
  struct Summary {
    size_t returns = 0;
    size_t exceptions = 0;  // returns that carry an exception
    std::string lastException;
    std::string abortReason;
  };
  Summary summary() {
    std::string bytes;
    {
      std::lock_guard lock(mutex_);
      bytes = bytes_;
    }
    kj::Array<capnp::word> words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
    std::memcpy(words.begin(), bytes.data(), words.size() * sizeof(capnp::word));
    Summary out;
    kj::ArrayPtr<const capnp::word> rest = words;
    try {
      while (rest.size() > 0) {
        capnp::FlatArrayMessageReader reader(rest);
        auto message = reader.getRoot<capnp::rpc::Message>();
        if (message.isReturn()) ++out.returns;
        if (message.isReturn() && message.getReturn().isException()) {
          ++out.exceptions;
          out.lastException = message.getReturn().getException().getReason();
        }
        if (message.isAbort()) out.abortReason = message.getAbort().getReason();
        rest = kj::arrayPtr(reader.getEnd(), rest.end());
      }
    } catch (const kj::Exception&) {
      // a message cut short at the end: what came before is counted
    }
    return out;
  }
  // The summary once `returns` Return messages have come, or when `timeout` has passed.
  Summary afterReturns(size_t returns, std::chrono::milliseconds timeout) {
    const auto deadline = SteadyClock::now() + timeout;
    Summary out = summary();
    while (out.returns < returns && SteadyClock::now() < deadline) {
      std::this_thread::sleep_for(5ms);
      out = summary();
    }
    return out;
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<bool> ended_{false};
  std::mutex mutex_;
  std::string bytes_;
  std::thread thread_;
};

class UnfinishedCallsTest : public HostileTest {
 protected:
  static constexpr size_t kLimit = 1000;
  UnfinishedCallsTest() { serverOptions.maxUnfinishedCalls = kLimit; }
};

TEST_F(UnfinishedCallsTest, AClientThatNeverSendsFinishIsClosedAtTheLimit) {
  Verifier verifier(port(), vendor);
  ASSERT_TRUE(verifier.waitForOk(5)) << verifier.firstFailure();
  RawSocket socket(port());
  Collector collector(socket.fd());  // the replies are read: only the Finish messages are missing
  // The bootstrap and kLimit calls: one question over the limit, the last one sent, so the
  // server closes with nothing left unread (a reset could cut off what it sent last).
  std::string calls = bootstrapMessage(0);
  for (uint32_t q = 1; q <= kLimit; ++q) calls += verifyCall(q);
  ASSERT_TRUE(socket.write(calls));
  ASSERT_TRUE(collector.endedWithin(10s)) << "the server kept a connection over the limit";
  const auto received = collector.summary();
  EXPECT_EQ(received.returns, kLimit) << "every question under the limit answered (the bootstrap "
                                         "counts as one), none over it";
  EXPECT_NE(received.abortReason.find("without a Finish"), std::string::npos)
      << "the Abort should say why: \"" << received.abortReason << "\"";
  EXPECT_TRUE(verifier.waitForOk(verifier.ok() + 20)) << verifier.firstFailure();
  verifier.stop();
  EXPECT_EQ(verifier.failures(), 0u) << "first failure: " << verifier.firstFailure();
}

TEST_F(UnfinishedCallsTest, AClientThatFinishesEveryCallIsServedWithoutLimit) {
  RawSocket socket(port());
  Collector collector(socket.fd());
  std::string calls = bootstrapMessage(0);
  for (uint32_t q = 1; q <= 5 * kLimit; ++q) calls += verifyCall(q) + rpc::finishMessage(q);
  ASSERT_TRUE(socket.write(calls));
  EXPECT_EQ(collector.afterReturns(5 * kLimit + 1, 20s).returns, 5 * kLimit + 1)
      << "every call and the bootstrap answered";
  EXPECT_FALSE(collector.endedWithin(200ms)) << "the server closed a well-behaved connection";
  EXPECT_EQ(collector.summary().abortReason, "");
}

// The limit counts Finish messages as they come; that is sound only because Cap'n Proto itself
// ends a connection that sends a Finish for a question it never asked (so a peer cannot lower
// the count with made-up ones). This pins that down.
TEST_F(UnfinishedCallsTest, AFinishForAQuestionNeverAskedEndsTheConnection) {
  RawSocket socket(port());
  ASSERT_TRUE(socket.write(bootstrapMessage(0) + rpc::finishMessage(777)));
  EXPECT_TRUE(socket.closedByServerWithin(5s));
}

// verify's results hold no capability, so the server prepares nothing for calls pipelined on them
// (rpc/unpipelined_client.h). One sent anyway fails alone, and the connection goes on: refused
// by Cap'n Proto when the verify has already returned (as it usually has by then), by the
// unpipelined client's broken pipeline before that.
TEST_F(HostileTest, ACallPipelinedOnAVerifyAnswerFailsAlone) {
  RawSocket socket(port());
  Collector collector(socket.fd());
  std::string calls = bootstrapMessage(0) + verifyCall(1) +
                      callMessage<S, S::WhoamiParams>(2, 1, true, 0, [](S::WhoamiParams::Builder) {}) +
                      verifyCall(3);
  for (uint32_t q = 1; q <= 3; ++q) calls += rpc::finishMessage(q);
  ASSERT_TRUE(socket.write(calls));
  const auto received = collector.afterReturns(4, 10s);
  EXPECT_EQ(received.returns, 4u) << "the bootstrap, both verifications and the pipelined call answered";
  EXPECT_EQ(received.exceptions, 1u) << "only the pipelined call fails";
  EXPECT_NE(received.lastException, "");
  EXPECT_FALSE(collector.endedWithin(100ms)) << "the server closed the connection";
  EXPECT_EQ(received.abortReason, "");
  EXPECT_EQ(freshClientVerifies(), "ok");
}

}  // namespace
}  // namespace tokenledger::test
