// Shared helpers for the tokenledger tests: a temporary directory per test, an injectable clock,
// and a fixture holding one initialised ledger (admin "alice") opened through LedgerInstance.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ledger/chain.h"
#include "ledger/commands.h"
#include "ledger/credential.h"
#include "ledger/crypto.h"
#include "ledger/error.h"
#include "ledger/ledger.h"
#include "ledger/store.h"
#include "ledger/temp_dir.h"
#include "projections/ledger_instance.h"
#include "schemas/ledger.capnp.h"

namespace tokenledger::test {

inline constexpr int64_t kSecond = 1'000'000;
inline constexpr int64_t kDay = 86400 * kSecond;
// 2026-01-01T00:00:00Z: every fixture starts its clock here.
inline constexpr int64_t kStartMicros = 1'767'225'600LL * kSecond;

// A fresh directory under /tmp, removed with everything in it when the test ends.
using TempDir = tokenledger::TempDir;

// A clock the test moves by hand; copies of fn() all read the same value.
class TestClock {
 public:
  TestClock() : now_(std::make_shared<std::atomic<int64_t>>(kStartMicros)) {}
  int64_t now() const { return now_->load(); }
  void set(int64_t micros) { now_->store(micros); }
  void advance(int64_t micros) { now_->fetch_add(micros); }
  std::function<int64_t()> fn() const {
    auto now = now_;
    return [now] { return now->load(); };
  }

