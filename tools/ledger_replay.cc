// ledger-replay: forensics and compliance checks on a ledger's log, offline on a data directory
// (opened read-only: safe beside a running tokenledgerd) or remotely through an auditor's token.
//
// Exit codes: 0 intact / done, 1 integrity failure (the first bad seq is named), 2 usage or I/O.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ledger/chain.h"
#include "ledger/error.h"
#include "ledger/temp_dir.h"
#include "ledger/log_export.h"
#include "ledger/log_verifier.h"
#include "ledger/scope_catalog.h"
#include "projections/event_text.h"
#include "projections/forensics.h"
#include "projections/rebuild.h"
#include "rpc/log_mirror.h"

namespace {

using namespace tokenledger;

constexpr const char* kUsage = R"(usage: ledger-replay [--data-dir DIR | --server HOST:PORT [--tls-ca PEM]] COMMAND

  verify [--chain-only] [--against CHECKPOINT.json]
        every entry's chain link and Ed25519 signature (--chain-only: chain and checkpoint
        signatures); --against proves the log still extends a checkpoint saved earlier
        (`tokenctl checkpoint > cp.json`)
  table (--as-of-seq N | --as-of-time T)      the token table as it stood then
  history (--token SID | --owner NAME | --actor NAME) [--from T] [--to T]
  who-could --scope SCOPE --at T              tokens able to use SCOPE at T
  diff                                        rebuild the projection and compare (offline only)
  rebuild                                     replace the stored projection with one rebuilt from
                                              the log, once it verifies (offline, server stopped)
  export --format jsonl|capnp [--out FILE]    JSON lines, or LogEntry messages for `capnp decode`
  export-key [--key-id ID]                    a signing public key as PEM (default: the newest)

  DIR defaults to $TOKENLEDGER_DATA_DIR or ./data. Remote mode logs in with the token in
  $TOKENLEDGER_TOKEN (an auditor or admin with audit:read). T is YYYY-MM-DD or
  YYYY-MM-DDTHH:MM:SSZ (UTC).
)";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Args {
  std::string command;
  std::map<std::string, std::string> options;
  std::set<std::string> switches;
  std::string option(const std::string& name, const std::string& fallback = "") const {
    auto it = options.find(name);
    return it == options.end() ? fallback : it->second;
  }
  bool has(const std::string& name) const { return options.count(name) != 0; }
};

Args parse(int argc, char** argv) {
  static const std::set<std::string> kValued = {
      "--data-dir", "--server", "--tls-ca", "--against", "--as-of-seq", "--as-of-time", "--token",
      "--owner", "--actor", "--from", "--to", "--scope", "--at", "--format", "--out", "--key-id"};
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--chain-only") {
      args.switches.insert(a);
    } else if (kValued.count(a)) {
      if (i + 1 >= argc) throw UsageError(a + " needs a value");
      args.options[a] = argv[++i];
    } else if (a.starts_with("--") || !args.command.empty()) {
      throw UsageError("unexpected argument " + a);
    } else {
      args.command = a;
    }
  }
  if (args.command.empty()) throw UsageError("no command given");
  return args;
}

int64_t timeOption(const Args& args, const std::string& name, int64_t fallback) {
  if (!args.has(name)) return fallback;
  int64_t micros = 0;
  if (!parseTime(args.option(name), micros)) {
    throw UsageError(name + " takes YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ");
  }
  return micros;
}

uint64_t headOf(const Store& store) {
  auto it = store.iterate(Family::kEvents);
  it->SeekToLast();
  return it->Valid() ? seqFromKey(it->key().ToStringView()) : 0;
}

// "\rverify: 1200000/5000000 entries, 410000/s, ETA 9 s" on stderr, only for a terminal.
class ProgressLine {
 public:
  ProgressLine(std::string what, uint64_t total)
      : what_(std::move(what)), total_(total), enabled_(::isatty(2) == 1),
        start_(std::chrono::steady_clock::now()) {}
  ~ProgressLine() {
    if (enabled_ && shown_) std::cerr << "\n";
  }
  void operator()(uint64_t done) {
    if (!enabled_) return;
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
    char line[160];
    std::snprintf(line, sizeof(line), "\r%s: %llu/%llu entries, %.0f/s, ETA %.0f s   ", what_.c_str(),
                  static_cast<unsigned long long>(done), static_cast<unsigned long long>(total_), rate,
                  rate > 0 && total_ > done ? static_cast<double>(total_ - done) / rate : 0.0);
    std::cerr << line << std::flush;
    shown_ = true;
  }

 private:
  std::string what_;
  uint64_t total_;
  bool enabled_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point start_;
};


