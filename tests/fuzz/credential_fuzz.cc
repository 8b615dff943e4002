// libFuzzer target: the credential parsers, which see every string a caller sends to verify
// and login. Checks more than "does not crash": whatever parses must re-encode to exactly the
// input (one spelling per credential), and the parsers must agree with each other.
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <string>
#include <string_view>

#include "ledger/credential.h"
#include "ledger/crypto.h"

using namespace tokenledger;

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "credential_fuzz: property failed: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  // The one-string form.
  if (auto c = parseCredential(text)) {
    check(c->encode() == text, "a parsed credential re-encodes to the input");
    check(text.size() == kCredentialLength, "only full-length strings parse");
    check(parseSid(c->sidHex()).has_value(), "its SID parses");
    auto pair = parseCredentialPair(c->sidHex(), toHex(c->secret));
    check(pair && pair->sid == c->sid && pair->secret == c->secret, "the pair form agrees");
  }

  // A SID.
  const bool isSid = isSidText(text);
  auto sid = parseSid(text);
  check(isSid == sid.has_value(), "isSidText and parseSid agree");
  if (sid) check(toHex(*sid) == text, "a parsed SID is its lowercase hex");

  // The two-value form, split at every place a caller could plausibly split it: at a separator
  // the fuzzer chose (first ':'), and at the SID length.
  auto tryPair = [](std::string_view s, std::string_view secret) {
    if (auto c = parseCredentialPair(s, secret)) {
      check(c->sidHex() == s && toHex(c->secret) == secret, "a parsed pair is its lowercase hex");
      check(parseCredential(c->encode()).has_value(), "a parsed pair encodes to a valid credential");
    }
  };
  if (auto colon = text.find(':'); colon != std::string_view::npos) {
    tryPair(text.substr(0, colon), text.substr(colon + 1));
  }
  if (text.size() >= 2 * kSidBytes) tryPair(text.substr(0, 2 * kSidBytes), text.substr(2 * kSidBytes));
  return 0;
}
