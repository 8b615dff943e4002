#include "projections/verify_index.h"

#include <kj/map.h>

#include <sched.h>

#include <algorithm>
#include <cstring>
#include <shared_mutex>
#include <thread>

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

namespace {

// A reader/writer lock whose readers on different CPUs touch different cache lines: a reader
// takes the slot of the CPU it runs on, a writer every slot. With one shared lock word per shard,
// every verification wrote a cache line the other core had probably written last, and moving
// it cost ~15 % of in-process verification on two cores. Writes are rare (one per event).
class ReaderSlots {
 public:
  ReaderSlots()
      : count_(std::max(1u, std::thread::hardware_concurrency())), slots_(std::make_unique<Slot[]>(count_)) {}

  // Held while reading; a reader moved to another CPU meanwhile still releases its own slot.
  std::shared_lock<std::shared_mutex> read() const {
    const int cpu = ::sched_getcpu();
    return std::shared_lock(slots_[cpu < 0 ? 0 : static_cast<size_t>(cpu) % count_].mutex);
  }

  // Held while writing: every slot, taken in order (writers never wait for one another in a cycle).
  class Write {
   public:
    explicit Write(ReaderSlots& lock) : lock_(lock) {
      for (size_t i = 0; i < lock_.count_; ++i) lock_.slots_[i].mutex.lock();
    }
    ~Write() {
      for (size_t i = lock_.count_; i-- > 0;) lock_.slots_[i].mutex.unlock();
    }
    Write(const Write&) = delete;
    Write& operator=(const Write&) = delete;

   private:
    ReaderSlots& lock_;
  };
  Write write() { return Write(*this); }

 private:
  struct alignas(64) Slot {
    std::shared_mutex mutex;
  };
  const size_t count_;  // CPUs share slots when their ids run past it: slower, still correct
  std::unique_ptr<Slot[]> slots_;
};

}  // namespace

struct VerifyIndex::Shard {
  ReaderSlots lock;
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
  auto lock = shard.lock.write();
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
    auto lock = shards_[i].lock.write();
    shards_[i].entries.reserve(tokens / kShards + tokens / kShards / 8 + 1);
  }
}

size_t VerifyIndex::size() const {
  size_t n = 0;
  for (size_t i = 0; i < kShards; ++i) {
    auto lock = shards_[i].lock.read();
    n += shards_[i].entries.size();
  }
  return n;
}

bool VerifyIndex::contains(std::string_view sidText) const {
  auto sid = parseSid(sidText);
  if (!sid) return false;
  const Shard& shard = shardOf(*sid);
  auto lock = shard.lock.read();
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
  auto lock = shard.lock.read();
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
