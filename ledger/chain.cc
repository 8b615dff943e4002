#include "ledger/chain.h"

#include <cstring>

#include "ledger/error.h"

namespace tokenledger {
namespace {

constexpr std::string_view kGenesisTag = "tokenledger/genesis/v1";
// The trailing NUL separates the tag from the data that follows, so no tag is a prefix of another.
constexpr std::string_view kEntryTag{"tokenledger/entry/v1\0", 21};
constexpr std::string_view kCheckpointTag{"tokenledger/checkpoint/v1\0", 26};

std::array<uint8_t, 8> bigEndian(uint64_t v) {
  std::array<uint8_t, 8> out;
  for (int i = 7; i >= 0; --i) {
    out[static_cast<size_t>(i)] = static_cast<uint8_t>(v & 0xff);
    v >>= 8;
  }
  return out;
}

}  // namespace

Digest genesisHash() { return sha256(asBytes(kGenesisTag)); }

Digest entryHash(const Digest& previous, Bytes eventBytes) {
  return sha256({asBytes(kEntryTag), previous, eventBytes});
}

Digest checkpointDigest(uint64_t seq, const Digest& entryHash, int64_t timeMicros) {
  auto seqBytes = bigEndian(seq);
  auto timeBytes = bigEndian(static_cast<uint64_t>(timeMicros));
  return sha256({asBytes(kCheckpointTag), seqBytes, entryHash, timeBytes});
}

namespace {
kj::Array<capnp::word> alignedCopy(std::string_view bytes) {
  if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0) {
    throw Error(ErrorCode::kIntegrity, "stored message is not a whole number of 8-byte words");
  }
  auto words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), bytes.data(), bytes.size());
  return words;
}
}  // namespace

CanonicalReader::CanonicalReader(std::string_view bytes)
    : words_(alignedCopy(bytes)), segment_(words_), reader_(kj::arrayPtr(&segment_, 1)) {}

}  // namespace tokenledger
