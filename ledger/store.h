// The RocksDB database behind one ledger: its column families and key encodings. Everything
// that is written together (events, seals, checkpoints and the projection rows they imply) goes
// through one WriteBatch, so after a crash the log and the table always agree.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace tokenledger {

enum class Family : size_t {
  kEvents,       // big-endian seq -> canonical schema::Event
  kSeals,        // big-endian seq -> canonical schema::Seal
  kCheckpoints,  // big-endian seq -> canonical schema::Checkpoint
  kTokens,       // sid -> canonical schema::TokenRecord                 (projection)
  kOwnerTokens,  // owner 0x00 sid -> ""                                 (projection)
  kTokenEvents,  // sid big-endian seq -> ""                            (projection)
  kRoles,        // principal -> one byte, the RoleSet bitmask           (projection)
  kKeys,         // key id -> big-endian seq of its SigningKeyRotated event
  kPrincipalEvents,  // principal 0x00 big-endian seq -> ""  (role events; projection)
};
inline constexpr size_t kFamilyCount = 9;
// The column family's name in RocksDB ("events", "owner_tokens", ...).
std::string_view familyName(Family f);

class Store {
 public:
  enum class Mode {
    kReadWrite,  // the one writer: tokenledgerd
    kReadOnly,   // a consistent snapshot, safe beside a running writer
  };

  // Opens `dbDir` (creating it when `create` is set). Throws Error(kStorage / kNotFound).
  static std::unique_ptr<Store> open(const std::filesystem::path& dbDir, Mode mode, bool create);
  ~Store();

  // Not for use beside the writer: recover() may reopen the database (and its handles).
  rocksdb::DB& db() { return *db_; }
  // Not concurrently with recover(), which replaces the handles. Family ids are stable across a
  // reopen, so a batch built with these handles stays valid.
  rocksdb::ColumnFamilyHandle* family(Family f) const { return handles_[static_cast<size_t>(f) + 1]; }

  // Reads throw Error(kIntegrity) when RocksDB finds stored bytes that fail their checksum, and
  // Error(kStorage) when the read itself fails.
  std::optional<std::string> get(Family f, std::string_view key) const;
  // The iterator holds off a reopen (see recover()) until it is destroyed. Its Valid() throws
  // as get() does rather than end a scan early at a block that cannot be read.
  std::unique_ptr<rocksdb::Iterator> iterate(Family f, const rocksdb::ReadOptions& options = {}) const;
  // RocksDB's estimate of how many keys `f` holds (0 if it has none to give): for sizing.
  uint64_t estimateKeys(Family f) const;
  // Durable write (WAL synced when `sync`); throws Error(kStorage) and leaves nothing applied.
  // After a failed write RocksDB refuses all writes until recover().
  void write(rocksdb::WriteBatch& batch, bool sync);
  // Drops the family and creates it again, empty: its table files go, damaged ones included.
  // Not beside readers or writers of the family. Crash-safe only with a flag (below) saying the
  // family's data is incomplete until the caller has refilled it: a writer's open recreates a
  // family that a crash left dropped.
  void recreate(Family f);
  // Named, durable store-level flags, kept apart from every family (RocksDB's default family).
  bool flag(std::string_view name) const;
  void setFlag(std::string_view name, bool on);
  // After a failed write: closes and reopens the database (waiting for readers and a write in
  // progress), so the ledger recovers by itself once the disk does; otherwise does nothing.
  // Throws Error(kStorage) while the disk still fails (the database then stays open read-only,
  // and the next recover() tries again). Not concurrently with family().
  void recover();

 private:
  Store() = default;
  rocksdb::Status openDb(Mode mode, bool create);
  void closeDb();
  // Throws Error(kStorage) while the database is closed (a reopen failed; see recover()).
  void requireOpen() const;

  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::atomic<bool> needsRecovery_{false};
  std::filesystem::path dir_;
  mutable std::shared_mutex reopen_;  // shared: get(), write() and live iterators; exclusive: recover()
};

std::string seqKey(uint64_t seq);
// 0 if `key` is not 8 bytes.
uint64_t seqFromKey(std::string_view key);

}  // namespace tokenledger
