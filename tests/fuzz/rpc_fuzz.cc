// libFuzzer target: the RPC request handlers, reached the way an attacker reaches them. One
// real server (rpc::Server, 2 loop threads) on 127.0.0.1:<any port> serves a real ledger in a
// temporary directory, both created once in LLVMFuzzerInitialize. Each input is the byte stream
// of one TCP connection: it is written to a fresh connection, the write side is shut down, and
// the harness reads until the server closes the connection. The seeds (make_corpus.cc) are
// framed Cap'n Proto RPC messages: Bootstrap, then pipelined calls of every wire::TokenLedger
// and wire::Session method, so mutations reach the handlers and not just the framing.
//
// Placeholders in the input (fuzz_support.h) are replaced by real credentials first, so a
// mutated login succeeds and the Session methods run with admin or user rights.
//
// Findings: a crash or sanitizer report anywhere in the process (server threads included), or a
// connection the server does not close within kHangSeconds after the client's EOF (reported
// as a crash, so libFuzzer saves the input).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
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

struct World {
  TempDir dir{"tokenledger-rpc-fuzz"};
  std::unique_ptr<LedgerInstance> instance;
  std::unique_ptr<rpc::Server> server;
  std::string admin;      // alice's credential
  std::string user;       // bob's
  std::string userSid;
  std::string userSecret;
  uint16_t port = 0;
};

World* gWorld = nullptr;

void teardown() {
  if (gWorld == nullptr) return;
  gWorld->server.reset();
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
    fail("cannot connect to the server: it stopped accepting connections");
  }
  // Close with a reset: no TIME_WAIT, so long runs do not run out of ephemeral ports.
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::warn);  // one "connection ended" line per input otherwise
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
  std::atexit(teardown);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  replaceAll(bytes, fuzz::kAdminPlaceholder, gWorld->admin);
  replaceAll(bytes, fuzz::kUserPlaceholder, gWorld->user);
  replaceAll(bytes, fuzz::kUserSidPlaceholder, gWorld->userSid);
  replaceAll(bytes, fuzz::kUserSecretPlaceholder, gWorld->userSecret);

  const int fd = connectToServer();
  // The server may close early (a malformed frame); a failed write just ends the input.
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);

  // Read (and drop) the answers until the server closes its side.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kHangSeconds);
  char buffer[16384];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      fail("the server kept a connection open " + std::to_string(kHangSeconds) +
           " s after the client's EOF");
    }
    pollfd p{fd, POLLIN, 0};
    int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0) fail("poll() failed");
    if (ready == 0) continue;
    ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;  // EOF or reset: the server is done with this connection
  }
  ::close(fd);
  return 0;
}
