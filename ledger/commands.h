// The commands the ledger accepts. Each is validated against the current state and either
// appends its events atomically or is rejected with an Error and appends nothing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "ledger/credential.h"
#include "ledger/token.h"

namespace tokenledger {

struct Expiration {
  enum class Kind { kDays90, kDays180, kYear, kCustom, kNever };
  Kind kind = Kind::kDays90;
  int64_t customMicros = 0;  // with kCustom: the moment the token stops working

  static Expiration custom(int64_t micros) { return {Kind::kCustom, micros}; }
};

// Creates the first signing key's event, the first admin and its token. Only on an empty log.
struct Bootstrap {
  std::string adminPrincipal;
};
struct CreateToken {
  std::string owner;
  std::string description;
  Expiration expiration;
  Scopes scopes;
};
struct ChangeScopes {
  std::string sid;
  Scopes scopes;
};
struct SetDescription {
  std::string sid;
  std::string description;
};
struct RevokeToken {
  std::string sid;
};
// Offboarding: revokes every token of `owner` that is not revoked yet, in one atomic group.
struct RevokeAllFor {
  std::string owner;
};
// A new secret for the same SID; the old secret stops working at once.
struct RotateToken {
  std::string sid;
};
struct GrantRole {
  std::string principal;
  Role role;
};
struct RevokeRole {
  std::string principal;
  Role role;
};
struct RotateSigningKey {};
// A signed checkpoint of the head, on demand.
struct MakeCheckpoint {};

using Command = std::variant<Bootstrap, CreateToken, ChangeScopes, SetDescription, RevokeToken,
                             RevokeAllFor, RotateToken, GrantRole, RevokeRole, RotateSigningKey,
                             MakeCheckpoint>;

// "create-token", "revoke", ...: for logs.
const char* commandName(const Command& command);

struct Request {
  Actor actor;
  std::string clientAddress;
  std::string reason;  // optional free text recorded in every event of the command
  Command command;
};

struct CheckpointInfo {
  uint64_t seq = 0;
  Digest entryHash{};
  int64_t timeMicros = 0;
  std::string keyId;
  Ed25519Signature signature{};
};

struct CommandResult {
  uint64_t firstSeq = 0;  // the events appended, [firstSeq, lastSeq]; 0 when none
  uint64_t lastSeq = 0;
  std::vector<std::string> sids;          // the tokens the command created or changed
  std::optional<Credential> credential;   // create / rotate / bootstrap: shown exactly once
  std::optional<CheckpointInfo> checkpoint;
};

// Input rules shared with every front end.
// Trims and checks 1-200 printable characters; throws Error(kInvalidArgument).
std::string validDescription(std::string_view text);
// 1-64 characters: letters, digits, space, and . _ @ - (not at either end for space).
void requireValidPrincipal(std::string_view principal);
// At most 500 printable characters.
void requireValidReason(std::string_view reason);

}  // namespace tokenledger
