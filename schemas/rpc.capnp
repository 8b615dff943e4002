@0xa2681abaceb6970c;
# The tokenledger service, spoken with the standard Cap'n Proto two-party RPC protocol: any
# Cap'n Proto RPC client that has this file can call it.
#
# Errors: a refused call fails with an exception whose description starts with an error code
# and a colon, then a message for a person, e.g.
#   "permission-denied: alice (roles: user) may not manage the tokens of bob; ..."
# Codes: invalid-argument, not-found, failed-precondition, permission-denied, unauthenticated,
# already-exists, integrity, storage, unavailable, internal.
#
# Secrets: a credential travels only in verify/verifyBatch/login requests and, once, in the
# createToken/rotate results. The server never logs or stores it.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("tokenledger::wire");

using Ledger = import "ledger.capnp";
using Json = import "/capnp/compat/json.capnp";

interface TokenLedger {
  # The bootstrap capability: what anyone who can reach the port may call.

  verify @0 (request :VerifyRequest) -> (result :VerifyResult);
  # Answered from memory; never waits for a write.

  verifyBatch @1 (requests :List(VerifyRequest)) -> (results :List(VerifyResult));
  # Up to 1000 requests; results in the same order.

  login @2 (credential :Credential) -> (session :Session);
  # A session acting as the token's owner, with rights = owner's roles ∩ the token's ledger
  # scopes. Revoked, expired, unknown or malformed credentials fail with "unauthenticated".

  info @3 () -> (info :ServerInfo);
}

struct Credential {
  union {
    token @0 :Text;            # the one-string form: tlp_<sid><secret><checksum>
    pair :group {              # the seeds' Account SID + Auth Token
      sid @1 :Text;
      secret @2 :Text;
    }
  }
}

struct VerifyRequest {
  credential @0 :Credential;
  requiredScopes @1 :List(Text);   # every one must be held; empty = any valid token
}

enum VerifyReason {
  ok @0;
  invalidCredentials @1;       # unknown SID or wrong secret: deliberately indistinguishable
  revoked @2;
  expired @3;
  insufficientScope @4;
  malformed @5;                # not a credential at all, or a bad checksum
}

struct VerifyResult {
  valid @0 :Bool;
  reason @1 :VerifyReason;
  # Set only when the secret matched (ok, revoked, expired, insufficientScope):
  sid @2 :Text;
  owner @3 :Text;
  scopes @4 :Ledger.Scopes;
  expiresAtMicros @5 :Int64;   # 0 = never
}

struct ServerInfo {
  version @0 :Text;
  headSeq @1 :UInt64;                   # the last committed seq
  latestCheckpoint @2 :Ledger.Checkpoint;  # the newest signed checkpoint (seq 0 if none yet)
  publicKeys @3 :List(PublicKey);       # every signing key the log has introduced
}

struct PublicKey {
  keyId @0 :Text;
  publicKey @1 :Data $Json.hex;          # raw Ed25519
  introducedAtSeq @2 :UInt64;
}

struct Expiration {
  union {
    days90 @0 :Void;
    days180 @1 :Void;
    year @2 :Void;
    never @3 :Void;            # admins only
    customMicros @4 :Int64;    # a moment in the future, up to the configured maximum
  }
}

enum TokenStatus {
  active @0;
  expired @1;
  revoked @2;
}

struct TokenInfo {
  sid @0 :Text;
  owner @1 :Text;
  description @2 :Text;
  status @3 :TokenStatus;
  createdAtMicros @4 :Int64;
  createdBy @5 :Ledger.Actor;
  expiresAtMicros @6 :Int64;   # 0 = never
  scopes @7 :Ledger.Scopes;
  revokedAtMicros @8 :Int64;
  revokedBy @9 :Ledger.Actor;
  revokeReason @10 :Text;
  lastSeq @11 :UInt64;
}

struct TokenFilter {
  owner @0 :Text;              # empty: your own tokens (users) or everyone's (admins, auditors)
  showAll @1 :Bool;            # false: active tokens only (the seeds' default list)
  after @2 :Text;              # paging: the last SID of the previous page
  limit @3 :UInt32;            # at most 500; 0 = 100
}

struct HistoryFilter {
  union {
    all @0 :Void;
    token @1 :Text;            # a SID
    owner @2 :Text;            # events about this owner's tokens, or this principal's roles
    actor @3 :Text;            # events caused by this principal
  }
  fromSeq @4 :UInt64;          # inclusive; 0 = from the start
  toSeq @5 :UInt64;            # inclusive; 0 = to the head
  fromTimeMicros @6 :Int64;    # inclusive; 0 = no bound
  toTimeMicros @7 :Int64;      # inclusive; 0 = no bound
  limit @8 :UInt32;            # at most 1000; 0 = 200
}

struct PrincipalRoles {
  principal @0 :Text;
  roles @1 :List(Ledger.Role);
}

interface Session {
  whoami @0 () -> (principal :Text, roles :List(Ledger.Role), tokenSid :Text,
                   scopes :Ledger.Scopes);

  createToken @1 (owner :Text, description :Text, expiration :Expiration,
                  scopes :Ledger.Scopes, reason :Text)
      -> (token :TokenInfo, credential :Text);
  # `credential` is shown exactly once; the ledger keeps only its hash.

  listTokens @2 (filter :TokenFilter) -> (tokens :List(TokenInfo), nextAfter :Text);
  getToken @3 (sid :Text) -> (token :TokenInfo);
  changeScopes @4 (sid :Text, scopes :Ledger.Scopes, reason :Text) -> (token :TokenInfo);
  setDescription @5 (sid :Text, description :Text, reason :Text) -> (token :TokenInfo);
  revoke @6 (sid :Text, reason :Text) -> (token :TokenInfo);
  revokeAllFor @7 (owner :Text, reason :Text) -> (revoked :List(Text));
  rotate @8 (sid :Text, reason :Text) -> (token :TokenInfo, credential :Text);

  history @9 (filter :HistoryFilter) -> (entries :List(Ledger.LogEntry), nextFromSeq :UInt64);
  # Users see the history of their own tokens; admins and auditors everyone's.
  # nextFromSeq: pass it as fromSeq to continue; 0 when there is no more.

  grantRole @10 (principal :Text, role :Ledger.Role, reason :Text) -> ();
  revokeRole @11 (principal :Text, role :Ledger.Role, reason :Text) -> ();
  listRoles @12 () -> (principals :List(PrincipalRoles));

  checkpoints @13 (fromSeq :UInt64, limit :UInt32) -> (checkpoints :List(Ledger.Checkpoint));
  makeCheckpoint @14 () -> (checkpoint :Ledger.Checkpoint);

  watch @15 (fromSeq :UInt64, watcher :Watcher) -> (subscription :Subscription);
  # Streams every entry from `fromSeq` (catch-up from the log, then live as they commit) to
  # `watcher`, one call at a time. Drop `subscription` to stop. Auditors and admins.

  scopeCatalog @16 () -> (catalog :Ledger.ScopeCatalog);
}

interface Watcher {
  onEntries @0 (entries :List(Ledger.LogEntry)) -> ();
}

interface Subscription {}
