// The one function that turns the log into state. The server's stored projection and the
// replay tool's in-memory one both call apply(), so a replay and the live table cannot disagree
// by construction.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "ledger/token.h"
#include "schemas/ledger.capnp.h"

namespace tokenledger {

// The state apply() reads and writes. Implementations decide where rows live.
class ProjectionState {
 public:
  virtual ~ProjectionState() = default;
  virtual std::optional<Token> token(std::string_view sid) const = 0;
  virtual RoleSet rolesOf(std::string_view principal) const = 0;
  // `created` is true for the event that creates the token (its owner never changes after).
  virtual void putToken(const Token& token, bool created) = 0;
  virtual void putRoles(const std::string& principal, RoleSet roles) = 0;
  // Records that event `seq` concerns token `sid` (the per-token history index).
  virtual void noteTokenEvent(const std::string& sid, uint64_t seq) = 0;
  // Records that event `seq` changed the roles of `principal`.
  virtual void notePrincipalEvent(const std::string& principal, uint64_t seq) = 0;
};

// Applies one sealed event. Deterministic: it reads only `state` and `event`. Throws
// Error(kIntegrity) for an event that cannot follow the state (e.g. changes an unknown token):
// a log the ledger wrote never contains one.
void apply(ProjectionState& state, schema::Event::Reader event);

}  // namespace tokenledger
