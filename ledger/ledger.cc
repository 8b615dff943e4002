#include "ledger/ledger.h"

#include <pthread.h>

#include <chrono>
#include <future>

#include "ledger/chain.h"
#include "ledger/command_plan.h"
#include "ledger/group_signer.h"
#include "ledger/token_codec.h"

namespace tokenledger {
namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

Digest digestOf(capnp::Data::Reader data) {
  Digest d{};
  if (data.size() != d.size()) throw Error(ErrorCode::kIntegrity, "stored hash has the wrong size");
  std::copy(data.begin(), data.end(), d.begin());
  return d;
}

}  // namespace

// Where the chain stands: after the last durable group, or after the last sealed one.
struct Ledger::ChainHead {
  uint64_t seq = 0;
  Digest hash = genesisHash();
  int64_t lastTimeMicros = 0;
  uint64_t lastCheckpointSeq = 0;
  size_t keyCount = 0;  // keys_ introduced up to here; the current key is the last of them
};

// A group ready to be written: its batch, what each caller will be told, and the head after it.
struct Ledger::Sealed {
  std::vector<Queued> group;
  std::vector<Outcome> outcomes;
  rocksdb::WriteBatch batch;
  ChainHead head;
  uint64_t firstSeq = 0;
  std::optional<Error> failure;  // sealing failed for the whole group: nothing to write
};

Ledger::Ledger(Store& store, LedgerProjection& projection, LedgerOptions options)
    : store_(store),
      projection_(projection),
      options_(std::move(options)),
      working_(std::make_unique<ChainHead>()),
      signer_(std::make_unique<GroupSigner>()) {
  ChainHead& head = *working_;
  // The head is the last seal; the current key is the one that signed it.
  auto seals = store_.iterate(Family::kSeals);
  seals->SeekToLast();
  if (seals->Valid()) {
    head.seq = seqFromKey(seals->key().ToStringView());
    CanonicalReader seal(seals->value().ToStringView());
    auto root = seal.root<schema::Seal>();
    head.hash = digestOf(root.getEntryHash());
    std::string keyId = root.getKeyId();
    auto event = store_.get(Family::kEvents, seqKey(head.seq));
    if (!event) {
      throw Error(ErrorCode::kIntegrity,
                  "event " + std::to_string(head.seq) + " has a seal but no event");
    }
    CanonicalReader reader(*event);
    auto e = reader.root<schema::Event>();
    head.lastTimeMicros = e.getTimeMicros();
    // A key rotation at the head is signed by the previous key; later entries use the new one.
    if (e.isSigningKeyRotated()) keyId = e.getSigningKeyRotated().getKeyId();
    keys_.push_back(SigningKey::load(options_.keyDir / (keyId + ".pem")));
    head.keyCount = 1;
  }
  auto events = store_.iterate(Family::kEvents);
  events->SeekToLast();
  uint64_t lastEvent = events->Valid() ? seqFromKey(events->key().ToStringView()) : 0;
  if (lastEvent != head.seq) {
    throw Error(ErrorCode::kIntegrity, "the log's last event is " + std::to_string(lastEvent) +
                                           " but its last seal is " + std::to_string(head.seq));
  }
  auto checkpoints = store_.iterate(Family::kCheckpoints);
  checkpoints->SeekToLast();
  if (checkpoints->Valid()) head.lastCheckpointSeq = seqFromKey(checkpoints->key().ToStringView());
  durable_ = std::make_unique<ChainHead>(head);
  committedSeq_ = head.seq;
  committer_ = std::thread([this] { runCommitter(); });
  sealer_ = std::thread([this] { runSealer(); });
  // Named for top -H, perf and gdb.
  pthread_setname_np(committer_.native_handle(), "tl-commit");
  pthread_setname_np(sealer_.native_handle(), "tl-writer");
}

Ledger::~Ledger() { stop(); }

void Ledger::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  // From a callback (a ledger thread) only ask: joining there would wait for itself.
  const auto self = std::this_thread::get_id();
  if (self == sealer_.get_id() || self == committer_.get_id()) return;
  // The sealer finishes the queue and hands its last group over; then the committer ends.
  if (sealer_.joinable()) sealer_.join();
  if (committer_.joinable()) committer_.join();
}

void Ledger::setCommitListener(CommitListener listener) {
  std::lock_guard lock(mutex_);
  listener_ = std::move(listener);
}

uint64_t Ledger::headSeq() const {
  std::lock_guard lock(mutex_);
  return committedSeq_;
}

Ledger::Stats Ledger::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void Ledger::submit(Request request, Callback done) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      queue_.push_back(Queued{std::move(request), std::move(done)});
      wake_.notify_one();
      return;
    }
  }
  done(Outcome{{}, Error(ErrorCode::kUnavailable, "the ledger is shutting down")});
}

CommandResult Ledger::execute(Request request) {
  std::promise<Outcome> promise;
  auto future = promise.get_future();
  submit(std::move(request), [&promise](Outcome outcome) { promise.set_value(std::move(outcome)); });
  Outcome outcome = future.get();
  if (outcome.error) throw *outcome.error;
  return std::move(outcome.result);
}

