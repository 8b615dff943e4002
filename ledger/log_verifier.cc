#include "ledger/log_verifier.h"

#include <atomic>
#include <list>
#include <map>
#include <future>
#include <thread>
#include <vector>

#include "ledger/chain.h"
#include "ledger/error.h"
#include "ledger/log_reader.h"
#include "schemas/ledger.capnp.h"

namespace tokenledger {
namespace {

bool copyDigest(capnp::Data::Reader data, Digest& out) {
  if (data.size() != out.size()) return false;
  std::copy(data.begin(), data.end(), out.begin());
  return true;
}

struct PendingSignature {
  uint64_t seq;
  Digest hash;
  Ed25519Signature signature;
  const VerifyingKey* key;
};

// Verifies a batch on `threads` threads; returns the lowest failing seq, or 0.
uint64_t firstBadSignature(const std::vector<PendingSignature>& batch, unsigned threads) {
  std::atomic<uint64_t> worst{0};
  auto check = [&](size_t from, size_t step) {
    for (size_t i = from; i < batch.size(); i += step) {
      const auto& p = batch[i];
      if (!p.key->verify(p.hash, p.signature)) {
        uint64_t seen = worst.load();
        while ((seen == 0 || p.seq < seen) && !worst.compare_exchange_weak(seen, p.seq)) {
        }
      }
    }
  };
  std::vector<std::thread> workers;
  for (unsigned t = 1; t < threads; ++t) workers.emplace_back(check, t, threads);
  check(0, threads);
  for (auto& w : workers) w.join();
  return worst.load();
}

// After a read failure at `first`: the first seq from which the log reads again (its event and
// seal), probing forward from `first` + 1; 0 when none does within `limit` seqs. RocksDB checks
// whole blocks, so a flipped byte makes a run of neighbouring entries unreadable, and an
// auditor wants to know how long.
uint64_t readableAgainFrom(const Store& store, uint64_t first, uint64_t limit) {
  for (uint64_t seq = first + 1; seq <= first + limit; ++seq) {
    try {
      LogCursor cursor(store, seq);
      return cursor.valid() ? cursor.seq() : 0;
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kIntegrity) throw;
    }
  }
  return 0;
}

class Verifier {
 public:
  Verifier(const Store& store, const VerifyOptions& options) : store_(store), options_(options) {}

  VerifyReport run() {
    loadCheckpoints();
    LogReadAhead log(store_, 1);
    for (const auto* entry = next(log); entry != nullptr; entry = next(log)) {
      if (!check(*entry)) return report_;
      if (pending_.size() >= kBatch && !flushSignatures()) return report_;
      if (options_.progress && entry->seq % 65536 == 0) options_.progress(entry->seq);
    }
    if (!report_.intact || !flushSignatures() || !collectSignatures()) return report_;
    auto seals = store_.iterate(Family::kSeals);
    seals->Seek(seqKey(report_.entries + 1));
    if (seals->Valid()) {
      fail(seqFromKey(seals->key().ToStringView()),
           "a seal exists but its event is missing: the tail was deleted");
      return report_;
    }
    if (!wanted_.empty() && wanted_.rbegin()->first > report_.entries) {
      fail(report_.entries + 1, "the log ends at " + std::to_string(report_.entries) +
                                    " but a checkpoint covers seq " +
                                    std::to_string(wanted_.rbegin()->first) + ": the tail was truncated");
      return report_;
    }
    if (!checkpointSignatures()) return report_;
    if (options_.progress) options_.progress(report_.entries);
    return report_;
  }

 private:
  static constexpr size_t kBatch = 4096;

  // The next entry, nullptr at the end of the log. Stored bytes that fail RocksDB's block
  // checksum end the walk too, as a failure at the first entry that could not be read.
  const LogReadAhead::Entry* next(LogReadAhead& log) {
    try {
      return log.next();
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kIntegrity) throw;
      const uint64_t first = report_.entries + 1;
      constexpr uint64_t kProbes = 4096;
      const uint64_t again = readableAgainFrom(store_, first, kProbes);
      std::string extent = "nothing reads back within " + std::to_string(kProbes) + " entries after it";
      if (again != 0) {
        extent = "entries " + std::to_string(first) + "-" + std::to_string(again - 1) +
                 " cannot be read, the log reads again from " + std::to_string(again);
      }
      failAt(first, std::string(e.what()) + "; " + extent);
      return nullptr;
    }
  }

