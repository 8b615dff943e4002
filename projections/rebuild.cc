#include "projections/rebuild.h"

#include <set>

#include "ledger/chain.h"
#include "ledger/error.h"
#include "ledger/log_reader.h"
#include "ledger/log_verifier.h"
#include "ledger/token_codec.h"
#include "projections/stored_projection.h"

namespace tokenledger {

MemoryState replayLog(const Store& store, ReplayBound bound,
                      const std::function<void(uint64_t)>& progress) {
  MemoryState state;
  LogReadAhead log(store, 1);
  for (const auto* entry = log.next(); entry != nullptr && entry->seq <= bound.toSeq;
       entry = log.next()) {
    try {
      CanonicalReader reader(entry->event);
      auto event = reader.root<schema::Event>();
      if (event.getTimeMicros() > bound.toTimeMicros) break;
      apply(state, event);
    } catch (const kj::Exception& e) {
      throw Error(ErrorCode::kIntegrity, "event " + std::to_string(entry->seq) +
                                             " does not decode: " + e.getDescription().cStr());
    }
    state.setLastSeq(entry->seq);
    if (progress && entry->seq % 65536 == 0) progress(entry->seq);
  }
  return state;
}

namespace {

std::set<std::string> storedKeys(const Store& store, Family family) {
  std::set<std::string> keys;
  auto it = store.iterate(family);
  for (it->SeekToFirst(); it->Valid(); it->Next()) keys.insert(it->key().ToString());
  return keys;
}

// "owner alice, token 0a1b..." for an owner index key.
std::string describeOwnerKey(const std::string& key) {
  size_t nul = key.find('\0');
  if (nul == std::string::npos) return "malformed key";
  return "owner " + key.substr(0, nul) + ", token " + key.substr(nul + 1);
}

// "principal bob, seq 42" for a principal event index key.
std::string describePrincipalEventKey(const std::string& key) {
  size_t nul = key.find('\0');
  if (nul == std::string::npos || key.size() != nul + 9) return "malformed key";
  return "principal " + key.substr(0, nul) + ", seq " +
         std::to_string(seqFromKey(std::string_view(key).substr(nul + 1)));
}

// "token 0a1b..., seq 42" for a token event index key.
std::string describeTokenEventKey(const std::string& key) {
  if (key.size() < 8) return "malformed key";
  return "token " + key.substr(0, key.size() - 8) + ", seq " +
         std::to_string(seqFromKey(std::string_view(key).substr(key.size() - 8)));
}

void diffKeySets(const std::set<std::string>& stored, const std::set<std::string>& expected,
                 const std::string& what, std::string (*describe)(const std::string&),
                 std::vector<std::string>& out) {
  for (const auto& key : stored) {
    if (!expected.count(key)) {
      out.push_back(what + " (" + describe(key) + "): stored row has no source in the log");
    }
  }
  for (const auto& key : expected) {
    if (!stored.count(key)) {
      out.push_back(what + " (" + describe(key) + "): row missing from the stored projection");
    }
  }
}

}  // namespace

std::vector<std::string> diffStored(const Store& store, const MemoryState& expected) {
  std::vector<std::string> out;
  auto it = store.iterate(Family::kTokens);
  std::set<std::string> seen;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string sid = it->key().ToString();
    seen.insert(sid);
    auto want = expected.token(sid);
    if (!want) {
      out.push_back("token " + sid + ": stored but never created in the log");
      continue;
    }
    Token have;
    try {
      have = decodeToken(it->value().ToStringView());
    } catch (const Error& e) {
      out.push_back("token " + sid + ": " + e.what());
      continue;
    }
    if (have != *want) {
      std::string fields;
      auto note = [&](bool differs, const char* name) {
        if (differs) fields += std::string(fields.empty() ? "" : ", ") + name;
      };
      note(have.owner != want->owner, "owner");
      note(have.description != want->description, "description");
      note(have.secretHash != want->secretHash, "secret hash");
      note(have.expiresAtMicros != want->expiresAtMicros, "expiration");
      note(have.scopes != want->scopes, "scopes");
      note(have.revoked != want->revoked || have.revokedAtMicros != want->revokedAtMicros ||
               have.revokedBy != want->revokedBy || have.revokeReason != want->revokeReason,
           "revocation");
      note(have.createdAtMicros != want->createdAtMicros || have.createdBy != want->createdBy,
           "creation");
      note(have.lastSeq != want->lastSeq, "last seq");
      out.push_back("token " + sid + ": stored row differs from the log in " + fields);
    }
  }
  for (const auto& [sid, token] : expected.tokens()) {
    if (!seen.count(sid)) out.push_back("token " + sid + ": in the log but missing from the table");
  }

