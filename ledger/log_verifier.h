// Checks a stored log end to end: gap-free seqs, every event decodes and carries its own seq,
// every entry hash links to the one before it, every signature verifies under the key the log
// itself introduced (SigningKeyRotated), and every stored checkpoint is signed and on the chain.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "ledger/commands.h"
#include "ledger/store.h"

namespace tokenledger {

struct VerifyOptions {
  bool signatures = true;  // false: chain and checkpoint signatures only (much faster)
  unsigned threads = 2;    // signature checks run on this many threads
  // Also prove the log extends this checkpoint (same hash at its seq, and not shorter).
  std::optional<CheckpointInfo> against;
  // Called now and then with the number of entries read so far.
  std::function<void(uint64_t)> progress;
};

struct VerifyReport {
  bool intact = true;
  uint64_t entries = 0;       // entries read
  uint64_t checkpoints = 0;   // stored checkpoints checked
  uint64_t firstBadSeq = 0;   // with !intact: the first seq that is wrong (or missing)
  std::string problem;        // with !intact: what is wrong there, for a person
  Digest headHash{};
};

VerifyReport verifyLog(const Store& store, const VerifyOptions& options = {});

}  // namespace tokenledger