 private:
  std::shared_ptr<std::atomic<int64_t>> now_;
};

inline std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::string errorCodeText(ErrorCode code) { return std::string(errorCodeName(code)); }

// The decoded form of one stored event (a copy that outlives the bytes it came from).
struct StoredEvent {
  std::string bytes;
  std::unique_ptr<CanonicalReader> reader;
  schema::Event::Reader event() { return reader->root<schema::Event>(); }
};

inline StoredEvent readEvent(const Store& store, uint64_t seq) {
  StoredEvent out;
  auto bytes = store.get(Family::kEvents, seqKey(seq));
  if (!bytes) throw std::runtime_error("no event " + std::to_string(seq));
  out.bytes = *bytes;
  out.reader = std::make_unique<CanonicalReader>(out.bytes);
  return out;
}

// The keyId in the seal of entry `seq`.
inline std::string sealKeyId(const Store& store, uint64_t seq) {
  auto bytes = store.get(Family::kSeals, seqKey(seq));
  if (!bytes) throw std::runtime_error("no seal " + std::to_string(seq));
  CanonicalReader reader(*bytes);
  return reader.root<schema::Seal>().getKeyId();
}

inline Scopes scopes(std::vector<std::string> ids) { return Scopes::of(std::move(ids)); }

// One initialised ledger in a temporary directory, opened with an injectable clock. The first
// admin is "alice", logged in with the token `tokenledgerd init` printed.
class LedgerFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    adminCredential = LedgerInstance::init(dataDir(), "alice", options());
    admin = Actor::token("alice", adminCredential.sidHex());
    open();
  }
  void TearDown() override { close(); }

  const std::filesystem::path& dataDir() const { return dir.path(); }

  virtual LedgerOptions options() {
    LedgerOptions o;
    o.clock = clock.fn();
    return o;
  }
  void open() { instance = LedgerInstance::open(dataDir(), options()); }
  void close() { instance.reset(); }
  void reopen() {
    close();
    open();
  }

  Ledger& ledger() { return instance->ledger(); }
  StoredProjection& projection() { return instance->projection(); }
  Store& store() { return instance->store(); }
  uint64_t head() { return ledger().headSeq(); }

  CommandResult run(const Actor& actor, Command command, std::string reason = {}) {
    return ledger().execute(Request{actor, "127.0.0.1:4000", std::move(reason), std::move(command)});
  }

  // Runs a command that must be rejected with `code` and must append nothing; returns the
  // error message (empty when the command was not rejected as expected).
  std::string rejected(const Actor& actor, Command command, ErrorCode code) {
    const uint64_t before = head();
    std::string message;
    try {
      CommandResult r = run(actor, std::move(command));
      ADD_FAILURE() << "expected " << errorCodeText(code) << " but the command succeeded (seqs "
                    << r.firstSeq << ".." << r.lastSeq << ")";
    } catch (const Error& e) {
      EXPECT_EQ(errorCodeText(e.code()), errorCodeText(code)) << e.what();
      message = e.what();
    }
    EXPECT_EQ(head(), before) << "a rejected command moved the head";
    return message;
  }

  // A token for `owner` created by the admin; returns the actor that logs in with it.
  struct Login {
    Actor actor;
    Credential credential;
  };
  Login tokenFor(const std::string& owner, Scopes s, Expiration e = {},
                 const std::string& description = "test token") {
    CommandResult r = run(admin, CreateToken{owner, description, e, std::move(s)});
    return Login{Actor::token(owner, r.credential->sidHex()), *r.credential};
  }
  // `name` gets `role` and one login token with `s`.
  Login principal(const std::string& name, Role role, Scopes s) {
    run(admin, GrantRole{name, role});
    return tokenFor(name, std::move(s));
  }
  Login user(const std::string& name) {
    return principal(name, Role::kUser, scopes({"tokens:read", "tokens:write", "assignment:read",
                                                 "assignment:write", "contact:read"}));
  }

  // A varied history: users, an auditor, tokens with every kind of change, role grants and
  // removals, a signing key rotation, a checkpoint and an offboarding. The clock moves between
  // steps.
  struct Workload {
    std::vector<Credential> issued;             // every credential ever shown, rotated ones too
    std::map<std::string, Credential> current;  // sid -> the credential that works now
    Login bob, carol;
    std::string rotatedSid, revokedSid, describedSid, rescopedSid;
    std::vector<std::string> offboardedSids;
    CheckpointInfo checkpoint;
  };
  Workload workload() {
    Workload w;
    auto issued = [&](const CommandResult& r) {
      w.issued.push_back(*r.credential);
      w.current[r.credential->sidHex()] = *r.credential;
      return r.credential->sidHex();
    };
    w.issued.push_back(adminCredential);
    w.current[adminCredential.sidHex()] = adminCredential;
    w.bob = user("bob");
    issued(CommandResult{0, 0, {}, w.bob.credential, {}});
    w.carol = principal("carol", Role::kAuditor, scopes({"audit:read", "tokens:read"}));
    issued(CommandResult{0, 0, {}, w.carol.credential, {}});
    clock.advance(kDay);
    std::string a = issued(run(w.bob.actor, CreateToken{"bob", "Vendor A", {}, scopes({"assignment:read"})},
                               "onboarding vendor A"));
    std::string b = issued(run(w.bob.actor, CreateToken{"bob", "Vendor B", {Expiration::Kind::kYear, 0},
                                                        scopes({"contact:read", "assignment:write"})}));
    std::string c = issued(run(w.bob.actor, CreateToken{"bob", "Vendor C", {Expiration::Kind::kDays180, 0},
                                                        scopes({"assignment:read"})}));
    for (int i = 0; i < 2; ++i) {
      std::string sid = issued(run(admin, CreateToken{"svc-payroll", "Payroll " + std::to_string(i),
                                                      {Expiration::Kind::kNever, 0}, Scopes::allScopes()}));
      w.offboardedSids.push_back(sid);
    }
    clock.advance(kSecond);
    run(w.bob.actor, ChangeScopes{a, scopes({"assignment:read", "assignment:write"})});
    w.rescopedSid = a;
    run(w.bob.actor, SetDescription{b, "Vendor B (billing)"});
    w.describedSid = b;
    issued(run(w.bob.actor, RotateToken{a}, "suspected leak"));
    w.rotatedSid = a;
    run(admin, RevokeToken{c}, "vendor contract ended");
    w.revokedSid = c;
    run(admin, GrantRole{"dave", Role::kUser});
    run(admin, RevokeRole{"dave", Role::kUser});
    clock.advance(kSecond);
    run(admin, RotateSigningKey{}, "yearly key rotation");
    std::string d = issued(run(admin, CreateToken{"erin", "Erin's integration", {}, scopes({"email:read"})}));
    issued(run(admin, RotateToken{d}));
    w.checkpoint = *run(w.carol.actor, MakeCheckpoint{}).checkpoint;
    run(admin, RevokeAllFor{"svc-payroll"}, "offboarding");
    run(w.bob.actor, SetDescription{a, "Vendor A (rotated)"});
    return w;
  }

  // Closes the instance and opens its database directly, for tampering.
  std::unique_ptr<Store> rawStore() {
    close();
    return Store::open(dataDir() / "db", Store::Mode::kReadWrite, /*create=*/false);
  }

  TempDir dir;
  TestClock clock;
  Credential adminCredential;
  Actor admin;
  std::unique_ptr<LedgerInstance> instance;
};

