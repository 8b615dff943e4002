// The write side, with group commit: every command waiting when the writer wakes goes into one
// WriteBatch (events, seals, checkpoint and projection rows) and one WAL sync. A caller is
// answered only after its batch is durable.
//
// Two threads form a pipeline of depth three. The sealer validates a group against the state
// including the groups not yet written, chains and signs its events and builds its batch; the
// committer writes and syncs that batch, makes it the committed state and answers the callers.
// While one group syncs, the next waits sealed in the committer's slot and a third is
// validated and signed, so the sealer (the busier stage) need not wait for a write to end.
// If a write fails, the groups sealed on top of it are refused with the same error (they were
// validated against state that never became durable) and sealing restarts from the durable head.
#pragma once

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "ledger/commands.h"
#include "ledger/crypto.h"
#include "ledger/error.h"
#include "ledger/scope_catalog.h"
#include "ledger/state.h"
#include "ledger/store.h"

namespace tokenledger {

class GroupSigner;

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
  // Queues a command; `done` runs on a ledger thread once the outcome is durable (or rejected).
  void submit(Request request, Callback done);
  // submit() and wait; throws the command's Error.
  CommandResult execute(Request request);

  // Called on the committer thread after each durable group, with the seqs it appended.
  using CommitListener = std::function<void(uint64_t firstSeq, uint64_t lastSeq)>;
  void setCommitListener(CommitListener listener);

  uint64_t headSeq() const;

  // Where the writer's time went, cumulative since start: for ledger-bench and diagnosis.
  struct Stats {
    uint64_t groups = 0;        // written (or refused) as a whole
    uint64_t commands = 0;
    double sealSeconds = 0;     // validating, chaining, signing, building batches
    double handoffSeconds = 0;  // sealed groups waiting for the committer's slot to be free
    double writeSeconds = 0;    // RocksDB writes with their WAL sync
    double answerSeconds = 0;   // committing staged state and answering callers
  };
  Stats stats() const;
  const LedgerOptions& options() const { return options_; }

  // Finishes every queued command, then refuses new ones with kUnavailable. Idempotent.
  void stop();

 private:
  struct Queued {
    Request request;
    Callback done;
  };
  struct ChainHead;
  struct Sealed;

  void runSealer();
  void runCommitter();
  // Validates, chains and signs `group` on top of the working head; never throws: a failure is
  // recorded in the result (per command, or for the whole group).
  std::unique_ptr<Sealed> seal(std::vector<Queued>& group);
  // Forgets everything sealed but not written; with mutex_ held (released on return) and the
  // committer idle.
  void restartFromDurable(std::unique_lock<std::mutex>& lock);
  // Writes a sealed group and answers its callers (committer thread).
  void commit(Sealed& sealed);
  // Answers every caller in `group` with `error`.
  static void fail(std::vector<Queued>& group, const Error& error);
  // The refusal of a group sealed on top of one whose write failed with `cause`.
  static Error notWritten(const Error& cause);

  Store& store_;
  LedgerProjection& projection_;
  LedgerOptions options_;
  CommitListener listener_;  // guarded by mutex_

  // Sealer thread only: the head the next group is chained onto (durable or not yet), and every
  // signing key the log has introduced so far (a list keeps addresses stable).
  std::unique_ptr<ChainHead> working_;
  std::list<SigningKey> keys_;
  std::unique_ptr<GroupSigner> signer_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;       // the sealer: commands queued, or stopping
  std::condition_variable handoff_;    // either thread: the committer's slot changed
  std::deque<Queued> queue_;
  bool stopping_ = false;
  bool sealerDone_ = false;
  std::unique_ptr<Sealed> toCommit_;   // the sealed group waiting for the committer
  bool committing_ = false;            // the committer is writing (or refusing) a group
  std::optional<Error> broken_;        // a write failed: what was sealed on top of it is void
  std::unique_ptr<ChainHead> durable_; // the head of what is written
  uint64_t committedSeq_ = 0;          // for headSeq()
  Stats stats_;
  std::thread committer_;
  std::thread sealer_;
};

}  // namespace tokenledger
