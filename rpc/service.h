// The capabilities the server hands out: the bootstrap wire::TokenLedger (verify, login, info), one
// wire::Session per login, and watch subscriptions. Everything here runs on one loop thread; writes go
// to the ledger's writer and come back through cross-thread promises, so a loop never blocks on
// a sync and verification never waits for a write.
#pragma once

#include <kj/async.h>

#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "ledger/token.h"
#include "projections/ledger_instance.h"
#include "schemas/rpc.capnp.h"

namespace tokenledger::rpc {

struct ServiceLimits {
  size_t maxVerifyBatch = 1000;
  size_t maxListPage = 500;
  size_t maxHistoryPage = 1000;
  size_t maxWatchBatch = 256;    // entries per wire::Watcher.onEntries call
  uint64_t maxHistoryScan = 200'000;  // events scanned per history call before it returns a page
  // Capabilities one connection may hold at once. Each stays in Cap'n Proto's export table until
  // the peer releases it, so without a bound a peer that logs in again and again and never
  // releases grows the server with every login.
  size_t maxSessionsPerConnection = 256;
  size_t maxWatchesPerConnection = 16;
};

// Shared by every loop thread; immutable after start.
struct ServiceContext {
  LedgerInstance& instance;
  std::string version;
  ServiceLimits limits;
};

// Streams committed entries to watchers. One per loop thread, used only on that thread.
class WatchHub {
 public:
  WatchHub(const ServiceContext& context, uint64_t head) : context_(context), head_(head) {}
  ~WatchHub();

  // The watch ends when the returned subscription capability is dropped.
  // `subscriber` must keep audit rights: a batch is sent only while its token still has them.
  kj::Own<wire::Subscription::Server> subscribe(Actor subscriber, uint64_t fromSeq,
                                                wire::Watcher::Client watcher);
  // The ledger committed up to `head` (posted here from the writer thread).
  void headAdvanced(uint64_t head);

 private:
  class Watch;
  const ServiceContext& context_;
  uint64_t head_;
  std::set<Watch*> watches_;
};

// The bootstrap capability for one connection; `peer` is recorded as the client address of
// every event caused through it.
kj::Own<wire::TokenLedger::Server> newLedgerServer(const ServiceContext& context, WatchHub& hub,
                                             std::string peer);

}  // namespace tokenledger::rpc
