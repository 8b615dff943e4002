#include "projections/forensics.h"

#include <map>

#include "ledger/chain.h"
#include "ledger/error.h"
#include "ledger/log_reader.h"
#include "projections/rebuild.h"

namespace tokenledger {
namespace {

// The SID an event is about, or empty.
std::string sidOf(schema::Event::Reader e) {
  using E = schema::Event;
  switch (e.which()) {
    case E::TOKEN_CREATED: return e.getTokenCreated().getSid();
    case E::TOKEN_SCOPES_CHANGED: return e.getTokenScopesChanged().getSid();
    case E::TOKEN_DESCRIPTION_CHANGED: return e.getTokenDescriptionChanged().getSid();
    case E::TOKEN_REVOKED: return e.getTokenRevoked().getSid();
    case E::TOKEN_ROTATED: return e.getTokenRotated().getSid();
    default: return {};
  }
}

std::string principalOf(schema::Event::Reader e) {
  if (e.isRoleGranted()) return e.getRoleGranted().getPrincipal();
  if (e.isRoleRevoked()) return e.getRoleRevoked().getPrincipal();
  return {};
}

}  // namespace

void forEachHistoryEvent(const Store& store, const HistoryQuery& query,
                         const std::function<void(schema::Event::Reader)>& visit) {
  std::map<std::string, std::string> ownerOfSid;  // learnt from TokenCreated as we go
  LogReadAhead log(store, 1);
  for (const auto* entry = log.next(); entry != nullptr; entry = log.next()) {
    try {
      CanonicalReader reader(entry->event);
      auto e = reader.root<schema::Event>();
      if (e.getTimeMicros() > query.toMicros) break;  // times never decrease along the log
      std::string sid = sidOf(e);
      if (e.isTokenCreated()) ownerOfSid[sid] = e.getTokenCreated().getOwner();
      if (e.getTimeMicros() < query.fromMicros) continue;
      if (query.token && sid != *query.token) continue;
      if (query.owner) {
        auto it = ownerOfSid.find(sid);
        bool about = (it != ownerOfSid.end() && it->second == *query.owner) ||
                     principalOf(e) == *query.owner;
        if (!about) continue;
      }
      if (query.actor &&
          (!e.getActor().isToken() || e.getActor().getToken().getPrincipal() != *query.actor)) {
        continue;
      }
      visit(e);
    } catch (const kj::Exception& e) {
      throw Error(ErrorCode::kIntegrity, "event " + std::to_string(entry->seq) +
                                             " does not decode: " + e.getDescription().cStr());
    }
  }
}

std::vector<Token> whoCould(const Store& store, const ScopeCatalog& catalog,
                            const std::string& scope, int64_t atMicros) {
  ScopeMask wanted = catalog.maskOf({scope});  // throws naming an unknown scope
  MemoryState state = replayLog(store, ReplayBound{.toTimeMicros = atMicros});
  std::vector<Token> out;
  for (const auto& [sid, token] : state.tokens()) {
    if (token.statusAt(atMicros) != TokenStatus::kActive) continue;
    ScopeMask held =
        token.scopes.all ? ScopeMask{true, 0} : catalog.maskOf(token.scopes.selected);
    if (held.covers(wanted)) out.push_back(token);
  }
  return out;
}

}  // namespace tokenledger
