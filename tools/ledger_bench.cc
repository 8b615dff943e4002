// ledger-bench: measures the hot paths against the targets in SPEC.md. Every figure is a median
// over rounds, printed beside a reference measured in the same run (raw SHA-256, Ed25519 sign
// and verify rates of this machine), so ratios survive a noisy, shared machine.
//
//   ledger-bench verify-local [--tokens N] [--threads T] [--rounds R] [--seconds S]
//   ledger-bench verify-rpc   [--tokens N] [--connections C] [--pipeline P] [--batch B] [--seconds S]
//                             [--server HOST:PORT]   (default: an in-process server on loopback)
//   ledger-bench append       [--writers 1,8,64] [--events N] [--rounds R]
//   ledger-bench replay       [--events E] [--rounds R]
//   ledger-bench scale        [--tokens N] [--events E] [--data-dir DIR (kept and reused)]
//   ledger-bench all          (every subcommand at small sizes: the CTest smoke run)
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ledger/crypto.h"
#include "ledger/error.h"
#include "ledger/temp_dir.h"
#include "ledger/log_verifier.h"
#include "projections/ledger_instance.h"
#include "rpc/client.h"
#include "rpc/server.h"

namespace {

using namespace tokenledger;
using Clock = std::chrono::steady_clock;

// ------------------------------------------------------------------------------- plumbing

struct Args {
  std::string command;
  std::map<std::string, std::string> options;
  uint64_t number(const std::string& name, uint64_t fallback) const {
    auto it = options.find(name);
    return it == options.end() ? fallback : std::stoull(it->second);
  }
  std::string text(const std::string& name, const std::string& fallback) const {
    auto it = options.find(name);
    return it == options.end() ? fallback : it->second;
  }
};

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

double percentile(std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t i = std::min(sorted.size() - 1, static_cast<size_t>(p * static_cast<double>(sorted.size())));
  return sorted[i];
}

// One row: what, the median, its unit, and optionally a reference with the ratio.
void row(const std::string& what, double value, const std::string& unit, const std::string& reference = "",
         double referenceValue = 0) {
  char line[256];
  if (reference.empty()) {
    std::snprintf(line, sizeof(line), "%-52s %14.1f %-10s", what.c_str(), value, unit.c_str());
  } else {
    std::snprintf(line, sizeof(line), "%-52s %14.1f %-10s %5.2fx %s", what.c_str(), value, unit.c_str(),
                  referenceValue > 0 ? value / referenceValue : 0.0, reference.c_str());
  }
  std::cout << line << std::endl;
}


// Runs `work(thread)` on `threads` threads for `duration`; returns operations per second.
double ratePerSecond(unsigned threads, double duration, const std::function<uint64_t(unsigned, Clock::time_point)>& work) {
  std::atomic<uint64_t> total{0};
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(duration));
  auto start = Clock::now();
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) pool.emplace_back([&, t] { total += work(t, deadline); });
  for (auto& th : pool) th.join();
  return static_cast<double>(total.load()) / seconds(Clock::now() - start);
}

// ------------------------------------------------------------------------------- references

double sha256Rate(unsigned threads, double duration) {
  return ratePerSecond(threads, duration, [](unsigned, Clock::time_point deadline) {
    Secret secret{};
    uint64_t n = 0;
    while (Clock::now() < deadline) {
      for (int i = 0; i < 256; ++i, ++n) secret[0] = sha256(secret)[0];
    }
    return n;
  });
}

double signRate(unsigned threads, double duration) {
  SigningKey key = SigningKey::generate();
  return ratePerSecond(threads, duration, [&](unsigned, Clock::time_point deadline) {
    Digest d{};
    uint64_t n = 0;
    while (Clock::now() < deadline) {
      for (int i = 0; i < 32; ++i, ++n) d[0] = key.sign(d)[0];
    }
    return n;
  });
}

double verifyRate(unsigned threads, double duration) {
  SigningKey key = SigningKey::generate();
  VerifyingKey verifier(key.publicKey());
  Digest d{};
  Ed25519Signature sig = key.sign(d);
  return ratePerSecond(threads, duration, [&](unsigned, Clock::time_point deadline) {
    uint64_t n = 0;
    while (Clock::now() < deadline) {
      for (int i = 0; i < 32; ++i, ++n) {
        if (!verifier.verify(d, sig)) std::abort();
      }
    }
    return n;
  });
}

// ------------------------------------------------------------------------------- a ledger to measure

