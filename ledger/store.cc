#include "ledger/store.h"

#include <rocksdb/options.h>
#include <rocksdb/table.h>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <thread>

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

// A read of family `f` that failed. RocksDB checksums every block it reads, so Corruption means
// the bytes on disk changed: the stored data's integrity, not a failing disk.
[[noreturn]] void readError(Family f, const rocksdb::Status& status) {
  const std::string family = "\"" + std::string(familyName(f)) + "\"";
  if (status.IsCorruption()) {
    throw Error(ErrorCode::kIntegrity, "stored data in column family " + family +
                                           " does not read back (the bytes on disk changed): " +
                                           status.ToString());
  }
  storageError("reading column family " + family + " failed", status);
}

// RocksDB's own log goes to stderr, beside tokenledgerd's, instead of a LOG file in the database
// directory: once the disk refuses a LOG write, the next one trips an assertion that Debian's
// librocksdb keeps compiled in (WritableFileWriter, "sync_without_flush_called_") and aborts
// the whole service. RocksDB logs file names and statuses here, never keys or values. Only a
// message's first line: what follows it are dumps for RocksDB's developers (a failed MANIFEST
// write appends every column family's VersionEdit), which buried tokenledgerd's own one-line
// explanation of the failure.
class StderrLogger : public rocksdb::Logger {
 public:
  StderrLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    char line[2048];
    std::vsnprintf(line, sizeof(line), format, ap);
    line[std::strcspn(line, "\n")] = '\0';
    std::fprintf(stderr, "rocksdb: %s\n", line);
  }
};

// An iterator that keeps the database from being reopened under it, and that never ends a scan
// early without saying so: a failed read throws from Valid() instead of looking like the end.
class LockedIterator : public rocksdb::Iterator {
 public:
  LockedIterator(std::shared_lock<std::shared_mutex> lock, rocksdb::Iterator* inner, Family family)
      : lock_(std::move(lock)), inner_(inner), family_(family) {}
  bool Valid() const override {
    if (inner_->Valid()) return true;
    if (rocksdb::Status status = inner_->status(); !status.ok()) readError(family_, status);
    return false;
  }
  void SeekToFirst() override { inner_->SeekToFirst(); }
  void SeekToLast() override { inner_->SeekToLast(); }
  void Seek(const rocksdb::Slice& target) override { inner_->Seek(target); }
  void SeekForPrev(const rocksdb::Slice& target) override { inner_->SeekForPrev(target); }
  void Next() override { inner_->Next(); }
  void Prev() override { inner_->Prev(); }
  rocksdb::Slice key() const override { return inner_->key(); }
  rocksdb::Slice value() const override { return inner_->value(); }
  rocksdb::Status status() const override { return inner_->status(); }

 private:
  std::shared_lock<std::shared_mutex> lock_;  // declared first: released after inner_ is gone
  std::unique_ptr<rocksdb::Iterator> inner_;
  Family family_;
};

}  // namespace

std::unique_ptr<Store> Store::open(const std::filesystem::path& dbDir, Mode mode, bool create) {
  if (!create && !std::filesystem::exists(dbDir / "CURRENT")) {
    throw Error(ErrorCode::kNotFound,
                "no ledger database at " + dbDir.string() + " (run `tokenledgerd init` first)");
  }
  std::unique_ptr<Store> store(new Store());
  store->dir_ = dbDir;
  // Made here rather than by create_if_missing: RocksDB lists the directory before creating
  // it and logs a scary "Error when reading ... dir NotFound" on every first start.
  std::error_code ignored;  // if it cannot be made, the open below says why
  if (create) std::filesystem::create_directories(dbDir, ignored);
  rocksdb::Status status = store->openDb(mode, create);
  // A read-only open beside the running writer reads the MANIFEST, then opens the table files
  // it lists; a compaction finishing in between deletes one of them ("No such file"). The next
  // attempt reads the new MANIFEST. (Once open, every table file is held open: max_open_files
  // is -1, so later compactions cannot pull files from under the reader.)
  for (int attempt = 1; mode == Mode::kReadOnly && status.IsIOError() && attempt < 5; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20 * attempt));
    status = store->openDb(mode, create);
  }
  if (!status.ok()) {
    // The lock RocksDB takes for a writer: the usual cause is the service itself.
    const bool locked = status.IsIOError() && status.ToString().find("LOCK") != std::string::npos;
    storageError("cannot open ledger database " + dbDir.string() +
                     (locked ? " (another process has it open for writing: a running tokenledgerd?)" : ""),
                 status);
  }
  return store;
}

namespace {

rocksdb::ColumnFamilyOptions familyOptions() {
  rocksdb::ColumnFamilyOptions options;
  rocksdb::BlockBasedTableOptions table;
  table.whole_key_filtering = true;
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return options;
}

}  // namespace