  std::set<std::string> owners, events, roles;
  for (const auto& [sid, token] : expected.tokens()) {
    owners.insert(ownerTokenKey(token.owner, sid));
    for (uint64_t seq : expected.eventsOf(sid)) events.insert(tokenEventKey(sid, seq));
  }
  diffKeySets(storedKeys(store, Family::kOwnerTokens), owners, "owner index", describeOwnerKey, out);
  diffKeySets(storedKeys(store, Family::kTokenEvents), events, "token event index",
              describeTokenEventKey, out);
  std::set<std::string> principalEvents;
  for (const auto& [principal, seqs] : expected.principalEvents()) {
    for (uint64_t seq : seqs) principalEvents.insert(principalEventKey(principal, seq));
  }
  diffKeySets(storedKeys(store, Family::kPrincipalEvents), principalEvents, "principal event index",
              describePrincipalEventKey, out);

  auto r = store.iterate(Family::kRoles);
  for (r->SeekToFirst(); r->Valid(); r->Next()) {
    std::string principal = r->key().ToString();
    roles.insert(principal);
    RoleSet want = expected.rolesOf(principal);
    RoleSet have{r->value().size() == 1 ? static_cast<uint8_t>(r->value()[0]) : uint8_t{0xff}};
    if (have != want) {
      out.push_back("roles of " + principal + ": stored " + have.describe() + ", log says " +
                    want.describe());
    }
  }
  for (const auto& [principal, set] : expected.roles()) {
    if (!roles.count(principal)) out.push_back("roles of " + principal + ": missing from the table");
  }
  return out;
}

namespace {

// Set while the projection's families are being replaced; a ledger refuses to open on it.
constexpr std::string_view kRebuildFlag = "projection rebuild unfinished";

// Puts in batches of a few MiB: a rebuild of millions of rows is not one batch in memory.
// Only the last write is synced, which makes the earlier ones durable too (one WAL).
class RowWriter {
 public:
  explicit RowWriter(Store& store) : store_(store) {}
  void put(Family f, std::string_view key, std::string_view value) {
    batch_.Put(store_.family(f), key, value);
    if (batch_.GetDataSize() >= kBatchBytes) {
      store_.write(batch_, /*sync=*/false);
      batch_.Clear();
    }
  }
  void finish() { store_.write(batch_, /*sync=*/true); }

 private:
  static constexpr size_t kBatchBytes = 4 << 20;
  Store& store_;
  rocksdb::WriteBatch batch_;
};

}  // namespace

RebuildReport rebuildStored(Store& store, const std::function<void(uint64_t)>& progress) {
  VerifyOptions verify;
  verify.progress = progress;
  VerifyReport verified = verifyLog(store, verify);
  if (!verified.intact) {
    throw Error(ErrorCode::kIntegrity, "the log does not verify at seq " +
                                           std::to_string(verified.firstBadSeq) + " (" +
                                           verified.problem + "): nothing was rebuilt");
  }
  MemoryState state = replayLog(store);
  store.setFlag(kRebuildFlag, true);
  for (Family f : {Family::kTokens, Family::kOwnerTokens, Family::kTokenEvents, Family::kRoles,
                   Family::kPrincipalEvents}) {
    store.recreate(f);  // rather than deleting rows: a damaged table file goes with its family
  }
  RowWriter out(store);
  for (const auto& [sid, token] : state.tokens()) {
    out.put(Family::kTokens, sid, encodeToken(token));
    out.put(Family::kOwnerTokens, ownerTokenKey(token.owner, sid), "");
    for (uint64_t seq : state.eventsOf(sid)) out.put(Family::kTokenEvents, tokenEventKey(sid, seq), "");
  }
  for (const auto& [principal, seqs] : state.principalEvents()) {
    for (uint64_t seq : seqs) out.put(Family::kPrincipalEvents, principalEventKey(principal, seq), "");
  }
  for (const auto& [principal, roles] : state.roles()) {
    out.put(Family::kRoles, principal, std::string(1, static_cast<char>(roles.bits)));
  }
  out.finish();
  store.setFlag(kRebuildFlag, false);
  return RebuildReport{verified.entries, state.tokens().size(), state.roles().size()};
}

bool rebuildUnfinished(const Store& store) { return store.flag(kRebuildFlag); }

}  // namespace tokenledger