struct BenchLedger {
  TempDir dir{"ledger-bench"};
  Credential admin;
  std::unique_ptr<LedgerInstance> instance;
  Actor actor;

  explicit BenchLedger(uint64_t checkpointEvery = 1000) {
    admin = LedgerInstance::init(dir.path(), "admin");
    LedgerOptions options;
    options.checkpointEvery = checkpointEvery;
    instance = LedgerInstance::open(dir.path(), options);
    actor = Actor::token("admin", admin.sidHex());
  }

  // Appends `count` commands made by `make(i)` with up to `inFlight` outstanding, so the writer
  // sees large groups. Returns the credentials the commands produced.
  std::vector<Credential> run(uint64_t count, const std::function<Command(uint64_t)>& make,
                              size_t inFlight = 8192) {
    std::mutex mutex;
    std::condition_variable done;
    size_t outstanding = 0;
    std::vector<Credential> credentials;
    std::optional<Error> failure;
    for (uint64_t i = 0; i < count; ++i) {
      {
        std::unique_lock lock(mutex);
        done.wait(lock, [&] { return outstanding < inFlight; });
        ++outstanding;
      }
      instance->ledger().submit(Request{actor, "bench", "", make(i)}, [&](Outcome o) {
        std::lock_guard lock(mutex);
        if (o.error && !failure) failure = *o.error;
        if (o.result.credential) credentials.push_back(*o.result.credential);
        --outstanding;
        done.notify_all();
      });
    }
    std::unique_lock lock(mutex);
    done.wait(lock, [&] { return outstanding == 0; });
    if (failure) throw *failure;
    return credentials;
  }

  std::vector<Credential> createTokens(uint64_t n) {
    return run(n, [](uint64_t i) -> Command {
      return CreateToken{"owner" + std::to_string(i % 1000), "bench token " + std::to_string(i),
                         Expiration{Expiration::Kind::kYear, 0}, Scopes::of({"contact:read", "message:read"})};
    });
  }
};

// Valid, wrong-secret, unknown-SID and revoked credentials in a fixed proportion.
std::vector<std::string> mixedCredentials(BenchLedger& ledger, std::vector<Credential>& tokens, size_t n) {
  size_t revokeCount = std::max<size_t>(1, tokens.size() / 10);
  ledger.run(revokeCount, [&](uint64_t i) -> Command { return RevokeToken{tokens[i].sidHex()}; });
  std::mt19937_64 random(42);
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    Credential c = tokens[random() % tokens.size()];
    switch (i % 10) {
      case 8: c.secret[0] ^= 1; break;     // wrong secret
      case 9: c.sid[0] ^= 0x55; break;     // unknown SID
      default: break;                       // valid or (10 % of tokens) revoked
    }
    out.push_back(c.encode());
  }
  return out;
}

// ------------------------------------------------------------------------------- verify-local

