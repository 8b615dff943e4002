// A capability whose calls skip promise pipelining where their results could not use it.
//
// Cap'n Proto 0.9 serves a local object through a LocalClient that readies every call for
// promise pipelining: it forks the call's promise, queues a pipeline on one branch, waits for a
// tail call on another. For a method whose results can hold no capability there is nothing to
// pipeline on, yet that costs a dozen allocations and events per call (later Cap'n Proto skips
// it under a `noPromisePipelining` hint). This client dispatches such calls itself, still in a
// later turn as a ClientHook must, and hands every other call to an ordinary LocalClient.
#pragma once

#include <capnp/capability.h>
#include <capnp/schema.h>

namespace tokenledger::rpc {

// `server` implements `schema`; the returned client owns it.
capnp::Capability::Client withoutNeedlessPipelining(kj::Own<capnp::Capability::Server> server,
                                                    capnp::InterfaceSchema schema);

}  // namespace tokenledger::rpc