// Every caller, refused ones included: a refusal may rest on what an earlier command of the same
// group staged, which is now not written either.
void Ledger::fail(std::vector<Queued>& group, const Error& error) {
  for (Queued& queued : group) queued.done(Outcome{{}, error});
}

Error Ledger::notWritten(const Error& cause) {
  return Error(cause.code(), "not written: an earlier write failed (" + std::string(cause.what()) + ")");
}

void Ledger::runSealer() {
  std::vector<Queued> group;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) {  // stopping, and everything queued is sealed
        sealerDone_ = true;
        handoff_.notify_all();
        return;
      }
      while (!queue_.empty() && group.size() < options_.maxGroup) {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      if (broken_) {
        // The last write failed after we sealed on top of it: start from what is durable.
        handoff_.wait(lock, [this] { return toCommit_ == nullptr && !committing_; });
        restartFromDurable(lock);
      }
    }
    try {
      store_.recover();  // after a failed write; here, where no batch is being built
    } catch (const Error& e) {
      fail(group, e);
      group.clear();
      continue;
    }
    const auto sealStart = Clock::now();
    const size_t commands = group.size();
    std::unique_ptr<Sealed> sealed = seal(group);
    group.clear();
    const auto sealEnd = Clock::now();

    std::unique_lock lock(mutex_);
    // Depth three: one group is written, this one waits for it, the next is sealed meanwhile.
    // (With one group fewer in flight the sealer could not start a group while a write was in
    // flight: 10-20 % fewer appends at 64 writers, see the README's Performance section.)
    handoff_.wait(lock, [this] { return toCommit_ == nullptr; });
    stats_.groups += 1;
    stats_.commands += commands;
    stats_.sealSeconds += std::chrono::duration<double>(sealEnd - sealStart).count();
    stats_.handoffSeconds += secondsSince(sealEnd);
    if (broken_ || sealed->failure) {
      // Validated and chained on top of a write that failed (every answer it would give rests
      // on state that never became durable), or half staged. Once nothing else is in flight,
      // start again from what is durable.
      handoff_.wait(lock, [this] { return !committing_; });
      const Error error = broken_ ? notWritten(*broken_) : *sealed->failure;
      restartFromDurable(lock);
      fail(sealed->group, error);
    } else {
      toCommit_ = std::move(sealed);
      handoff_.notify_all();
    }
  }
}

void Ledger::restartFromDurable(std::unique_lock<std::mutex>& lock) {
  broken_.reset();
  *working_ = *durable_;
  lock.unlock();
  while (keys_.size() > working_->keyCount) keys_.pop_back();
  projection_.discardStaged();
}

void Ledger::runCommitter() {
  for (;;) {
    std::unique_ptr<Sealed> sealed;
    std::optional<Error> refusal;
    {
      std::unique_lock lock(mutex_);
      handoff_.wait(lock, [this] { return toCommit_ != nullptr || sealerDone_; });
      if (toCommit_ == nullptr) return;  // the sealer has finished and nothing is left
      sealed = std::move(toCommit_);
      committing_ = true;
      refusal = broken_;
    }
    handoff_.notify_all();  // the slot is free for the sealer's next group
    if (refusal) {
      // Sealed on top of a group whose write just failed; the sealer starts again from durable.
      fail(sealed->group, notWritten(*refusal));
    } else {
      commit(*sealed);
    }
    {
      std::lock_guard lock(mutex_);
      committing_ = false;
    }
    handoff_.notify_all();
  }
}

