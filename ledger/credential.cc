#include "ledger/credential.h"

#include <boost/crc.hpp>

#include <array>
#include <cstdint>
#include <span>
#include <cstdio>

#include "ledger/crypto.h"

namespace tokenledger {
namespace {

uint32_t crc32Of(std::string_view body) {
  boost::crc_32_type crc;
  crc.process_bytes(body.data(), body.size());
  return crc.checksum();
}

std::string crcHex(std::string_view body) {
  char out[9];
  std::snprintf(out, sizeof(out), "%08x", static_cast<unsigned>(crc32Of(body)));
  return std::string(out, 8);
}

// Lowercase hex only (what the ledger prints); -1 for any other character.
constexpr std::array<int8_t, 256> kNibble = [] {
  std::array<int8_t, 256> table{};
  for (auto& v : table) v = -1;
  for (int c = '0'; c <= '9'; ++c) table[static_cast<size_t>(c)] = static_cast<int8_t>(c - '0');
  for (int c = 'a'; c <= 'f'; ++c) table[static_cast<size_t>(c)] = static_cast<int8_t>(c - 'a' + 10);
  return table;
}();

// Exactly out.size() bytes of lowercase hex; false otherwise. The verification hot path.
bool decodeLowerHex(std::string_view hex, std::span<uint8_t> out) {
  if (hex.size() != out.size() * 2) return false;
  int bad = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = kNibble[static_cast<uint8_t>(hex[2 * i])];
    int lo = kNibble[static_cast<uint8_t>(hex[2 * i + 1])];
    bad |= hi | lo;  // negative if either is not a hex digit
    out[i] = static_cast<uint8_t>(hi << 4 | (lo & 0xf));
  }
  return bad >= 0;
}

bool isLowerHex(std::string_view text) {
  for (char c : text) {
    if (kNibble[static_cast<uint8_t>(c)] < 0) return false;
  }
  return true;
}

}  // namespace

Credential Credential::generate() {
  Credential c;
  randomBytes(c.sid);
  randomBytes(c.secret);
  return c;
}

Credential Credential::withNewSecret(const Sid& sid) {
  Credential c;
  c.sid = sid;
  randomBytes(c.secret);
  return c;
}

std::string Credential::sidHex() const { return toHex(sid); }

std::string Credential::encode() const {
  std::string body = std::string(kCredentialPrefix) + toHex(sid) + toHex(secret);
  return body + crcHex(body);
}

std::optional<Credential> parseCredential(std::string_view text) {
  if (text.size() != kCredentialLength || !text.starts_with(kCredentialPrefix)) return {};
  std::string_view rest = text.substr(kCredentialPrefix.size());
  Credential c;
  std::array<uint8_t, 4> checksum;
  if (!decodeLowerHex(rest.substr(0, 2 * kSidBytes), c.sid) ||
      !decodeLowerHex(rest.substr(2 * kSidBytes, 2 * kSecretBytes), c.secret) ||
      !decodeLowerHex(rest.substr(2 * (kSidBytes + kSecretBytes)), checksum)) {
    return {};
  }
  uint32_t stated = uint32_t{checksum[0]} << 24 | uint32_t{checksum[1]} << 16 |
                    uint32_t{checksum[2]} << 8 | checksum[3];
  if (stated != crc32Of(text.substr(0, kCredentialLength - 8))) return {};
  return c;
}

std::optional<Credential> parseCredentialPair(std::string_view sidHex,
                                              std::string_view secretHex) {
  Credential c;
  if (!decodeLowerHex(sidHex, c.sid) || !decodeLowerHex(secretHex, c.secret)) return {};
  return c;
}

bool looksLikeSecret(std::string_view text) {
  if (text.find(kCredentialPrefix) != std::string_view::npos) return true;
  size_t run = 0;
  for (char c : text) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    run = hex ? run + 1 : 0;
    if (run > 2 * kSidBytes) return true;
  }
  return false;
}

bool isSidText(std::string_view text) { return text.size() == 2 * kSidBytes && isLowerHex(text); }

std::optional<Sid> parseSid(std::string_view text) {
  Sid sid;
  if (!decodeLowerHex(text, sid)) return {};
  return sid;
}

}  // namespace tokenledger
