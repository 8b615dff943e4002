#include "rpc/service.h"

#include <capnp/message.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <bit>
#include <memory>
#include <mutex>
#include <optional>

#include "ledger/chain.h"
#include "ledger/log_reader.h"
#include "ledger/rights.h"
#include "ledger/token_codec.h"
#include "rpc/wire.h"

namespace tokenledger::rpc {
namespace {

// Runs a method body, turning a refused request (Error) into the RPC error the client sees.
// A fault of the server's own (damaged or failing storage, a bug) is logged too: the client
// cannot repair it, the operator can.
template <typename Body>
kj::Promise<void> guarded(Body&& body) {
  try {
    return body();
  } catch (const Error& e) {
    if (e.code() == ErrorCode::kIntegrity || e.code() == ErrorCode::kStorage ||
        e.code() == ErrorCode::kInternal) {
      spdlog::error("answering a call failed: {}: {}", errorCodeName(e.code()), e.what());
    }
    return toKjException(e);
  }
}

// Hands a command to the ledger's writer thread; the promise resolves on this loop once the
// outcome is durable (or refused).
//
// The outcome crosses threads in a slot under a mutex of ours, not inside KJ's cross-thread
// promise: that promise alone orders it (through a futex inside libkj), but ThreadSanitizer
// cannot see into Debian's uninstrumented libkj and reports the outcome's strings as racing. An
// uncontended mutex costs nothing beside the sync the outcome waited for.
kj::Promise<Outcome> submit(Ledger& ledger, Request request) {
  struct Handoff {
    std::mutex mutex;
    std::optional<Outcome> outcome;
    kj::Own<kj::CrossThreadPromiseFulfiller<void>> done;
  };
  auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
  auto handoff = std::make_shared<Handoff>();
  handoff->done = kj::mv(paf.fulfiller);
  ledger.submit(std::move(request), [handoff](Outcome outcome) {
    {
      std::lock_guard lock(handoff->mutex);
      handoff->outcome = std::move(outcome);
    }
    handoff->done->fulfill();
  });
  return paf.promise.then([handoff] {
    std::lock_guard lock(handoff->mutex);
    return std::move(*handoff->outcome);
  });
}

const CommandResult& resultOf(const Outcome& outcome) {
  if (outcome.error) throw toKjException(*outcome.error);
  return outcome.result;
}

std::optional<Credential> credentialFrom(wire::Credential::Reader reader) {
  if (reader.isToken()) return parseCredential(reader.getToken().cStr());
  auto pair = reader.getPair();
  return parseCredentialPair(pair.getSid().cStr(), pair.getSecret().cStr());
}

std::vector<std::string> textList(capnp::List<capnp::Text>::Reader list) {
  std::vector<std::string> out;
  for (auto item : list) out.emplace_back(item.cStr());
  return out;
}

Expiration expirationFrom(wire::Expiration::Reader reader) {
  switch (reader.which()) {
    case wire::Expiration::DAYS90: return {Expiration::Kind::kDays90, 0};
    case wire::Expiration::DAYS180: return {Expiration::Kind::kDays180, 0};
    case wire::Expiration::YEAR: return {Expiration::Kind::kYear, 0};
    case wire::Expiration::NEVER: return {Expiration::Kind::kNever, 0};
    case wire::Expiration::CUSTOM_MICROS: return Expiration::custom(reader.getCustomMicros());
  }
  throw Error(ErrorCode::kInvalidArgument, "unknown expiration choice");
}

Role roleFrom(schema::Role role) {
  if (static_cast<unsigned>(role) > static_cast<unsigned>(Role::kAuditor)) {
    throw Error(ErrorCode::kInvalidArgument, "unknown role");
  }
  return static_cast<Role>(role);
}

void writeVerifyResult(wire::VerifyResult::Builder out, const VerifyResult& result,
                       const ScopeCatalog& catalog) {
  out.setValid(result.valid());
  out.setReason(static_cast<wire::VerifyReason>(result.reason));
  if (!result.secretMatched()) return;
  auto sid = out.initSid(2 * result.sid.size());
  writeHex(result.sid, std::span<char>(sid.begin(), sid.size()));
  out.setOwner(result.owner);
  writeScopes(out.initScopes(), result.scopes.all ? Scopes::allScopes()
                                                  : Scopes{false, catalog.idsOf(result.scopes.bits)});
  out.setExpiresAtMicros(result.expiresAtMicros);
}

// Words a wire::VerifyResult takes, so the reply is built in one right-sized segment: without a
// hint Cap'n Proto zeroes an 8 KiB segment for every reply (a measurable part of a verify call).
uint64_t verifyResultWords(const VerifyResult& result) {
  constexpr uint64_t kFixed = 24;        // the result struct, sid and a typical owner
  constexpr uint64_t kPerScope = 5;      // a list pointer and an id of up to 32 characters
  return kFixed + result.owner.size() / sizeof(capnp::word) +
         kPerScope * static_cast<uint64_t>(std::popcount(result.scopes.bits));
}

VerifyResult verifyOne(const VerifyIndex& index, wire::VerifyRequest::Reader request,
                                    int64_t now) {
  auto credential = credentialFrom(request.getCredential());
  if (!credential) return {};  // malformed
  return index.verify(*credential, index.requiredMask(textList(request.getRequiredScopes())), now);
}

static_assert(static_cast<int>(wire::VerifyReason::OK) == static_cast<int>(VerifyReason::kOk));
static_assert(static_cast<int>(wire::VerifyReason::MALFORMED) ==
              static_cast<int>(VerifyReason::kMalformed));

// The ledger's clock: expiry is judged by one clock everywhere (injectable for tests).
int64_t clockOf(const ServiceContext& context) { return context.instance.ledger().options().clock(); }

// ---------------------------------------------------------------------------------------------

// The sessions and watches one connection's peer holds (ServiceLimits bounds them). Shared by the
// connection's capabilities, which may outlive one another; used on the loop thread only.
struct Holdings {
  size_t sessions = 0;
  size_t watches = 0;
};

// One place in a Holdings count, taken for as long as the capability it is attached to lives.
class Held {
 public:
  Held(std::shared_ptr<Holdings> holdings, size_t Holdings::*count)
      : holdings_(std::move(holdings)), count_(count) {
    ++((*holdings_).*count_);
  }
  ~Held() { --((*holdings_).*count_); }
  Held(const Held&) = delete;
  Held& operator=(const Held&) = delete;

