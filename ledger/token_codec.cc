#include "ledger/token_codec.h"

#include <capnp/message.h>

#include "ledger/chain.h"
#include "ledger/error.h"

namespace tokenledger {

Actor actorFrom(schema::Actor::Reader reader) {
  if (reader.isBootstrap()) return Actor::bootstrapActor();
  return Actor::token(reader.getToken().getPrincipal(), reader.getToken().getSid());
}

Scopes scopesFrom(schema::Scopes::Reader reader) {
  if (reader.isAll()) return Scopes::allScopes();
  Scopes scopes;
  for (auto id : reader.getSelected()) scopes.selected.emplace_back(id);
  return scopes;
}

void writeActor(schema::Actor::Builder out, const Actor& actor) {
  if (actor.bootstrap) {
    out.setBootstrap();
    return;
  }
  auto token = out.initToken();
  token.setPrincipal(actor.principal);
  token.setSid(actor.sid);
}

void writeScopes(schema::Scopes::Builder out, const Scopes& scopes) {
  if (scopes.all) {
    out.setAll();
    return;
  }
  auto list = out.initSelected(static_cast<unsigned>(scopes.selected.size()));
  for (unsigned i = 0; i < list.size(); ++i) list.set(i, scopes.selected[i]);
}

void writeToken(schema::TokenRecord::Builder out, const Token& token) {
  out.setSid(token.sid);
  out.setOwner(token.owner);
  out.setDescription(token.description);
  out.setSecretHash(kj::arrayPtr(token.secretHash.data(), token.secretHash.size()));
  out.setCreatedAtMicros(token.createdAtMicros);
  writeActor(out.initCreatedBy(), token.createdBy);
  out.setExpiresAtMicros(token.expiresAtMicros);
  writeScopes(out.initScopes(), token.scopes);
  out.setRevoked(token.revoked);
  out.setRevokedAtMicros(token.revokedAtMicros);
  if (token.revoked) writeActor(out.initRevokedBy(), token.revokedBy);
  out.setRevokeReason(token.revokeReason);
  out.setLastSeq(token.lastSeq);
}

Token tokenFrom(schema::TokenRecord::Reader reader) {
  Token token;
  token.sid = reader.getSid();
  token.owner = reader.getOwner();
  token.description = reader.getDescription();
  auto hash = reader.getSecretHash();
  if (hash.size() != token.secretHash.size()) {
    throw Error(ErrorCode::kIntegrity, "token " + token.sid + " has a malformed secret hash");
  }
  std::copy(hash.begin(), hash.end(), token.secretHash.begin());
  token.createdAtMicros = reader.getCreatedAtMicros();
  token.createdBy = actorFrom(reader.getCreatedBy());
  token.expiresAtMicros = reader.getExpiresAtMicros();
  token.scopes = scopesFrom(reader.getScopes());
  token.revoked = reader.getRevoked();
  token.revokedAtMicros = reader.getRevokedAtMicros();
  if (token.revoked) token.revokedBy = actorFrom(reader.getRevokedBy());
  token.revokeReason = reader.getRevokeReason();
  token.lastSeq = reader.getLastSeq();
  return token;
}

std::string encodeToken(const Token& token) {
  capnp::MallocMessageBuilder message;
  auto record = message.initRoot<schema::TokenRecord>();
  writeToken(record, token);
  return canonicalBytes(record.asReader());
}

Token decodeToken(std::string_view bytes) {
  try {
    CanonicalReader reader(bytes);
    return tokenFrom(reader.root<schema::TokenRecord>());
  } catch (const kj::Exception& e) {
    throw Error(ErrorCode::kIntegrity,
                std::string("stored token row does not decode: ") + e.getDescription().cStr());
  }
}

}  // namespace tokenledger
