// The scope catalog: every scope a token can hold (resource x Read/Write, plus the ledger's own
// scopes), with the display name and one-line help the UI shows. Data, not code: it is read
// from schemas/scope-catalog.json (compiled in as the default) with Cap'n Proto's JSON codec.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tokenledger {

struct ScopeInfo {
  std::string id;
  std::string displayName;
  std::string description;
};

// Scopes a token holds: "All Scopes" or a set of catalog ids. As a bitset over the catalog for
// the verification hot path (the catalog holds at most 64 scopes).
struct ScopeMask {
  bool all = false;
  uint64_t bits = 0;
  bool covers(const ScopeMask& wanted) const {
    return all || (!wanted.all && (wanted.bits & ~bits) == 0);
  }
  bool operator==(const ScopeMask&) const = default;
};

class ScopeCatalog {
 public:
  static constexpr size_t kMaxScopes = 64;

  // Throws Error(kInvalidArgument) naming what is wrong: bad JSON, duplicate or bad id, too many.
  static ScopeCatalog fromJson(std::string_view json);
  static const ScopeCatalog& builtin();

  const std::vector<ScopeInfo>& scopes() const { return scopes_; }
  std::optional<size_t> indexOf(std::string_view id) const;

  // Throws Error(kInvalidArgument) naming the first unknown id.
  ScopeMask maskOf(const std::vector<std::string>& ids) const;
  // Catalog order.
  std::vector<std::string> idsOf(uint64_t bits) const;

 private:
  std::vector<ScopeInfo> scopes_;
};

}  // namespace tokenledger
