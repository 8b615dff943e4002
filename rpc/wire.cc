#include "rpc/wire.h"

#include "ledger/chain.h"
#include "ledger/token_codec.h"

namespace tokenledger::rpc {

kj::Exception toKjException(const Error& error) {
  auto type = error.code() == ErrorCode::kUnavailable ? kj::Exception::Type::OVERLOADED
                                                      : kj::Exception::Type::FAILED;
  return kj::Exception(type, __FILE__, __LINE__,
                       kj::str(errorCodeName(error.code()).data(), ": ", error.what()));
}

Error fromKjException(const kj::Exception& exception) {
  std::string text = exception.getDescription().cStr();
  constexpr std::string_view kRemote = "remote exception: ";
  if (text.starts_with(kRemote)) text.erase(0, kRemote.size());
  for (int c = 0; c <= static_cast<int>(ErrorCode::kInternal); ++c) {
    auto code = static_cast<ErrorCode>(c);
    std::string prefix = std::string(errorCodeName(code)) + ": ";
    if (text.starts_with(prefix)) return Error(code, text.substr(prefix.size()));
  }
  if (exception.getType() == kj::Exception::Type::DISCONNECTED) {
    return Error(ErrorCode::kUnavailable, "lost the connection to the server: " + text);
  }
  return Error(ErrorCode::kInternal, text);
}

void writeTokenInfo(wire::TokenInfo::Builder out, const Token& token, int64_t nowMicros) {
  out.setSid(token.sid);
  out.setOwner(token.owner);
  out.setDescription(token.description);
  switch (token.statusAt(nowMicros)) {
    case TokenStatus::kActive: out.setStatus(wire::TokenStatus::ACTIVE); break;
    case TokenStatus::kExpired: out.setStatus(wire::TokenStatus::EXPIRED); break;
    case TokenStatus::kRevoked: out.setStatus(wire::TokenStatus::REVOKED); break;
  }
  out.setCreatedAtMicros(token.createdAtMicros);
  writeActor(out.initCreatedBy(), token.createdBy);
  out.setExpiresAtMicros(token.expiresAtMicros);
  writeScopes(out.initScopes(), token.scopes);
  out.setRevokedAtMicros(token.revokedAtMicros);
  if (token.revoked) writeActor(out.initRevokedBy(), token.revokedBy);
  out.setRevokeReason(token.revokeReason);
  out.setLastSeq(token.lastSeq);
}

void writeLogEntry(schema::LogEntry::Builder out, std::string_view eventBytes,
                   std::string_view sealBytes) {
  try {
    CanonicalReader event(eventBytes);
    out.setEvent(event.root<schema::Event>());
    if (!sealBytes.empty()) {
      CanonicalReader seal(sealBytes);
      out.setSeal(seal.root<schema::Seal>());
    }
  } catch (const kj::Exception& e) {
    throw Error(ErrorCode::kIntegrity,
                std::string("a stored entry does not decode: ") + e.getDescription().cStr());
  }
}

}  // namespace tokenledger::rpc
