#include "ledger/commands.h"

#include <cstdint>
#include <iterator>

#include "ledger/credential.h"
#include "ledger/error.h"

namespace tokenledger {
namespace {

// Counts code points of well-formed UTF-8 (no overlong forms, surrogates or values past
// U+10FFFF) with no control characters; -1 if the text is not that.
long printableLength(std::string_view text) {
  long count = 0;
  for (size_t i = 0; i < text.size();) {
    auto c = static_cast<unsigned char>(text[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + len > text.size()) return -1;
    uint32_t cp = len == 1 ? c : c & (0x7f >> len);
    for (size_t k = 1; k < len; ++k) {
      auto b = static_cast<unsigned char>(text[i + k]);
      if ((b & 0xc0) != 0x80) return -1;
      cp = cp << 6 | (b & 0x3f);
    }
    static constexpr uint32_t kSmallestOfLength[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kSmallestOfLength[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return -1;
    if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) return -1;  // C0, DEL and C1 controls
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

const char* commandName(const Command& command) {
  static constexpr const char* kNames[] = {
      "bootstrap", "create-token", "change-scopes", "set-description", "revoke", "revoke-all",
      "rotate", "grant-role", "revoke-role", "rotate-signing-key", "checkpoint"};
  static_assert(std::size(kNames) == std::variant_size_v<Command>);
  return kNames[command.index()];
}

void requireValidPrincipal(std::string_view principal) {
  bool ok = !principal.empty() && principal.size() <= 64 && principal.front() != ' ' &&
            principal.back() != ' ';
  for (char c : principal) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == ' ' || c == '.' || c == '_' || c == '@' || c == '-');
  }
  if (ok && looksLikeSecret(principal)) {
    throw Error(ErrorCode::kInvalidArgument,
                "that looks like a token secret, not a principal name; it was not stored");
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
