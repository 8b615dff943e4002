// Events as one line of text for people (tokenctl history, ledger-replay history).
#pragma once

#include <string>
#include <vector>

#include "schemas/ledger.capnp.h"

namespace tokenledger {

// "created 0a1b… for susan "ZipWhip" scopes: message:read, expires 2027-05-22T10:00:00Z"
std::string describeEvent(schema::Event::Reader event);
// "  42  2026-11-23T10:43:54Z  admin  revoked 0a1b…  (vendor left)"
std::string historyLine(schema::Event::Reader event);
// "All Scopes" or "a, b"
std::string describeScopes(schema::Scopes::Reader scopes);
// "bootstrap" or the principal
std::string describeActor(schema::Actor::Reader actor);
// Rows as left-aligned columns two spaces apart, one line each.
std::string formatTable(const std::vector<std::vector<std::string>>& rows);

}  // namespace tokenledger
