#include "projections/event_text.h"

#include <algorithm>
#include <cstdio>

#include "ledger/token.h"

namespace tokenledger {

std::string describeScopes(schema::Scopes::Reader scopes) {
  if (scopes.isAll()) return "All Scopes";
  std::string out;
  for (auto id : scopes.getSelected()) out += (out.empty() ? "" : ", ") + std::string(id.cStr());
  return out;
}

std::string describeActor(schema::Actor::Reader actor) {
  return actor.isBootstrap() ? "bootstrap" : std::string(actor.getToken().getPrincipal().cStr());
}

std::string describeEvent(schema::Event::Reader e) {
  using E = schema::Event;
  auto role = [](schema::Role r) { return std::string(roleName(static_cast<Role>(r))); };
  switch (e.which()) {
    case E::TOKEN_CREATED: {
      auto c = e.getTokenCreated();
      return "created " + std::string(c.getSid().cStr()) + " for " + c.getOwner().cStr() + " \"" +
             c.getDescription().cStr() + "\" scopes: " + describeScopes(c.getScopes()) +
             ", expires " + formatTime(c.getExpiresAtMicros());
    }
    case E::TOKEN_SCOPES_CHANGED:
      return "scopes of " + std::string(e.getTokenScopesChanged().getSid().cStr()) + " set to " +
             describeScopes(e.getTokenScopesChanged().getScopes());
    case E::TOKEN_DESCRIPTION_CHANGED:
      return "description of " + std::string(e.getTokenDescriptionChanged().getSid().cStr()) +
             " set to \"" + e.getTokenDescriptionChanged().getDescription().cStr() + "\"";
    case E::TOKEN_REVOKED:
      return "revoked " + std::string(e.getTokenRevoked().getSid().cStr());
    case E::TOKEN_ROTATED:
      return "rotated the secret of " + std::string(e.getTokenRotated().getSid().cStr());
    case E::ROLE_GRANTED:
      return "granted " + role(e.getRoleGranted().getRole()) + " to " +
             e.getRoleGranted().getPrincipal().cStr();
    case E::ROLE_REVOKED:
      return "revoked " + role(e.getRoleRevoked().getRole()) + " from " +
             e.getRoleRevoked().getPrincipal().cStr();
    case E::SIGNING_KEY_ROTATED:
      return "signing key is now " + std::string(e.getSigningKeyRotated().getKeyId().cStr());
  }
  return "an event of a kind this version does not know";
}

std::string historyLine(schema::Event::Reader e) {
  char seq[24];
  std::snprintf(seq, sizeof(seq), "%6llu", static_cast<unsigned long long>(e.getSeq()));
  std::string line = std::string(seq) + "  " + formatTime(e.getTimeMicros()) + "  " +
                     describeActor(e.getActor()) + "  " + describeEvent(e);
  if (e.getReason().size() > 0) line += "  (" + std::string(e.getReason().cStr()) + ")";
  return line;
}

std::string formatTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      out += row[i];
      if (i + 1 < row.size()) out += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out += '\n';
  }
  return out;
}

}  // namespace tokenledger