// EXPECT_REJECTED(code, actor, command...): the command (which may contain commas) is rejected
// with `code` and the head does not move. Evaluates to the error message.
#define EXPECT_REJECTED(code, actor, ...)                  \
  [&] {                                                    \
    SCOPED_TRACE("EXPECT_REJECTED " #__VA_ARGS__);         \
    return rejected((actor), Command{__VA_ARGS__}, (code)); \
  }()

// ---------------------------------------------------------------------------------------------
// Real processes, for the tests that run the real tokenledgerd binary (crash, storage faults,
// secrets). Every wait is bounded, and every process is SIGKILLed and reaped when its guard goes.

// "exited 0", "killed by signal 9", ... for failure messages.
inline std::string describeWaitStatus(int status) {
  if (WIFEXITED(status)) return "exited " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "wait status " + std::to_string(status);
}

// A child process (fork + exec) with stdin from /dev/null and stdout and stderr written to
// files. It gets SIGKILL if the test process dies, inherits none of the test's descriptors,
// ignores SIGXFSZ (so a file-size limit turns its writes into EFBIG errors instead of killing
// it) and optionally starts under a soft RLIMIT_FSIZE. The destructor SIGKILLs and reaps it.
class ChildProcess {
 public:
  struct Spec {
    std::vector<std::string> argv;          // argv[0]: the path of the binary
    std::filesystem::path stdoutPath;       // created or truncated
    std::filesystem::path stderrPath;
    std::optional<uint64_t> fileSizeLimit;  // soft RLIMIT_FSIZE in bytes, set before exec
  };

  explicit ChildProcess(const Spec& spec) {
    if (spec.argv.empty()) throw std::runtime_error("ChildProcess needs a binary to run");
    // Everything the child touches is prepared before fork: after it, only async-signal-safe
    // calls until exec.
    std::vector<std::string> argv = spec.argv;
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    const std::string out = spec.stdoutPath.string();
    const std::string err = spec.stderrPath.string();
    const bool limited = spec.fileSizeLimit.has_value();
    const rlim_t limit = limited ? static_cast<rlim_t>(*spec.fileSizeLimit) : RLIM_INFINITY;
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed: " + std::to_string(errno));
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(126);
      int in = ::open("/dev/null", O_RDONLY);
      int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (in < 0 || o < 0 || e < 0) ::_exit(126);
      if (::dup2(in, 0) < 0 || ::dup2(o, 1) < 0 || ::dup2(e, 2) < 0) ::_exit(126);
#ifdef SYS_close_range
      if (::syscall(SYS_close_range, 3U, ~0U, 0U) != 0)
#endif
      {
        for (int fd = 3; fd < 65536; ++fd) ::close(fd);
      }
      struct sigaction action {};
      action.sa_handler = SIG_IGN;
      ::sigaction(SIGXFSZ, &action, nullptr);
      action.sa_handler = SIG_DFL;
      ::sigaction(SIGPIPE, &action, nullptr);
      sigset_t none;
      ::sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      if (limited) {
        rlimit current{};
        ::getrlimit(RLIMIT_FSIZE, &current);
        current.rlim_cur = limit;
        if (::setrlimit(RLIMIT_FSIZE, &current) != 0) ::_exit(126);
      }
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  ~ChildProcess() { kill(); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }

  // The wait status once the process has ended (it is then reaped); nullopt while it runs.
  std::optional<int> poll() {
    if (status_ || pid_ <= 0) return status_;
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) status_ = status;
    return status_;
  }
  bool running() { return !poll().has_value(); }

  // Waits at most `timeout` for the process to end; its wait status, or nullopt if it still runs.
  std::optional<int> waitFor(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!poll()) {
      if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return status_;
  }

  // Sends `signal` if the process still runs (it is not reaped yet, so the pid is still ours).
  void signal(int signal) {
    if (!poll()) ::kill(pid_, signal);
  }

  // SIGKILL, then reap; returns the wait status. Idempotent.
  int kill() {
    if (pid_ <= 0) return -1;
    if (!poll()) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      status_ = status;
    }
    return *status_;
  }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// A finished process: its wait status and what it printed.
struct ProcessResult {
  int status = -1;        // wait status; -1 if it had to be killed for taking too long
  bool timedOut = false;
  std::string out;
  std::string err;
  bool exitedWith(int code) const { return !timedOut && WIFEXITED(status) && WEXITSTATUS(status) == code; }
  std::string describe() const {
    return (timedOut ? std::string("timed out") : describeWaitStatus(status)) + "\n--- stdout:\n" +
           out.substr(0, 4000) + "\n--- stderr:\n" + err.substr(0, 4000);
  }
};

// Runs argv to its end (SIGKILLed after `timeout`), its output kept in files in `scratchDir`.
inline ProcessResult runProcess(const std::vector<std::string>& argv,
                                const std::filesystem::path& scratchDir,
                                std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  static std::atomic<int> runs{0};
  const std::string stem = "run" + std::to_string(++runs);
  ChildProcess::Spec spec{argv, scratchDir / (stem + ".out"), scratchDir / (stem + ".err"), {}};
  ProcessResult result;
  {
    ChildProcess child(spec);
    auto status = child.waitFor(timeout);
    result.timedOut = !status.has_value();
    result.status = status ? *status : child.kill();
  }
  result.out = readFile(spec.stdoutPath);
  result.err = readFile(spec.stderrPath);
  return result;
}

// The lines of `text` that are exactly a tlp_ credential (what `tokenledgerd init` prints).
inline std::vector<std::string> credentialLines(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(kCredentialPrefix) && parseCredential(line)) out.push_back(line);
  }
  return out;
}

