#include "ledger/rights.h"

#include <algorithm>

#include "ledger/credential.h"
#include "ledger/error.h"

namespace tokenledger {

Rights Rights::bootstrap() {
  Rights r;
  r.bootstrap_ = true;
  r.actor_ = Actor::bootstrapActor();
  r.tokenScopes_ = Scopes::allScopes();
  return r;
}

Rights Rights::of(const LedgerState& state, const Actor& actor, int64_t nowMicros) {
  if (actor.bootstrap) return bootstrap();
  auto token = state.token(actor.sid);
  if (!token || token->owner != actor.principal) {
    throw Error(ErrorCode::kUnauthenticated, "the token used to log in does not exist");
  }
  TokenStatus status = token->statusAt(nowMicros);
  if (status != TokenStatus::kActive) {
    throw Error(ErrorCode::kUnauthenticated,
                std::string("the token used to log in is ") + statusName(status));
  }
  Rights r;
  r.actor_ = actor;
  r.roles_ = state.rolesOf(actor.principal);
  r.tokenScopes_ = token->scopes;
  return r;
}

bool Rights::hasScope(std::string_view scope) const {
  return bootstrap_ || tokenScopes_.all ||
         std::find(tokenScopes_.selected.begin(), tokenScopes_.selected.end(), scope) !=
             tokenScopes_.selected.end();
}

bool Rights::mayReadTokensOf(std::string_view owner) const {
  if (!hasScope("tokens:read")) return false;
  return isAdmin() || roles_.has(Role::kAuditor) ||
         (roles_.has(Role::kUser) && owner == actor_.principal);
}

bool Rights::mayManageTokensOf(std::string_view owner) const {
  if (!hasScope("tokens:write")) return false;
  return isAdmin() || (roles_.has(Role::kUser) && owner == actor_.principal);
}

bool Rights::mayReadAudit() const {
  return hasScope("audit:read") && (isAdmin() || roles_.has(Role::kAuditor));
}

bool Rights::mayChangeRoles() const { return hasScope("roles:write") && isAdmin(); }

bool Rights::holdsAll(const Scopes& wanted) const {
  if (bootstrap_ || tokenScopes_.all) return true;
  if (wanted.all) return false;
  return std::all_of(wanted.selected.begin(), wanted.selected.end(),
                     [&](const std::string& s) { return hasScope(s); });
}

namespace {
// A principal name from the request, unless it may be a secret pasted into the wrong field.
std::string shownName(std::string_view name) {
  return looksLikeSecret(name) ? std::string("that principal") : std::string(name);
}

[[noreturn]] void deny(const Actor& actor, RoleSet roles, const std::string& what,
                       const char* scope) {
  throw Error(ErrorCode::kPermissionDenied,
              actor.principal + " (roles: " + roles.describe() + ") may not " + what +
                  "; it needs the right role and a login token with the " + scope + " scope");
}
}  // namespace

void Rights::requireReadTokensOf(std::string_view owner) const {
  if (!mayReadTokensOf(owner)) {
    deny(actor_, roles_, "read the tokens of " + shownName(owner), "tokens:read");
  }
}

void Rights::requireManageTokensOf(std::string_view owner) const {
  if (!mayManageTokensOf(owner)) {
    deny(actor_, roles_, "manage the tokens of " + shownName(owner), "tokens:write");
  }
}

void Rights::requireReadAudit() const {
  if (!mayReadAudit()) deny(actor_, roles_, "read the audit history", "audit:read");
}

void Rights::requireChangeRoles() const {
  if (!mayChangeRoles()) deny(actor_, roles_, "grant or revoke roles", "roles:write");
}

}  // namespace tokenledger
