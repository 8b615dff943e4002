// libFuzzer target: the RPC request handlers, reached the way an attacker reaches them. One
// real server (rpc::Server, 2 loop threads) on 127.0.0.1:<any port> serves a real ledger in a
// temporary directory, both created once in LLVMFuzzerInitialize. Each input is the byte stream
// of one TCP connection: it is written to a fresh connection; the harness reads the answers
// until every Call/Bootstrap in the input has its Return (or the server closes, or is quiet for
// kQuietMillis), then shuts down its write side and reads until the server closes. The seeds
// (make_corpus.cc) are framed Cap'n Proto RPC messages: Bootstrap, then pipelined calls of every
// wire::TokenLedger and wire::Session method, so mutations reach the handlers and not just the
// framing.
//
// Placeholders in the input (fuzz_support.h) are replaced by real credentials first, so a
// mutated login succeeds and the Session methods run with admin or user rights. The ledger
// keeps what earlier inputs wrote, as a real server would: a finding may depend on them (run
// the crash input alone first; if it does not reproduce, re-run the corpus with -runs).
//
// Findings: a crash or sanitizer report anywhere in the process (server threads included), or a
// connection the server does not close within kHangSeconds (reported as a crash, so libFuzzer
// saves the input). RPC_FUZZ_VERBOSE=1 logs every connection and what each answer said.
#include <arpa/inet.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>

#include "fuzz_support.h"
#include "ledger/commands.h"
#include "ledger/crypto.h"
#include "ledger/temp_dir.h"
#include "projections/ledger_instance.h"
#include "rpc/server.h"

using namespace tokenledger;

namespace {

constexpr int kHangSeconds = 10;
constexpr int kQuietMillis = 250;

struct World {
  TempDir dir{"tokenledger-rpc-fuzz"};
  std::unique_ptr<LedgerInstance> instance;
  std::unique_ptr<rpc::Server> server;
  std::string admin;      // alice's credential
  std::string user;       // bob's
  std::string userSid;
  std::string userSecret;
  uint16_t port = 0;
  uint64_t initialHead = 0;
};

World* gWorld = nullptr;
bool gVerbose = false;

void teardown() {
  if (gWorld == nullptr) return;
  gWorld->server.reset();
  // Shows whether mutated calls got through to the ledger (writes) during the run.
  std::fprintf(stderr, "rpc_fuzz: the ledger's head moved from %llu to %llu\n",
               static_cast<unsigned long long>(gWorld->initialHead),
               static_cast<unsigned long long>(gWorld->instance->ledger().headSeq()));
  gWorld->instance.reset();
  delete gWorld;  // removes the temporary directory
  gWorld = nullptr;
}

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "rpc_fuzz: %s\n", what.c_str());
  std::abort();
}

void replaceAll(std::string& bytes, const std::string& from, const std::string& to) {
  for (size_t at = bytes.find(from); at != std::string::npos; at = bytes.find(from, at + to.size())) {
    bytes.replace(at, from.size(), to);
  }
}

int connectToServer() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) fail("socket() failed");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(gWorld->port);
  ::inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    // Interrupted by libFuzzer's SIGALRM: the connection completes in the background.
    if (errno != EINTR) fail(std::string("cannot connect to the server: ") + std::strerror(errno));
    pollfd p{fd, POLLOUT, 0};
    while (::poll(&p, 1, kHangSeconds * 1000) < 0 && errno == EINTR) {
    }
    int error = 0;
    socklen_t length = sizeof(error);
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0 || (p.revents & POLLOUT) == 0) {
      fail(std::string("cannot connect to the server: ") + std::strerror(error));
    }
  }
  // Close with a reset: no TIME_WAIT, so long runs do not run out of ephemeral ports.
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  return fd;
}


// Counts the complete framed RPC messages at the start of `bytes` whose kind is in `kinds`, and
// removes them from `bytes`; stops at the first incomplete or malformed one.
size_t takeMessages(std::string& bytes, std::initializer_list<capnp::rpc::Message::Which> kinds) {
  size_t count = 0;
  size_t offset = 0;
  while (bytes.size() - offset >= sizeof(capnp::word)) {
    const size_t available = (bytes.size() - offset) / sizeof(capnp::word);
    auto words = kj::heapArray<capnp::word>(available);
    std::memcpy(words.begin(), bytes.data() + offset, available * sizeof(capnp::word));
    size_t needed;
    try {
      needed = capnp::expectedSizeInWordsFromPrefix(words);
      if (needed > available) break;
      capnp::FlatArrayMessageReader reader(words.slice(0, needed));
      auto message = reader.getRoot<capnp::rpc::Message>();
      auto which = message.which();
      for (auto kind : kinds) count += which == kind ? 1 : 0;
      if (gVerbose && which == capnp::rpc::Message::RETURN) {
        auto r = message.getReturn();
        std::fprintf(stderr, "rpc_fuzz: answer to %u: %s\n", r.getAnswerId(),
                     r.isException() ? r.getException().getReason().cStr() : "results");
      } else if (gVerbose && which == capnp::rpc::Message::ABORT) {
        std::fprintf(stderr, "rpc_fuzz: abort: %s\n", message.getAbort().getReason().cStr());
      }
    } catch (const kj::Exception&) {
      offset = bytes.size();  // not a message stream (any more): nothing further to count
      break;
    }
    offset += needed * sizeof(capnp::word);
  }
  bytes.erase(0, offset);
  return count;
}

