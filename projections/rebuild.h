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

// Replaces the stored projection with one rebuilt from the log (the ledger must not be running).
void rebuildStored(Store& store);

}  // namespace tokenledger
