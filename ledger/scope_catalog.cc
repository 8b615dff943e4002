#include "ledger/scope_catalog.h"

#include <capnp/compat/json.h>
#include <capnp/message.h>

#include <set>

#include "ledger/credential.h"
#include "ledger/error.h"
#include "schemas/ledger.capnp.h"

namespace tokenledger::schema {
extern const std::string_view kDefaultScopeCatalogJson;
}

namespace tokenledger {
namespace {

bool isValidScopeId(std::string_view id) {
  // resource:action, lowercase letters and digits, e.g. "jobordercandidate:write".
  size_t colon = id.find(':');
  if (id.empty() || id.size() > 64 || colon == 0 || colon == std::string_view::npos ||
      colon + 1 == id.size()) {
    return false;
  }
  for (size_t i = 0; i < id.size(); ++i) {
    char c = id[i];
    if (i == colon) continue;
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  }
  return true;
}

}  // namespace

ScopeCatalog ScopeCatalog::fromJson(std::string_view json) {
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<schema::ScopeCatalog>();
  try {
    capnp::JsonCodec codec;
    codec.decode(kj::ArrayPtr<const char>(json.data(), json.size()), root);
  } catch (const kj::Exception& e) {
    throw Error(ErrorCode::kInvalidArgument,
                std::string("scope catalog is not valid JSON: ") + e.getDescription().cStr());
  }
  ScopeCatalog catalog;
  std::set<std::string, std::less<>> seen;
  for (auto scope : root.asReader().getScopes()) {
    ScopeInfo info{scope.getId(), scope.getDisplayName(), scope.getDescription()};
    if (!isValidScopeId(info.id)) {
      throw Error(ErrorCode::kInvalidArgument,
                  "scope catalog: \"" + info.id + "\" is not a resource:action id");
    }
    if (!seen.insert(info.id).second) {
      throw Error(ErrorCode::kInvalidArgument, "scope catalog: \"" + info.id + "\" is listed twice");
    }
    catalog.scopes_.push_back(std::move(info));
  }
  if (catalog.scopes_.empty() || catalog.scopes_.size() > kMaxScopes) {
    throw Error(ErrorCode::kInvalidArgument,
                "scope catalog must list between 1 and 64 scopes, it lists " +
                    std::to_string(catalog.scopes_.size()));
  }
  return catalog;
}

const ScopeCatalog& ScopeCatalog::builtin() {
  static const ScopeCatalog catalog = fromJson(schema::kDefaultScopeCatalogJson);
  return catalog;
}

std::optional<size_t> ScopeCatalog::indexOf(std::string_view id) const {
  for (size_t i = 0; i < scopes_.size(); ++i) {
    if (scopes_[i].id == id) return i;
  }
  return {};
}

ScopeMask ScopeCatalog::maskOf(const std::vector<std::string>& ids) const {
  ScopeMask mask;
  for (const auto& id : ids) {
    auto index = indexOf(id);
    if (!index) {
      throw Error(ErrorCode::kInvalidArgument,
                  looksLikeSecret(id) ? std::string("unknown scope (it looks like a token secret)")
                                      : "unknown scope \"" + id + "\"");
    }
    mask.bits |= uint64_t{1} << *index;
  }
  return mask;
}

std::vector<std::string> ScopeCatalog::idsOf(uint64_t bits) const {
  std::vector<std::string> ids;
  for (size_t i = 0; i < scopes_.size(); ++i) {
    if (bits & (uint64_t{1} << i)) ids.push_back(scopes_[i].id);
  }
  return ids;
}

}  // namespace tokenledger