 private:
  std::shared_ptr<Holdings> holdings_;
  size_t Holdings::*count_;
};

// Takes a place in `count`, or refuses with what the peer can do about it.
kj::Own<Held> hold(const std::shared_ptr<Holdings>& holdings, size_t Holdings::*count, size_t limit,
                   const char* what) {
  if ((*holdings).*count >= limit) {
    throw Error(ErrorCode::kFailedPrecondition,
                "this connection already holds " + std::to_string(limit) + " " + what +
                    ", the most it may; release the ones it no longer uses");
  }
  return kj::heap<Held>(holdings, count);
}

class SessionServer final : public wire::Session::Server {
 public:
  SessionServer(const ServiceContext& context, WatchHub& hub, Actor actor, std::string peer,
                std::shared_ptr<Holdings> holdings)
      : context_(context),
        hub_(hub),
        actor_(std::move(actor)),
        peer_(std::move(peer)),
        holdings_(std::move(holdings)) {}

 protected:
  kj::Promise<void> whoami(WhoamiContext call) override {
    return guarded([&]() -> kj::Promise<void> {
      Rights r = rights();
      auto results = call.getResults();
      results.setPrincipal(actor_.principal);
      std::vector<schema::Role> roles;
      for (Role role : kAllRoles) {
        if (r.roles().has(role)) roles.push_back(static_cast<schema::Role>(role));
      }
      auto list = results.initRoles(static_cast<unsigned>(roles.size()));
      for (unsigned i = 0; i < list.size(); ++i) list.set(i, roles[i]);
      results.setTokenSid(actor_.sid);
      writeScopes(results.initScopes(), r.tokenScopes());
      return kj::READY_NOW;
    });
  }

