#include "projections/memory_state.h"

namespace tokenledger {

std::optional<Token> MemoryState::token(std::string_view sid) const {
  auto it = tokens_.find(sid);
  if (it == tokens_.end()) return {};
  return it->second;
}

RoleSet MemoryState::rolesOf(std::string_view principal) const {
  auto it = roles_.find(principal);
  return it == roles_.end() ? RoleSet{} : it->second;
}

void MemoryState::putToken(const Token& token, bool created) {
  tokens_[token.sid] = token;
  if (created) owners_[token.owner].insert(token.sid);
}

void MemoryState::putRoles(const std::string& principal, RoleSet roles) {
  if (roles.empty()) {
    roles_.erase(principal);
  } else {
    roles_[principal] = roles;
  }
}

void MemoryState::noteTokenEvent(const std::string& sid, uint64_t seq) {
  tokenEvents_[sid].push_back(seq);
}

void MemoryState::notePrincipalEvent(const std::string& principal, uint64_t seq) {
  principalEvents_[principal].push_back(seq);
}

std::vector<uint64_t> MemoryState::principalEventsOf(std::string_view principal) const {
  auto it = principalEvents_.find(principal);
  return it == principalEvents_.end() ? std::vector<uint64_t>{} : it->second;
}

std::vector<Token> MemoryState::tokensOwnedBy(std::string_view owner) const {
  std::vector<Token> out;
  auto it = owners_.find(owner);
  if (it == owners_.end()) return out;
  for (const auto& sid : it->second) out.push_back(tokens_.at(sid));
  return out;
}

std::vector<std::string> MemoryState::principalsWith(Role role) const {
  std::vector<std::string> out;
  for (const auto& [principal, roles] : roles_) {
    if (roles.has(role)) out.push_back(principal);
  }
  return out;
}

std::vector<uint64_t> MemoryState::eventsOf(std::string_view sid) const {
  auto it = tokenEvents_.find(sid);
  return it == tokenEvents_.end() ? std::vector<uint64_t>{} : it->second;
}

}  // namespace tokenledger
