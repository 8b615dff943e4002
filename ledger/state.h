// What the ledger needs from the current state, and how it drives the projection.
// The ledger validates every command against a LedgerState and, for each event it seals, asks
// the LedgerProjection to stage that event's rows into the same WriteBatch as the event.
// projections/ implements both; the ledger knows nothing of how rows are laid out.
#pragma once

#include <rocksdb/write_batch.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ledger/token.h"
#include "schemas/ledger.capnp.h"

namespace tokenledger {

class LedgerState {
 public:
  virtual ~LedgerState() = default;
  virtual std::optional<Token> token(std::string_view sid) const = 0;
  virtual std::vector<Token> tokensOwnedBy(std::string_view owner) const = 0;
  virtual RoleSet rolesOf(std::string_view principal) const = 0;
  virtual std::vector<std::string> principalsWith(Role role) const = 0;
};

// Staging works in groups, one per WriteBatch, and up to three groups may be staged at once:
// one being written, one waiting for it and one being validated on top of both (see ledger.h).
class LedgerProjection : public LedgerState {
 public:
  // Applies `event` on top of everything staged so far, in the open group: its rows go into
  // `batch`, and the reads above see them at once, so later commands are validated against them.
  virtual void stage(schema::Event::Reader event, rocksdb::WriteBatch& batch) = 0;
  // Closes the open group (which may have staged nothing): it awaits commitGroup().
  virtual void endGroup() = 0;
  // The oldest closed group's batch is durable: its changes become the committed state. May run
  // on another thread than the rest, concurrently with them.
  virtual void commitGroup() = 0;
  // Nothing staged will be written: forget every group. Not concurrent with commitGroup().
  virtual void discardStaged() = 0;
};

}  // namespace tokenledger
