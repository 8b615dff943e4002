#include "projections/verify_index.h"

#include <kj/map.h>

#include <cstring>
#include <mutex>
#include <shared_mutex>

#include "ledger/chain.h"
#include "ledger/crypto.h"
#include "ledger/error.h"
#include "schemas/ledger.capnp.h"

namespace tokenledger {

const char* verifyReasonName(VerifyReason reason) {
  switch (reason) {
    case VerifyReason::kOk: return "ok";
    case VerifyReason::kInvalidCredentials: return "invalidCredentials";
    case VerifyReason::kRevoked: return "revoked";
    case VerifyReason::kExpired: return "expired";
    case VerifyReason::kInsufficientScope: return "insufficientScope";
    case VerifyReason::kMalformed: return "malformed";
  }
  return "unknown";
}

struct VerifyIndex::SidKey {
  Sid sid;
  // SIDs are uniformly random: their first bytes are already a good hash. (The shard is chosen
  // by another byte.)
  unsigned hashCode() const {
    unsigned h;
    std::memcpy(&h, sid.data(), sizeof(h));
    return h;
  }
  bool operator==(const SidKey&) const = default;
};

struct VerifyIndex::Shard {
  mutable std::shared_mutex mutex;
  // KJ's map keeps its entries in one array and probes a flat index of (hash, position): a
  // look-up in a table far beyond the caches misses about twice, where std::unordered_map's
  // bucket -> predecessor -> node walk missed three or four times (1M SIDs: 120 -> 77 ns).
  kj::HashMap<SidKey, Entry> entries;
};

VerifyIndex::VerifyIndex(const ScopeCatalog& catalog)
    : catalog_(catalog), shards_(std::make_unique<Shard[]>(kShards)) {}

VerifyIndex::~VerifyIndex() = default;

VerifyIndex::Shard& VerifyIndex::shardOf(const Sid& sid) const {
  return shards_[sid[sizeof(size_t)] % kShards];
}

void VerifyIndex::put(const Sid& sid, Entry entry) {
  Shard& shard = shardOf(sid);
  std::unique_lock lock(shard.mutex);
  shard.entries.upsert(SidKey{sid}, std::move(entry),
                       [](Entry& existing, Entry&& replacement) { existing = std::move(replacement); });
}

void VerifyIndex::upsert(const Token& token) {
  auto sid = parseSid(token.sid);
  if (!sid) return;  // the ledger only ever issues well-formed SIDs
  put(*sid, Entry{token.secretHash, token.expiresAtMicros,
                  token.scopes.all ? ScopeMask{true, 0} : catalog_.maskOf(token.scopes.selected),
                  token.revoked, token.owner});
}

void VerifyIndex::upsertStoredRow(std::string_view row) {
  try {
    CanonicalReader reader(row);
    auto record = reader.root<schema::TokenRecord>();
    auto sidText = record.getSid();
    auto sid = parseSid(std::string_view(sidText.begin(), sidText.size()));
    auto hash = record.getSecretHash();
    Entry entry{{}, record.getExpiresAtMicros(), {}, record.getRevoked(), record.getOwner()};
    if (!sid || hash.size() != entry.secretHash.size()) {
      throw Error(ErrorCode::kIntegrity, "a stored token row is malformed (SID or secret hash)");
    }
    std::copy(hash.begin(), hash.end(), entry.secretHash.begin());
    auto scopes = record.getScopes();
    entry.scopes.all = scopes.isAll();
    if (!entry.scopes.all) {
      for (auto id : scopes.getSelected()) {
        auto index = catalog_.indexOf(std::string_view(id.begin(), id.size()));
        if (!index) {
          throw Error(ErrorCode::kIntegrity, "stored token " + std::string(sidText.cStr()) +
                                                 " holds a scope the catalog does not have");
        }
        entry.scopes.bits |= uint64_t{1} << *index;
      }
    }
    put(*sid, std::move(entry));
  } catch (const kj::Exception& e) {
    throw Error(ErrorCode::kIntegrity,
                std::string("stored token row does not decode: ") + e.getDescription().cStr());
  }
}

void VerifyIndex::reserve(size_t tokens) {
  for (size_t i = 0; i < kShards; ++i) {
    std::unique_lock lock(shards_[i].mutex);
    shards_[i].entries.reserve(tokens / kShards + tokens / kShards / 8 + 1);
  }
}

size_t VerifyIndex::size() const {
  size_t n = 0;
  for (size_t i = 0; i < kShards; ++i) {
    std::shared_lock lock(shards_[i].mutex);
    n += shards_[i].entries.size();
  }
  return n;
}

bool VerifyIndex::contains(std::string_view sidText) const {
  auto sid = parseSid(sidText);
  if (!sid) return false;
  const Shard& shard = shardOf(*sid);
  std::shared_lock lock(shard.mutex);
  return shard.entries.find(SidKey{*sid}) != nullptr;
}

std::optional<ScopeMask> VerifyIndex::requiredMask(const std::vector<std::string>& ids) const {
  ScopeMask mask;
  for (const auto& id : ids) {
    auto index = catalog_.indexOf(id);
    if (!index) return {};
    mask.bits |= uint64_t{1} << *index;
  }
  return mask;
}

VerifyResult VerifyIndex::verify(const Credential& credential,
                                 const std::optional<ScopeMask>& required, int64_t nowMicros) const {
  static const Digest kDummy{};
  const Digest presented = sha256(credential.secret);
  VerifyResult result;
  Shard& shard = shardOf(credential.sid);
  std::shared_lock lock(shard.mutex);
  const Entry* entry = nullptr;
  KJ_IF_MAYBE(found, shard.entries.find(SidKey{credential.sid})) { entry = found; }
  bool match = constantTimeEqual(presented, entry ? entry->secretHash : kDummy) && entry != nullptr;
  if (!match) {
    result.reason = VerifyReason::kInvalidCredentials;
    return result;
  }
  result.sid = credential.sid;
  result.owner = entry->owner;
  result.scopes = entry->scopes;
  result.expiresAtMicros = entry->expiresAtMicros;
  if (entry->revoked) {
    result.reason = VerifyReason::kRevoked;
  } else if (entry->expiresAtMicros != 0 && nowMicros >= entry->expiresAtMicros) {
    result.reason = VerifyReason::kExpired;
  } else if (!required || !entry->scopes.covers(*required)) {
    result.reason = VerifyReason::kInsufficientScope;
  } else {
    result.reason = VerifyReason::kOk;
  }
  return result;
}

VerifyResult VerifyIndex::verify(std::string_view credential,
                                 const std::optional<ScopeMask>& required, int64_t nowMicros) const {
  auto parsed = parseCredential(credential);
  if (!parsed) return VerifyResult{};
  return verify(*parsed, required, nowMicros);
}

}  // namespace tokenledger
