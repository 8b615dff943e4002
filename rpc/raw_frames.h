// Hand-built Cap'n Proto RPC messages, framed as they travel on the wire: for what talks to the
// server below the client library (raw bytes on a socket): the hostile-input tests, the fuzz
// seeds and ledger-bench's raw load generator.
#pragma once

#include <capnp/message.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>

#include <cstdint>
#include <functional>
#include <string>

namespace tokenledger::rpc {

// Small messages: without a size Cap'n Proto zeroes an 8 KiB first segment for each.
constexpr unsigned kFirstSegmentWords = 128;

inline std::string frame(capnp::MessageBuilder& message) {
  auto words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

inline std::string bootstrapMessage(uint32_t question) {
  capnp::MallocMessageBuilder m(kFirstSegmentWords);
  m.initRoot<capnp::rpc::Message>().initBootstrap().setQuestionId(question);
  return frame(m);
}

inline std::string finishMessage(uint32_t question) {
  capnp::MallocMessageBuilder m(kFirstSegmentWords);
  m.initRoot<capnp::rpc::Message>().initFinish().setQuestionId(question);
  return frame(m);
}

// A call of method `method` of `Interface` on the answer to question `target` (the bootstrap
// capability when that is question 0), or on pointer field 0 of that answer when `viaField0`
// (the session a login returns).
template <typename Interface, typename Params>
std::string callMessage(uint32_t question, uint32_t target, bool viaField0, uint16_t method,
                        const std::function<void(typename Params::Builder)>& fill) {
  capnp::MallocMessageBuilder m(kFirstSegmentWords);
  auto call = m.initRoot<capnp::rpc::Message>().initCall();
  call.setQuestionId(question);
  auto promised = call.initTarget().initPromisedAnswer();
  promised.setQuestionId(target);
  if (viaField0) promised.initTransform(1)[0].setGetPointerField(0);
  call.setInterfaceId(capnp::typeId<Interface>());
  call.setMethodId(method);
  fill(call.initParams().getContent().initAs<Params>());
  return frame(m);
}

}  // namespace tokenledger::rpc
