#include "projections/stored_projection.h"

#include <cstdint>
#include <exception>
#include <thread>
#include <unordered_set>

#include "ledger/error.h"
#include "ledger/token_codec.h"
#include "projections/apply.h"

namespace tokenledger {

std::string ownerTokenKey(std::string_view owner, std::string_view sid) {
  std::string key(owner);
  key.push_back('\0');
  key.append(sid);
  return key;
}

std::string tokenEventKey(std::string_view sid, uint64_t seq) {
  return std::string(sid) + seqKey(seq);
}

std::string principalEventKey(std::string_view principal, uint64_t seq) {
  return ownerTokenKey(principal, "") + seqKey(seq);
}

namespace {

std::vector<std::string> committedOwnerSids(const Store& store, std::string_view owner) {
  std::vector<std::string> sids;
  std::string prefix = ownerTokenKey(owner, "");
  auto it = store.iterate(Family::kOwnerTokens);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    sids.emplace_back(it->key().ToStringView().substr(prefix.size()));
  }
  return sids;
}

}  // namespace

class StoredProjection::Committed : public LedgerState {
 public:
  explicit Committed(const StoredProjection& p) : p_(p) {}
  std::optional<Token> token(std::string_view sid) const override { return p_.committedToken(sid); }
  std::vector<Token> tokensOwnedBy(std::string_view owner) const override {
    return p_.listTokens(owner);
  }
  RoleSet rolesOf(std::string_view principal) const override { return p_.committedRoles(principal); }
  std::vector<std::string> principalsWith(Role role) const override {
    std::shared_lock lock(p_.rolesMutex_);
    std::vector<std::string> out;
    for (const auto& [principal, roles] : p_.roles_) {
      if (roles.has(role)) out.push_back(principal);
    }
    return out;
  }

 private:
  const StoredProjection& p_;
};

// apply()'s view while staging: reads see the group so far, writes go to the batch and overlay.
class StoredProjection::Stager : public ProjectionState {
 public:
  Stager(StoredProjection& p, rocksdb::WriteBatch& batch) : p_(p), batch_(batch) {}
  std::optional<Token> token(std::string_view sid) const override { return p_.token(sid); }
  RoleSet rolesOf(std::string_view principal) const override { return p_.rolesOf(principal); }
  void putToken(const Token& token, bool created) override {
    batch_.Put(p_.store_.family(Family::kTokens), token.sid, encodeToken(token));
    if (created) {
      batch_.Put(p_.store_.family(Family::kOwnerTokens), ownerTokenKey(token.owner, token.sid), "");
    }
    std::lock_guard lock(p_.stagingMutex_);
    Staged& group = p_.openGroup();
    if (created) group.newByOwner[token.owner].push_back(token.sid);
    group.tokens[token.sid] = token;
  }
  void putRoles(const std::string& principal, RoleSet roles) override {
    auto family = p_.store_.family(Family::kRoles);
    if (roles.empty()) {
      batch_.Delete(family, principal);
    } else {
      batch_.Put(family, principal, std::string(1, static_cast<char>(roles.bits)));
    }
    std::lock_guard lock(p_.stagingMutex_);
    p_.openGroup().roles[principal] = roles;
  }
  void noteTokenEvent(const std::string& sid, uint64_t seq) override {
    batch_.Put(p_.store_.family(Family::kTokenEvents), tokenEventKey(sid, seq), "");
  }
  void notePrincipalEvent(const std::string& principal, uint64_t seq) override {
    batch_.Put(p_.store_.family(Family::kPrincipalEvents), principalEventKey(principal, seq), "");
  }

 private:
  StoredProjection& p_;
  rocksdb::WriteBatch& batch_;
};

StoredProjection::StoredProjection(Store& store, const ScopeCatalog& catalog)
    : store_(store), verifyIndex_(catalog), committed_(std::make_unique<Committed>(*this)) {
  auto roles = store_.iterate(Family::kRoles);
  for (roles->SeekToFirst(); roles->Valid(); roles->Next()) {
    if (roles->value().size() != 1) {
      throw Error(ErrorCode::kIntegrity, "stored roles of " + roles->key().ToString() + " are malformed");
    }
    roles_[roles->key().ToString()] = RoleSet{static_cast<uint8_t>(roles->value()[0])};
  }
  loadVerifyIndex();
}

