// A Cap'n Proto RPC client on Asio: connects to tokenledgerd over TCP (or TLS) and exposes the
// bootstrap wire::TokenLedger capability. The KJ event loop runs on the calling thread (KJ drives Asio
// through the AsioEventPort), so `promise.wait(client.waitScope())` works as with EzRpcClient.
#pragma once

#include <kj/async.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "schemas/rpc.capnp.h"

namespace tokenledger::rpc {

struct ClientOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 7878;
  std::optional<std::string> tlsCaFile;  // set: connect with TLS, verifying against this CA
  size_t maxMessageBytes = 64 << 20;     // largest reply accepted
};

// "host:port" or "[::1]:port" into its parts; false if it is not that.
bool parseHostPort(std::string_view text, std::string& host, uint16_t& port);

// One thread's KJ event loop over Asio. A Client makes its own; several Clients may share one
// instead, so one thread drives many connections (a load generator, like redis-benchmark).
// Used only on the thread that made it.
class ClientLoop {
 public:
  ClientLoop();
  ~ClientLoop();
  ClientLoop(const ClientLoop&) = delete;
  ClientLoop& operator=(const ClientLoop&) = delete;

  kj::WaitScope& waitScope();
  // Resolves at `when` (on this loop; a timer, not a busy wait).
  kj::Promise<void> sleepUntil(std::chrono::steady_clock::time_point when);

 private:
  friend class Client;
  class Impl;
  std::unique_ptr<Impl> impl_;
};

class Client {
 public:
  // Connects; throws Error(kUnavailable) naming the address if it cannot.
  explicit Client(ClientOptions options);
  // The same on a shared loop, which must outlive the client.
  Client(ClientLoop& loop, ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  wire::TokenLedger::Client ledger();
  kj::WaitScope& waitScope();

 private:
  std::unique_ptr<ClientLoop> ownLoop_;  // unless the loop is shared
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tokenledger::rpc
