// The one error type of tokenledger: a code a program can branch on and a message a person can
// act on. Thrown for every rejected command and every bad input from outside; never carries a
// secret.
#pragma once

#include <stdexcept>
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

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace tokenledger