// Start-up time is this scan: one row per token ever issued (1M tokens: most of the time to
// serving). SIDs are uniformly random hex, so the key space splits at "8" into two halves read
// on two threads; the index is sized first so it never rehashes while it fills.
void StoredProjection::loadVerifyIndex() {
  verifyIndex_.reserve(store_.estimateKeys(Family::kTokens));
  auto load = [this](std::string_view from, std::string_view to) {
    auto rows = store_.iterate(Family::kTokens);
    for (rows->Seek(from); rows->Valid() && (to.empty() || rows->key().compare(to) < 0); rows->Next()) {
      verifyIndex_.upsertStoredRow(rows->value().ToStringView());
    }
  };
  std::exception_ptr upperFailure;
  std::thread upper([&] {
    try {
      load("8", "");
    } catch (...) {
      upperFailure = std::current_exception();
    }
  });
  try {
    load("", "8");
  } catch (...) {
    upper.join();
    throw;
  }
  upper.join();
  if (upperFailure) std::rethrow_exception(upperFailure);
}

StoredProjection::~StoredProjection() = default;

std::optional<Token> StoredProjection::committedToken(std::string_view sid) const {
  auto row = store_.get(Family::kTokens, sid);
  if (!row) return {};
  return decodeToken(*row);
}

RoleSet StoredProjection::committedRoles(std::string_view principal) const {
  std::shared_lock lock(rolesMutex_);
  auto it = roles_.find(principal);
  return it == roles_.end() ? RoleSet{} : it->second;
}

// The reads below look at the staged groups first, newest first, and at the committed state
// second: commitGroup() updates the committed state before it drops a group (see the header).

std::optional<Token> StoredProjection::token(std::string_view sid) const {
  {
    const std::string key(sid);
    std::lock_guard lock(stagingMutex_);
    for (auto group = staged_.rbegin(); group != staged_.rend(); ++group) {
      auto it = group->tokens.find(key);
      if (it != group->tokens.end()) return it->second;
    }
  }
  // A committed token is in the verify index: commitGroup() puts it there before it drops the
  // staged group. So a SID in neither was never issued, and the table need not be read (every
  // new token is looked up this way once, to refuse a duplicate SID).
  if (!verifyIndex_.contains(sid)) return {};
  return committedToken(sid);
}

std::vector<Token> StoredProjection::tokensOwnedBy(std::string_view owner) const {
  std::vector<std::string> sids;
  {
    std::lock_guard lock(stagingMutex_);
    for (const Staged& group : staged_) {
      if (auto it = group.newByOwner.find(owner); it != group.newByOwner.end()) {
        sids.insert(sids.end(), it->second.begin(), it->second.end());
      }
    }
  }
  // A group committed meanwhile is in both lists.
  const std::unordered_set<std::string> staged(sids.begin(), sids.end());
  for (auto& sid : committedOwnerSids(store_, owner)) {
    if (!staged.count(sid)) sids.push_back(std::move(sid));
  }
  std::vector<Token> out;
  for (const auto& sid : sids) {
    if (auto t = token(sid)) out.push_back(std::move(*t));
  }
  return out;
}

RoleSet StoredProjection::rolesOf(std::string_view principal) const {
  {
    std::lock_guard lock(stagingMutex_);
    for (auto group = staged_.rbegin(); group != staged_.rend(); ++group) {
      if (auto it = group->roles.find(principal); it != group->roles.end()) return it->second;
    }
  }
  return committedRoles(principal);
}

std::vector<std::string> StoredProjection::principalsWith(Role role) const {
  std::vector<std::pair<std::string, RoleSet>> changes;  // oldest first
  {
    std::lock_guard lock(stagingMutex_);
    for (const Staged& group : staged_) changes.insert(changes.end(), group.roles.begin(), group.roles.end());
  }
  std::map<std::string, RoleSet, std::less<>> all;
  {
    std::shared_lock lock(rolesMutex_);
    all = roles_;
  }
  for (const auto& [principal, roles] : changes) all[principal] = roles;
  std::vector<std::string> out;
  for (const auto& [principal, roles] : all) {
    if (roles.has(role)) out.push_back(principal);
  }
  return out;
}

