#include "ledger/credential.h"

#include <boost/crc.hpp>
#include <cstdio>

#include "ledger/crypto.h"

namespace tokenledger {
namespace {

std::string crcHex(std::string_view body) {
  boost::crc_32_type crc;
  crc.process_bytes(body.data(), body.size());
  char out[9];
  std::snprintf(out, sizeof(out), "%08x", static_cast<unsigned>(crc.checksum()));
  return std::string(out, 8);
}

bool isLowerHex(std::string_view text) {
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
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
  if (!isLowerHex(rest)) return {};
  std::string_view body = text.substr(0, kCredentialLength - 8);
  if (crcHex(body) != text.substr(kCredentialLength - 8)) return {};
  return parseCredentialPair(rest.substr(0, 2 * kSidBytes),
                             rest.substr(2 * kSidBytes, 2 * kSecretBytes));
}

std::optional<Credential> parseCredentialPair(std::string_view sidHex,
                                              std::string_view secretHex) {
  Credential c;
  if (!isSidText(sidHex) || !isLowerHex(secretHex) || !fromHex(sidHex, c.sid) ||
      !fromHex(secretHex, c.secret)) {
    return {};
  }
  return c;
}

bool isSidText(std::string_view text) { return text.size() == 2 * kSidBytes && isLowerHex(text); }

std::optional<Sid> parseSid(std::string_view text) {
  Sid sid;
  if (!isSidText(text) || !fromHex(text, sid)) return {};
  return sid;
}

}  // namespace tokenledger
