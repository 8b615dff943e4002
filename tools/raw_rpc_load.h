// A load generator below the client library, as redis-benchmark is for Redis: one thread, one
// epoll loop, every connection speaking the standard two-party protocol from hand-built frames
// (rpc/raw_frames.h): a bootstrap once, then verify calls on the bootstrap capability, and a
// Finish for each answer sent with that connection's next call. It costs a fraction of a call
// through the full Cap'n Proto client, so on a machine the server shares with its load, what
// it measures is the server's capacity and latency rather than the client's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tokenledger::bench {

struct RawLoad {
  uint16_t port = 0;
  unsigned connections = 1;
  unsigned pipeline = 1;   // closed loop: verify calls in flight per connection
  double pacedRate = 0;    // > 0: open loop instead, calls sent at this total rate
  double seconds = 1;
};

struct RawResult {
  uint64_t answered = 0;
  uint64_t failures = 0;                 // exceptions, aborts, connections lost
  double seconds = 0;                    // wall time of the run
  double cpuSeconds = 0;                 // of the load generator's thread
  std::vector<double> latenciesMicros;   // sorted; open loop: from when each call was due
};

// Runs on the calling thread. `credentials` are cycled from `offset`; each call requires one
// scope, "contact:read". Throws std::runtime_error if it cannot connect.
RawResult runRawLoad(const RawLoad& load, const std::vector<std::string>& credentials, size_t offset);

}  // namespace tokenledger::bench
