// Reads the stored log in seq order: each event's canonical bytes with its seal. Used by
// verification, rebuild and replay; it does not interpret what it reads.
#pragma once

#include <memory>
#include <string_view>

#include "ledger/store.h"

namespace tokenledger {

class LogCursor {
 public:
  // Positions at the first entry with seq >= fromSeq (events and seals iterated in lockstep).
  // A log scan reads past the block cache: it would otherwise evict the token table's blocks.
  // The constructor and next() throw Store's read errors (a block that fails its checksum is
  // kIntegrity), naming the last seq read.
  LogCursor(const Store& store, uint64_t fromSeq);

  bool valid() const { return events_->Valid(); }
  void next();
  uint64_t seq() const { return seqFromKey(events_->key().ToStringView()); }
  std::string_view eventBytes() const { return events_->value().ToStringView(); }
  // Empty when the event has no seal (a damaged log).
  std::string_view sealBytes() const;

 private:
  void alignSeal();
  std::unique_ptr<rocksdb::Iterator> events_;
  std::unique_ptr<rocksdb::Iterator> seals_;
  uint64_t readThrough_;  // the last seq read, for saying where a failed read stopped
};

// The same entries as LogCursor, read a batch ahead on a thread of its own. For whole-log passes
// that do as much per entry as the read costs (verification hashes every event): the read
// (RocksDB, decompression, copies) and the caller's work then overlap on two cores.
class LogReadAhead {
 public:
  struct Entry {
    uint64_t seq;
    std::string_view event;
    std::string_view seal;  // empty when the event has no seal
  };

  LogReadAhead(const Store& store, uint64_t fromSeq);
  ~LogReadAhead();  // stops the reader and waits for it
  LogReadAhead(const LogReadAhead&) = delete;
  LogReadAhead& operator=(const LogReadAhead&) = delete;

  // The next entry in seq order, nullptr at the end of the log. It stays valid until the next
  // call. Throws LogCursor's errors once every entry read before the failure was handed out.
  const Entry* next();

 private:
  struct Shared;
  std::unique_ptr<Shared> shared_;
};

}  // namespace tokenledger
