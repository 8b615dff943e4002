// libFuzzer target: decoding stored log entries. The replay tool and the server read events,
// seals and checkpoints from RocksDB files and exports that may have been tampered with, so
// every byte here is hostile. An input is a sequence of records (fuzz_support.h); each record
// is read as an Event, a Seal, a Checkpoint, a LogEntry and a TokenRecord, every field is read,
// and each event is applied, in order, to one in-memory projection. Error and kj::Exception
// are the expected ways to refuse; anything else (a crash, a sanitizer report, another
// exception escaping) is a finding.
#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fuzz_support.h"
#include "ledger/chain.h"
#include "ledger/error.h"
#include "ledger/token_codec.h"
#include "projections/apply.h"
#include "projections/event_text.h"
#include "projections/memory_state.h"
#include "schemas/ledger.capnp.h"

using namespace tokenledger;

namespace {

// Sinks that keep the reads from being optimised away.
volatile size_t gSink = 0;
void use(capnp::Text::Reader t) { gSink = gSink + std::string(t.cStr(), t.size()).size(); }
void use(capnp::Data::Reader d) {
  size_t sum = 0;
  for (auto b : d) sum += b;
  gSink = gSink + sum;
}
template <typename T>
void use(T v) {
  gSink = gSink + static_cast<size_t>(v);
}

void readActor(schema::Actor::Reader a) {
  use(static_cast<unsigned>(a.which()));
  if (a.isToken()) {
    use(a.getToken().getPrincipal());
    use(a.getToken().getSid());
  }
}

void readScopes(schema::Scopes::Reader s) {
  if (s.isSelected()) {
    for (auto id : s.getSelected()) use(id);
  }
  gSink = gSink + describeScopes(s).size();
}

void readEvent(schema::Event::Reader e) {
  use(e.getSeq());
  use(e.getTimeMicros());
  readActor(e.getActor());
  use(e.getClientAddress());
  use(e.getReason());
  switch (e.which()) {
    case schema::Event::TOKEN_CREATED: {
      auto c = e.getTokenCreated();
      use(c.getSid());
      use(c.getOwner());
      use(c.getDescription());
      use(c.getSecretHash());
      use(c.getExpiresAtMicros());
      readScopes(c.getScopes());
      break;
    }
    case schema::Event::TOKEN_SCOPES_CHANGED:
      use(e.getTokenScopesChanged().getSid());
      readScopes(e.getTokenScopesChanged().getScopes());
      break;
    case schema::Event::TOKEN_DESCRIPTION_CHANGED:
      use(e.getTokenDescriptionChanged().getSid());
      use(e.getTokenDescriptionChanged().getDescription());
      break;
    case schema::Event::TOKEN_REVOKED: use(e.getTokenRevoked().getSid()); break;
    case schema::Event::TOKEN_ROTATED:
      use(e.getTokenRotated().getSid());
      use(e.getTokenRotated().getSecretHash());
      break;
    case schema::Event::ROLE_GRANTED:
      use(e.getRoleGranted().getPrincipal());
      use(static_cast<unsigned>(e.getRoleGranted().getRole()));
      break;
    case schema::Event::ROLE_REVOKED:
      use(e.getRoleRevoked().getPrincipal());
      use(static_cast<unsigned>(e.getRoleRevoked().getRole()));
      break;
    case schema::Event::SIGNING_KEY_ROTATED:
      use(e.getSigningKeyRotated().getKeyId());
      use(e.getSigningKeyRotated().getPublicKey());
      break;
  }
  // What tokenctl history and ledger-replay print for it.
  gSink = gSink + describeEvent(e).size() + historyLine(e).size();
}

void readSeal(schema::Seal::Reader s) {
  use(s.getEntryHash());
  use(s.getKeyId());
  use(s.getSignature());
}

void readCheckpoint(schema::Checkpoint::Reader c) {
  use(c.getSeq());
  use(c.getEntryHash());
  use(c.getTimeMicros());
  use(c.getKeyId());
  use(c.getSignature());
}

template <typename F>
void refusedOrFine(F&& f) {
  try {
    f();
  } catch (const Error&) {
  } catch (const kj::Exception&) {
  }
}

// Canonical bytes are the ones hashed into the chain, and exports and the replay tool's mirror
// re-encode events canonically expecting the bytes that were hashed: canonicalising must be a
// fixed point (re-reading canonical bytes and canonicalising again gives the same bytes).
// (Not "isCanonical() input re-encodes to itself": Cap'n Proto 0.9.2's isCanonical() accepts a
// zero-sized struct pointer with any offset, which canonicalize() rewrites; the ledger never
// relies on isCanonical().)
template <typename T>
void checkCanonicalFixedPoint(std::string_view bytes) {
  const std::string once = canonicalBytes(CanonicalReader(bytes).root<T>());
  const std::string twice = canonicalBytes(CanonicalReader(once).root<T>());
  if (once != twice) {
    std::fprintf(stderr, "event_fuzz: canonical bytes re-encoded to different bytes\n");
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  MemoryState state;
  for (std::string_view bytes : fuzz::splitRecords(data, size)) {
    refusedOrFine([&] {
      CanonicalReader reader(bytes);
      auto event = reader.root<schema::Event>();
      readEvent(event);
      refusedOrFine([&] { apply(state, event); });
      state.setLastSeq(event.getSeq());
    });
    refusedOrFine([&] { checkCanonicalFixedPoint<schema::Event>(bytes); });
    refusedOrFine([&] { checkCanonicalFixedPoint<schema::Seal>(bytes); });
    refusedOrFine([&] { readSeal(CanonicalReader(bytes).root<schema::Seal>()); });
    refusedOrFine([&] { readCheckpoint(CanonicalReader(bytes).root<schema::Checkpoint>()); });
    refusedOrFine([&] {
      CanonicalReader reader(bytes);
      auto entry = reader.root<schema::LogEntry>();
      readEvent(entry.getEvent());
      readSeal(entry.getSeal());
    });
    refusedOrFine([&] { gSink = gSink + decodeToken(bytes).sid.size(); });
  }
  // Every query the projection answers, over whatever the events built.
  for (const auto& [sid, token] : state.tokens()) {
    gSink = gSink + state.eventsOf(sid).size() + state.tokensOwnedBy(token.owner).size();
  }
  for (Role role : kAllRoles) gSink = gSink + state.principalsWith(role).size();
  for (const auto& [principal, roles] : state.roles()) {
    gSink = gSink + roles.describe().size() + state.principalEventsOf(principal).size();
  }
  return 0;
}
