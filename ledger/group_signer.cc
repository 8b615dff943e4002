#include "ledger/group_signer.h"

#include <pthread.h>

namespace tokenledger {

GroupSigner::GroupSigner() : helper_([this] { runHelper(); }) {
  pthread_setname_np(helper_.native_handle(), "tl-sign");
}

GroupSigner::~GroupSigner() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_.notify_all();
  helper_.join();
}

void GroupSigner::add(const Digest& entryHash, const SigningKey& key) {
  std::lock_guard lock(mutex_);
  entries_.push_back(Entry{entryHash, &key});
  // Wake the helper only once there is more than one entry to sign: a group of one is signed
  // by the sealer at once, without waiting for another thread to wake up.
  if (helperIdle_ && entries_.size() - next_ >= 2) work_.notify_one();
}

std::vector<Ed25519Signature> GroupSigner::finish() {
  std::unique_lock lock(mutex_);
  while (signNext(lock)) {
  }
  finished_.wait(lock, [this] { return signed_ == entries_.size(); });
  std::vector<Ed25519Signature> out;
  out.reserve(entries_.size());
  for (const Entry& entry : entries_) out.push_back(entry.signature);
  std::optional<Error> failure = std::move(failure_);
  entries_.clear();
  next_ = signed_ = 0;
  failure_.reset();
  if (failure) throw *failure;
  return out;
}

bool GroupSigner::signNext(std::unique_lock<std::mutex>& lock) {
  if (next_ == entries_.size()) return false;
  const size_t i = next_++;
  const Entry entry = entries_[i];
  lock.unlock();
  Ed25519Signature signature{};
  std::optional<Error> failure;
  try {
    signature = entry.key->sign(entry.hash);
  } catch (const Error& e) {
    failure = e;
  }
  lock.lock();
  entries_[i].signature = signature;
  if (failure && !failure_) failure_ = std::move(failure);
  if (++signed_ == entries_.size()) finished_.notify_one();
  return true;
}

void GroupSigner::runHelper() {
  std::unique_lock lock(mutex_);
  for (;;) {
    helperIdle_ = true;
    work_.wait(lock, [this] { return stopping_ || entries_.size() - next_ >= 2; });
    helperIdle_ = false;
    if (stopping_) return;
    while (signNext(lock)) {
    }
  }
}

}  // namespace tokenledger