StoredProjection::Staged& StoredProjection::openGroup() {
  if (staged_.empty() || !staged_.back().open) staged_.emplace_back();
  return staged_.back();
}

void StoredProjection::stage(schema::Event::Reader event, rocksdb::WriteBatch& batch) {
  Stager stager(*this, batch);
  apply(stager, event);
}

void StoredProjection::endGroup() {
  std::lock_guard lock(stagingMutex_);
  openGroup().open = false;
}

void StoredProjection::commitGroup() {
  const Staged* oldest;
  {
    std::lock_guard lock(stagingMutex_);
    if (staged_.empty() || staged_.front().open) {
      throw Error(ErrorCode::kInternal, "commitGroup() without a closed staged group");
    }
    oldest = &staged_.front();  // stays put: the sealer only adds at the back
  }
  for (const auto& [sid, token] : oldest->tokens) verifyIndex_.upsert(token);
  {
    std::unique_lock lock(rolesMutex_);
    for (const auto& [principal, roles] : oldest->roles) {
      if (roles.empty()) {
        roles_.erase(principal);
      } else {
        roles_[principal] = roles;
      }
    }
  }
  std::lock_guard lock(stagingMutex_);
  staged_.pop_front();
}

void StoredProjection::discardStaged() {
  std::lock_guard lock(stagingMutex_);
  staged_.clear();
}

const LedgerState& StoredProjection::committed() const { return *committed_; }

std::vector<uint64_t> StoredProjection::eventsOf(std::string_view sid) const {
  std::vector<uint64_t> seqs;
  auto it = store_.iterate(Family::kTokenEvents);
  for (it->Seek(sid); it->Valid() && it->key().starts_with(sid); it->Next()) {
    seqs.push_back(seqFromKey(it->key().ToStringView().substr(sid.size())));
  }
  return seqs;
}

std::vector<uint64_t> StoredProjection::principalEventsOf(std::string_view principal) const {
  std::vector<uint64_t> seqs;
  std::string prefix = ownerTokenKey(principal, "");
  auto it = store_.iterate(Family::kPrincipalEvents);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    seqs.push_back(seqFromKey(it->key().ToStringView().substr(prefix.size())));
  }
  return seqs;
}

std::vector<Token> StoredProjection::listTokens(std::optional<std::string_view> owner) const {
  return listTokens(owner, "", SIZE_MAX, [](const Token&) { return true; }).tokens;
}

StoredProjection::TokenPage StoredProjection::listTokens(
    std::optional<std::string_view> owner, std::string_view after, size_t limit,
    const std::function<bool(const Token&)>& keep) const {
  TokenPage page;
  auto take = [&](Token token) {
    if (!keep(token)) return true;
    if (page.tokens.size() == limit) {
      page.nextAfter = page.tokens.back().sid;
      return false;
    }
    page.tokens.push_back(std::move(token));
    return true;
  };
  if (owner) {
    // The owner index is ordered by SID within an owner.
    std::string prefix = ownerTokenKey(*owner, "");
    auto it = store_.iterate(Family::kOwnerTokens);
    for (it->Seek(after.empty() ? prefix : ownerTokenKey(*owner, after));
         it->Valid() && it->key().starts_with(prefix); it->Next()) {
      std::string_view sid = it->key().ToStringView().substr(prefix.size());
      if (sid <= after) continue;
      auto token = committedToken(sid);
      if (token && !take(std::move(*token))) break;
    }
    return page;
  }
  auto it = store_.iterate(Family::kTokens);
  for (it->Seek(after); it->Valid(); it->Next()) {
    if (it->key().ToStringView() <= after) continue;
    if (!take(decodeToken(it->value().ToStringView()))) break;
  }
  return page;
}

}  // namespace tokenledger
