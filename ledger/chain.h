// The hash chain and what is signed. Small and fixed on purpose: auditors re-implement this.
//
//   genesis       = SHA-256("tokenledger/genesis/v1")
//   entryHash(n)  = SHA-256("tokenledger/entry/v1" 0x00 || entryHash(n-1) || eventBytes(n))
//   checkpoint    = SHA-256("tokenledger/checkpoint/v1" 0x00 || seq:u64be || entryHash || time:i64be)
//
// Entries are signed over entryHash itself; checkpoints over the checkpoint digest.
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <string>

#include "ledger/crypto.h"

namespace tokenledger {

Digest genesisHash();
Digest entryHash(const Digest& previous, Bytes eventBytes);
Digest checkpointDigest(uint64_t seq, const Digest& entryHash, int64_t timeMicros);

// The canonical encoding of a Cap'n Proto struct: one segment, no far pointers, no padding
// garbage, so equal values have equal bytes and hashes over them are well-defined.
template <typename Reader>
std::string canonicalBytes(Reader reader) {
  kj::Array<capnp::word> words = capnp::canonicalize(reader);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

// Reads canonical bytes (one segment, no segment table: what `capnp decode --flat` reads) back.
// Keeps its own aligned copy. Throws Error(kIntegrity) if the bytes are not whole words; a
// malformed message throws kj::Exception when read, which callers turn into kIntegrity.
class CanonicalReader {
 public:
  explicit CanonicalReader(std::string_view bytes);
  template <typename T>
  typename T::Reader root() {
    return reader_.getRoot<T>();
  }

 private:
  kj::Array<capnp::word> words_;
  kj::ArrayPtr<const capnp::word> segment_;
  capnp::SegmentArrayMessageReader reader_;
};

}  // namespace tokenledger
