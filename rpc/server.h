// The network side of tokenledgerd: accepts TCP (optionally TLS) connections on Asio and serves
// each with the standard Cap'n Proto two-party RPC protocol. Connections are spread over a few
// loop threads, each running an io_context with a KJ event loop on top (AsioEventPort).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "projections/ledger_instance.h"
#include "rpc/service.h"

namespace tokenledger::rpc {

struct TlsFiles {
  std::string certificateChain;  // PEM
  std::string privateKey;        // PEM
};

struct ServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 7878;          // 0 = any free port (see Server::port())
  unsigned threads = 2;
  std::optional<TlsFiles> tls;
  size_t maxMessageBytes = 1 << 20;      // a larger incoming message closes that connection
  size_t maxInFlightBytes = 8 << 20;     // per connection: calls beyond this wait (flow control)
  size_t maxConnections = 4096;          // further connections are closed at once
  // Per connection: calls the peer may leave without their Finish (each holds ~115 bytes of
  // Cap'n Proto's answer table until then); one more closes the connection.
  size_t maxUnfinishedCalls = 1 << 16;
  // A connection whose unsent replies make no progress for this long is closed (the peer
  // stopped reading); zero = never.
  std::chrono::milliseconds stalledReplyTimeout{30'000};
  // All connections together: unsent reply bytes beyond the first 16 KiB of each. Above it, a
  // connection holding such bytes reads no new calls until they are written; one that reads its
  // replies is held up for a write at most.
  size_t maxBacklogBytes = 64 << 20;
  ServiceLimits limits;
};

class Server {
 public:
  // Binds and starts serving. Throws Error(kUnavailable) if the address cannot be bound, or
  // Error(kInvalidArgument) for unusable TLS files.
  Server(LedgerInstance& instance, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  uint16_t port() const;
  // The unsent reply bytes that count against ServerOptions::maxBacklogBytes now (a gauge).
  size_t backlogBytes() const;
  // Stops accepting, closes every connection and joins the loop threads. Idempotent.
  // In-flight writes still complete in the ledger; stop the ledger first to wait for them.
  void stop();

 public:
  class Impl;  // public only so server.cc's helpers can name it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tokenledger::rpc