rocksdb::Status Store::openDb(Mode mode, bool create) {
  rocksdb::DBOptions options;
  options.create_if_missing = create;
  // A writer also makes a family that is missing because recreate() died between dropping and
  // creating it; whoever called recreate() has left a flag that says the data is incomplete.
  options.create_missing_column_families = create || mode == Mode::kReadWrite;
  options.paranoid_checks = true;
  options.max_open_files = -1;  // RocksDB's default, relied on by read-only opens (see open())
  options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  options.info_log = std::make_shared<StderrLogger>();

  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  families.emplace_back(rocksdb::kDefaultColumnFamilyName, familyOptions());
  for (const char* name : kFamilyNames) families.emplace_back(name, familyOptions());

  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::Status status =
      mode == Mode::kReadWrite
          ? rocksdb::DB::Open(options, dir_.string(), families, &handles, &db)
          : rocksdb::DB::OpenForReadOnly(options, dir_.string(), families, &handles, &db);
  if (!status.ok()) return status;
  db_.reset(db);
  // handles[0] is the default family, which the ledger does not use; family() skips it.
  handles_.assign(handles.begin(), handles.end());
  return status;
}

void Store::recreate(Family f) {
  std::unique_lock lock(reopen_);
  requireOpen();
  const std::string name(familyName(f));
  rocksdb::ColumnFamilyHandle*& handle = handles_[static_cast<size_t>(f) + 1];
  rocksdb::Status status = db_->DropColumnFamily(handle);
  if (!status.ok()) storageError("cannot drop column family " + name, status);
  db_->DestroyColumnFamilyHandle(handle);  // the family's files go once nothing uses them
  handle = nullptr;
  status = db_->CreateColumnFamily(familyOptions(), name, &handle);
  if (!status.ok()) storageError("cannot create column family " + name, status);
}

bool Store::flag(std::string_view name) const {
  std::shared_lock lock(reopen_);
  requireOpen();
  std::string value;
  rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), handles_[0], name, &value);
  if (status.IsNotFound()) return false;
  if (!status.ok()) storageError("cannot read the store's flags", status);
  return true;
}

void Store::setFlag(std::string_view name, bool on) {
  rocksdb::WriteBatch batch;
  rocksdb::Status status = on ? batch.Put(handles_[0], name, "") : batch.Delete(handles_[0], name);
  if (!status.ok()) storageError("cannot set a store flag", status);
  write(batch, /*sync=*/true);
}

void Store::requireOpen() const {
  // After a failed reopen (recover()) until the next one succeeds.
  if (!db_) throw Error(ErrorCode::kStorage, "the ledger database is not open (see the log)");
}

void Store::closeDb() {
  for (auto* handle : handles_) {
    if (handle != nullptr) db_->DestroyColumnFamilyHandle(handle);  // null: recreate() failed
  }
  handles_.clear();
  if (db_) db_->Close();
  db_.reset();
}

// A clean close writes the memtables out, so the next open does not replay the write-ahead log
// (minutes' worth of appends replayed made the first start after them take seconds). A crash
// still replays it, as it must. Best effort: on a read-only or failing database this does nothing.
Store::~Store() {
  if (!db_) return;
  rocksdb::FlushOptions wait;
  db_->Flush(wait, handles_).PermitUncheckedError();
  closeDb();
}

std::optional<std::string> Store::get(Family f, std::string_view key) const {
  std::shared_lock lock(reopen_);
  requireOpen();
  std::string value;
  rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), family(f), key, &value);
  if (status.IsNotFound()) return {};
  if (!status.ok()) readError(f, status);
  return value;
}

std::unique_ptr<rocksdb::Iterator> Store::iterate(Family f, const rocksdb::ReadOptions& options) const {
  std::shared_lock lock(reopen_);
  requireOpen();
  rocksdb::Iterator* inner = db_->NewIterator(options, family(f));
  return std::make_unique<LockedIterator>(std::move(lock), inner, f);
}

uint64_t Store::estimateKeys(Family f) const {
  std::shared_lock lock(reopen_);
  uint64_t keys = 0;
  if (!db_ || !db_->GetIntProperty(family(f), rocksdb::DB::Properties::kEstimateNumKeys, &keys)) return 0;
  return keys;
}

void Store::write(rocksdb::WriteBatch& batch, bool sync) {
  std::shared_lock lock(reopen_);
  requireOpen();
  rocksdb::WriteOptions options;
  options.sync = sync;
  rocksdb::Status status = db_->Write(options, &batch);
  if (!status.ok()) {
    needsRecovery_ = true;
    storageError("write to the ledger database failed", status);
  }
}

// After a failed write RocksDB refuses writes (and its DB::Resume() cannot always recover: with
// empty memtables it keeps the failed WAL writer, whose next append fails again, or aborts in an
// assertion-enabled librocksdb). Closing and opening the database again recovers from the WAL
// like a restart (a cut last record is dropped) and starts a new WAL. While that fails (the
// disk still refuses), the database stays open read-only so reads go on.
void Store::recover() {
  if (!needsRecovery_) return;
  std::unique_lock lock(reopen_);
  closeDb();
  rocksdb::Status status = openDb(Mode::kReadWrite, false);
  if (status.ok()) {
    needsRecovery_ = false;
    return;
  }
  rocksdb::Status readOnly = openDb(Mode::kReadOnly, false);
  if (!readOnly.ok()) {
    throw Error(ErrorCode::kStorage,
                "the ledger database is still failing (" + status.ToString() +
                    ") and cannot even be read (" + readOnly.ToString() + ")");
  }
  storageError("the ledger database is still failing", status);
}

std::string_view familyName(Family f) { return kFamilyNames[static_cast<size_t>(f)]; }

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
