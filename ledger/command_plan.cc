#include "ledger/command_plan.h"

#include "ledger/credential.h"
#include "ledger/error.h"
#include "ledger/token_codec.h"

namespace tokenledger {
namespace {

constexpr int64_t kDayMicros = 86400LL * 1'000'000;

schema::Event::Builder newEvent(Plan& plan) {
  plan.events.push_back(std::make_unique<capnp::MallocMessageBuilder>());
  return plan.events.back()->initRoot<schema::Event>();
}

Scopes checkedScopes(const Scopes& wanted, const LedgerOptions& options, const Rights& rights) {
  Scopes scopes = wanted.all ? Scopes::allScopes() : Scopes::of(wanted.selected);
  if (!scopes.all) {
    if (scopes.selected.empty()) {
      throw Error(ErrorCode::kInvalidArgument,
                  "no scopes selected: choose at least one scope, or All Scopes");
    }
    options.catalog->maskOf(scopes.selected);  // throws naming the first unknown scope
  }
  if (!rights.holdsAll(scopes)) {
    throw Error(ErrorCode::kPermissionDenied,
                "cannot grant " + scopes.describe() +
                    ": a token can only receive scopes that the caller's own token holds (" +
                    rights.tokenScopes().describe() + ")");
  }
  return scopes;
}

Token requireToken(const LedgerState& state, const std::string& sid) {
  if (!isSidText(sid)) {
    throw Error(ErrorCode::kInvalidArgument,
                (looksLikeSecret(sid) ? std::string("that") : "\"" + sid.substr(0, 40) + "\"") +
                    " is not an AccountSID (32 lowercase hex characters)");
  }
  auto token = state.token(sid);
  if (!token) throw Error(ErrorCode::kNotFound, "no token with AccountSID " + sid);
  return *token;
}

// A token the caller may at least see; others are "not found", so SIDs cannot be probed.
Token requireVisibleToken(const LedgerState& state, const std::string& sid, const Rights& rights) {
  Token token = requireToken(state, sid);
  if (!rights.mayReadTokensOf(token.owner) && !rights.mayManageTokensOf(token.owner) &&
      !rights.mayReadAudit()) {
    throw Error(ErrorCode::kNotFound, "no token with AccountSID " + sid + " that you may see");
  }
  return token;
}

// A token that is still usable: not revoked and not expired.
Token requireLiveToken(const LedgerState& state, const std::string& sid, int64_t now,
                       const Rights& rights) {
  Token token = requireVisibleToken(state, sid, rights);
  rights.requireManageTokensOf(token.owner);
  TokenStatus status = token.statusAt(now);
  if (status != TokenStatus::kActive) {
    throw Error(ErrorCode::kFailedPrecondition,
                "token " + sid + " is " + statusName(status) + " and can no longer be changed");
  }
  return token;
}

int64_t expiryOf(const Expiration& expiration, const Rights& rights, const LedgerOptions& options,
                 int64_t now) {
  switch (expiration.kind) {
    case Expiration::Kind::kDays90: return now + 90 * kDayMicros;
    case Expiration::Kind::kDays180: return now + 180 * kDayMicros;
    case Expiration::Kind::kYear: return now + 365 * kDayMicros;
    case Expiration::Kind::kNever:
      if (!rights.isAdmin()) {
        throw Error(ErrorCode::kPermissionDenied,
                    "only admins may create tokens that never expire; choose 90 days, 180 days, "
                    "1 year or a date");
      }
      return 0;
    case Expiration::Kind::kCustom:
      if (expiration.customMicros <= now) {
        throw Error(ErrorCode::kInvalidArgument,
                    "expiration " + formatTime(expiration.customMicros) + " is in the past");
      }
      if (expiration.customMicros > now + options.maxCustomExpiryMicros) {
        throw Error(ErrorCode::kInvalidArgument,
                    "expiration " + formatTime(expiration.customMicros) + " is later than the " +
                        "allowed maximum of " + formatTime(now + options.maxCustomExpiryMicros));
      }
      return expiration.customMicros;
  }
  throw Error(ErrorCode::kInvalidArgument, "unknown expiration kind");
}

SigningKey newSavedKey(const LedgerOptions& options) {
  SigningKey key = SigningKey::generate();
  key.save(options.keyDir / (key.keyId() + ".pem"));
  return key;
}

void emitKey(Plan& plan, const SigningKey& key) {
  auto event = newEvent(plan).initSigningKeyRotated();
  event.setKeyId(key.keyId());
  event.setPublicKey(kj::arrayPtr(key.publicKey().data(), key.publicKey().size()));
}

void emitRole(Plan& plan, const std::string& principal, Role role, bool grant) {
  auto event = newEvent(plan);
  auto change = grant ? event.initRoleGranted() : event.initRoleRevoked();
  change.setPrincipal(principal);
  change.setRole(static_cast<schema::Role>(role));
}

void emitCreated(Plan& plan, const std::string& owner, const std::string& description,
                 int64_t expiresAt, const Scopes& scopes) {
  Credential credential = Credential::generate();
  Digest hash = sha256(credential.secret);
  auto created = newEvent(plan).initTokenCreated();
  created.setSid(credential.sidHex());
  created.setOwner(owner);
  created.setDescription(description);
  created.setSecretHash(kj::arrayPtr(hash.data(), hash.size()));
  created.setExpiresAtMicros(expiresAt);
  writeScopes(created.initScopes(), scopes);
  plan.result.sids.push_back(credential.sidHex());
  plan.result.credential = credential;
}

void emitRevoked(Plan& plan, const std::string& sid) {
  newEvent(plan).initTokenRevoked().setSid(sid);
  plan.result.sids.push_back(sid);
}

struct Planner {
  const Request& request;
  const Rights& rights;
  const LedgerState& state;
  const LedgerOptions& options;
  int64_t now;
  bool logEmpty;
  Plan plan;