  kj::Promise<void> createToken(CreateTokenContext call) override {
    return guarded([&]() -> kj::Promise<void> {
      auto params = call.getParams();
      std::string owner = params.getOwner();
      if (owner.empty()) owner = actor_.principal;
      CreateToken command{owner, params.getDescription(), expirationFrom(params.getExpiration()),
                          scopesFrom(params.getScopes())};
      return write(params.getReason(), std::move(command)).then([this, call](Outcome o) mutable {
        const CommandResult& result = resultOf(o);
        auto results = call.getResults();
        results.setCredential(result.credential->encode());
        fillToken(results.initToken(), result.sids.front());
      });
    });
  }

  kj::Promise<void> listTokens(ListTokensContext call) override {
    return guarded([&]() -> kj::Promise<void> {
      Rights r = rights();
      auto filter = call.getParams().getFilter();
      std::optional<std::string> owner;
      if (filter.hasOwner() && filter.getOwner().size() > 0) {
        owner = filter.getOwner();
        r.requireReadTokensOf(*owner);
      } else if (!r.isAdmin() && !r.roles().has(Role::kAuditor)) {
        owner = actor_.principal;
        r.requireReadTokensOf(*owner);
      } else {
        r.requireReadTokensOf("");  // admins and auditors: still needs tokens:read
      }
      size_t limit = filter.getLimit() == 0 ? 100 : filter.getLimit();
      if (limit > context_.limits.maxListPage) {
        throw Error(ErrorCode::kInvalidArgument,
                    "limit " + std::to_string(limit) + " is above the maximum page size of " +
                        std::to_string(context_.limits.maxListPage));
      }
      const int64_t at = now();
      const bool showAll = filter.getShowAll();
      auto page = projection().listTokens(
          owner ? std::optional<std::string_view>(*owner) : std::nullopt,
          filter.getAfter().cStr(), limit, [&](const Token& t) {
            return showAll || t.statusAt(at) == TokenStatus::kActive;
          });
      auto results = call.getResults();
      auto list = results.initTokens(static_cast<unsigned>(page.tokens.size()));
      for (unsigned i = 0; i < list.size(); ++i) writeTokenInfo(list[i], page.tokens[i], at);
      results.setNextAfter(page.nextAfter);
      return kj::READY_NOW;
    });
  }

  kj::Promise<void> getToken(GetTokenContext call) override {
    return guarded([&]() -> kj::Promise<void> {
      Token token = readableToken(call.getParams().getSid());
      writeTokenInfo(call.getResults().initToken(), token, now());
      return kj::READY_NOW;
    });
  }

  kj::Promise<void> changeScopes(ChangeScopesContext call) override {
    auto params = call.getParams();
    return tokenWrite(call, params.getReason(),
                      ChangeScopes{params.getSid(), scopesFrom(params.getScopes())});
  }

  kj::Promise<void> setDescription(SetDescriptionContext call) override {
    auto params = call.getParams();
    return tokenWrite(call, params.getReason(),
                      SetDescription{params.getSid(), params.getDescription()});
  }

  kj::Promise<void> revoke(RevokeContext call) override {
    auto params = call.getParams();
    return tokenWrite(call, params.getReason(), RevokeToken{params.getSid()});
  }

  kj::Promise<void> revokeAllFor(RevokeAllForContext call) override {
    return guarded([&]() -> kj::Promise<void> {
      auto params = call.getParams();
      return write(params.getReason(), RevokeAllFor{params.getOwner()})
          .then([call](Outcome o) mutable {
            const CommandResult& result = resultOf(o);
            auto list = call.getResults().initRevoked(static_cast<unsigned>(result.sids.size()));
            for (unsigned i = 0; i < list.size(); ++i) list.set(i, result.sids[i]);
          });
    });
  }

