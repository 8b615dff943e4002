// Validation of one command against the current state, and the events it would append.
// Internal to the ledger: the writer stamps each planned event (seq, time, actor) and seals it.
#pragma once

#include <capnp/message.h>

#include <memory>
#include <optional>
#include <vector>

#include "ledger/commands.h"
#include "ledger/crypto.h"
#include "ledger/ledger.h"
#include "ledger/rights.h"

namespace tokenledger {

struct Plan {
  // Each message's root is a schema::Event with only the payload set.
  std::vector<std::unique_ptr<capnp::MallocMessageBuilder>> events;
  CommandResult result;
  // Set by Bootstrap and RotateSigningKey, already saved to the key directory. It signs the
  // entries after its SigningKeyRotated event (and, for the very first key, that event too).
  std::optional<SigningKey> newKey;
  bool checkpoint = false;
};

// Throws Error (and plans nothing) if the command is invalid or not allowed.
Plan planCommand(const Request& request, const Rights& rights, const LedgerState& state,
                 const LedgerOptions& options, int64_t now, bool logEmpty);

}  // namespace tokenledger