std::unique_ptr<Ledger::Sealed> Ledger::seal(std::vector<Queued>& group) {
  auto sealed = std::make_unique<Sealed>();
  sealed->group = std::move(group);
  sealed->outcomes.resize(sealed->group.size());
  ChainHead& head = *working_;
  const int64_t now = std::max(options_.clock(), head.lastTimeMicros);
  rocksdb::WriteBatch& batch = sealed->batch;
  std::vector<Digest> hashes;
  std::vector<const SigningKey*> signers;  // the key that signs each entry
  const SigningKey* signer = head.keyCount > 0 ? &keys_.back() : nullptr;
  const uint64_t firstSeq = head.seq + 1;
  uint64_t seq = head.seq;
  Digest hash = head.hash;
  bool checkpoint = false;

  try {
    for (size_t i = 0; i < sealed->group.size(); ++i) {
      const Request& request = sealed->group[i].request;
      Outcome& outcome = sealed->outcomes[i];
      Plan plan;
      try {
        Rights rights = Rights::of(projection_, request.actor, now);
        plan = planCommand(request, rights, projection_, options_, now, seq == 0);
      } catch (const Error& e) {
        outcome.error = e;
        continue;
      }
      // From here on nothing may fail for this command alone: a failure is the group's.
      outcome.result = std::move(plan.result);
      if (!plan.events.empty()) outcome.result.firstSeq = seq + 1;
      for (auto& message : plan.events) {
        auto event = message->getRoot<schema::Event>();
        event.setSeq(++seq);
        event.setTimeMicros(now);
        writeActor(event.initActor(), request.actor);
        event.setClientAddress(request.clientAddress);
        event.setReason(request.reason);
        const SigningKey* introduced = nullptr;
        if (event.isSigningKeyRotated()) {
          batch.Put(store_.family(Family::kKeys), plan.newKey->keyId(), seqKey(seq));
          introduced = &keys_.emplace_back(std::move(*plan.newKey));
          plan.newKey.reset();
          if (signer == nullptr) signer = introduced;  // seq 1 introduces and signs with the first key
        }
        std::string bytes = canonicalBytes(event.asReader());
        hash = entryHash(hash, asBytes(bytes));
        hashes.push_back(hash);
        signers.push_back(signer);
        signer_->add(hash, *signer);
        batch.Put(store_.family(Family::kEvents), seqKey(seq), bytes);
        projection_.stage(event.asReader(), batch);
        if (introduced) signer = introduced;  // a rotation is signed by the old key, what follows by the new
      }
      outcome.result.lastSeq = plan.events.empty() ? 0 : seq;
      checkpoint = checkpoint || plan.checkpoint;
    }

    std::vector<Ed25519Signature> signatures = signer_->finish();
    for (size_t k = 0; k < hashes.size(); ++k) {
      capnp::MallocMessageBuilder message;
      auto seal = message.initRoot<schema::Seal>();
      seal.setEntryHash(kj::arrayPtr(hashes[k].data(), hashes[k].size()));
      seal.setKeyId(signers[k]->keyId());
      seal.setSignature(kj::arrayPtr(signatures[k].data(), signatures[k].size()));
      batch.Put(store_.family(Family::kSeals), seqKey(firstSeq + k),
                canonicalBytes(seal.asReader()));
    }

    std::optional<CheckpointInfo> made;
    if (seq > 0 && (checkpoint || (options_.checkpointEvery > 0 &&
                                   seq - head.lastCheckpointSeq >= options_.checkpointEvery))) {
      CheckpointInfo info{seq, hash, now, signer->keyId(), {}};
      info.signature = signer->sign(checkpointDigest(seq, hash, now));
      capnp::MallocMessageBuilder message;
      auto cp = message.initRoot<schema::Checkpoint>();
      cp.setSeq(info.seq);
      cp.setEntryHash(kj::arrayPtr(info.entryHash.data(), info.entryHash.size()));
      cp.setTimeMicros(info.timeMicros);
      cp.setKeyId(info.keyId);
      cp.setSignature(kj::arrayPtr(info.signature.data(), info.signature.size()));
      batch.Put(store_.family(Family::kCheckpoints), seqKey(seq), canonicalBytes(cp.asReader()));
      made = info;
    }
    for (size_t i = 0; i < sealed->group.size(); ++i) {
      if (!sealed->outcomes[i].error &&
          std::holds_alternative<MakeCheckpoint>(sealed->group[i].request.command)) {
        sealed->outcomes[i].result.checkpoint = made;
      }
    }

    projection_.endGroup();
    head.seq = seq;
    head.hash = hash;
    head.lastTimeMicros = now;
    if (made) head.lastCheckpointSeq = made->seq;
    head.keyCount = keys_.size();
  } catch (const Error& e) {
    sealed->failure = e;
  } catch (const kj::Exception& e) {
    sealed->failure =
        Error(ErrorCode::kInternal, std::string("encoding failed: ") + e.getDescription().cStr());
  }
  if (sealed->failure) {
    // Nothing of it is used, but the signer must be done with the keys before
    // restartFromDurable() drops the ones this group introduced.
    try {
      signer_->finish();
    } catch (const Error&) {
    }
  }
  sealed->head = head;
  sealed->firstSeq = firstSeq;
  return sealed;
}

void Ledger::commit(Sealed& sealed) {
  const auto writeStart = Clock::now();
  try {
    if (sealed.batch.Count() > 0) store_.write(sealed.batch, /*sync=*/true);
  } catch (const Error& e) {
    {
      std::lock_guard lock(mutex_);
      broken_ = e;  // the sealer discards what it staged since, and starts again from durable_
    }
    fail(sealed.group, e);
    return;
  }
  const auto answerStart = Clock::now();
  projection_.commitGroup();
  CommitListener listener;
  {
    std::lock_guard lock(mutex_);
    *durable_ = sealed.head;
    committedSeq_ = sealed.head.seq;
    listener = listener_;
  }
  if (listener && sealed.head.seq >= sealed.firstSeq) listener(sealed.firstSeq, sealed.head.seq);
  for (size_t i = 0; i < sealed.group.size(); ++i) sealed.group[i].done(std::move(sealed.outcomes[i]));
  std::lock_guard lock(mutex_);
  stats_.writeSeconds += std::chrono::duration<double>(answerStart - writeStart).count();
  stats_.answerSeconds += secondsSince(answerStart);
}

}  // namespace tokenledger
