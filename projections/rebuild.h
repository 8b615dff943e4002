// Rebuilding the projection from the log: into memory (replay, as of a seq or a time), as a
// comparison with what is stored (diff), or over the stored rows (rebuild).
#pragma once

#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "ledger/store.h"
#include "projections/memory_state.h"

namespace tokenledger {

struct ReplayBound {
  uint64_t toSeq = std::numeric_limits<uint64_t>::max();           // last seq applied
  int64_t toTimeMicros = std::numeric_limits<int64_t>::max();      // last event time applied
};

// Applies events 1.. in order while they are within `bound`. Throws Error(kIntegrity) on an event
// that does not decode or cannot follow the state.
MemoryState replayLog(const Store& store, ReplayBound bound = {},
                      const std::function<void(uint64_t)>& progress = {});

// Every difference between the stored projection and `expected`, one line each for a person;
// empty when they agree.
std::vector<std::string> diffStored(const Store& store, const MemoryState& expected);

struct RebuildReport {
  uint64_t entries = 0;     // verified log entries it was rebuilt from
  size_t tokens = 0;        // token rows written
  size_t principals = 0;    // principals holding roles
};

// Replaces the stored projection with one rebuilt from the log, once the whole log verifies
// (chain and every signature; `progress` as in VerifyOptions): otherwise throws
// Error(kIntegrity) naming the first bad seq, and nothing changes. The projection's families
// are dropped and made again, so damaged table files go with them. The ledger must not be
// running. A rebuild that dies half-way leaves the data directory refusing to serve (see
// rebuildUnfinished) until a rebuild runs to the end.
RebuildReport rebuildStored(Store& store, const std::function<void(uint64_t)>& progress = {});
bool rebuildUnfinished(const Store& store);

}  // namespace tokenledger