  void operator()(const Bootstrap& c) {
    if (!rights.actor().bootstrap) {
      throw Error(ErrorCode::kPermissionDenied, "only `tokenledgerd init` may bootstrap a ledger");
    }
    if (!logEmpty) {
      throw Error(ErrorCode::kAlreadyExists, "this ledger is already initialised");
    }
    requireValidPrincipal(c.adminPrincipal);
    plan.newKey = newSavedKey(options);
    emitKey(plan, *plan.newKey);
    emitRole(plan, c.adminPrincipal, Role::kAdmin, true);
    emitCreated(plan, c.adminPrincipal, "First admin token (tokenledgerd init)", 0,
                Scopes::allScopes());
    plan.checkpoint = true;
  }

  void operator()(const CreateToken& c) {
    requireValidPrincipal(c.owner);
    rights.requireManageTokensOf(c.owner);
    std::string description = validDescription(c.description);
    Scopes scopes = checkedScopes(c.scopes, options, rights);
    int64_t expiresAt = expiryOf(c.expiration, rights, options, now);
    emitCreated(plan, c.owner, description, expiresAt, scopes);
  }

  void operator()(const ChangeScopes& c) {
    Token token = requireLiveToken(state, c.sid, now, rights);
    Scopes scopes = checkedScopes(c.scopes, options, rights);
    if (scopes == token.scopes) {
      throw Error(ErrorCode::kFailedPrecondition,
                  "token " + c.sid + " already has exactly these scopes; nothing to change");
    }
    auto changed = newEvent(plan).initTokenScopesChanged();
    changed.setSid(c.sid);
    writeScopes(changed.initScopes(), scopes);
    plan.result.sids.push_back(c.sid);
  }

  void operator()(const SetDescription& c) {
    Token token = requireLiveToken(state, c.sid, now, rights);
    std::string description = validDescription(c.description);
    if (description == token.description) {
      throw Error(ErrorCode::kFailedPrecondition,
                  "token " + c.sid + " already has this description; nothing to change");
    }
    auto changed = newEvent(plan).initTokenDescriptionChanged();
    changed.setSid(c.sid);
    changed.setDescription(description);
    plan.result.sids.push_back(c.sid);
  }

  void operator()(const RevokeToken& c) {
    Token token = requireVisibleToken(state, c.sid, rights);
    rights.requireManageTokensOf(token.owner);
    if (token.revoked) {
      throw Error(ErrorCode::kFailedPrecondition, "token " + c.sid + " is already revoked");
    }
    emitRevoked(plan, c.sid);
  }

  void operator()(const RevokeAllFor& c) {
    requireValidPrincipal(c.owner);
    rights.requireManageTokensOf(c.owner);
    for (const Token& token : state.tokensOwnedBy(c.owner)) {
      if (!token.revoked) emitRevoked(plan, token.sid);
    }
  }

  void operator()(const RotateToken& c) {
    requireLiveToken(state, c.sid, now, rights);
    auto sid = parseSid(c.sid);
    Credential credential = Credential::withNewSecret(*sid);
    Digest hash = sha256(credential.secret);
    auto rotated = newEvent(plan).initTokenRotated();
    rotated.setSid(c.sid);
    rotated.setSecretHash(kj::arrayPtr(hash.data(), hash.size()));
    plan.result.sids.push_back(c.sid);
    plan.result.credential = credential;
  }

  void operator()(const GrantRole& c) {
    rights.requireChangeRoles();
    requireValidPrincipal(c.principal);
    if (state.rolesOf(c.principal).has(c.role)) {
      throw Error(ErrorCode::kFailedPrecondition,
                  c.principal + " already has the " + roleName(c.role) + " role");
    }
    emitRole(plan, c.principal, c.role, true);
  }

  void operator()(const RevokeRole& c) {
    rights.requireChangeRoles();
    requireValidPrincipal(c.principal);
    if (!state.rolesOf(c.principal).has(c.role)) {
      throw Error(ErrorCode::kFailedPrecondition,
                  c.principal + " does not have the " + roleName(c.role) + " role");
    }
    if (c.role == Role::kAdmin && state.principalsWith(Role::kAdmin).size() <= 1) {
      throw Error(ErrorCode::kFailedPrecondition,
                  "cannot remove the last admin; grant the admin role to someone else first");
    }
    emitRole(plan, c.principal, c.role, false);
  }

  void operator()(const RotateSigningKey&) {
    if (!rights.mayChangeRoles()) {
      throw Error(ErrorCode::kPermissionDenied,
                  "rotating the signing key takes an admin logged in with a token that holds "
                  "the roles:write scope");
    }
    plan.newKey = newSavedKey(options);
    emitKey(plan, *plan.newKey);
    plan.checkpoint = true;
  }

  void operator()(const MakeCheckpoint&) {
    rights.requireReadAudit();
    if (logEmpty) throw Error(ErrorCode::kFailedPrecondition, "the log is empty");
    plan.checkpoint = true;
  }
};

}  // namespace

Plan planCommand(const Request& request, const Rights& rights, const LedgerState& state,
                 const LedgerOptions& options, int64_t now, bool logEmpty) {
  requireValidReason(request.reason);
  if (logEmpty && !std::holds_alternative<Bootstrap>(request.command)) {
    throw Error(ErrorCode::kFailedPrecondition,
                "this ledger is not initialised yet; run `tokenledgerd init`");
  }
  Planner planner{request, rights, state, options, now, logEmpty, {}};
  std::visit(planner, request.command);
  return std::move(planner.plan);
}

}  // namespace tokenledger
