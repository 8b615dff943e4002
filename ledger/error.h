// The one error type of tokenledger: a code a program can branch on and a message a person can
// act on. Thrown for every rejected command and every bad input from outside; never carries a
// secret.
#pragma once

#include <exception>
#include <string>
#include <string_view>

namespace tokenledger {

enum class ErrorCode {
  kInvalidArgument,   // malformed input: bad credential string, description too long, ...
  kNotFound,          // no such token / principal
  kFailedPrecondition,// valid input, wrong state: already revoked, expired, ...
  kPermissionDenied,  // the caller's role or token scopes do not allow it
  kUnauthenticated,   // the credential does not identify a usable token
  kAlreadyExists,     // e.g. data directory already initialised
  kIntegrity,         // the stored log failed a hash, signature or sequence check
  kStorage,           // RocksDB or the filesystem failed; nothing was changed
  kUnavailable,       // shutting down
  kInternal,          // a bug: should never reach a user
};

std::string_view errorCodeName(ErrorCode code);

// Keeps its own copy of the message: errors travel between threads (the ledger's writer answers
// an RPC loop), and std::runtime_error's copies share one reference-counted message buffer whose
// counting, inside the uninstrumented libstdc++, ThreadSanitizer cannot see.
class Error : public std::exception {
 public:
  Error(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}
  ErrorCode code() const { return code_; }
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  ErrorCode code_;
  std::string message_;
};

}  // namespace tokenledger
