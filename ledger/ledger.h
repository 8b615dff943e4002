// The write side: one writer thread that validates commands, seals their events into the hash
// chain and commits them with group commit: every command waiting when the writer wakes goes
// into one WriteBatch (events, seals, checkpoint and projection rows) and one WAL sync. A caller
// is answered only after its batch is durable.
#pragma once

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "ledger/commands.h"
#include "ledger/error.h"
#include "ledger/scope_catalog.h"
#include "ledger/state.h"
#include "ledger/store.h"

namespace tokenledger {

struct LedgerOptions {
  std::filesystem::path keyDir;                   // signing keys, <keyId>.pem, mode 0600
  const ScopeCatalog* catalog = &ScopeCatalog::builtin();
  int64_t maxCustomExpiryMicros = 365LL * 86400 * 1'000'000;  // custom expiry up to a year
  uint64_t checkpointEvery = 1000;                // a signed checkpoint every N events; 0 = off
  size_t maxGroup = 1024;                         // commands per WriteBatch at most
  std::function<int64_t()> clock = nowMicros;     // injectable for expiry tests
};

struct Outcome {
  CommandResult result;
  std::optional<Error> error;
};

class Ledger {
 public:
  // Reads the head of the log and loads its current signing key. Throws Error.
  Ledger(Store& store, LedgerProjection& projection, LedgerOptions options);
  ~Ledger();  // stop()
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  using Callback = std::function<void(Outcome)>;
  // Queues a command; `done` runs on the writer thread once the outcome is durable (or rejected).
  void submit(Request request, Callback done);
  // submit() and wait; throws the command's Error.
  CommandResult execute(Request request);

  // Called on the writer thread after each durable group, with the seqs it appended.
  using CommitListener = std::function<void(uint64_t firstSeq, uint64_t lastSeq)>;
  void setCommitListener(CommitListener listener);

  uint64_t headSeq() const;
  const LedgerOptions& options() const { return options_; }

  // Finishes every queued command, then refuses new ones with kUnavailable. Idempotent.
  void stop();

 private:
  struct Queued {
    Request request;
    Callback done;
  };
  struct Head;
  class Group;

  void run();
  void commitGroup(std::vector<Queued>& group);

  Store& store_;
  LedgerProjection& projection_;
  LedgerOptions options_;
  std::unique_ptr<Head> head_;  // touched only by the writer thread (and the constructor)
  CommitListener listener_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Queued> queue_;
  bool stopping_ = false;
  uint64_t committedSeq_ = 0;  // guarded by mutex_, for headSeq()
  std::thread writer_;
};

}  // namespace tokenledger
