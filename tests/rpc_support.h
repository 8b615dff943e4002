// RPC helpers for the tests that talk to a server (needs the rpc library): bounded waits on a
// KJ event loop, the outcome of a call ("ok" or its error code), login and head over any
// bootstrap capability, a raw TCP socket that speaks no Cap'n Proto, and a fixture serving one
// ledger with rpc::Server on 127.0.0.1:<any port>.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include "rpc/server.h"
#include "rpc/wire.h"
#include "test_support.h"

namespace tokenledger::test {

// The clock every bounded wait reads, and how long one RPC may take before a test gives up on it.
using SteadyClock = std::chrono::steady_clock;
inline constexpr std::chrono::milliseconds kCallTimeout{10'000};

// ---------------------------------------------------------------------------------------------
// Bounded waiting on a KJ event loop.

// Runs the loop until `promise` settles; throws std::runtime_error if it takes longer than
// `timeout`, so a hung server fails the test instead of hanging it.
template <typename T>
T waitFor(kj::Promise<T>&& promise, kj::WaitScope& scope,
          std::chrono::milliseconds timeout = kCallTimeout) {
  const auto deadline = SteadyClock::now() + timeout;
  while (!promise.poll(scope)) {
    if (SteadyClock::now() > deadline) {
      throw std::runtime_error("timed out after " + std::to_string(timeout.count()) +
                               " ms waiting for an RPC");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return promise.wait(scope);
}

template <typename T>
capnp::Response<T> waitFor(capnp::RemotePromise<T>&& promise, kj::WaitScope& scope,
                           std::chrono::milliseconds timeout = kCallTimeout) {
  return waitFor(kj::Promise<capnp::Response<T>>(kj::mv(promise)), scope, timeout);
}

// ---------------------------------------------------------------------------------------------
// Outcomes of calls: "ok" or the error code's name, with the message for diagnostics.

struct CallOutcome {
  std::string code;
  std::string message;
  bool ok() const { return code == "ok"; }
};

inline std::ostream& operator<<(std::ostream& out, const CallOutcome& o) {
  return out << o.code << (o.message.empty() ? "" : " (" + o.message + ")");
}

template <typename F>
CallOutcome outcomeOf(F&& f) {
  try {
    f();
    return {"ok", ""};
  } catch (const kj::Exception& e) {
    Error error = rpc::fromKjException(e);
    return {std::string(errorCodeName(error.code())), e.getDescription().cStr()};
  }
}

// ---------------------------------------------------------------------------------------------
// Calls on the bootstrap capability of any client (ours, capnp::EzRpcClient).

inline wire::Session::Client loginVia(wire::TokenLedger::Client ledger, kj::WaitScope& scope,
                                      const std::string& token) {
  auto request = ledger.loginRequest();
  request.initCredential().setToken(token);
  return waitFor(request.send(), scope).getSession();
}

// The head as the server reports it (ServerInfo.headSeq).
inline uint64_t headVia(wire::TokenLedger::Client ledger, kj::WaitScope& scope) {
  auto request = ledger.infoRequest();
  return waitFor(request.send(), scope).getInfo().getHeadSeq();
}

// ---------------------------------------------------------------------------------------------
// A TCP connection to 127.0.0.1:port that speaks no Cap'n Proto at all; closed when it goes.

class RawSocket {
 public:
  explicit RawSocket(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::runtime_error(std::string("socket() failed: ") + std::strerror(errno));
    timeval sendTimeout{5, 0};  // a server that stops reading cannot block the test
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &sendTimeout, sizeof(sendTimeout));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    ::inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      const int error = errno;
      ::close(fd_);
      throw std::runtime_error(std::string("connect() failed: ") + std::strerror(error));
    }
  }
  ~RawSocket() { close(); }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;

  // Sends all of `bytes`; false when the server has already closed (or reset) the connection.
  bool write(std::string_view bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }
  void shutdownWrite() { ::shutdown(fd_, SHUT_WR); }
  // Closes with a reset (the client vanishes mid-stream).
  void abort() {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close();
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd() const { return fd_; }

  // True once the server has closed its side (EOF or reset) within `timeout`; whatever it sent
  // before (answers, an Abort message) is read and dropped.
  bool closedByServerWithin(std::chrono::milliseconds timeout) {
    const auto deadline = SteadyClock::now() + timeout;
    char buffer[16384];
    while (SteadyClock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      int ready = ::poll(&p, 1, 50);
      if (ready < 0) return false;
      if (ready == 0) continue;
      ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0) return true;
    }
    return false;
  }

 private:
  int fd_ = -1;
};

// ---------------------------------------------------------------------------------------------
// One ledger (admin "alice", see LedgerFixture) served by rpc::Server on 127.0.0.1:<any port>.
// The ledger reads the real clock, as the server does for expiry.

class ServedLedgerFixture : public LedgerFixture {
 protected:
  ServedLedgerFixture() {
    serverOptions.port = 0;
    serverOptions.threads = 2;
  }

  LedgerOptions options() override { return LedgerOptions{}; }

  void SetUp() override {
    LedgerFixture::SetUp();
    server = std::make_unique<rpc::Server>(*instance, serverOptions);
  }
  void TearDown() override {
    server.reset();
    LedgerFixture::TearDown();
  }

  uint16_t port() const { return server->port(); }

  // What the server starts with: any port, two threads. A derived fixture changes it in its
  // constructor, or in its SetUp before calling this one's.
  rpc::ServerOptions serverOptions;
  std::unique_ptr<rpc::Server> server;
};

}  // namespace tokenledger::test