void verifyLocal(const Args& args) {
  const uint64_t tokens = args.number("--tokens", 100'000);
  const unsigned threads = static_cast<unsigned>(args.number("--threads", 2));
  const unsigned rounds = static_cast<unsigned>(args.number("--rounds", 5));
  const double duration = static_cast<double>(args.number("--millis", 1000)) / 1000;

  // The index alone, as the server holds it: fill it directly (no log needed to measure it).
  VerifyIndex index(ScopeCatalog::builtin());
  std::vector<Credential> issued;
  issued.reserve(tokens);
  for (uint64_t i = 0; i < tokens; ++i) {
    Credential c = Credential::generate();
    Token t;
    t.sid = c.sidHex();
    t.owner = "owner" + std::to_string(i % 1000);
    t.secretHash = sha256(c.secret);
    t.scopes = Scopes::of({"contact:read", "message:read"});
    t.revoked = i % 10 == 0;
    index.upsert(t);
    issued.push_back(c);
  }
  std::mt19937_64 random(7);
  std::vector<std::string> mix;
  for (size_t i = 0; i < 65536; ++i) {
    Credential c = issued[random() % issued.size()];
    if (i % 10 == 8) c.secret[0] ^= 1;
    if (i % 10 == 9) c.sid[0] ^= 0x55;
    mix.push_back(c.encode());
  }
  auto required = index.requiredMask({"contact:read"});
  std::vector<double> rates, shaRates;
  for (unsigned r = 0; r < rounds; ++r) {
    rates.push_back(ratePerSecond(threads, duration, [&](unsigned t, Clock::time_point deadline) {
      uint64_t n = 0, ok = 0;
      size_t i = t * 7919;
      int64_t now = nowMicros();
      while (Clock::now() < deadline) {
        for (int k = 0; k < 256; ++k, ++n) ok += index.verify(mix[i++ % mix.size()], required, now).valid();
      }
      if (ok == 0) std::abort();
      return n;
    }));
    shaRates.push_back(sha256Rate(threads, duration / 4));
  }
  std::cout << "verify-local: " << tokens << " tokens, " << threads << " threads, mix 70% valid / 10% revoked / 10% wrong secret / 10% unknown SID\n";
  row("raw SHA-256 of a 32-byte secret", median(shaRates), "hash/s");
  row("in-process verifications", median(rates), "verify/s", "of raw SHA-256/s (one hash per verify)", median(shaRates));
  row("in-process verifications vs target", median(rates), "verify/s", "of the 2M/s target", 2e6);
}

// ------------------------------------------------------------------------------- verify-rpc

struct RpcStats {
  std::mutex mutex;
  std::vector<double> latenciesMicros;
  uint64_t calls = 0;
};

// One connection (one thread, its own KJ loop) keeping `pipeline` calls of `batch` verifications
// in flight until `deadline`.
void rpcWorker(const rpc::ClientOptions& options, const std::vector<std::string>& mix, size_t offset,
               unsigned pipeline, unsigned batch, Clock::time_point deadline, RpcStats& stats) {
  rpc::Client client(options);
  auto& ws = client.waitScope();
  auto ledger = client.ledger();
  std::vector<double> latencies;
  uint64_t calls = 0;
  size_t next = offset;
  std::function<kj::Promise<void>()> loop = [&]() -> kj::Promise<void> {
    if (Clock::now() >= deadline) return kj::READY_NOW;
    auto start = Clock::now();
    if (batch <= 1) {
      auto request = ledger.verifyRequest();
      auto v = request.initRequest();
      v.initCredential().setToken(mix[next++ % mix.size()]);
      v.initRequiredScopes(1).set(0, "contact:read");
      return request.send().then([&, start](auto&&) {
        latencies.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
        ++calls;
        return loop();
      });
    }
    auto request = ledger.verifyBatchRequest();
    auto list = request.initRequests(batch);
    for (unsigned i = 0; i < batch; ++i) {
      list[i].initCredential().setToken(mix[next++ % mix.size()]);
      list[i].initRequiredScopes(1).set(0, "contact:read");
    }
    return request.send().then([&, start](auto&&) {
      latencies.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
      calls += batch;
      return loop();
    });
  };
  kj::Vector<kj::Promise<void>> inFlight;
  for (unsigned p = 0; p < pipeline; ++p) inFlight.add(loop());
  kj::joinPromises(inFlight.releaseAsArray()).wait(ws);
  std::lock_guard lock(stats.mutex);
  stats.calls += calls;
  stats.latenciesMicros.insert(stats.latenciesMicros.end(), latencies.begin(), latencies.end());
}

// A paced closed loop per connection: sends at `perConnectionRate`; latency counts from the
// scheduled send time, so a slow reply cannot hide the queueing it causes.
void pacedWorker(const rpc::ClientOptions& options, const std::vector<std::string>& mix, size_t offset,
                 double perConnectionRate, Clock::time_point deadline, RpcStats& stats) {
  rpc::Client client(options);
  auto& ws = client.waitScope();
  auto ledger = client.ledger();
  std::vector<double> latencies;
  auto interval = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / perConnectionRate));
  auto scheduled = Clock::now();
  size_t next = offset;
  while (scheduled < deadline) {
    std::this_thread::sleep_until(scheduled);
    auto request = ledger.verifyRequest();
    auto v = request.initRequest();
    v.initCredential().setToken(mix[next++ % mix.size()]);
    v.initRequiredScopes(1).set(0, "contact:read");
    request.send().wait(ws);
    latencies.push_back(std::chrono::duration<double, std::micro>(Clock::now() - scheduled).count());
    scheduled += interval;
  }
  std::lock_guard lock(stats.mutex);
  stats.calls += latencies.size();
  stats.latenciesMicros.insert(stats.latenciesMicros.end(), latencies.begin(), latencies.end());
}

struct RpcResult {
  double rate;
  double p50, p99, p999;
};