class Replay {
 public:
  explicit Replay(const Args& args) : args_(args) {
    if (args.has("--server")) {
      if (args.command == "diff" || args.command == "rebuild") {
        throw UsageError(args.command + " works on the stored projection: run it on a data directory");
      }
      const char* token = std::getenv("TOKENLEDGER_TOKEN");
      if (token == nullptr || *token == '\0') throw UsageError("remote mode needs TOKENLEDGER_TOKEN");
      rpc::ClientOptions options;
      if (!rpc::parseHostPort(args.option("--server"), options.host, options.port)) {
        throw Error(ErrorCode::kInvalidArgument, "--server takes HOST:PORT with a port from 0 to 65535");
      }
      if (args.has("--tls-ca")) options.tlsCaFile = args.option("--tls-ca");
      mirrorDir_ = std::make_unique<TempDir>("ledger-replay");
      store_ = Store::open(mirrorDir_->path(), Store::Mode::kReadWrite, /*create=*/true);
      rpc::Client client(options);
      ProgressLine progress("download", 0);
      rpc::mirrorLog(client, token, *store_, std::ref(progress));
    } else {
      const char* env = std::getenv("TOKENLEDGER_DATA_DIR");
      std::filesystem::path dir = args.option("--data-dir", env != nullptr && *env ? env : "data");
      // Only rebuild writes; the database's lock then keeps it from running beside the server.
      store_ = Store::open(dir / "db", args.command == "rebuild" ? Store::Mode::kReadWrite : Store::Mode::kReadOnly,
                           /*create=*/false);
    }
  }

  int run() {
    const std::string& c = args_.command;
    if (c == "verify") return verify();
    if (c == "table") return table();
    if (c == "history") return history();
    if (c == "who-could") return whoCouldUse();
    if (c == "diff") return diff();
    if (c == "rebuild") return rebuild();
    if (c == "export") return exportLog();
    if (c == "export-key") return exportKey();
    throw UsageError("unknown command " + c);
  }

 private:
  int verify() {
    VerifyOptions options;
    options.signatures = args_.switches.count("--chain-only") == 0;
    options.threads = 2;
    if (args_.has("--against")) {
      std::ifstream in(args_.option("--against"));
      if (!in) throw Error(ErrorCode::kStorage, "cannot read " + args_.option("--against"));
      std::stringstream text;
      text << in.rdbuf();
      options.against = parseCheckpointJson(text.str());
    }
    ProgressLine progress(options.signatures ? "verify" : "verify chain", headOf(*store_));
    options.progress = std::ref(progress);
    VerifyReport report = verifyLog(*store_, options);
    if (!report.intact) {
      std::cout << "INTEGRITY FAILURE at seq " << report.firstBadSeq << ": " << report.problem << "\n";
      return 1;
    }
    std::cout << "intact: " << report.entries << " entries, "
              << (options.signatures ? "every signature verified" : "chain verified (signatures not checked)")
              << ", " << report.checkpoints << " checkpoint(s) verified"
              << (options.against ? ", extends the given checkpoint at seq " + std::to_string(options.against->seq) : "")
              << "; head " << toHex(report.headHash) << "\n";
    return 0;
  }

  int table() {
    ReplayBound bound;
    int64_t moment = 0;
    if (args_.has("--as-of-seq")) {
      if (!parseUnsigned(args_.option("--as-of-seq"), UINT64_MAX, bound.toSeq)) {
        throw Error(ErrorCode::kInvalidArgument, "--as-of-seq takes a whole number");
      }
      auto event = store_->get(Family::kEvents, seqKey(bound.toSeq));
      if (!event) throw Error(ErrorCode::kNotFound, "the log has no seq " + std::to_string(bound.toSeq));
      CanonicalReader reader(*event);
      moment = reader.root<schema::Event>().getTimeMicros();
    } else if (args_.has("--as-of-time")) {
      moment = bound.toTimeMicros = timeOption(args_, "--as-of-time", 0);
    } else {
      throw UsageError("table needs --as-of-seq N or --as-of-time T");
    }
    MemoryState state = replayLog(*store_, bound);
    std::cout << "Token table as of seq " << state.lastSeq() << " (" << formatTime(moment) << ")\n";
    std::vector<std::vector<std::string>> rows = {{"OWNER", "DESCRIPTION", "ACCOUNT SID", "SCOPES", "EXPIRATION", "STATUS"}};
    for (const auto& [sid, t] : state.tokens()) {
      rows.push_back({t.owner, t.description, sid, t.scopes.describe(), formatTime(t.expiresAtMicros),
                      statusName(t.statusAt(moment))});
    }
    printTable(rows);
    return 0;
  }