// `tokenledgerd serve --data-dir DIR --listen 127.0.0.1:0`: the kernel picks a free port, read
// back from the "... serving DIR (head seq N) on 127.0.0.1:PORT" log line, so no port can be
// taken between choosing and binding it. Each start writes its stdout and stderr to new files in
// logDir (logFiles() lists them all). The destructor SIGKILLs and reaps the process.
class ServerProcess {
 public:
  struct Spec {
    std::filesystem::path binary;  // tokenledgerd
    std::filesystem::path dataDir;
    std::filesystem::path logDir;
    bool verbose = false;
    std::optional<uint64_t> fileSizeLimit;  // soft RLIMIT_FSIZE set before exec
    std::string name = "serve";             // log files: <name><start number>.out / .err
  };
  explicit ServerProcess(Spec spec) : spec_(std::move(spec)) {}

  // Starts the process without waiting for it to serve.
  void launch() {
    child_.reset();
    port_ = 0;
    const std::string stem = spec_.name + std::to_string(++starts_);
    stdoutPath_ = spec_.logDir / (stem + ".out");
    stderrPath_ = spec_.logDir / (stem + ".err");
    logFiles_.push_back(stdoutPath_);
    logFiles_.push_back(stderrPath_);
    std::vector<std::string> argv = {spec_.binary.string(), "serve", "--data-dir",
                                     spec_.dataDir.string(), "--listen", "127.0.0.1:0"};
    if (spec_.verbose) argv.push_back("--verbose");
    child_ = std::make_unique<ChildProcess>(
        ChildProcess::Spec{argv, stdoutPath_, stderrPath_, spec_.fileSizeLimit});
  }

