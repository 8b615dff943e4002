// One data directory opened for writing: the store, the stored projection and the ledger's
// writer, wired in the only order that works. What tokenledgerd serves and what tests drive.
//
//   <dataDir>/db/     RocksDB: the log and the projection
//   <dataDir>/keys/   Ed25519 signing keys, <keyId>.pem, mode 0600 (directory 0700)
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "ledger/ledger.h"
#include "projections/stored_projection.h"

namespace tokenledger {

class LedgerInstance {
 public:
  // Creates the data directory, the first signing key, the first admin and its token. Returns
  // that token's credential, which is never shown again. Throws Error(kAlreadyExists) if the
  // directory already holds a ledger.
  static Credential init(const std::filesystem::path& dataDir, const std::string& adminPrincipal,
                         LedgerOptions options = {});

  // Opens an initialised data directory (options.keyDir is set from it).
  static std::unique_ptr<LedgerInstance> open(const std::filesystem::path& dataDir,
                                              LedgerOptions options = {});
  ~LedgerInstance();

  Store& store() { return *store_; }
  StoredProjection& projection() { return *projection_; }
  Ledger& ledger() { return *ledger_; }

 private:
  LedgerInstance() = default;
  std::unique_ptr<Store> store_;
  std::unique_ptr<StoredProjection> projection_;
  std::unique_ptr<Ledger> ledger_;
};

}  // namespace tokenledger
