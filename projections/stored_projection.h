// The projection the server keeps in RocksDB: the token table, the owner index, the per-token
// event index and the roles, written by apply() into the same WriteBatch as the events they
// reflect. It also keeps the in-memory VerifyIndex and role table current.
//
// Two views: the LedgerProjection interface is for the ledger's threads only and includes what is
// staged in the groups not yet durable; committed() is for every other thread.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "ledger/state.h"
#include "ledger/store.h"
#include "projections/verify_index.h"

namespace tokenledger {

class StoredProjection : public LedgerProjection {
 public:
  // Loads roles and the verification index from the stored rows.
  StoredProjection(Store& store, const ScopeCatalog& catalog);
  ~StoredProjection() override;

  // LedgerProjection: the ledger's sealer thread, but commitGroup() (its committer thread).
  std::optional<Token> token(std::string_view sid) const override;
  std::vector<Token> tokensOwnedBy(std::string_view owner) const override;
  RoleSet rolesOf(std::string_view principal) const override;
  std::vector<std::string> principalsWith(Role role) const override;
  void stage(schema::Event::Reader event, rocksdb::WriteBatch& batch) override;
  void endGroup() override;
  void commitGroup() override;
  void discardStaged() override;

  // Any thread.
  const LedgerState& committed() const;
  const VerifyIndex& verifyIndex() const { return verifyIndex_; }
  // Seqs of every event that concerns `sid`, in order (from the per-token index, no log scan).
  std::vector<uint64_t> eventsOf(std::string_view sid) const;
  // Seqs of every role event of `principal`, in order.
  std::vector<uint64_t> principalEventsOf(std::string_view principal) const;
  // Every token, or those of one owner, ordered by SID.
  std::vector<Token> listTokens(std::optional<std::string_view> owner) const;
  // One page of them: SIDs after `after`, at most `limit` tokens for which `keep` holds.
  // `nextAfter` is the last SID returned when more may follow, else empty.
  struct TokenPage {
    std::vector<Token> tokens;
    std::string nextAfter;
  };
  TokenPage listTokens(std::optional<std::string_view> owner, std::string_view after, size_t limit,
                       const std::function<bool(const Token&)>& keep) const;

 private:
  void loadVerifyIndex();
  class Committed;
  class Stager;

  std::optional<Token> committedToken(std::string_view sid) const;
  RoleSet committedRoles(std::string_view principal) const;

  Store& store_;
  VerifyIndex verifyIndex_;
  std::unique_ptr<Committed> committed_;

  mutable std::shared_mutex rolesMutex_;
  std::map<std::string, RoleSet, std::less<>> roles_;  // committed, small: kept in memory

  // What one group staged, over the committed state and the groups before it.
  struct Staged {
    std::unordered_map<std::string, Token> tokens;
    std::map<std::string, std::vector<std::string>, std::less<>> newByOwner;
    std::map<std::string, RoleSet, std::less<>> roles;
    bool open = true;
  };
  // Oldest first. The sealer adds to the back and reads them all; the committer commits the
  // front, updating the committed state before it drops the group, so a reader that looks at
  // the groups first and the committed state second never misses a change.
  mutable std::mutex stagingMutex_;
  std::deque<Staged> staged_;
  Staged& openGroup();  // with stagingMutex_ held
};

// Row keys of the projection's column families.
std::string ownerTokenKey(std::string_view owner, std::string_view sid);
std::string tokenEventKey(std::string_view sid, uint64_t seq);
std::string principalEventKey(std::string_view principal, uint64_t seq);

}  // namespace tokenledger
