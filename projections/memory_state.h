// The whole projection in memory: what the replay tool builds from a log (as of any seq or time)
// and what a rebuild is compared against. Sorted maps, so listings and diffs are deterministic.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "ledger/state.h"
#include "projections/apply.h"

namespace tokenledger {

class MemoryState : public ProjectionState, public LedgerState {
 public:
  // ProjectionState and LedgerState
  std::optional<Token> token(std::string_view sid) const override;
  RoleSet rolesOf(std::string_view principal) const override;
  void putToken(const Token& token, bool created) override;
  void putRoles(const std::string& principal, RoleSet roles) override;
  void noteTokenEvent(const std::string& sid, uint64_t seq) override;
  void notePrincipalEvent(const std::string& principal, uint64_t seq) override;
  std::vector<Token> tokensOwnedBy(std::string_view owner) const override;
  std::vector<std::string> principalsWith(Role role) const override;

  const std::map<std::string, Token, std::less<>>& tokens() const { return tokens_; }
  const std::map<std::string, RoleSet, std::less<>>& roles() const { return roles_; }
  // Seqs of the events that concern `sid`, in order.
  std::vector<uint64_t> eventsOf(std::string_view sid) const;
  // Seqs of the role events of `principal`, in order.
  std::vector<uint64_t> principalEventsOf(std::string_view principal) const;
  const std::map<std::string, std::vector<uint64_t>, std::less<>>& principalEvents() const {
    return principalEvents_;
  }
  uint64_t lastSeq() const { return lastSeq_; }
  void setLastSeq(uint64_t seq) { lastSeq_ = seq; }

 private:
  std::map<std::string, Token, std::less<>> tokens_;
  std::map<std::string, RoleSet, std::less<>> roles_;
  std::map<std::string, std::set<std::string>, std::less<>> owners_;
  std::map<std::string, std::vector<uint64_t>, std::less<>> tokenEvents_;
  std::map<std::string, std::vector<uint64_t>, std::less<>> principalEvents_;
  uint64_t lastSeq_ = 0;
};

}  // namespace tokenledger