size_t countMessages(std::string bytes, std::initializer_list<capnp::rpc::Message::Which> kinds) {
  return takeMessages(bytes, kinds);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // One "connection ended" line per input otherwise; RPC_FUZZ_VERBOSE=1 shows them, and what
  // every answer said (use it to run single inputs).
  gVerbose = std::getenv("RPC_FUZZ_VERBOSE") != nullptr;
  spdlog::set_level(gVerbose ? spdlog::level::debug : spdlog::level::warn);
  gWorld = new World;
  const auto dataDir = gWorld->dir.path() / "ledger";
  Credential admin = LedgerInstance::init(dataDir, "alice");
  gWorld->instance = LedgerInstance::open(dataDir);
  Ledger& ledger = gWorld->instance->ledger();
  Actor alice = Actor::token("alice", admin.sidHex());
  ledger.execute(Request{alice, "local", "", GrantRole{"bob", Role::kUser}});
  CommandResult bob = ledger.execute(Request{
      alice, "local", "", CreateToken{"bob", "fuzz user", {}, Scopes::of({"tokens:read", "tokens:write",
                                                                          "assignment:read"})}});
  gWorld->admin = admin.encode();
  gWorld->user = bob.credential->encode();
  gWorld->userSid = bob.credential->sidHex();
  gWorld->userSecret = toHex(bob.credential->secret);

  rpc::ServerOptions options;
  options.port = 0;
  options.threads = 2;
  gWorld->server = std::make_unique<rpc::Server>(*gWorld->instance, options);
  gWorld->port = gWorld->server->port();
  gWorld->initialHead = ledger.headSeq();
  std::atexit(teardown);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  replaceAll(bytes, fuzz::kAdminPlaceholder, gWorld->admin);
  replaceAll(bytes, fuzz::kUserPlaceholder, gWorld->user);
  replaceAll(bytes, fuzz::kUserSidPlaceholder, gWorld->userSid);
  replaceAll(bytes, fuzz::kUserSecretPlaceholder, gWorld->userSecret);
  // How many answers to wait for before hanging up: hanging up at once would cancel calls
  // still waiting for a login or a durable write, and their handlers would never run.
  const size_t questions = countMessages(bytes, {capnp::rpc::Message::CALL, capnp::rpc::Message::BOOTSTRAP});

  const int fd = connectToServer();
  // The server may close early (a malformed frame); a failed write just ends the input.
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;  // libFuzzer's -timeout ticks with SIGALRM
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }

  // Read the answers until every question has one, the server closes, or it has been quiet for
  // kQuietMillis (a call that is never answered, e.g. on a capability that never resolves). Then
  // hang up (EOF) and read until the server closes its side, which it must do promptly.
  std::string received;
  size_t returns = 0;
  bool closed = false;
  auto lastData = std::chrono::steady_clock::now();
  const auto deadline = lastData + std::chrono::seconds(kHangSeconds);
  bool hungUp = false;
  char buffer[16384];
  while (!closed) {
    const auto now = std::chrono::steady_clock::now();
    if (!hungUp && (returns >= questions || now - lastData > std::chrono::milliseconds(kQuietMillis))) {
      ::shutdown(fd, SHUT_WR);
      hungUp = true;
    }
    if (now > deadline) {
      fail(hungUp ? "the server kept a connection open " + std::to_string(kHangSeconds) +
                        " s after the client's EOF"
                  : "the server kept answering for " + std::to_string(kHangSeconds) + " s");
    }
    pollfd p{fd, POLLIN, 0};
    int ready = ::poll(&p, 1, 10);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) fail(std::string("poll() failed: ") + std::strerror(errno));
    if (ready == 0) continue;
    ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      closed = true;  // EOF or reset: the server is done with this connection
      break;
    }
    lastData = std::chrono::steady_clock::now();
    if (!hungUp) {
      received.append(buffer, static_cast<size_t>(n));
      returns += takeMessages(received, {capnp::rpc::Message::RETURN});
    }
  }
  ::close(fd);
  return 0;
}
