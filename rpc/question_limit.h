// A capnp::MessageStream that ends a connection whose peer leaves too many calls unfinished.
//
// Cap'n Proto keeps an entry in a connection's answer table for every call (and bootstrap) until
// the peer sends its Finish, even after the reply went out. A client that calls and never sends
// Finish grows the server by about 115 bytes per call, for as long as the connection lives, and
// verify needs no login: one connection could exhaust the server. Cap'n Proto 0.9 has no limit
// for this, so the server's messages pass through here and are counted.
#pragma once

#include <capnp/serialize-async.h>

#include <cstddef>

namespace tokenledger::rpc {

class QuestionLimitedStream final : public capnp::MessageStream {
 public:
  // `maxOpen`: calls and bootstraps the peer may have sent without their Finish.
  QuestionLimitedStream(capnp::MessageStream& inner, size_t maxOpen);

  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> tryReadMessage(
      kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options,
      kj::ArrayPtr<capnp::word> scratchSpace) override;
  kj::Promise<void> writeMessage(kj::ArrayPtr<const int> fds,
                                 kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) override;
  kj::Promise<void> writeMessages(
      kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) override;
  kj::Maybe<int> getSendBufferSize() override;
  kj::Promise<void> end() override;

 private:
  capnp::MessageStream& inner_;
  const size_t maxOpen_;
  size_t open_ = 0;  // questions the peer opened and has not finished
};

}  // namespace tokenledger::rpc
