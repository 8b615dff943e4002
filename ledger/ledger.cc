#include "ledger/ledger.h"

#include <pthread.h>

#include <future>
#include <list>

#include "ledger/chain.h"
#include "ledger/command_plan.h"
#include "ledger/token_codec.h"

namespace tokenledger {
namespace {

Digest digestOf(capnp::Data::Reader data) {
  Digest d{};
  if (data.size() != d.size()) throw Error(ErrorCode::kIntegrity, "stored hash has the wrong size");
  std::copy(data.begin(), data.end(), d.begin());
  return d;
}

// Signs entries on both cores when a group is large enough to be worth a thread.
void signAll(std::vector<Digest>& hashes, std::vector<const SigningKey*>& keys,
             std::vector<Ed25519Signature>& signatures) {
  signatures.resize(hashes.size());
  auto signRange = [&](size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) signatures[i] = keys[i]->sign(hashes[i]);
  };
  constexpr size_t kParallelFrom = 8;  // a sign costs ~50 us; a thread start far less
  if (hashes.size() < kParallelFrom) {
    signRange(0, hashes.size());
    return;
  }
  size_t half = hashes.size() / 2;
  auto other = std::async(std::launch::async, signRange, size_t{0}, half);
  signRange(half, hashes.size());
  other.get();
}

}  // namespace

// The state only the writer thread touches: the chain head and the signing keys.
struct Ledger::Head {
  uint64_t seq = 0;
  Digest hash = genesisHash();
  int64_t lastTimeMicros = 0;
  uint64_t lastCheckpointSeq = 0;
  std::list<SigningKey> keys;  // the current key is keys.back(); a list keeps addresses stable
  const SigningKey* current() const { return keys.empty() ? nullptr : &keys.back(); }
};

Ledger::Ledger(Store& store, LedgerProjection& projection, LedgerOptions options)
    : store_(store), projection_(projection), options_(std::move(options)), head_(new Head()) {
  // The head is the last seal; the current key is the one that signed it.
  auto seals = store_.iterate(Family::kSeals);
  seals->SeekToLast();
  if (seals->Valid()) {
    head_->seq = seqFromKey(seals->key().ToStringView());
    CanonicalReader seal(seals->value().ToStringView());
    auto root = seal.root<schema::Seal>();
    head_->hash = digestOf(root.getEntryHash());
    std::string keyId = root.getKeyId();
    auto event = store_.get(Family::kEvents, seqKey(head_->seq));
    if (!event) {
      throw Error(ErrorCode::kIntegrity,
                  "event " + std::to_string(head_->seq) + " has a seal but no event");
    }
    CanonicalReader reader(*event);
    auto e = reader.root<schema::Event>();
    head_->lastTimeMicros = e.getTimeMicros();
    // A key rotation at the head is signed by the previous key; later entries use the new one.
    if (e.isSigningKeyRotated()) keyId = e.getSigningKeyRotated().getKeyId();
    head_->keys.push_back(SigningKey::load(options_.keyDir / (keyId + ".pem")));
  }
  auto events = store_.iterate(Family::kEvents);
  events->SeekToLast();
  uint64_t lastEvent = events->Valid() ? seqFromKey(events->key().ToStringView()) : 0;
  if (lastEvent != head_->seq) {
    throw Error(ErrorCode::kIntegrity, "the log's last event is " + std::to_string(lastEvent) +
                                           " but its last seal is " + std::to_string(head_->seq));
  }
  auto checkpoints = store_.iterate(Family::kCheckpoints);
  checkpoints->SeekToLast();
  if (checkpoints->Valid()) head_->lastCheckpointSeq = seqFromKey(checkpoints->key().ToStringView());
  committedSeq_ = head_->seq;
  writer_ = std::thread([this] { run(); });
  pthread_setname_np(writer_.native_handle(), "tl-writer");  // for top -H, perf and gdb
}

Ledger::~Ledger() { stop(); }

