// Ends a connection whose peer leaves too many calls unfinished.
//
// Cap'n Proto keeps an entry in a connection's answer table for every call (and bootstrap) until
// the peer sends its Finish, even after the reply went out. A client that calls and never sends
// Finish grows the server by about 115 bytes per call, for as long as the connection lives, and
// verify needs no login: one connection could exhaust the server. Cap'n Proto 0.9 has no limit
// for this, so the server counts every message it reads here (BufferedMessageStream's observer).
#pragma once

#include <capnp/message.h>

#include <cstddef>

namespace tokenledger::rpc {

class QuestionLimit {
 public:
  // `maxOpen`: calls and bootstraps the peer may have sent without their Finish.
  explicit QuestionLimit(size_t maxOpen) : maxOpen_(maxOpen) {}

  // Counts a message the peer sent; throws once it opens more questions than the limit.
  void count(capnp::MessageReader& message);

 private:
  const size_t maxOpen_;
  size_t open_ = 0;  // questions the peer opened and has not finished
};

}  // namespace tokenledger::rpc
