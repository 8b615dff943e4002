// The credential handed to a vendor: one copyable string
//
//   tlp_ <sid: 32 hex> <secret: 64 hex> <crc32 of everything before it: 8 hex>
//
// The fixed prefix lets secret scanners find leaked tokens, and the checksum lets anyone reject
// a mistyped or truncated string without a database look-up (the idea of GitHub's ghp_ tokens).
// The seeds' two-value form (Account SID + Auth Token) carries the same sid and secret.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tokenledger {

inline constexpr std::string_view kCredentialPrefix = "tlp_";
inline constexpr size_t kSidBytes = 16;
inline constexpr size_t kSecretBytes = 32;
inline constexpr size_t kCredentialLength = 4 + 2 * kSidBytes + 2 * kSecretBytes + 8;

using Sid = std::array<uint8_t, kSidBytes>;
using Secret = std::array<uint8_t, kSecretBytes>;

struct Credential {
  Sid sid;
  Secret secret;

  // A new random SID and secret from OpenSSL's RNG.
  static Credential generate();
  // A fresh secret for an existing SID (rotation).
  static Credential withNewSecret(const Sid& sid);

  std::string sidHex() const;
  // The one string a vendor pastes; contains the secret: never log it.
  std::string encode() const;
};

// nullopt for anything that is not exactly a well-formed credential with a valid checksum.
std::optional<Credential> parseCredential(std::string_view text);
// The two-value form: a 32-hex SID and a 64-hex secret.
std::optional<Credential> parseCredentialPair(std::string_view sidHex, std::string_view secretHex);
// True for exactly 32 lowercase hex characters.
bool isSidText(std::string_view text);
std::optional<Sid> parseSid(std::string_view text);
// True if `text` holds something that may be a credential or a bare secret: the tlp_ prefix, or
// more than 32 hex digits in a row (a SID has 32, a secret 64). Such input is never echoed in an
// error message (which the server also logs) nor accepted as a name.
bool looksLikeSecret(std::string_view text);

}  // namespace tokenledger
