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
};

}  // namespace tokenledger
