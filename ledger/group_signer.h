// Signs the entries of a group as the sealer chains them: one Ed25519 signature per entry is most
// of a group's work, and signatures are independent of each other. A helper thread starts on the
// first entries while the sealer is still validating and chaining the rest; once the sealer has
// finished chaining, it signs beside the helper. So both cores sign, from the group's start.
#pragma once

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "ledger/crypto.h"
#include "ledger/error.h"

namespace tokenledger {

class GroupSigner {
 public:
  GroupSigner();   // starts the helper thread, "tl-sign"
  ~GroupSigner();  // stops it
  GroupSigner(const GroupSigner&) = delete;
  GroupSigner& operator=(const GroupSigner&) = delete;

  // Queues the group's next entry hash. `key` must outlive finish().
  void add(const Digest& entryHash, const SigningKey& key);
  // Signs what is left, beside the helper; returns every signature in the order added and
  // starts the next group. Throws the Error of a signature that failed (after the group's reset).
  std::vector<Ed25519Signature> finish();

 private:
  struct Entry {
    Digest hash;
    const SigningKey* key;
    Ed25519Signature signature{};
  };
  // Signs the next unsigned entry, the lock released meanwhile; false if none is left.
  bool signNext(std::unique_lock<std::mutex>& lock);
  void runHelper();

  std::mutex mutex_;
  std::condition_variable work_;      // the helper: entries to sign, or stopping
  std::condition_variable finished_;  // finish(): the last signature is in
  std::vector<Entry> entries_;
  size_t next_ = 0;       // the first entry nobody has taken
  size_t signed_ = 0;     // entries whose signature is in
  bool helperIdle_ = false;
  bool stopping_ = false;
  std::optional<Error> failure_;
  std::thread helper_;
};

}  // namespace tokenledger
