#include "projections/ledger_instance.h"

#include <sys/stat.h>

#include "ledger/error.h"
#include "projections/rebuild.h"

namespace tokenledger {
namespace {

void makePrivateDir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || ::chmod(dir.c_str(), 0700) != 0) {
    throw Error(ErrorCode::kStorage, "cannot create directory " + dir.string() + ": " + ec.message());
  }
}

}  // namespace

Credential LedgerInstance::init(const std::filesystem::path& dataDir,
                                const std::string& adminPrincipal, LedgerOptions options) {
  requireValidPrincipal(adminPrincipal);
  // An existing, initialised ledger is refused by the Bootstrap command itself, unchanged.
  makePrivateDir(dataDir);
  makePrivateDir(dataDir / "keys");
  options.keyDir = dataDir / "keys";
  auto store = Store::open(dataDir / "db", Store::Mode::kReadWrite, /*create=*/true);
  StoredProjection projection(*store, *options.catalog);
  Ledger ledger(*store, projection, options);
  CommandResult result =
      ledger.execute(Request{Actor::bootstrapActor(), "local", "tokenledgerd init",
                             Bootstrap{adminPrincipal}});
  return *result.credential;
}

std::unique_ptr<LedgerInstance> LedgerInstance::open(const std::filesystem::path& dataDir,
                                                     LedgerOptions options) {
  options.keyDir = dataDir / "keys";
  std::unique_ptr<LedgerInstance> instance(new LedgerInstance());
  instance->store_ = Store::open(dataDir / "db", Store::Mode::kReadWrite, /*create=*/false);
  if (rebuildUnfinished(*instance->store_)) {
    throw Error(ErrorCode::kFailedPrecondition,
                "a rebuild of the stored token table in " + dataDir.string() +
                    " did not finish, so the table is incomplete; run `ledger-replay --data-dir " +
                    dataDir.string() + " rebuild` again before serving");
  }
  instance->projection_ = std::make_unique<StoredProjection>(*instance->store_, *options.catalog);
  instance->ledger_ = std::make_unique<Ledger>(*instance->store_, *instance->projection_, options);
  if (instance->ledger_->headSeq() == 0) {
    throw Error(ErrorCode::kFailedPrecondition,
                "the ledger in " + dataDir.string() + " was never initialised; run `tokenledgerd init`");
  }
  return instance;
}

LedgerInstance::~LedgerInstance() {
  if (ledger_) ledger_->stop();  // drain the writer before the projection and store go away
}

}  // namespace tokenledger