  // Waits until the process logs that it serves and returns its port. Throws std::runtime_error
  // with its output if it ends first or does not serve within `timeout`.
  uint16_t waitServing(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    if (!child_) throw std::runtime_error("tokenledgerd was not launched");
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto port = servingPort(readFile(stderrPath_))) return port_ = *port;
      if (auto status = child_->poll()) {
        throw std::runtime_error("tokenledgerd " + describeWaitStatus(*status) +
                                 " before serving; stderr:\n" + readFile(stderrPath_));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("tokenledgerd did not serve within " +
                                 std::to_string(timeout.count()) + " ms; stderr:\n" +
                                 readFile(stderrPath_));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  uint16_t start(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    launch();
    return waitServing(timeout);
  }

  // SIGKILL and reap; the wait status (-1 if it was not running).
  int kill() { return child_ ? child_->kill() : -1; }
  // SIGTERM, then at most `timeout` for it to stop by itself (else SIGKILL); its wait status,
  // nullopt if it had to be killed.
  std::optional<int> stop(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    if (!child_) return std::nullopt;
    child_->signal(SIGTERM);
    auto status = child_->waitFor(timeout);
    if (!status) child_->kill();
    return status;
  }
  bool running() { return child_ && child_->running(); }

  pid_t pid() const { return child_ ? child_->pid() : -1; }
  uint16_t port() const { return port_; }
  int starts() const { return starts_; }
  const std::filesystem::path& stdoutPath() const { return stdoutPath_; }
  const std::filesystem::path& stderrPath() const { return stderrPath_; }
  const std::vector<std::filesystem::path>& logFiles() const { return logFiles_; }

  // The port in a complete "serving ... on 127.0.0.1:PORT" line of `log`.
  static std::optional<uint16_t> servingPort(const std::string& log) {
    size_t at = log.find(" serving ");
    if (at == std::string::npos) return std::nullopt;
    size_t end = log.find('\n', at);
    if (end == std::string::npos) return std::nullopt;  // the line is not complete yet
    const std::string line = log.substr(at, end - at);
    const std::string marker = " on 127.0.0.1:";
    size_t p = line.rfind(marker);
    if (p == std::string::npos) return std::nullopt;
    unsigned long port = std::strtoul(line.c_str() + p + marker.size(), nullptr, 10);
    if (port == 0 || port > 65535) return std::nullopt;
    return static_cast<uint16_t>(port);
  }

 private:
  Spec spec_;
  std::unique_ptr<ChildProcess> child_;
  uint16_t port_ = 0;
  int starts_ = 0;
  std::filesystem::path stdoutPath_, stderrPath_;
  std::vector<std::filesystem::path> logFiles_;
};

// Every form in which a credential's secret could leak, named for a failure message: the whole
// tlp_ string, the secret as lower- and upper-case hex, as raw bytes and as base64.
inline std::vector<std::pair<std::string, std::string>> secretForms(const Credential& credential) {
  const Bytes secret(credential.secret.data(), credential.secret.size());
  std::string lower = toHex(secret);
  std::string upper = lower;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::string raw(reinterpret_cast<const char*>(credential.secret.data()), credential.secret.size());
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string base64;
  for (size_t i = 0; i + 2 < raw.size(); i += 3) {  // the first 30 bytes: no padding needed
    uint32_t v = static_cast<uint32_t>(credential.secret[i]) << 16 |
                 static_cast<uint32_t>(credential.secret[i + 1]) << 8 | credential.secret[i + 2];
    for (int shift = 18; shift >= 0; shift -= 6) base64 += kAlphabet[(v >> shift) & 63];
  }
  const std::string sid = credential.sidHex();
  return {{"the credential tlp_ string of " + sid, credential.encode()},
          {"the secret (hex) of " + sid, lower},
          {"the secret (upper-case hex) of " + sid, upper},
          {"the secret (raw bytes) of " + sid, raw},
          {"the secret (base64, first 30 bytes) of " + sid, base64}};
}

// What leaks in `haystack`: one line per credential form found, empty if none.
inline std::vector<std::string> leakedSecrets(std::string_view haystack,
                                              const std::vector<Credential>& credentials) {
  std::vector<std::string> found;
  for (const Credential& credential : credentials) {
    for (const auto& [what, form] : secretForms(credential)) {
      size_t at = haystack.find(form);
      if (at != std::string_view::npos) found.push_back(what + " at byte " + std::to_string(at));
    }
  }
  return found;
}

}  // namespace tokenledger::test