  // One entry: its seq, decoding, chain link, seal and key; its signature joins pending_.
  bool check(const LogReadAhead::Entry& entry) {
    const uint64_t seq = entry.seq;
    const uint64_t expected = report_.entries + 1;
    if (seq != expected) {
      return failAt(expected, "entry is missing (the next stored entry is " + std::to_string(seq) + ")");
    }
    if (entry.seal.empty()) return failAt(seq, "entry has no seal");
    try {
      CanonicalReader event(entry.event);
      auto e = event.root<schema::Event>();
      if (e.getSeq() != seq) return failAt(seq, "event says it is seq " + std::to_string(e.getSeq()));
      hash_ = entryHash(hash_, asBytes(entry.event));
      CanonicalReader sealReader(entry.seal);
      auto seal = sealReader.root<schema::Seal>();
      Digest stored{};
      if (!copyDigest(seal.getEntryHash(), stored) || stored != hash_) {
        return failAt(seq, "entry hash does not match: the event or an earlier one was altered");
      }
      const VerifyingKey* introduced = nullptr;
      if (e.isSigningKeyRotated()) {
        auto k = e.getSigningKeyRotated();
        Ed25519PublicKey raw{};
        if (k.getPublicKey().size() != raw.size()) return failAt(seq, "introduces a malformed key");
        std::copy(k.getPublicKey().begin(), k.getPublicKey().end(), raw.begin());
        keys_.emplace_back(raw);
        introduced = &keys_.back();
        if (introduced->keyId() != k.getKeyId().cStr()) return failAt(seq, "key id does not match its key");
        if (current_ == nullptr) current_ = introduced;
      }
      if (current_ == nullptr) return failAt(seq, "entry before any signing key was introduced");
      if (seal.getKeyId() != current_->keyId()) {
        return failAt(seq, "signed by key " + std::string(seal.getKeyId().cStr()) +
                               " but the current key is " + current_->keyId());
      }
      Ed25519Signature signature{};
      if (seal.getSignature().size() != signature.size()) return failAt(seq, "signature is malformed");
      std::copy(seal.getSignature().begin(), seal.getSignature().end(), signature.begin());
      if (options_.signatures) pending_.push_back({seq, hash_, signature, current_});
      if (introduced) current_ = introduced;
    } catch (const kj::Exception& e) {
      return failAt(seq, std::string("entry does not decode: ") + e.getDescription().cStr());
    } catch (const Error& e) {
      return failAt(seq, e.what());
    }
    if (auto it = wanted_.find(seq); it != wanted_.end() && it->second != hash_) {
      return failAt(seq, "a checkpoint at this seq records a different hash: the log was rewritten");
    }
    report_.entries = seq;
    report_.headHash = hash_;
    return true;
  }

  void loadCheckpoints() {
    auto it = store_.iterate(Family::kCheckpoints);
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      try {
        CanonicalReader reader(it->value().ToStringView());
        auto cp = reader.root<schema::Checkpoint>();
        CheckpointInfo info;
        info.seq = cp.getSeq();
        info.timeMicros = cp.getTimeMicros();
        info.keyId = cp.getKeyId();
        if (copyDigest(cp.getEntryHash(), info.entryHash) &&
            cp.getSignature().size() == info.signature.size()) {
          std::copy(cp.getSignature().begin(), cp.getSignature().end(), info.signature.begin());
          checkpoints_.push_back(info);
          wanted_[info.seq] = info.entryHash;
          continue;
        }
      } catch (const kj::Exception&) {
      }
      badCheckpoint_ = seqFromKey(it->key().ToStringView());
    }
    if (options_.against) {
      checkpoints_.push_back(*options_.against);
      wanted_[options_.against->seq] = options_.against->entryHash;
    }
  }

  // Signatures are checked a batch behind the chain: while `threads` threads verify one batch,
  // this thread walks and hashes the next (walking alone was ~10% of a full replay).
  // Starts verifying the pending batch, after collecting the one before it.
  bool flushSignatures() {
    if (!collectSignatures()) return false;
    inFlight_ = std::async(std::launch::async,
                           [batch = std::move(pending_), threads = std::max(1u, options_.threads)] {
                             return firstBadSignature(batch, threads);
                           });
    pending_.clear();
    return true;
  }

  // Waits for the batch in flight, if any; false (and the report says where) if one failed.
  bool collectSignatures() {
    if (!inFlight_.valid()) return true;
    uint64_t bad = inFlight_.get();
    if (bad != 0) {
      fail(bad, "signature does not verify");
      return false;
    }
    return true;
  }

  bool checkpointSignatures() {
    if (badCheckpoint_ != 0) {
      fail(badCheckpoint_, "stored checkpoint does not decode");
      return false;
    }
    for (const auto& cp : checkpoints_) {
      const VerifyingKey* key = nullptr;
      for (const auto& k : keys_) {
        if (k.keyId() == cp.keyId) key = &k;
      }
      if (key == nullptr || !key->verify(checkpointDigest(cp.seq, cp.entryHash, cp.timeMicros),
                                         cp.signature)) {
        fail(cp.seq, "checkpoint signature does not verify under the log's keys");
        return false;
      }
      ++report_.checkpoints;
    }
    return true;
  }

  // A chain failure at `seq`; an earlier entry whose signature is bad is reported first.
  // Returns false, so that a check can end with `return failAt(...)`.
  bool failAt(uint64_t seq, std::string problem) {
    if (!collectSignatures()) return false;  // the batch in flight holds earlier seqs
    uint64_t bad = firstBadSignature(pending_, std::max(1u, options_.threads));
    pending_.clear();
    if (bad != 0 && bad < seq) return fail(bad, "signature does not verify");
    return fail(seq, std::move(problem));
  }

  bool fail(uint64_t seq, std::string problem) {
    report_.intact = false;
    report_.firstBadSeq = seq;
    report_.problem = std::move(problem);
    return false;
  }

  const Store& store_;
  const VerifyOptions& options_;
  VerifyReport report_;
  Digest hash_ = genesisHash();      // the chain's head so far
  const VerifyingKey* current_ = nullptr;  // the key entries are signed with from here on
  std::map<uint64_t, Digest> wanted_;  // seq -> entry hash a checkpoint claims
  std::list<VerifyingKey> keys_;
  std::vector<PendingSignature> pending_;
  std::vector<CheckpointInfo> checkpoints_;
  uint64_t badCheckpoint_ = 0;
  // Last: it is joined before keys_, which its batch points into, goes away.
  std::future<uint64_t> inFlight_;
};

}  // namespace

VerifyReport verifyLog(const Store& store, const VerifyOptions& options) {
  return Verifier(store, options).run();
}

}  // namespace tokenledger
