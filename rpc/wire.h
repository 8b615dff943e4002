// Conversions between the ledger's values and the RPC schema (schemas/rpc.capnp), and between
// our Error and Cap'n Proto exceptions. Shared by the server and the client.
#pragma once

#include <kj/exception.h>

#include <string>
#include <string_view>

#include "ledger/error.h"
#include "ledger/token.h"
#include "schemas/rpc.capnp.h"

namespace tokenledger::rpc {

// "permission-denied: <message>": the code first, so any client can branch on it.
kj::Exception toKjException(const Error& error);
// The reverse, for our own clients: recovers the code from a (possibly remote) exception.
Error fromKjException(const kj::Exception& exception);

void writeTokenInfo(wire::TokenInfo::Builder out, const Token& token, int64_t nowMicros);
// A stored event and its seal as one LogEntry. Throws Error(kIntegrity) if they do not decode.
void writeLogEntry(schema::LogEntry::Builder out, std::string_view eventBytes,
                   std::string_view sealBytes);

}  // namespace tokenledger::rpc