void Ledger::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !writer_.joinable()) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (writer_.joinable() && writer_.get_id() != std::this_thread::get_id()) writer_.join();
}

void Ledger::setCommitListener(CommitListener listener) {
  std::lock_guard lock(mutex_);
  listener_ = std::move(listener);
}

uint64_t Ledger::headSeq() const {
  std::lock_guard lock(mutex_);
  return committedSeq_;
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

void Ledger::run() {
  std::vector<Queued> group;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything queued is done
      while (!queue_.empty() && group.size() < options_.maxGroup) {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    commitGroup(group);
    group.clear();
  }
}

void Ledger::commitGroup(std::vector<Queued>& group) {
  Head& head = *head_;
  const int64_t now = std::max(options_.clock(), head.lastTimeMicros);
  std::vector<Outcome> outcomes(group.size());
  rocksdb::WriteBatch batch;
  std::vector<Digest> hashes;
  std::vector<const SigningKey*> signers;
  std::list<SigningKey> newKeys;
  const SigningKey* signer = head.current();
  const uint64_t firstSeq = head.seq + 1;
  uint64_t seq = head.seq;
  Digest hash = head.hash;
  bool checkpoint = false;

  try {
    for (size_t i = 0; i < group.size(); ++i) {
      const Request& request = group[i].request;
      Plan plan;
      try {
        Rights rights = Rights::of(projection_, request.actor, now);
        plan = planCommand(request, rights, projection_, options_, now, seq == 0);
      } catch (const Error& e) {
        outcomes[i].error = e;
        continue;
      }
      // From here on nothing may fail for this command alone: a failure is the group's.
      outcomes[i].result = std::move(plan.result);
      if (!plan.events.empty()) outcomes[i].result.firstSeq = seq + 1;
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
          introduced = &newKeys.emplace_back(std::move(*plan.newKey));
          plan.newKey.reset();
          if (signer == nullptr) signer = introduced;  // seq 1 introduces and signs with the first key
        }
        std::string bytes = canonicalBytes(event.asReader());
        hash = entryHash(hash, asBytes(bytes));
        hashes.push_back(hash);
        signers.push_back(signer);
        batch.Put(store_.family(Family::kEvents), seqKey(seq), bytes);
        projection_.stage(event.asReader(), batch);
        if (introduced) signer = introduced;  // a rotation is signed by the old key, what follows by the new
      }
      outcomes[i].result.lastSeq = plan.events.empty() ? 0 : seq;
      checkpoint = checkpoint || plan.checkpoint;
    }

    std::vector<Ed25519Signature> signatures;
    signAll(hashes, signers, signatures);
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

    if (batch.Count() > 0) store_.write(batch, /*sync=*/true);

    projection_.commitStaged();
    head.seq = seq;
    head.hash = hash;
    head.lastTimeMicros = now;
    if (made) head.lastCheckpointSeq = made->seq;
    head.keys.splice(head.keys.end(), newKeys);
    for (size_t i = 0; i < group.size(); ++i) {
      if (!outcomes[i].error && std::holds_alternative<MakeCheckpoint>(group[i].request.command)) {
        outcomes[i].result.checkpoint = made;
      }
    }
  } catch (const Error& e) {
    projection_.discardStaged();
    for (auto& outcome : outcomes) {
      if (!outcome.error) outcome = Outcome{{}, e};
    }
  } catch (const kj::Exception& e) {
    projection_.discardStaged();
    Error error(ErrorCode::kInternal, std::string("encoding failed: ") + e.getDescription().cStr());
    for (auto& outcome : outcomes) {
      if (!outcome.error) outcome = Outcome{{}, error};
    }
  }

  CommitListener listener;
  {
    std::lock_guard lock(mutex_);
    committedSeq_ = head.seq;
    listener = listener_;
  }
  if (listener && head.seq >= firstSeq) listener(firstSeq, head.seq);
  for (size_t i = 0; i < group.size(); ++i) group[i].done(std::move(outcomes[i]));
}

}  // namespace tokenledger
