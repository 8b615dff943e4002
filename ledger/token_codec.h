// Conversions between the domain values (ledger/token.h) and their Cap'n Proto forms.
#pragma once

#include <string>
#include <string_view>

#include "ledger/token.h"
#include "schemas/ledger.capnp.h"

namespace tokenledger {

Actor actorFrom(schema::Actor::Reader reader);
Scopes scopesFrom(schema::Scopes::Reader reader);
void writeActor(schema::Actor::Builder out, const Actor& actor);
void writeScopes(schema::Scopes::Builder out, const Scopes& scopes);

void writeToken(schema::TokenRecord::Builder out, const Token& token);
Token tokenFrom(schema::TokenRecord::Reader reader);

// The stored row: canonical TokenRecord bytes. decodeToken throws Error(kIntegrity).
std::string encodeToken(const Token& token);
Token decodeToken(std::string_view bytes);

}  // namespace tokenledger
