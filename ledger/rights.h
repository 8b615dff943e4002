// What a caller may do: its principal's roles intersected with the ledger scopes of the token it
// logged in with (tokens:read, tokens:write, audit:read, roles:write). Used by the ledger for
// every command and by the RPC layer for every read.
#pragma once

#include <string>
#include <string_view>

#include "ledger/state.h"
#include "ledger/token.h"

namespace tokenledger {

class Rights {
 public:
  // The bootstrap actor may do everything (it only ever runs inside `tokenledgerd init`).
  static Rights bootstrap();
  // Looks up the caller's token and roles. Throws Error(kUnauthenticated) if the token is unknown,
  // revoked or expired, or does not belong to the principal.
  static Rights of(const LedgerState& state, const Actor& actor, int64_t nowMicros);

  const Actor& actor() const { return actor_; }
  RoleSet roles() const { return roles_; }
  const Scopes& tokenScopes() const { return tokenScopes_; }
  bool isAdmin() const { return bootstrap_ || roles_.has(Role::kAdmin); }

  bool mayReadTokensOf(std::string_view owner) const;
  bool mayManageTokensOf(std::string_view owner) const;
  bool mayReadAudit() const;
  bool mayChangeRoles() const;
  // No escalation: a new token's scopes must be within the caller's own token's scopes.
  bool holdsAll(const Scopes& wanted) const;

  // Throw Error(kPermissionDenied) with a message naming what is missing.
  void requireReadTokensOf(std::string_view owner) const;
  void requireManageTokensOf(std::string_view owner) const;
  void requireReadAudit() const;
  void requireChangeRoles() const;

 private:
  bool hasScope(std::string_view scope) const;
  bool bootstrap_ = false;
  Actor actor_;
  RoleSet roles_;
  Scopes tokenScopes_;
};

}  // namespace tokenledger