  kj::Promise<void> rotate(RotateContext call) override {
    return guarded([&]() -> kj::Promise<void> {
      auto params = call.getParams();
      return write(params.getReason(), RotateToken{params.getSid()})
          .then([this, call](Outcome o) mutable {
            const CommandResult& result = resultOf(o);
            auto results = call.getResults();
            results.setCredential(result.credential->encode());
            fillToken(results.initToken(), result.sids.front());
          });
    });
  }

  kj::Promise<void> history(HistoryContext call) override {
    return guarded([&]() -> kj::Promise<void> {
      historyPage(call.getParams().getFilter(), call.getResults());
      return kj::READY_NOW;
    });
  }

  kj::Promise<void> grantRole(GrantRoleContext call) override {
    return guarded([&]() -> kj::Promise<void> {
      auto params = call.getParams();
      return write(params.getReason(), GrantRole{params.getPrincipal(), roleFrom(params.getRole())})
          .then([](Outcome o) { resultOf(o); });
    });
  }

  kj::Promise<void> revokeRole(RevokeRoleContext call) override {
    return guarded([&]() -> kj::Promise<void> {
      auto params = call.getParams();
      return write(params.getReason(), RevokeRole{params.getPrincipal(), roleFrom(params.getRole())})
          .then([](Outcome o) { resultOf(o); });
    });
  }

  kj::Promise<void> listRoles(ListRolesContext call) override {
    return guarded([&]() -> kj::Promise<void> {
      Rights r = rights();
      if (!r.mayChangeRoles() && !r.mayReadAudit()) {
        throw Error(ErrorCode::kPermissionDenied,
                    actor_.principal + " may not list roles; it takes an admin with roles:write "
                                       "or an auditor with audit:read");
      }
      std::vector<std::pair<std::string, RoleSet>> all;
      auto it = context_.instance.store().iterate(Family::kRoles);
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        all.emplace_back(it->key().ToString(),
                         RoleSet{static_cast<uint8_t>(it->value().empty() ? 0 : it->value()[0])});
      }
      auto list = call.getResults().initPrincipals(static_cast<unsigned>(all.size()));
      for (unsigned i = 0; i < list.size(); ++i) {
        list[i].setPrincipal(all[i].first);
        std::vector<schema::Role> roles;
        for (Role role : kAllRoles) {
          if (all[i].second.has(role)) roles.push_back(static_cast<schema::Role>(role));
        }
        auto out = list[i].initRoles(static_cast<unsigned>(roles.size()));
        for (unsigned k = 0; k < out.size(); ++k) out.set(k, roles[k]);
      }
      return kj::READY_NOW;
    });
  }

  kj::Promise<void> checkpoints(CheckpointsContext call) override {
    return guarded([&]() -> kj::Promise<void> {
      rights().requireReadAudit();
      auto params = call.getParams();
      size_t limit = std::min<size_t>(params.getLimit() == 0 ? 100 : params.getLimit(),
                                      context_.limits.maxListPage);
      std::vector<std::string> rows;
      auto it = context_.instance.store().iterate(Family::kCheckpoints);
      for (it->Seek(seqKey(params.getFromSeq())); it->Valid() && rows.size() < limit; it->Next()) {
        rows.push_back(it->value().ToString());
      }
      auto list = call.getResults().initCheckpoints(static_cast<unsigned>(rows.size()));
      for (unsigned i = 0; i < list.size(); ++i) {
        CanonicalReader reader(rows[i]);
        list.setWithCaveats(i, reader.root<schema::Checkpoint>());
      }
      return kj::READY_NOW;
    });
  }

