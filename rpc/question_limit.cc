#include "rpc/question_limit.h"

#include <capnp/rpc.capnp.h>
#include <kj/debug.h>

namespace tokenledger::rpc {

void QuestionLimit::count(capnp::MessageReader& message) {
  switch (message.getRoot<capnp::rpc::Message>().which()) {
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

}  // namespace tokenledger::rpc
