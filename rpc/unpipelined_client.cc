#include "rpc/unpipelined_client.h"

#include <capnp/stream.capnp.h>
#include <kj/debug.h>

#include <set>
#include <vector>

namespace tokenledger::rpc {
namespace {

// True if a value of `type` may carry a capability (an interface, or an AnyPointer that could
// be one), looking through structs and lists.
bool mayHoldCapability(capnp::Type type, std::set<uint64_t>& seen) {
  if (type.isInterface() || type.isAnyPointer()) return true;
  if (type.isList()) return mayHoldCapability(type.asList().getElementType(), seen);
  if (!type.isStruct()) return false;
  auto structType = type.asStruct();
  if (!seen.insert(structType.getProto().getId()).second) return false;  // checked further up
  for (auto field : structType.getFields()) {
    if (mayHoldCapability(field.getType(), seen)) return true;
  }
  return false;
}

class UnpipelinedClient final : public capnp::ClientHook, public kj::Refcounted {
 public:
  UnpipelinedClient(kj::Own<capnp::Capability::Server> server, capnp::InterfaceSchema schema)
      : server_(*server),
        local_(capnp::ClientHook::from(capnp::Capability::Client(kj::mv(server)))),
        interfaceId_(schema.getProto().getId()),
        noPipeline_(capnp::newBrokenPipeline(
            KJ_EXCEPTION(FAILED, "these results hold no capability to make a pipelined call on"))) {
    for (auto method : schema.getMethods()) {
      // A streaming method's calls must queue behind each other, as only LocalClient arranges.
      const bool streaming = method.getResultType().getProto().getId() == capnp::typeId<capnp::StreamResult>();
      std::set<uint64_t> seen;
      direct_.push_back(!streaming && !mayHoldCapability(method.getResultType(), seen));
    }
  }

  VoidPromiseAndPipeline call(uint64_t interfaceId, uint16_t methodId,
                              kj::Own<capnp::CallContextHook>&& context) override {
    if (interfaceId != interfaceId_ || methodId >= direct_.size() || !direct_[methodId]) {
      return local_->call(interfaceId, methodId, kj::mv(context));
    }
    // Like LocalClient, begin in a later turn: the callee has no effect before its caller holds
    // the promise, and calls keep their order with those the LocalClient defers the same way.
    capnp::CallContextHook& hook = *context;
    auto promise = kj::evalLater([this, interfaceId, methodId, &hook] {
                     return server_.dispatchCall(interfaceId, methodId,
                                                 capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer>(hook))
                         .promise;
                   }).attach(kj::addRef(*this), kj::mv(context));
    return {kj::mv(promise), noPipeline_->addRef()};
  }

  capnp::Request<capnp::AnyPointer, capnp::AnyPointer> newCall(uint64_t interfaceId, uint16_t methodId,
                                                               kj::Maybe<capnp::MessageSize> sizeHint) override {
    return local_->newCall(interfaceId, methodId, sizeHint);
  }
  kj::Maybe<capnp::ClientHook&> getResolved() override { return nullptr; }
  kj::Maybe<kj::Promise<kj::Own<capnp::ClientHook>>> whenMoreResolved() override { return nullptr; }
  kj::Own<capnp::ClientHook> addRef() override { return kj::addRef(*this); }
  const void* getBrand() override { return &kBrand; }
  kj::Maybe<int> getFd() override { return nullptr; }

 private:
  static constexpr char kBrand = 0;  // its address tells this kind of client apart
  capnp::Capability::Server& server_;  // owned by local_
  kj::Own<capnp::ClientHook> local_;
  const uint64_t interfaceId_;
  std::vector<bool> direct_;  // by method ordinal
  kj::Own<capnp::PipelineHook> noPipeline_;
};

}  // namespace

capnp::Capability::Client withoutNeedlessPipelining(kj::Own<capnp::Capability::Server> server,
                                                    capnp::InterfaceSchema schema) {
  return capnp::Capability::Client(kj::refcounted<UnpipelinedClient>(kj::mv(server), schema));
}

}  // namespace tokenledger::rpc