  kj::Promise<void> makeCheckpoint(MakeCheckpointContext call) override {
    return guarded([&]() -> kj::Promise<void> {
      return write("", MakeCheckpoint{}).then([call](Outcome o) mutable {
        const CheckpointInfo& cp = *resultOf(o).checkpoint;
        auto out = call.getResults().initCheckpoint();
        out.setSeq(cp.seq);
        out.setEntryHash(kj::arrayPtr(cp.entryHash.data(), cp.entryHash.size()));
        out.setTimeMicros(cp.timeMicros);
        out.setKeyId(cp.keyId);
        out.setSignature(kj::arrayPtr(cp.signature.data(), cp.signature.size()));
      });
    });
  }

  kj::Promise<void> watch(WatchContext call) override {
    return guarded([&]() -> kj::Promise<void> {
      rights().requireReadAudit();
      auto held = hold(holdings_, &Holdings::watches, context_.limits.maxWatchesPerConnection, "watches");
      auto params = call.getParams();
      call.getResults().setSubscription(
          hub_.subscribe(actor_, std::max<uint64_t>(1, params.getFromSeq()), params.getWatcher())
              .attach(kj::mv(held)));
      return kj::READY_NOW;
    });
  }

  kj::Promise<void> scopeCatalog(ScopeCatalogContext call) override {
    return guarded([&]() -> kj::Promise<void> {
      rights();  // any logged-in, still-valid token
      const auto& scopes = context_.instance.ledger().options().catalog->scopes();
      auto list = call.getResults().initCatalog().initScopes(static_cast<unsigned>(scopes.size()));
      for (unsigned i = 0; i < list.size(); ++i) {
        list[i].setId(scopes[i].id);
        list[i].setDisplayName(scopes[i].displayName);
        list[i].setDescription(scopes[i].description);
      }
      return kj::READY_NOW;
    });
  }

 private:
  StoredProjection& projection() const { return context_.instance.projection(); }
  int64_t now() const { return clockOf(context_); }
  Rights rights() const { return Rights::of(projection().committed(), actor_, now()); }

  // Every write is logged with who, what and where from; never with a credential.
  kj::Promise<Outcome> write(std::string reason, Command command) {
    std::string what = commandName(command);
    return submit(context_.instance.ledger(),
                  Request{actor_, peer_, std::move(reason), std::move(command)})
        .then([what, actor = actor_.principal, peer = peer_](Outcome o) {
          if (o.error) {
            spdlog::info("{} by {} from {} refused: {}", what, actor, peer, o.error->what());
          } else if (o.result.firstSeq != 0) {
            spdlog::info("{} by {} from {}: seq {}-{}", what, actor, peer, o.result.firstSeq,
                         o.result.lastSeq);
          }
          return o;
        });
  }

  template <typename Call>
  kj::Promise<void> tokenWrite(Call call, std::string reason, Command command) {
    return guarded([&]() -> kj::Promise<void> {
      return write(std::move(reason), std::move(command)).then([this, call](Outcome o) mutable {
        fillToken(call.getResults().initToken(), resultOf(o).sids.front());
      });
    });
  }

  void fillToken(wire::TokenInfo::Builder out, const std::string& sid) {
    auto token = projection().committed().token(sid);
    if (!token) throw toKjException(Error(ErrorCode::kInternal, "token vanished after commit"));
    writeTokenInfo(out, *token, now());
  }

  // A token the caller may read; otherwise "not found", so SIDs cannot be probed.
  Token readableToken(const std::string& sid) const {
    Rights r = rights();
    if (!isSidText(sid)) {
      throw Error(ErrorCode::kInvalidArgument, "that is not an AccountSID (32 lowercase hex characters)");
    }
    auto token = projection().committed().token(sid);
    if (!token || !(r.mayReadTokensOf(token->owner) || r.mayReadAudit())) {
      throw Error(ErrorCode::kNotFound, "no token with AccountSID " + sid + " that you may see");
    }
    return *token;
  }