RpcResult runRpc(const std::vector<std::string>& mix, unsigned connections,
                 const std::function<void(size_t, Clock::time_point, RpcStats&)>& worker, double duration) {
  RpcStats stats;
  auto start = Clock::now();
  auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(duration));
  std::vector<std::thread> pool;
  for (unsigned c = 0; c < connections; ++c) {
    pool.emplace_back([&, c] {
      try {
        worker(c * 7919 % mix.size(), deadline, stats);
      } catch (const std::exception& e) {
        std::cerr << "connection " << c << " failed: " << e.what() << "\n";
      } catch (const kj::Exception& e) {
        std::cerr << "connection " << c << " failed: " << e.getDescription().cStr() << "\n";
      }
    });
  }
  for (auto& t : pool) t.join();
  double elapsed = seconds(Clock::now() - start);
  std::sort(stats.latenciesMicros.begin(), stats.latenciesMicros.end());
  return {static_cast<double>(stats.calls) / elapsed, percentile(stats.latenciesMicros, 0.5),
          percentile(stats.latenciesMicros, 0.99), percentile(stats.latenciesMicros, 0.999)};
}

void verifyRpc(const Args& args) {
  const uint64_t tokens = args.number("--tokens", 10'000);
  const unsigned connections = static_cast<unsigned>(args.number("--connections", 50));
  const unsigned pipeline = static_cast<unsigned>(args.number("--pipeline", 16));
  const unsigned batch = static_cast<unsigned>(args.number("--batch", 100));
  const unsigned rounds = static_cast<unsigned>(args.number("--rounds", 3));
  const double duration = static_cast<double>(args.number("--millis", 2000)) / 1000;

  BenchLedger ledger;
  auto issued = ledger.createTokens(tokens);
  auto mix = mixedCredentials(ledger, issued, 65536);
  rpc::ServerOptions serverOptions;
  serverOptions.port = 0;
  rpc::Server server(*ledger.instance, serverOptions);
  rpc::ClientOptions options;
  options.port = server.port();

  std::cout << "verify-rpc: in-process server on 127.0.0.1:" << server.port() << " (" << serverOptions.threads
            << " loop threads), " << tokens << " tokens, clients on the same 2-core machine\n";
  auto measure = [&](const std::string& what, unsigned conns, unsigned pipe, unsigned b) {
    std::vector<double> rates, p50, p99, p999;
    for (unsigned r = 0; r < rounds; ++r) {
      auto result = runRpc(mix, conns, [&](size_t offset, Clock::time_point deadline, RpcStats& stats) {
        rpcWorker(options, mix, offset, pipe, b, deadline, stats);
      }, duration);
      rates.push_back(result.rate);
      p50.push_back(result.p50);
      p99.push_back(result.p99);
      p999.push_back(result.p999);
    }
    row(what + " throughput", median(rates), "verify/s");
    row(what + " call latency p50", median(p50), "us");
    row(what + " call latency p99", median(p99), "us");
    row(what + " call latency p99.9", median(p999), "us");
    return median(rates);
  };
  measure("1 connection, unpipelined:", 1, 1, 1);
  double unpipelined = measure(std::to_string(connections) + " connections, unpipelined:", connections, 1, 1);
  double pipelined = measure(std::to_string(connections) + " connections x " + std::to_string(pipeline) + " pipelined:", connections, pipeline, 1);
  double batched = measure(std::to_string(std::min(connections, 4u)) + " connections x verifyBatch(" + std::to_string(batch) + ") x 2:", std::min(connections, 4u), 2, batch);
  double peak = std::max({unpipelined, pipelined, batched / 1.0});
  double peakCalls = std::max(unpipelined, pipelined);

  // Open loop at half the peak single-call rate.
  double half = peakCalls / 2;
  std::vector<double> p50, p99, p999;
  for (unsigned r = 0; r < rounds; ++r) {
    auto result = runRpc(mix, connections, [&](size_t offset, Clock::time_point deadline, RpcStats& stats) {
      pacedWorker(options, mix, offset, half / connections, deadline, stats);
    }, duration);
    p50.push_back(result.p50);
    p99.push_back(result.p99);
    p999.push_back(result.p999);
  }
  row("paced at half the peak call rate (" + std::to_string(static_cast<int>(half)) + "/s): p50", median(p50), "us");
  row("paced at half the peak call rate: p99", median(p99), "us", "of the 1 ms target", 1000);
  row("paced at half the peak call rate: p99.9", median(p999), "us");
  row("best of pipelined / batched vs target", peak, "verify/s", "of the 100k/s target", 100000);
}

// ------------------------------------------------------------------------------- append

void append(const Args& args) {
  std::vector<unsigned> writerCounts;
  std::stringstream list(args.text("--writers", "1,8,64"));
  for (std::string w; std::getline(list, w, ',');) writerCounts.push_back(static_cast<unsigned>(std::stoul(w)));
  const uint64_t perRound = args.number("--events", 20'000);
  const unsigned rounds = static_cast<unsigned>(args.number("--rounds", 3));
  std::vector<double> signs;
  for (unsigned r = 0; r < rounds; ++r) signs.push_back(signRate(1, 0.3));
  std::cout << "append: durable CreateToken commands, each acknowledged after the WAL sync\n";
  row("raw Ed25519 signs, 1 core", median(signs), "sign/s");
  for (unsigned writers : writerCounts) {
    std::vector<double> rates, p50s, p99s;
    for (unsigned r = 0; r < rounds; ++r) {
      BenchLedger ledger;
      uint64_t events = std::max<uint64_t>(writers, writers == 1 ? perRound / 10 : perRound);
      std::vector<double> latencies(events);
      std::atomic<uint64_t> nextIndex{0};
      auto start = Clock::now();
      std::vector<std::thread> pool;
      for (unsigned w = 0; w < writers; ++w) {
        pool.emplace_back([&, w] {
          for (uint64_t i; (i = nextIndex.fetch_add(1)) < events;) {
            auto t0 = Clock::now();
            ledger.instance->ledger().execute(Request{ledger.actor, "bench", "",
                CreateToken{"owner" + std::to_string(w), "bench", Expiration{}, Scopes::of({"contact:read"})}});
            latencies[i] = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
          }
        });
      }
      for (auto& t : pool) t.join();
      rates.push_back(static_cast<double>(events) / seconds(Clock::now() - start));
      std::sort(latencies.begin(), latencies.end());
      p50s.push_back(percentile(latencies, 0.5));
      p99s.push_back(percentile(latencies, 0.99));
    }
    std::string label = std::to_string(writers) + " writer(s)";
    row(label + ": durable appends", median(rates), "events/s", "of raw 1-core signs/s", median(signs));
    row(label + ": commit latency p50", median(p50s), "us");
    row(label + ": commit latency p99", median(p99s), "us");
    if (writers == 64) row("64 writers vs target", median(rates), "events/s", "of the 20k/s target", 20000);
  }
}

// ------------------------------------------------------------------------------- replay

void replay(const Args& args) {
  const uint64_t events = args.number("--events", 200'000);
  const unsigned rounds = static_cast<unsigned>(args.number("--rounds", 3));
  BenchLedger ledger(/*checkpointEvery=*/10'000);
  auto start = Clock::now();
  ledger.createTokens(events > 3 ? events - 3 : 1);
  std::cout << "replay: generated " << ledger.instance->ledger().headSeq() << " events in "
            << seconds(Clock::now() - start) << " s\n";
  std::vector<double> full, chain, raw;
  for (unsigned r = 0; r < rounds; ++r) {
    VerifyOptions options;
    auto t0 = Clock::now();
    VerifyReport report = verifyLog(ledger.instance->store(), options);
    if (!report.intact) throw Error(ErrorCode::kIntegrity, report.problem);
    full.push_back(static_cast<double>(report.entries) / seconds(Clock::now() - t0));
    options.signatures = false;
    t0 = Clock::now();
    report = verifyLog(ledger.instance->store(), options);
    chain.push_back(static_cast<double>(report.entries) / seconds(Clock::now() - t0));
    raw.push_back(verifyRate(2, 0.5));
  }
  row("raw Ed25519 verifies, 2 cores", median(raw), "verify/s");
  row("full replay (chain + every signature)", median(full), "events/s", "of raw 2-core verifies (target 0.90x)", median(raw));
  row("chain-only replay", median(chain), "events/s", "of the 1M/s target", 1e6);
}

// ------------------------------------------------------------------------------- scale

long residentKiB() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
  }
  return 0;
}

// Child process: open the data dir, start serving, answer one verify; print seconds and KiB.
int openAndServe(const Args& args) {
  auto t0 = Clock::now();
  auto instance = LedgerInstance::open(args.text("--data-dir", ""));
  rpc::ServerOptions serverOptions;
  serverOptions.port = 0;
  rpc::Server server(*instance, serverOptions);
  rpc::ClientOptions options;
  options.port = server.port();
  rpc::Client client(options);
  auto request = client.ledger().verifyRequest();
  request.initRequest().initCredential().setToken(args.text("--credential", ""));
  bool valid = request.send().wait(client.waitScope()).getResult().getValid();
  double elapsed = seconds(Clock::now() - t0);
  std::cout << elapsed << " " << residentKiB() << " " << valid << std::endl;
  return valid ? 0 : 1;
}

// Generates the ledger in a temporary directory, or in --data-dir (kept, and reused by later
// runs: generating 5M events takes minutes) together with one credential of it, 0600.
void scale(const Args& args, const char* self) {
  const uint64_t tokens = args.number("--tokens", 1'000'000);
  const uint64_t events = std::max(tokens + 3, args.number("--events", 5'000'000));
  const std::filesystem::path keep = args.text("--data-dir", "");
  const std::filesystem::path credentialFile = keep.string() + ".credential";
  std::optional<BenchLedger> ledger;
  std::filesystem::path dir = keep;
  std::string credential;
  if (!keep.empty() && std::filesystem::exists(credentialFile)) {
    std::ifstream(credentialFile) >> credential;
    std::cout << "scale: reusing " << keep << "\n";
  } else {
    ledger.emplace(/*checkpointEvery=*/100'000);
    auto start = Clock::now();
    auto issued = ledger->createTokens(tokens);
    uint64_t extra = events - tokens - 3;
    ledger->run(extra, [&](uint64_t i) -> Command {
      return SetDescription{issued[i % issued.size()].sidHex(), "bench token, edit " + std::to_string(i)};
    });
    std::cout << "scale: generated " << tokens << " tokens / " << ledger->instance->ledger().headSeq()
              << " events in " << seconds(Clock::now() - start) << " s\n";
    credential = issued.front().encode();
    ledger->instance.reset();  // the child opens the directory as a fresh server would
    if (keep.empty()) {
      dir = ledger->dir.path();
    } else {
      std::filesystem::rename(ledger->dir.path(), keep);
      int fd = ::open(credentialFile.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      std::string line = credential + "\n";
      bool written = fd >= 0 && ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
      if (fd >= 0) ::close(fd);
      if (!written) throw Error(ErrorCode::kStorage, "cannot write " + credentialFile.string());
    }
  }

  std::string command = std::string(self) + " open-and-serve --data-dir " + dir.string() + " --credential " + credential;
  FILE* child = ::popen(command.c_str(), "r");
  if (child == nullptr) throw Error(ErrorCode::kInternal, "cannot start the child");
  double startup = 0;
  long kib = 0;
  int valid = 0;
  if (std::fscanf(child, "%lf %ld %d", &startup, &kib, &valid) != 3) startup = -1;
  int status = ::pclose(child);
  if (startup < 0 || status != 0) throw Error(ErrorCode::kInternal, "the serving child failed");
  row("start to serving (open + index + first verify)", startup, "s", "of the 3 s target", 3);
  row("resident memory when serving", static_cast<double>(kib) / 1024, "MiB", "of the 300 MB target", 300e6 / (1 << 20));
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (argc >= 2) args.command = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) args.options[argv[i]] = argv[i + 1];
  try {
    if (args.command == "verify-local") {
      verifyLocal(args);
    } else if (args.command == "verify-rpc") {
      verifyRpc(args);
    } else if (args.command == "append") {
      append(args);
    } else if (args.command == "replay") {
      replay(args);
    } else if (args.command == "scale") {
      scale(args, std::filesystem::read_symlink("/proc/self/exe").c_str());
    } else if (args.command == "open-and-serve") {
      return openAndServe(args);
    } else if (args.command == "smoke") {
      // Every subcommand at tiny sizes: keeps the benchmark building and running in CTest.
      Args tiny;
      tiny.options = {{"--tokens", "200"}, {"--rounds", "1"}, {"--millis", "100"}, {"--connections", "4"},
                      {"--pipeline", "4"}, {"--batch", "10"}, {"--writers", "1,8"}, {"--events", "300"}};
      verifyLocal(tiny);
      verifyRpc(tiny);
      append(tiny);
      replay(tiny);
      scale(tiny, std::filesystem::read_symlink("/proc/self/exe").c_str());
    } else {
      std::cerr << "usage: ledger-bench verify-local|verify-rpc|append|replay|scale|smoke [--option value]...\n"
                   "  see the top of tools/ledger_bench.cc for the options\n";
      return 2;
    }
  } catch (const Error& e) {
    std::cerr << "ledger-bench: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {  // a bad number (std::stoull) or a file system error
    std::cerr << "ledger-bench: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
