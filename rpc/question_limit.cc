#include "rpc/question_limit.h"

#include <capnp/rpc.capnp.h>
#include <kj/debug.h>

namespace tokenledger::rpc {

QuestionLimitedStream::QuestionLimitedStream(capnp::MessageStream& inner, size_t maxOpen)
    : inner_(inner), maxOpen_(maxOpen) {}

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> QuestionLimitedStream::tryReadMessage(
    kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options,
    kj::ArrayPtr<capnp::word> scratchSpace) {
  return inner_.tryReadMessage(fdSpace, options, scratchSpace)
      .then([this](kj::Maybe<capnp::MessageReaderAndFds>&& read) {
        KJ_IF_MAYBE(message, read) {
          switch (message->reader->getRoot<capnp::rpc::Message>().which()) {
            case capnp::rpc::Message::CALL:
            case capnp::rpc::Message::BOOTSTRAP:
              if (++open_ > maxOpen_) {
                kj::throwFatalException(KJ_EXCEPTION(
                    FAILED, "too many calls without a Finish message; send Finish for every call "
                            "whose results you have taken", maxOpen_));
              }
              break;
            case capnp::rpc::Message::FINISH:
              // A Finish for a question never asked ends the connection inside Cap'n Proto.
              if (open_ > 0) --open_;
              break;
            default:
              break;
          }
        }
        return kj::mv(read);
      });
}

kj::Promise<void> QuestionLimitedStream::writeMessage(
    kj::ArrayPtr<const int> fds, kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
  return inner_.writeMessage(fds, segments);
}

kj::Promise<void> QuestionLimitedStream::writeMessages(
    kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) {
  return inner_.writeMessages(messages);
}

kj::Maybe<int> QuestionLimitedStream::getSendBufferSize() { return inner_.getSendBufferSize(); }

kj::Promise<void> QuestionLimitedStream::end() { return inner_.end(); }

}  // namespace tokenledger::rpc
