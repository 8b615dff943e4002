#include "ledger/log_export.h"

#include <capnp/compat/json.h>
#include <capnp/serialize.h>

#include "ledger/chain.h"
#include "ledger/error.h"
#include "ledger/log_reader.h"
#include "schemas/ledger.capnp.h"

namespace tokenledger {
namespace {

// Calls `write` with each entry as a LogEntry built from the stored canonical bytes.
uint64_t forEachEntry(const Store& store, const Progress& progress,
                      const std::function<void(schema::LogEntry::Reader)>& write) {
  uint64_t n = 0;
  for (LogCursor cursor(store, 1); cursor.valid(); cursor.next()) {
    try {
      capnp::MallocMessageBuilder message;
      auto entry = message.initRoot<schema::LogEntry>();
      CanonicalReader event(cursor.eventBytes());
      entry.setEvent(event.root<schema::Event>());
      if (!cursor.sealBytes().empty()) {
        CanonicalReader seal(cursor.sealBytes());
        entry.setSeal(seal.root<schema::Seal>());
      }
      write(entry.asReader());
    } catch (const kj::Exception& e) {
      throw Error(ErrorCode::kIntegrity, "entry " + std::to_string(cursor.seq()) +
                                             " does not decode: " + e.getDescription().cStr());
    }
    if (progress && ++n % 65536 == 0) progress(n);
  }
  if (progress) progress(n);
  return n;
}

}  // namespace

uint64_t exportJsonLines(const Store& store, std::ostream& out, const Progress& progress) {
  capnp::JsonCodec codec;
  codec.handleByAnnotation<schema::LogEntry>();
  uint64_t n = forEachEntry(store, progress, [&](schema::LogEntry::Reader entry) {
    out << codec.encode(entry).cStr() << '\n';
  });
  out.flush();
  if (!out) throw Error(ErrorCode::kStorage, "writing the export failed");
  return n;
}

uint64_t exportCapnpStream(const Store& store, int fd, const Progress& progress) {
  return forEachEntry(store, progress, [&](schema::LogEntry::Reader entry) {
    capnp::MallocMessageBuilder message;
    message.setRoot(entry);
    try {
      capnp::writeMessageToFd(fd, message);
    } catch (const kj::Exception& e) {
      throw Error(ErrorCode::kStorage,
                  std::string("writing the export failed: ") + e.getDescription().cStr());
    }
  });
}

CheckpointInfo parseCheckpointJson(std::string_view json) {
  capnp::MallocMessageBuilder message;
  auto cp = message.initRoot<schema::Checkpoint>();
  try {
    capnp::JsonCodec codec;
    codec.handleByAnnotation<schema::Checkpoint>();
    codec.decode(kj::ArrayPtr<const char>(json.data(), json.size()), cp);
  } catch (const kj::Exception& e) {
    throw Error(ErrorCode::kInvalidArgument,
                std::string("not a checkpoint: ") + e.getDescription().cStr());
  }
  CheckpointInfo info;
  info.seq = cp.getSeq();
  info.timeMicros = cp.getTimeMicros();
  info.keyId = cp.asReader().getKeyId();
  auto hash = cp.asReader().getEntryHash();
  auto signature = cp.asReader().getSignature();
  if (info.seq == 0 || hash.size() != info.entryHash.size() ||
      signature.size() != info.signature.size()) {
    throw Error(ErrorCode::kInvalidArgument,
                "not a checkpoint: it needs seq, a 32-byte entryHash and a 64-byte signature");
  }
  std::copy(hash.begin(), hash.end(), info.entryHash.begin());
  std::copy(signature.begin(), signature.end(), info.signature.begin());
  return info;
}

}  // namespace tokenledger
