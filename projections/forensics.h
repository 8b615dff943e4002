// Questions an auditor asks of a log, answered by replaying it with the same apply() the server
// uses: the history of a token, owner or actor, and who could use a scope at a moment.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "ledger/scope_catalog.h"
#include "ledger/store.h"
#include "ledger/token.h"
#include "schemas/ledger.capnp.h"

namespace tokenledger {

struct HistoryQuery {
  std::optional<std::string> token;  // events about this SID
  std::optional<std::string> owner;  // events about this owner's tokens or this principal's roles
  std::optional<std::string> actor;  // events caused by this principal
  int64_t fromMicros = 0;
  int64_t toMicros = std::numeric_limits<int64_t>::max();
};

// Calls `visit` for every matching event, in seq order. Throws Error(kIntegrity) if an event
// does not decode.
void forEachHistoryEvent(const Store& store, const HistoryQuery& query,
                         const std::function<void(schema::Event::Reader)>& visit);

// The tokens that could have been used with `scope` at `atMicros`: created by then, neither
// revoked nor expired at that moment, and holding the scope (or All Scopes). Ordered by SID.
// Throws Error(kInvalidArgument) if the scope is not in the catalog.
std::vector<Token> whoCould(const Store& store, const ScopeCatalog& catalog,
                            const std::string& scope, int64_t atMicros);

}  // namespace tokenledger
