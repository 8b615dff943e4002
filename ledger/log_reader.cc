#include "ledger/log_reader.h"

#include "ledger/error.h"

namespace tokenledger {

LogCursor::LogCursor(const Store& store, uint64_t fromSeq)
    : events_(store.iterate(Family::kEvents)), seals_(store.iterate(Family::kSeals)) {
  events_->Seek(seqKey(fromSeq));
  seals_->Seek(seqKey(fromSeq));
  alignSeal();
}

void LogCursor::next() {
  events_->Next();
  alignSeal();
}

void LogCursor::alignSeal() {
  if (!events_->Valid()) {
    if (!events_->status().ok()) {
      throw Error(ErrorCode::kStorage, "reading the log failed: " + events_->status().ToString());
    }
    return;
  }
  // Seals normally advance with the events; after damage they may skip ahead or lag.
  while (seals_->Valid() && seals_->key().compare(events_->key()) < 0) seals_->Next();
}

std::string_view LogCursor::sealBytes() const {
  if (!seals_->Valid() || seals_->key() != events_->key()) return {};
  return seals_->value().ToStringView();
}

}  // namespace tokenledger