  void historyPage(wire::HistoryFilter::Reader filter, wire::Session::HistoryResults::Builder results) {
    Rights r = rights();
    const auto& limits = context_.limits;
    size_t limit = filter.getLimit() == 0 ? 200 : filter.getLimit();
    if (limit > limits.maxHistoryPage) {
      throw Error(ErrorCode::kInvalidArgument,
                  "limit " + std::to_string(limit) + " is above the maximum page size of " +
                      std::to_string(limits.maxHistoryPage));
    }
    const uint64_t fromSeq = std::max<uint64_t>(1, filter.getFromSeq());
    const uint64_t toSeq = filter.getToSeq() == 0 ? UINT64_MAX : filter.getToSeq();
    const int64_t fromTime = filter.getFromTimeMicros();
    const int64_t toTime = filter.getToTimeMicros() == 0 ? INT64_MAX : filter.getToTimeMicros();
    Store& store = context_.instance.store();

    std::vector<std::pair<std::string, std::string>> rows;  // event bytes, seal bytes
    uint64_t next = 0;
    auto inTime = [&](std::string_view eventBytes) {
      CanonicalReader reader(eventBytes);
      auto e = reader.root<schema::Event>();
      return e.getTimeMicros() >= fromTime && e.getTimeMicros() <= toTime;
    };

    if (filter.isToken() || filter.isOwner()) {
      std::vector<uint64_t> seqs;
      if (filter.isToken()) {
        Token token = readableToken(filter.getToken());
        seqs = projection().eventsOf(token.sid);
      } else {
        std::string owner = filter.getOwner();
        if (!r.mayReadTokensOf(owner) && !r.mayReadAudit()) r.requireReadTokensOf(owner);
        for (const Token& t : projection().listTokens(owner)) {
          auto more = projection().eventsOf(t.sid);
          seqs.insert(seqs.end(), more.begin(), more.end());
        }
        auto roles = projection().principalEventsOf(owner);
        seqs.insert(seqs.end(), roles.begin(), roles.end());
        std::sort(seqs.begin(), seqs.end());
      }
      for (uint64_t seq : seqs) {
        if (seq < fromSeq || seq > toSeq) continue;
        if (rows.size() == limit) {
          next = seq;
          break;
        }
        auto event = store.get(Family::kEvents, seqKey(seq));
        auto seal = store.get(Family::kSeals, seqKey(seq));
        if (!event) throw Error(ErrorCode::kIntegrity, "event " + std::to_string(seq) + " is missing");
        if (!inTime(*event)) continue;
        rows.emplace_back(std::move(*event), seal.value_or(""));
      }
    } else {
      std::string actor = filter.isActor() ? std::string(filter.getActor()) : std::string();
      // Your own actions are yours to read (with tokens:read); everyone's take audit:read.
      bool ownActions = filter.isActor() && actor == actor_.principal && r.mayReadTokensOf(actor);
      if (!ownActions) r.requireReadAudit();
      uint64_t scanned = 0;
      for (LogCursor cursor(store, fromSeq); cursor.valid() && cursor.seq() <= toSeq;
           cursor.next()) {
        if (rows.size() == limit || ++scanned > limits.maxHistoryScan) {
          next = cursor.seq();
          break;
        }
        CanonicalReader reader(cursor.eventBytes());
        auto e = reader.root<schema::Event>();
        if (e.getTimeMicros() > toTime) break;  // times never decrease along the log
        if (e.getTimeMicros() < fromTime) continue;
        if (filter.isActor() &&
            (!e.getActor().isToken() || e.getActor().getToken().getPrincipal() != actor)) {
          continue;
        }
        rows.emplace_back(std::string(cursor.eventBytes()), std::string(cursor.sealBytes()));
      }
    }
    auto list = results.initEntries(static_cast<unsigned>(rows.size()));
    for (unsigned i = 0; i < list.size(); ++i) writeLogEntry(list[i], rows[i].first, rows[i].second);
    results.setNextFromSeq(next);
  }

