// The log in forms other tools read: JSON lines for SIEM tools (Cap'n Proto's JSON codec, hashes
// and signatures in hex) and a stream of Cap'n Proto LogEntry messages that the stock
// `capnp decode schemas/ledger.capnp LogEntry` reads. Neither can contain a secret: the log has
// none, only SHA-256 hashes of secrets.
#pragma once

#include <functional>
#include <ostream>
#include <string_view>

#include "ledger/commands.h"
#include "ledger/store.h"

namespace tokenledger {

using Progress = std::function<void(uint64_t entriesDone)>;

// Both return the number of entries written; throw Error(kIntegrity) on an undecodable entry.
uint64_t exportJsonLines(const Store& store, std::ostream& out, const Progress& progress = {});
uint64_t exportCapnpStream(const Store& store, int fd, const Progress& progress = {});

// A checkpoint as `tokenctl checkpoint` prints it (JSON, hex hashes). Throws
// Error(kInvalidArgument) naming what is wrong.
CheckpointInfo parseCheckpointJson(std::string_view json);

}  // namespace tokenledger
