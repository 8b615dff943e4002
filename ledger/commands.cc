#include "ledger/commands.h"

#include "ledger/error.h"

namespace tokenledger {
namespace {

// Counts code points of well-formed UTF-8 with no control characters; -1 if not that.
long printableLength(std::string_view text) {
  long count = 0;
  for (size_t i = 0; i < text.size();) {
    auto c = static_cast<unsigned char>(text[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + len > text.size()) return -1;
    for (size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) & 0xc0) != 0x80) return -1;
    }
    if (len == 1 && (c < 0x20 || c == 0x7f)) return -1;
    if (len == 2 && c == 0xc2 && static_cast<unsigned char>(text[i + 1]) < 0xa0) return -1;  // C1
    i += len;
    ++count;
  }
  return count;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

}  // namespace

std::string validDescription(std::string_view text) {
  std::string_view trimmed = trim(text);
  long length = printableLength(trimmed);
  if (length < 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "description must be printable text (no control characters, valid UTF-8)");
  }
  if (length == 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "description is required: say what the token is for, e.g. the vendor's name");
  }
  if (length > 200) {
    throw Error(ErrorCode::kInvalidArgument,
                "description is " + std::to_string(length) + " characters; at most 200 are allowed");
  }
  return std::string(trimmed);
}

void requireValidPrincipal(std::string_view principal) {
  bool ok = !principal.empty() && principal.size() <= 64 && principal.front() != ' ' &&
            principal.back() != ' ';
  for (char c : principal) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == ' ' || c == '.' || c == '_' || c == '@' || c == '-');
  }
  if (!ok) {
    throw Error(ErrorCode::kInvalidArgument,
                "principal names are 1-64 characters of letters, digits, space, . _ @ - "
                "(no space at either end)");
  }
}

void requireValidReason(std::string_view reason) {
  long length = printableLength(reason);
  if (length < 0 || length > 500) {
    throw Error(ErrorCode::kInvalidArgument,
                "reason must be printable text of at most 500 characters");
  }
}

}  // namespace tokenledger