  const ServiceContext& context_;
  WatchHub& hub_;
  Actor actor_;
  std::string peer_;
  std::shared_ptr<Holdings> holdings_;
};

// ---------------------------------------------------------------------------------------------

class LedgerServer final : public wire::TokenLedger::Server {
 public:
  LedgerServer(const ServiceContext& context, WatchHub& hub, std::string peer)
      : context_(context), hub_(hub), peer_(std::move(peer)), holdings_(std::make_shared<Holdings>()) {}

 protected:
  kj::Promise<void> verify(VerifyContext call) override {
    const VerifyIndex& index = context_.instance.projection().verifyIndex();
    VerifyResult result = verifyOne(index, call.getParams().getRequest(), now());
    auto results = call.getResults(capnp::MessageSize{verifyResultWords(result), 0});
    writeVerifyResult(results.initResult(), result, index.catalog());
    return kj::READY_NOW;
  }

  kj::Promise<void> verifyBatch(VerifyBatchContext call) override {
    auto requests = call.getParams().getRequests();
    if (requests.size() > context_.limits.maxVerifyBatch) {
      return toKjException(Error(ErrorCode::kInvalidArgument,
                                 "a batch holds at most " +
                                     std::to_string(context_.limits.maxVerifyBatch) +
                                     " requests; this one has " + std::to_string(requests.size())));
    }
    const VerifyIndex& index = context_.instance.projection().verifyIndex();
    const int64_t at = now();
    std::vector<VerifyResult> verified;
    verified.reserve(requests.size());
    uint64_t words = 8;
    for (auto request : requests) {
      verified.push_back(verifyOne(index, request, at));
      words += verifyResultWords(verified.back());
    }
    auto results = call.getResults(capnp::MessageSize{words, 0}).initResults(requests.size());
    for (unsigned i = 0; i < requests.size(); ++i) {
      writeVerifyResult(results[i], verified[i], index.catalog());
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> login(LoginContext call) override {
    return guarded([&]() -> kj::Promise<void> {
      auto credential = credentialFrom(call.getParams().getCredential());
      if (!credential) {
        throw Error(ErrorCode::kUnauthenticated,
                    "that is not a tokenledger credential (wrong format or checksum)");
      }
      auto result = context_.instance.projection().verifyIndex().verify(*credential, ScopeMask{},
                                                                        now());
      if (!result.valid()) {
        throw Error(ErrorCode::kUnauthenticated,
                    std::string("login refused: ") + verifyReasonName(result.reason));
      }
      auto held = hold(holdings_, &Holdings::sessions, context_.limits.maxSessionsPerConnection, "sessions");
      call.getResults().setSession(
          kj::heap<SessionServer>(context_, hub_, Actor::token(result.owner, result.sidHex()), peer_, holdings_)
              .attach(kj::mv(held)));
      return kj::READY_NOW;
    });
  }

  kj::Promise<void> info(InfoContext call) override {
    return guarded([&]() -> kj::Promise<void> {
      Store& store = context_.instance.store();
      auto out = call.getResults().initInfo();
      out.setVersion(context_.version);
      out.setHeadSeq(context_.instance.ledger().headSeq());
      auto checkpoints = store.iterate(Family::kCheckpoints);
      checkpoints->SeekToLast();
      if (checkpoints->Valid()) {
        CanonicalReader reader(checkpoints->value().ToStringView());
        out.setLatestCheckpoint(reader.root<schema::Checkpoint>());
      }
      std::vector<std::pair<uint64_t, std::string>> keys;  // seq, event bytes
      auto it = store.iterate(Family::kKeys);
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        uint64_t seq = seqFromKey(it->value().ToStringView());
        if (auto event = store.get(Family::kEvents, seqKey(seq))) keys.emplace_back(seq, *event);
      }
      std::sort(keys.begin(), keys.end());
      auto list = out.initPublicKeys(static_cast<unsigned>(keys.size()));
      for (unsigned i = 0; i < list.size(); ++i) {
        CanonicalReader reader(keys[i].second);
        auto rotated = reader.root<schema::Event>().getSigningKeyRotated();
        list[i].setKeyId(rotated.getKeyId());
        list[i].setPublicKey(rotated.getPublicKey());
        list[i].setIntroducedAtSeq(keys[i].first);
      }
      return kj::READY_NOW;
    });
  }

 private:
  int64_t now() const { return clockOf(context_); }

  const ServiceContext& context_;
  WatchHub& hub_;
  std::string peer_;
  std::shared_ptr<Holdings> holdings_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------

class WatchHub::Watch final : public wire::Subscription::Server, private kj::TaskSet::ErrorHandler {
 public:
  Watch(WatchHub& hub, Actor subscriber, uint64_t fromSeq, wire::Watcher::Client watcher)
      : hub_(hub), subscriber_(std::move(subscriber)), watcher_(kj::mv(watcher)), next_(fromSeq),
        tasks_(*this) {
    hub_.watches_.insert(this);
  }
  ~Watch() noexcept(false) { hub_.watches_.erase(this); }

  // Sends the next batch unless one is in flight; called on every commit and after each reply.
  void pump() {
    if (sending_ || failed_ || next_ > hub_.head_) return;
    if (!stillAllowed()) {
      failed_ = true;  // the subscriber's token was revoked or expired, or lost its rights
      return;
    }
    std::vector<std::pair<std::string, std::string>> rows;
    Store& store = hub_.context_.instance.store();
    for (LogCursor cursor(store, next_);
         cursor.valid() && cursor.seq() <= hub_.head_ && rows.size() < hub_.context_.limits.maxWatchBatch;
         cursor.next()) {
      rows.emplace_back(std::string(cursor.eventBytes()), std::string(cursor.sealBytes()));
      next_ = cursor.seq() + 1;
    }
    if (rows.empty()) return;
    auto request = watcher_.onEntriesRequest();
    auto list = request.initEntries(static_cast<unsigned>(rows.size()));
    for (unsigned i = 0; i < list.size(); ++i) writeLogEntry(list[i], rows[i].first, rows[i].second);
    sending_ = true;
    tasks_.add(request.send().then([this](auto&&) {
      sending_ = false;
      pump();
    }));
  }

 private:
  bool stillAllowed() const {
    try {
      const auto& context = hub_.context_;
      return Rights::of(context.instance.projection().committed(), subscriber_, clockOf(context))
          .mayReadAudit();
    } catch (const Error&) {
      return false;
    }
  }

  void taskFailed(kj::Exception&&) override {
    failed_ = true;  // the watcher went away or refused: stop sending; the client drops us
    sending_ = false;
  }

  WatchHub& hub_;
  Actor subscriber_;
  wire::Watcher::Client watcher_;
  uint64_t next_;
  bool sending_ = false;
  bool failed_ = false;
  kj::TaskSet tasks_;
};

WatchHub::~WatchHub() = default;

kj::Own<wire::Subscription::Server> WatchHub::subscribe(Actor subscriber, uint64_t fromSeq,
                                                        wire::Watcher::Client watcher) {
  auto watch = kj::heap<Watch>(*this, std::move(subscriber), fromSeq, kj::mv(watcher));
  watch->pump();
  return watch;
}

void WatchHub::headAdvanced(uint64_t head) {
  head_ = std::max(head_, head);
  // pump() may not remove watches, but copy anyway so the loop never sees a changing set.
  std::vector<Watch*> watches(watches_.begin(), watches_.end());
  for (Watch* watch : watches) watch->pump();
}

kj::Own<wire::TokenLedger::Server> newLedgerServer(const ServiceContext& context, WatchHub& hub,
                                             std::string peer) {
  return kj::heap<LedgerServer>(context, hub, std::move(peer));
}

}  // namespace tokenledger::rpc
