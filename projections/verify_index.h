// The in-memory index that answers "is this credential good for these scopes, now?" on the hot
// path: SID -> (SHA-256 of the secret, revoked, expiry, scope bitset, owner). Sharded behind
// reader/writer locks so every RPC thread verifies concurrently while the writer updates it.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ledger/credential.h"
#include "ledger/crypto.h"
#include "ledger/scope_catalog.h"
#include "ledger/token.h"

namespace tokenledger {

enum class VerifyReason { kOk, kInvalidCredentials, kRevoked, kExpired, kInsufficientScope, kMalformed };
const char* verifyReasonName(VerifyReason reason);

struct VerifyResult {
  VerifyReason reason = VerifyReason::kMalformed;
  // Only when the secret matched (kOk, kRevoked, kExpired, kInsufficientScope). The SID stays
  // bytes: the hot path formats nothing; the RPC layer writes its hex straight into the reply.
  Sid sid{};
  std::string owner;
  ScopeMask scopes;
  int64_t expiresAtMicros = 0;
  bool valid() const { return reason == VerifyReason::kOk; }
  bool secretMatched() const {
    return reason != VerifyReason::kInvalidCredentials && reason != VerifyReason::kMalformed;
  }
  // The SID as 32 hex characters; empty unless the secret matched.
  std::string sidHex() const { return secretMatched() ? toHex(sid) : std::string(); }
};

class VerifyIndex {
 public:
  explicit VerifyIndex(const ScopeCatalog& catalog);
  ~VerifyIndex();

  void upsert(const Token& token);
  // Adds one stored tokens row (canonical TokenRecord bytes), decoding only the fields
  // verification reads: the start-up load, where whole-row decoding was most of the time.
  // Safe from several threads at once. Throws Error(kIntegrity) for a row that does not decode.
  void upsertStoredRow(std::string_view row);
  // Sizes the shards for about `tokens` entries so the load does not rehash as it grows.
  void reserve(size_t tokens);
  size_t size() const;
  // Whether a token with this SID (32 hex characters) was ever issued: revoked and expired ones
  // stay in the index.
  bool contains(std::string_view sid) const;
  const ScopeCatalog& catalog() const { return catalog_; }

  // The scope ids a caller requires as a mask; nullopt if one is not in the catalog (no token
  // can hold it, so verification answers insufficientScope).
  std::optional<ScopeMask> requiredMask(const std::vector<std::string>& ids) const;

  // Unknown SID and wrong secret take the same path and give the same answer: the secret hash is
  // always compared in constant time, against a dummy when the SID is unknown.
  VerifyResult verify(const Credential& credential, const std::optional<ScopeMask>& required,
                      int64_t nowMicros) const;
  // Parses the one-string form first; a malformed string or bad checksum is kMalformed.
  VerifyResult verify(std::string_view credential, const std::optional<ScopeMask>& required,
                      int64_t nowMicros) const;

 private:
  struct Entry {
    Digest secretHash;
    int64_t expiresAtMicros;
    ScopeMask scopes;
    bool revoked;
    std::string owner;
  };
  struct SidKey;
  struct Shard;  // a hash table behind a reader/writer lock (verify_index.cc)
  static constexpr size_t kShards = 64;

  Shard& shardOf(const Sid& sid) const;
  void put(const Sid& sid, Entry entry);

  const ScopeCatalog& catalog_;
  std::unique_ptr<Shard[]> shards_;
};

}  // namespace tokenledger
