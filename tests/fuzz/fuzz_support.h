// Shared by the fuzz targets and the seed-corpus generator (make_corpus.cc).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ledger/credential.h"

namespace tokenledger::fuzz {

// rpc_fuzz: a stand-in for a credential, exactly as long as one. Before an input is sent to the server,
// every occurrence is replaced by the real credential of the ledger the fuzzer serves (created
// in LLVMFuzzerInitialize), so mutated calls get past login into every Session method.
// Same length as a real credential: message sizes and offsets do not change.
inline const std::string kAdminPlaceholder = "tlp_" + std::string(kCredentialLength - 4, 'A');  // alice, admin
inline const std::string kUserPlaceholder = "tlp_" + std::string(kCredentialLength - 4, 'U');   // bob, user
// The two-value form: the SID and the secret of bob's token.
inline const std::string kUserSidPlaceholder = std::string(2 * kSidBytes, 'S');
inline const std::string kUserSecretPlaceholder = std::string(2 * kSecretBytes, 'K');

// event_fuzz: an input is a sequence of records, each a 2-byte little-endian length followed by
// that many bytes (the last record takes what is left if the length runs past the end).
inline std::vector<std::string_view> splitRecords(const uint8_t* data, size_t size) {
  std::vector<std::string_view> out;
  const char* p = reinterpret_cast<const char*>(data);
  while (size >= 2) {
    size_t length = size_t{data[0]} | size_t{data[1]} << 8;
    p += 2;
    data += 2;
    size -= 2;
    if (length > size) length = size;
    out.emplace_back(p, length);
    p += length;
    data += length;
    size -= length;
  }
  return out;
}

inline std::string record(std::string_view bytes) {
  std::string out;
  out.push_back(static_cast<char>(bytes.size() & 0xff));
  out.push_back(static_cast<char>(bytes.size() >> 8 & 0xff));
  out.append(bytes);
  return out;
}

}  // namespace tokenledger::fuzz