  int history() {
    HistoryQuery query;
    if (args_.has("--token")) query.token = args_.option("--token");
    if (args_.has("--owner")) query.owner = args_.option("--owner");
    if (args_.has("--actor")) query.actor = args_.option("--actor");
    if (!query.token && !query.owner && !query.actor) {
      throw UsageError("history needs --token SID, --owner NAME or --actor NAME");
    }
    query.fromMicros = timeOption(args_, "--from", 0);
    query.toMicros = timeOption(args_, "--to", query.toMicros);
    forEachHistoryEvent(*store_, query, [](schema::Event::Reader e) { std::cout << historyLine(e) << "\n"; });
    return 0;
  }

  int whoCouldUse() {
    if (!args_.has("--scope") || !args_.has("--at")) throw UsageError("who-could needs --scope and --at");
    int64_t at = timeOption(args_, "--at", 0);
    auto tokens = whoCould(*store_, ScopeCatalog::builtin(), args_.option("--scope"), at);
    std::cout << tokens.size() << " token(s) could use " << args_.option("--scope") << " at "
              << formatTime(at) << "\n";
    std::vector<std::vector<std::string>> rows = {{"OWNER", "DESCRIPTION", "ACCOUNT SID", "SCOPES", "EXPIRATION"}};
    for (const auto& t : tokens) {
      rows.push_back({t.owner, t.description, t.sid, t.scopes.describe(), formatTime(t.expiresAtMicros)});
    }
    if (!tokens.empty()) printTable(rows);
    return 0;
  }

  int diff() {
    ProgressLine progress("replay", headOf(*store_));
    MemoryState state = replayLog(*store_, {}, std::ref(progress));
    auto differences = diffStored(*store_, state);
    for (const auto& d : differences) std::cout << d << "\n";
    if (!differences.empty()) {
      std::cout << differences.size() << " difference(s) between the stored projection and the log\n";
      return 1;
    }
    std::cout << "the stored projection equals a replay of " << state.lastSeq() << " entries\n";
    return 0;
  }

  int exportLog() {
    std::string format = args_.option("--format");
    if (format != "jsonl" && format != "capnp") throw UsageError("export needs --format jsonl or --format capnp");
    ProgressLine progress("export", headOf(*store_));
    std::string out = args_.option("--out", "-");
    if (format == "jsonl") {
      if (out == "-") return exportJsonLines(*store_, std::cout, std::ref(progress)), 0;
      std::ofstream file(out, std::ios::binary | std::ios::trunc);
      if (!file) throw Error(ErrorCode::kStorage, "cannot write " + out);
      exportJsonLines(*store_, file, std::ref(progress));
      return 0;
    }
    if (out == "-") return exportCapnpStream(*store_, 1, std::ref(progress)), 0;
    int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw Error(ErrorCode::kStorage, "cannot write " + out);
    try {
      exportCapnpStream(*store_, fd, std::ref(progress));
    } catch (...) {
      ::close(fd);
      throw;
    }
    ::close(fd);
    return 0;
  }

  int rebuild() {
    ProgressLine progress("verify", headOf(*store_));
    RebuildReport report = rebuildStored(*store_, std::ref(progress));
    std::cout << "rebuilt the stored projection from " << report.entries << " verified entries: "
              << report.tokens << " tokens, " << report.principals << " principals with roles\n";
    return 0;
  }

  int exportKey() {
    std::optional<Ed25519PublicKey> chosen;
    std::string wanted = args_.option("--key-id");
    HistoryQuery all;
    forEachHistoryEvent(*store_, all, [&](schema::Event::Reader e) {
      if (!e.isSigningKeyRotated()) return;
      auto k = e.getSigningKeyRotated();
      if (!wanted.empty() && k.getKeyId() != wanted.c_str()) return;
      if (k.getPublicKey().size() != sizeof(Ed25519PublicKey)) return;
      Ed25519PublicKey raw;
      std::copy(k.getPublicKey().begin(), k.getPublicKey().end(), raw.begin());
      chosen = raw;  // the newest match wins
    });
    if (!chosen) {
      throw Error(ErrorCode::kNotFound, wanted.empty() ? "the log introduces no signing key"
                                                        : "the log never introduced key " + wanted);
    }
    std::cout << VerifyingKey(*chosen).toPem();
    return 0;
  }

  static void printTable(const std::vector<std::vector<std::string>>& rows) {
    std::cout << formatTable(rows);
  }

  const Args& args_;
  std::unique_ptr<TempDir> mirrorDir_;
  std::unique_ptr<Store> store_;
};

}  // namespace

int main(int argc, char** argv) {
  try {
    Args args = parse(argc, argv);
    return Replay(args).run();
  } catch (const UsageError& e) {
    std::cerr << "ledger-replay: " << e.what() << "\n\n" << kUsage;
    return 2;
  } catch (const Error& e) {
    std::cerr << "ledger-replay: " << e.what() << "\n";
    return e.code() == ErrorCode::kIntegrity ? 1 : 2;
  }
}
