// The domain as the ledger and its projections see it: who acts, what a token is, roles.
// Plain values; the stored and wire forms are the Cap'n Proto structs in schemas/.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ledger/crypto.h"

namespace tokenledger {

// Who caused an event: the bootstrap (`tokenledgerd init`) or a principal using one of its tokens.
struct Actor {
  bool bootstrap = false;
  std::string principal;
  std::string sid;

  static Actor bootstrapActor() { return Actor{true, {}, {}}; }
  static Actor token(std::string principal, std::string sid) {
    return Actor{false, std::move(principal), std::move(sid)};
  }
  std::string describe() const { return bootstrap ? "bootstrap" : principal + " (token " + sid + ")"; }
  bool operator==(const Actor&) const = default;
};

// "All Scopes" or the selected ids, sorted and unique.
struct Scopes {
  bool all = false;
  std::vector<std::string> selected;

  static Scopes allScopes() { return Scopes{true, {}}; }
  static Scopes of(std::vector<std::string> ids);  // sorts and de-duplicates
  std::string describe() const;                     // "All Scopes" or "a, b, c"
  bool operator==(const Scopes&) const = default;
};

enum class Role : uint8_t { kUser = 0, kAdmin = 1, kAuditor = 2 };
inline constexpr Role kAllRoles[] = {Role::kUser, Role::kAdmin, Role::kAuditor};
const char* roleName(Role role);
bool parseRole(std::string_view text, Role& out);

// A set of roles as a bitmask (1 << Role).
struct RoleSet {
  uint8_t bits = 0;
  bool has(Role r) const { return bits & (1u << static_cast<unsigned>(r)); }
  void add(Role r) { bits |= static_cast<uint8_t>(1u << static_cast<unsigned>(r)); }
  void remove(Role r) { bits &= static_cast<uint8_t>(~(1u << static_cast<unsigned>(r))); }
  bool empty() const { return bits == 0; }
  std::string describe() const;  // "admin, auditor" or "none"
  bool operator==(const RoleSet&) const = default;
};

enum class TokenStatus { kActive, kExpired, kRevoked };
const char* statusName(TokenStatus status);

struct Token {
  std::string sid;
  std::string owner;
  std::string description;
  Digest secretHash{};
  int64_t createdAtMicros = 0;
  Actor createdBy;
  int64_t expiresAtMicros = 0;  // 0 = never
  Scopes scopes;
  bool revoked = false;
  int64_t revokedAtMicros = 0;
  Actor revokedBy;
  std::string revokeReason;
  uint64_t lastSeq = 0;

  // Expired is derived from the clock, never stored: a token expires without an event.
  TokenStatus statusAt(int64_t nowMicros) const {
    if (revoked) return TokenStatus::kRevoked;
    if (expiresAtMicros != 0 && nowMicros >= expiresAtMicros) return TokenStatus::kExpired;
    return TokenStatus::kActive;
  }
  bool operator==(const Token&) const = default;
};

int64_t nowMicros();
// "2026-11-23T10:43:54Z"; "never" for 0.
std::string formatTime(int64_t micros);
// Accepts "YYYY-MM-DD" (midnight UTC) or "YYYY-MM-DDTHH:MM:SS[Z]"; false otherwise.
bool parseTime(std::string_view text, int64_t& micros);
// Exactly a decimal number from 0 to `max` (no sign, space or suffix); false otherwise.
bool parseUnsigned(std::string_view text, uint64_t max, uint64_t& out);

}  // namespace tokenledger
