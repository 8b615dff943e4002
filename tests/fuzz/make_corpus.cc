// Writes the seed corpora of the fuzz targets: make_corpus OUT_DIR writes OUT_DIR/credential,
// OUT_DIR/event and OUT_DIR/rpc. The committed seeds in tests/fuzz/corpus were made with it:
//   ./make_corpus ../../../tests/fuzz/corpus        (from the fuzz build's tests/fuzz)
// Events come from a real ledger run through every kind of command; RPC seeds are framed Cap'n
// Proto RPC messages (capnp/rpc.capnp) calling every method, with placeholders for credentials
// (fuzz_support.h). Credentials are random, so each run writes different (equally good) seeds.
#include <capnp/message.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "ledger/chain.h"
#include "ledger/commands.h"
#include "ledger/crypto.h"
#include "ledger/store.h"
#include "ledger/temp_dir.h"
#include "projections/ledger_instance.h"
#include "schemas/ledger.capnp.h"
#include "schemas/rpc.capnp.h"
#include "rpc/raw_frames.h"

using namespace tokenledger;
using tokenledger::rpc::bootstrapMessage;
using tokenledger::rpc::callMessage;
using tokenledger::rpc::finishMessage;
namespace fs = std::filesystem;

namespace {

void writeFile(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// ---- credential -------------------------------------------------------------------------------

void credentialSeeds(const fs::path& dir) {
  Credential c = Credential::generate();
  const std::string token = c.encode();
  writeFile(dir / "token", token);
  writeFile(dir / "pair", c.sidHex() + ":" + toHex(c.secret));
  writeFile(dir / "sid", c.sidHex());
  writeFile(dir / "truncated", token.substr(0, token.size() - 3));
  std::string badChecksum = token;
  badChecksum.back() = badChecksum.back() == '0' ? '1' : '0';
  writeFile(dir / "bad-checksum", badChecksum);
  writeFile(dir / "prefix-only", "tlp_");
}

// ---- event ------------------------------------------------------------------------------------

void eventSeeds(const fs::path& dir) {
  TempDir temp("tokenledger-corpus");
  const auto dataDir = temp.path() / "ledger";
  Credential admin = LedgerInstance::init(dataDir, "alice");
  {
    auto instance = LedgerInstance::open(dataDir);
    Ledger& ledger = instance->ledger();
    Actor alice = Actor::token("alice", admin.sidHex());
    auto run = [&](Command command, std::string reason = {}) {
      return ledger.execute(Request{alice, "127.0.0.1:4000", std::move(reason), std::move(command)});
    };
    run(GrantRole{"bob", Role::kUser});
    std::string a = run(CreateToken{"bob", "Vendor A", {}, Scopes::of({"assignment:read"})}).sids.at(0);
    std::string b = run(CreateToken{"svc", "Payroll", {Expiration::Kind::kNever, 0}, Scopes::allScopes()},
                        "batch job")
                        .sids.at(0);
    run(ChangeScopes{a, Scopes::of({"assignment:read", "contact:read"})});
    run(SetDescription{a, "Vendor A (billing)"});
    run(RotateToken{a}, "suspected leak");
    run(RevokeToken{b}, "contract ended");
    run(RevokeRole{"bob", Role::kUser});
    run(RotateSigningKey{});
    run(MakeCheckpoint{});
  }
  auto store = Store::open(dataDir / "db", Store::Mode::kReadOnly, /*create=*/false);
  std::string all;
  for (uint64_t seq = 1;; ++seq) {
    auto event = store->get(Family::kEvents, seqKey(seq));
    if (!event) break;
    const std::string kind = [&] {
      CanonicalReader reader(*event);
      return std::to_string(static_cast<unsigned>(reader.root<schema::Event>().which()));
    }();
    writeFile(dir / ("event-" + std::to_string(seq) + "-kind" + kind), fuzz::record(*event));
    all += fuzz::record(*event);
    if (seq <= 2) writeFile(dir / ("seal-" + std::to_string(seq)), fuzz::record(*store->get(Family::kSeals, seqKey(seq))));
  }
  writeFile(dir / "whole-log", all);
  // Regression: a role this version does not know (found by event_fuzz: apply() shifted
  // 1u << role with role up to 255, undefined behaviour).
  {
    capnp::MallocMessageBuilder m;
    auto event = m.initRoot<schema::Event>();
    event.setSeq(2);
    event.setTimeMicros(1'767'225'600'000'000);
    event.initActor().setBootstrap();
    event.setClientAddress("local");
    auto grant = event.initRoleGranted();
    grant.setPrincipal("mallory");
    grant.setRole(static_cast<schema::Role>(200));
    writeFile(dir / "regression-unknown-role", fuzz::record(canonicalBytes(event.asReader())));
  }
  auto it = store->iterate(Family::kCheckpoints);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    writeFile(dir / "checkpoint", fuzz::record(it->value().ToString()));
  }
}

// ---- rpc --------------------------------------------------------------------------------------

using TL = wire::TokenLedger;
using S = wire::Session;

std::string login(uint32_t question, const std::string& credential) {
  return callMessage<TL, TL::LoginParams>(question, 0, false, 2, [&](TL::LoginParams::Builder p) {
    p.initCredential().setToken(credential);
  });
}

template <typename Params>
std::string sessionCall(uint32_t question, uint16_t method,
                        const std::function<void(typename Params::Builder)>& fill) {
  return callMessage<S, Params>(question, 1, true, method, fill);
}

void selected(schema::Scopes::Builder out, std::initializer_list<const char*> ids) {
  auto list = out.initSelected(static_cast<unsigned>(ids.size()));
  unsigned i = 0;
  for (const char* id : ids) list.set(i++, id);
}

void rpcSeeds(const fs::path& dir) {
  writeFile(dir / "verify", bootstrapMessage(0) + callMessage<TL, TL::VerifyParams>(1, 0, false, 0, [](auto p) {
              auto r = p.initRequest();
              r.initCredential().setToken(fuzz::kUserPlaceholder);
              r.initRequiredScopes(1).set(0, "assignment:read");
            }) + finishMessage(1));
  writeFile(dir / "verify-pair", bootstrapMessage(0) + callMessage<TL, TL::VerifyParams>(1, 0, false, 0, [](auto p) {
              auto pair = p.initRequest().initCredential().initPair();
              pair.setSid(fuzz::kUserSidPlaceholder);
              pair.setSecret(fuzz::kUserSecretPlaceholder);
            }));
  writeFile(dir / "verify-batch", bootstrapMessage(0) + callMessage<TL, TL::VerifyBatchParams>(1, 0, false, 1, [](auto p) {
              auto list = p.initRequests(3);
              list[0].initCredential().setToken(fuzz::kAdminPlaceholder);
              list[1].initCredential().setToken("tlp_0123");
              list[2].initCredential().setToken(fuzz::kUserPlaceholder);
              list[2].initRequiredScopes(2).set(0, "tokens:write");
            }));
  writeFile(dir / "info", bootstrapMessage(0) + callMessage<TL, TL::InfoParams>(1, 0, false, 3, [](auto) {}));

  const std::string admin = bootstrapMessage(0) + login(1, fuzz::kAdminPlaceholder);
  const std::string user = bootstrapMessage(0) + login(1, fuzz::kUserPlaceholder);
  writeFile(dir / "whoami", user + sessionCall<S::WhoamiParams>(2, 0, [](auto) {}) + finishMessage(2));
  writeFile(dir / "reads",
            user + sessionCall<S::ListTokensParams>(2, 2, [](auto p) { p.initFilter().setShowAll(true); }) +
                sessionCall<S::GetTokenParams>(3, 3, [](auto p) { p.setSid(fuzz::kUserSidPlaceholder); }) +
                sessionCall<S::HistoryParams>(4, 9, [](auto p) {
                  auto f = p.initFilter();
                  f.setToken(fuzz::kUserSidPlaceholder);
                  f.setLimit(5);
                }) +
                sessionCall<S::ScopeCatalogParams>(5, 16, [](auto) {}));
  writeFile(dir / "admin-reads",
            admin + sessionCall<S::ListRolesParams>(2, 12, [](auto) {}) +
                sessionCall<S::CheckpointsParams>(3, 13, [](auto p) { p.setLimit(3); }) +
                sessionCall<S::HistoryParams>(4, 9, [](auto p) { p.initFilter().setActor("alice"); }) +
                sessionCall<S::ListTokensParams>(5, 2, [](auto p) { p.initFilter().setOwner("bob"); }));
  writeFile(dir / "create", user + sessionCall<S::CreateTokenParams>(2, 1, [](auto p) {
              p.setDescription("fuzz vendor");
              p.initExpiration().setDays90();
              selected(p.initScopes(), {"assignment:read"});
              p.setReason("seed");
            }));
  writeFile(dir / "admin-writes",
            admin +
                sessionCall<S::CreateTokenParams>(2, 1, [](auto p) {
                  p.setOwner("carol");
                  p.setDescription("fuzz service");
                  p.initExpiration().setNever();
                  p.initScopes().setAll();
                }) +
                sessionCall<S::GrantRoleParams>(3, 10, [](auto p) {
                  p.setPrincipal("carol");
                  p.setRole(schema::Role::AUDITOR);
                }) +
                sessionCall<S::RevokeRoleParams>(4, 11, [](auto p) {
                  p.setPrincipal("carol");
                  p.setRole(schema::Role::AUDITOR);
                }) +
                sessionCall<S::MakeCheckpointParams>(5, 14, [](auto) {}));
  writeFile(dir / "token-changes",
            admin +
                sessionCall<S::ChangeScopesParams>(2, 4, [](auto p) {
                  p.setSid(fuzz::kUserSidPlaceholder);
                  selected(p.initScopes(), {"assignment:read", "contact:read", "tokens:read", "tokens:write"});
                }) +
                sessionCall<S::SetDescriptionParams>(3, 5, [](auto p) {
                  p.setSid(fuzz::kUserSidPlaceholder);
                  p.setDescription("fuzz user (renamed)");
                }) +
                // A SID that does not exist: not-found, and the user's token stays usable.
                sessionCall<S::RevokeParams>(4, 6, [](auto p) { p.setSid(std::string(32, '0')); }) +
                sessionCall<S::RotateParams>(5, 8, [](auto p) { p.setSid(std::string(32, '1')); }) +
                sessionCall<S::RevokeAllForParams>(6, 7, [](auto p) { p.setOwner("nobody"); }));
  writeFile(dir / "watch", admin + sessionCall<S::WatchParams>(2, 15, [](auto p) { p.setFromSeq(1); }));
  writeFile(dir / "http", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
  writeFile(dir / "truncated", bootstrapMessage(0).substr(0, 12));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_corpus OUT_DIR\n";
    return 2;
  }
  const fs::path out = argv[1];
  credentialSeeds(out / "credential");
  eventSeeds(out / "event");
  rpcSeeds(out / "rpc");
  std::cout << "seeds written under " << out << "\n";
  return 0;
}
