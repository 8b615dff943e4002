@0xe9e1fd535808625b;
# The tokenledger log format.
#
# Every change to the token table is one `Event`. The ledger stores each event as the
# canonical Cap'n Proto encoding of `Event` (column family "events", key = big-endian seq) and,
# beside it, a `Seal` (column family "seals", same key) that binds the event into the chain:
#
#   entryHash = SHA-256("tokenledger/entry/v1" || 0x00 || prevEntryHash || eventBytes)
#   signature = Ed25519(signing key named by keyId, entryHash)
#
# prevEntryHash of seq 1 is the genesis hash, SHA-256("tokenledger/genesis/v1").
# An auditor can check one entry with the stock tools:
#   capnp decode --flat schemas/ledger.capnp Event < event.bin   (read it)
#   openssl pkeyutl -verify -pubin -inkey ledger.pub -rawin -in entryhash.bin -sigfile sig.bin
#
# No event ever carries a token secret: only SHA-256(secret) is recorded.
# All times are UTC, in microseconds since the Unix epoch.

using Cxx = import "/capnp/c++.capnp";
using Json = import "/capnp/compat/json.capnp";  # $Json.hex: Data reads as hex in JSON exports
$Cxx.namespace("tokenledger::schema");

enum Role {
  # What a principal may do; the rights of a login are its owner's roles intersected with the
  # ledger scopes (tokens:read, tokens:write, audit:read, roles:write) of the token it used.
  user @0;     # manage only their own tokens
  admin @1;    # manage anyone's tokens and roles (the seeds' "System Admin")
  auditor @2;  # read history, export and checkpoints; never change anything
}

struct Actor {
  # Who caused an event.
  union {
    bootstrap @0 :Void;        # `tokenledgerd init`, before any token existed
    token :group {
      principal @1 :Text;      # the owner of the token that was used to log in
      sid @2 :Text;            # that token's AccountSID
    }
  }
}

struct Scopes {
  # Either "All Scopes" or a non-empty set of scope ids from the catalog (sorted, unique).
  union {
    all @0 :Void;
    selected @1 :List(Text);
  }
}

struct Event {
  seq @0 :UInt64;              # gap-free, starting at 1
  timeMicros @1 :Int64;        # when the ledger accepted the command
  actor @2 :Actor;
  clientAddress @3 :Text;      # where the command came from ("local" for the CLI bootstrap)
  reason @4 :Text;             # free text given by the actor, may be empty

  union {
    tokenCreated @5 :TokenCreated;
    tokenScopesChanged @6 :TokenScopesChanged;
    tokenDescriptionChanged @7 :TokenDescriptionChanged;
    tokenRevoked @8 :TokenRevoked;
    tokenRotated @9 :TokenRotated;
    roleGranted @10 :RoleChange;
    roleRevoked @11 :RoleChange;
    signingKeyRotated @12 :SigningKeyRotated;
  }
}

struct TokenCreated {
  sid @0 :Text;                # AccountSID: 32 lowercase hex chars, 128 random bits
  owner @1 :Text;              # the principal (service rep) the token acts as
  description @2 :Text;        # trimmed, 1-200 printable characters
  secretHash @3 :Data $Json.hex;         # SHA-256 of the 32-byte secret; the secret itself is never stored
  expiresAtMicros @4 :Int64;   # 0 = never expires
  scopes @5 :Scopes;
}

struct TokenScopesChanged {
  sid @0 :Text;
  scopes @1 :Scopes;           # the complete new set, not a delta
}

struct TokenDescriptionChanged {
  sid @0 :Text;
  description @1 :Text;
}

struct TokenRevoked {
  sid @0 :Text;
}

struct TokenRotated {
  sid @0 :Text;
  secretHash @1 :Data $Json.hex;         # SHA-256 of the new secret; the old secret stops working
}

struct RoleChange {
  principal @0 :Text;
  role @1 :Role;
}

struct SigningKeyRotated {
  # Entries after this one are signed by the named key. This entry itself is still signed by
  # the previous key, which so vouches for its successor; only seq 1, which introduces the
  # first key, is signed by the key it introduces.
  keyId @0 :Text;              # first 8 bytes of SHA-256(publicKey), hex
  publicKey @1 :Data $Json.hex;          # raw 32-byte Ed25519 public key
}

struct Seal {
  # Binds event `seq` into the chain (see the top of this file).
  entryHash @0 :Data $Json.hex;
  keyId @1 :Text;
  signature @2 :Data $Json.hex;          # Ed25519 over entryHash
}

struct Checkpoint {
  # A signed statement "the log had `seq` entries and its head hash was `entryHash`".
  # Keep one, and later prove that the log still extends it (no rewrite, no truncation).
  #   signature = Ed25519(SHA-256("tokenledger/checkpoint/v1" || 0x00 || seq as 8 bytes big-endian
  #                               || entryHash || timeMicros as 8 bytes big-endian))
  seq @0 :UInt64;
  entryHash @1 :Data $Json.hex;
  timeMicros @2 :Int64;
  keyId @3 :Text;
  signature @4 :Data $Json.hex;
}

struct LogEntry {
  # One event with its seal, as exported for auditors (`ledger-replay export --format capnp`).
  # `event` re-encoded canonically gives back exactly the bytes that were hashed.
  event @0 :Event;
  seal @1 :Seal;
}

struct TokenRecord {
  # The projection's row for one token (column family "tokens", key = sid).
  sid @0 :Text;
  owner @1 :Text;
  description @2 :Text;
  secretHash @3 :Data $Json.hex;
  createdAtMicros @4 :Int64;
  createdBy @5 :Actor;
  expiresAtMicros @6 :Int64;   # 0 = never
  scopes @7 :Scopes;
  revoked @8 :Bool;
  revokedAtMicros @9 :Int64;
  revokedBy @10 :Actor;
  revokeReason @11 :Text;
  lastSeq @12 :UInt64;         # seq of the last event that changed this row
}

struct ScopeInfo {
  id @0 :Text;                 # e.g. "assignment:read"
  displayName @1 :Text;        # e.g. "Assignment Read"
  description @2 :Text;        # the one-line help behind the seeds' (i)
}

struct ScopeCatalog {
  scopes @0 :List(ScopeInfo);
}
