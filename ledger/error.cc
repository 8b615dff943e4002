#include "ledger/error.h"

namespace tokenledger {

std::string_view errorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid-argument";
    case ErrorCode::kNotFound: return "not-found";
    case ErrorCode::kFailedPrecondition: return "failed-precondition";
    case ErrorCode::kPermissionDenied: return "permission-denied";
    case ErrorCode::kUnauthenticated: return "unauthenticated";
    case ErrorCode::kAlreadyExists: return "already-exists";
    case ErrorCode::kIntegrity: return "integrity";
    case ErrorCode::kStorage: return "storage";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kInternal: return "internal";
  }
  return "unknown";
}

}  // namespace tokenledger
