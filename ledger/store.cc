#include "ledger/store.h"

#include <rocksdb/options.h>
#include <rocksdb/table.h>

#include "ledger/error.h"

namespace tokenledger {
namespace {

constexpr const char* kFamilyNames[kFamilyCount] = {
    "events", "seals", "checkpoints", "tokens", "owner_tokens", "token_events", "roles", "keys",
    "principal_events",
};

[[noreturn]] void storageError(const std::string& what, const rocksdb::Status& status) {
  throw Error(ErrorCode::kStorage, what + ": " + status.ToString());
}

}  // namespace

std::unique_ptr<Store> Store::open(const std::filesystem::path& dbDir, Mode mode, bool create) {
  rocksdb::DBOptions options;
  options.create_if_missing = create;
  options.create_missing_column_families = create;
  options.paranoid_checks = true;
  options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  options.keep_log_file_num = 4;

  rocksdb::ColumnFamilyOptions familyOptions;
  rocksdb::BlockBasedTableOptions table;
  table.whole_key_filtering = true;
  familyOptions.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  families.emplace_back(rocksdb::kDefaultColumnFamilyName, familyOptions);
  for (const char* name : kFamilyNames) families.emplace_back(name, familyOptions);

  if (!create && !std::filesystem::exists(dbDir / "CURRENT")) {
    throw Error(ErrorCode::kNotFound,
                "no ledger database at " + dbDir.string() + " (run `tokenledgerd init` first)");
  }

  std::unique_ptr<Store> store(new Store());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::Status status =
      mode == Mode::kReadWrite
          ? rocksdb::DB::Open(options, dbDir.string(), families, &handles, &db)
          : rocksdb::DB::OpenForReadOnly(options, dbDir.string(), families, &handles, &db);
  if (!status.ok()) storageError("cannot open ledger database " + dbDir.string(), status);
  store->db_.reset(db);
  // handles[0] is the default family, which the ledger does not use; family() skips it.
  store->handles_.assign(handles.begin(), handles.end());
  return store;
}

Store::~Store() {
  for (auto* handle : handles_) db_->DestroyColumnFamilyHandle(handle);
  handles_.clear();
  if (db_) db_->Close();
}

std::optional<std::string> Store::get(Family f, std::string_view key) const {
  std::string value;
  rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), family(f), key, &value);
  if (status.IsNotFound()) return {};
  if (!status.ok()) storageError("read failed", status);
  return value;
}

std::unique_ptr<rocksdb::Iterator> Store::iterate(Family f) const {
  return std::unique_ptr<rocksdb::Iterator>(db_->NewIterator(rocksdb::ReadOptions(), family(f)));
}

void Store::write(rocksdb::WriteBatch& batch, bool sync) {
  if (resumeBeforeWrite_) {
    rocksdb::Status resumed = db_->Resume();
    if (!resumed.ok()) storageError("the ledger database is still failing", resumed);
    resumeBeforeWrite_ = false;
  }
  rocksdb::WriteOptions options;
  options.sync = sync;
  rocksdb::Status status = db_->Write(options, &batch);
  if (!status.ok()) {
    resumeBeforeWrite_ = true;
    storageError("write to the ledger database failed", status);
  }
}

std::string seqKey(uint64_t seq) {
  std::string key(8, '\0');
  for (int i = 7; i >= 0; --i) {
    key[static_cast<size_t>(i)] = static_cast<char>(seq & 0xff);
    seq >>= 8;
  }
  return key;
}

uint64_t seqFromKey(std::string_view key) {
  if (key.size() != 8) return 0;
  uint64_t seq = 0;
  for (char c : key) seq = seq << 8 | static_cast<uint8_t>(c);
  return seq;
}

}  // namespace tokenledger
