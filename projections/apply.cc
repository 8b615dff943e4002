#include "projections/apply.h"

#include "ledger/error.h"
#include "ledger/token_codec.h"

namespace tokenledger {
namespace {

Digest digestOf(capnp::Data::Reader data, uint64_t seq) {
  Digest d{};
  if (data.size() != d.size()) {
    throw Error(ErrorCode::kIntegrity, "event " + std::to_string(seq) + " has a malformed hash");
  }
  std::copy(data.begin(), data.end(), d.begin());
  return d;
}

Token existing(const ProjectionState& state, const std::string& sid, uint64_t seq) {
  auto token = state.token(sid);
  if (!token) {
    throw Error(ErrorCode::kIntegrity,
                "event " + std::to_string(seq) + " changes token " + sid + ", which does not exist");
  }
  return *token;
}

}  // namespace

void apply(ProjectionState& state, schema::Event::Reader event) {
  const uint64_t seq = event.getSeq();
  const int64_t time = event.getTimeMicros();
  Token token;
  bool created = false;

  switch (event.which()) {
    case schema::Event::TOKEN_CREATED: {
      auto e = event.getTokenCreated();
      token.sid = e.getSid();
      if (state.token(token.sid)) {
        throw Error(ErrorCode::kIntegrity,
                    "event " + std::to_string(seq) + " creates token " + token.sid + " twice");
      }
      token.owner = e.getOwner();
      token.description = e.getDescription();
      token.secretHash = digestOf(e.getSecretHash(), seq);
      token.createdAtMicros = time;
      token.createdBy = actorFrom(event.getActor());
      token.expiresAtMicros = e.getExpiresAtMicros();
      token.scopes = scopesFrom(e.getScopes());
      created = true;
      break;
    }
    case schema::Event::TOKEN_SCOPES_CHANGED: {
      auto e = event.getTokenScopesChanged();
      token = existing(state, e.getSid(), seq);
      token.scopes = scopesFrom(e.getScopes());
      break;
    }
    case schema::Event::TOKEN_DESCRIPTION_CHANGED: {
      auto e = event.getTokenDescriptionChanged();
      token = existing(state, e.getSid(), seq);
      token.description = e.getDescription();
      break;
    }
    case schema::Event::TOKEN_REVOKED: {
      token = existing(state, event.getTokenRevoked().getSid(), seq);
      token.revoked = true;
      token.revokedAtMicros = time;
      token.revokedBy = actorFrom(event.getActor());
      token.revokeReason = event.getReason();
      break;
    }
    case schema::Event::TOKEN_ROTATED: {
      auto e = event.getTokenRotated();
      token = existing(state, e.getSid(), seq);
      token.secretHash = digestOf(e.getSecretHash(), seq);
      break;
    }
    case schema::Event::ROLE_GRANTED:
    case schema::Event::ROLE_REVOKED: {
      bool grant = event.isRoleGranted();
      auto e = grant ? event.getRoleGranted() : event.getRoleRevoked();
      std::string principal = e.getPrincipal();
      RoleSet roles = state.rolesOf(principal);
      // A role this version does not know (a newer writer, or a forged log) must not reach
      // RoleSet's bit shifts: refuse the event instead of guessing.
      if (static_cast<unsigned>(e.getRole()) >= std::size(kAllRoles)) {
        throw Error(ErrorCode::kIntegrity,
                    "event " + std::to_string(seq) + " names a role this version does not know");
      }
      Role role = static_cast<Role>(e.getRole());
      if (grant) {
        roles.add(role);
      } else {
        roles.remove(role);
      }
      state.putRoles(principal, roles);
      state.notePrincipalEvent(principal, seq);
      return;
    }
    case schema::Event::SIGNING_KEY_ROTATED:
      return;  // the log's own business: verifiers read keys from the log itself
  }
  if (token.sid.empty()) {
    throw Error(ErrorCode::kIntegrity,
                "event " + std::to_string(seq) + " is of a kind this version does not know");
  }
  token.lastSeq = seq;
  state.putToken(token, created);
  state.noteTokenEvent(token.sid, seq);
}

}  // namespace tokenledger
