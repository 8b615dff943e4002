#include "ledger/log_reader.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "ledger/error.h"

namespace tokenledger {
namespace {

rocksdb::ReadOptions scanOptions() {
  rocksdb::ReadOptions options;
  options.fill_cache = false;
  return options;
}

}  // namespace

LogCursor::LogCursor(const Store& store, uint64_t fromSeq)
    : events_(store.iterate(Family::kEvents, scanOptions())),
      seals_(store.iterate(Family::kSeals, scanOptions())),
      readThrough_(fromSeq == 0 ? 0 : fromSeq - 1) {
  events_->Seek(seqKey(fromSeq));
  seals_->Seek(seqKey(fromSeq));
  alignSeal();
}

void LogCursor::next() {
  readThrough_ = seq();
  events_->Next();
  alignSeal();
}

void LogCursor::alignSeal() {
  try {
    if (!events_->Valid()) return;
    // Seals normally advance with the events; after damage they may skip ahead or lag.
    while (seals_->Valid() && seals_->key().compare(events_->key()) < 0) seals_->Next();
  } catch (const Error& e) {  // a read failed (Store's iterators throw): say where in the log
    throw Error(e.code(), "reading the log after seq " + std::to_string(readThrough_) + ": " + e.what());
  }
}

std::string_view LogCursor::sealBytes() const {
  if (!seals_->Valid() || seals_->key() != events_->key()) return {};
  return seals_->value().ToStringView();
}

// ------------------------------------------------------------------------------- LogReadAhead

namespace {

// Big enough that handing a batch over costs nothing next to reading it, small enough that the
// caller starts working at once and three batches stay in the CPU's caches.
constexpr size_t kBatchEntries = 1024;
constexpr size_t kBatchBytes = 512 * 1024;
// One with the caller, one being filled, one ready: the reader never waits for a slow handover.
constexpr size_t kBatches = 3;

struct Batch {
  std::string bytes;  // every entry's event, then its seal
  std::vector<size_t> ends;  // where in `bytes` each event and each seal ends
  std::vector<LogReadAhead::Entry> entries;
  bool last = false;  // nothing follows: the end of the log, or `error`
  std::exception_ptr error;  // thrown once the entries read before it are handed out

  void fill(LogCursor& cursor) {
    bytes.clear();
    ends.clear();
    entries.clear();
    try {
      for (; cursor.valid() && entries.size() < kBatchEntries && bytes.size() < kBatchBytes;
           cursor.next()) {
        bytes += cursor.eventBytes();
        ends.push_back(bytes.size());
        bytes += cursor.sealBytes();
        ends.push_back(bytes.size());
        entries.push_back({cursor.seq(), {}, {}});
      }
    } catch (...) {
      // The entries read before the failure are still handed out: a verification checks them
      // and says where the readable log ends.
      error = std::current_exception();
    }
    // Views only now: `bytes` no longer moves.
    size_t at = 0;
    for (size_t i = 0; i < entries.size(); ++i) {
      entries[i].event = std::string_view(bytes).substr(at, ends[2 * i] - at);
      at = ends[2 * i];
      entries[i].seal = std::string_view(bytes).substr(at, ends[2 * i + 1] - at);
      at = ends[2 * i + 1];
    }
    last = error || !cursor.valid();
  }
};

}  // namespace

struct LogReadAhead::Shared {
  std::mutex mutex;
  std::condition_variable_any changed;
  std::vector<std::unique_ptr<Batch>> spare;  // for the reader to fill
  std::deque<std::unique_ptr<Batch>> ready;   // filled, in seq order
  // The caller's side, touched by next() only:
  std::unique_ptr<Batch> current;  // the batch next() is handing out
  size_t position = 0;             // its next entry
  bool finished = false;           // the caller has had the last batch
  std::jthread reader;  // last: stopped and joined before the batches go away

  void read(const std::stop_token& stop, const Store& store, uint64_t fromSeq) {
    std::unique_ptr<Batch> batch;
    try {
      LogCursor cursor(store, fromSeq);
      for (bool last = false; !last;) {
        {
          std::unique_lock lock(mutex);
          if (!changed.wait(lock, stop, [&] { return !spare.empty(); })) return;
          batch = std::move(spare.back());
          spare.pop_back();
        }
        batch->fill(cursor);
        last = batch->last;
        publish(std::move(batch));
      }
    } catch (...) {  // positioning the cursor failed: fill() keeps its own errors
      batch = std::make_unique<Batch>();
      batch->last = true;
      batch->error = std::current_exception();
      publish(std::move(batch));
    }
  }

  void publish(std::unique_ptr<Batch> batch) {
    std::lock_guard lock(mutex);
    ready.push_back(std::move(batch));
    changed.notify_all();
  }
};

LogReadAhead::LogReadAhead(const Store& store, uint64_t fromSeq) : shared_(std::make_unique<Shared>()) {
  for (size_t i = 0; i < kBatches; ++i) shared_->spare.push_back(std::make_unique<Batch>());
  shared_->reader = std::jthread([shared = shared_.get(), &store, fromSeq](std::stop_token stop) {
    shared->read(stop, store, fromSeq);
  });
}

LogReadAhead::~LogReadAhead() = default;

const LogReadAhead::Entry* LogReadAhead::next() {
  Shared& s = *shared_;
  for (;;) {
    if (s.current) {
      if (s.position < s.current->entries.size()) return &s.current->entries[s.position++];
      if (s.current->error) std::rethrow_exception(s.current->error);
      if (s.finished) return nullptr;
    }
    std::unique_lock lock(s.mutex);
    if (s.current) {
      s.spare.push_back(std::move(s.current));
      s.changed.notify_all();
    }
    s.changed.wait(lock, [&] { return !s.ready.empty(); });
    s.current = std::move(s.ready.front());
    s.ready.pop_front();
    s.position = 0;
    s.finished = s.current->last;
  }
}

}  // namespace tokenledger
