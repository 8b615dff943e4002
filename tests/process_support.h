// Real processes, for the tests that run built binaries (tokenledgerd, tokenctl, ledger-replay)
// and stock tools (capnp, openssl, unshare): a child process guard, a run-to-the-end helper
// with captured output, and the tokenledgerd server process. Every wait is bounded, and every
// process is SIGKILLed and reaped when its guard goes. POSIX only; needs no rpc/ code.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

extern char** environ;

namespace tokenledger::test {

// "exited 0", "killed by signal 9", ... for failure messages.
inline std::string describeWaitStatus(int status) {
  if (WIFEXITED(status)) return "exited " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "wait status " + std::to_string(status);
}

// A binary under test: the path the build names (`built`), or $`override` when it is set, to run
// the tests against another build of it.
inline std::string binaryUnderTest(const char* override, const char* built) {
  const char* other = std::getenv(override);
  return other != nullptr && *other != '\0' ? other : built;
}

#ifdef TOKENLEDGERD
// The tokenledgerd under test, in the targets that name the built one: TOKENLEDGERD, or
// $TOKENLEDGERD_BINARY.
inline std::string tokenledgerd() { return binaryUnderTest("TOKENLEDGERD_BINARY", TOKENLEDGERD); }
#endif

// Changes to the test's own environment for a child: name -> value, or nullopt to remove it.
using Environment = std::map<std::string, std::optional<std::string>>;

// The environment for the tools under test: none of the test's own TOKENLEDGER_* settings, plus
// `set`.
inline Environment toolEnvironment(const Environment& set = {}) {
  Environment env = {{"TOKENLEDGER_TOKEN", std::nullopt},
                     {"TOKENLEDGER_DATA_DIR", std::nullopt},
                     {"TOKENLEDGER_SERVER", std::nullopt}};
  for (const auto& [name, value] : set) env[name] = value;
  return env;
}

// `s` quoted for a POSIX shell, for printing command lines that can be pasted.
inline std::string shellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

inline std::string commandLine(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) out += (out.empty() ? "" : " ") + shellQuote(a);
  return out;
}

// A child process (fork + exec) with stdin from a file (/dev/null unless said otherwise) and
// stdout and stderr written to files. argv[0] is a path, or a name looked up in $PATH. It gets
// SIGKILL if the test process dies, inherits none of the test's descriptors, ignores SIGXFSZ (so
// a file-size limit turns its writes into EFBIG errors instead of killing it) and optionally
// starts under a soft RLIMIT_FSIZE. The destructor SIGKILLs and reaps it.
class ChildProcess {
 public:
  struct Spec {
    std::vector<std::string> argv;          // argv[0]: the binary
    std::filesystem::path stdoutPath;       // created or truncated
    std::filesystem::path stderrPath;
    std::optional<uint64_t> fileSizeLimit;  // soft RLIMIT_FSIZE in bytes, set before exec
    std::filesystem::path stdinPath = "/dev/null";
    Environment environment = {};           // changes to the test's environment
  };

  explicit ChildProcess(const Spec& spec) {
    if (spec.argv.empty()) throw std::runtime_error("ChildProcess needs a binary to run");
    // Everything the child touches is prepared before fork: after it, only async-signal-safe
    // calls until exec.
    std::vector<std::string> argv = spec.argv;
    argv[0] = resolve(argv[0]);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    std::vector<std::string> envStrings = environmentFor(spec.environment);
    std::vector<char*> envp;
    for (auto& e : envStrings) envp.push_back(e.data());
    envp.push_back(nullptr);
    const std::string in = spec.stdinPath.string();
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
      int i = ::open(in.c_str(), O_RDONLY);
      int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (i < 0 || o < 0 || e < 0) ::_exit(126);
      if (::dup2(i, 0) < 0 || ::dup2(o, 1) < 0 || ::dup2(e, 2) < 0) ::_exit(126);
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
      ::execve(args[0], args.data(), envp.data());
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
  // A name without a slash, looked up in $PATH as execvp would (in the parent: the child may
  // only make async-signal-safe calls); unchanged if it is not found there.
  static std::string resolve(const std::string& binary) {
    const char* path = std::getenv("PATH");
    if (binary.find('/') != std::string::npos || path == nullptr) return binary;
    std::string dirs = path;
    for (size_t start = 0; start <= dirs.size();) {
      size_t end = dirs.find(':', start);
      if (end == std::string::npos) end = dirs.size();
      std::string dir = dirs.substr(start, end - start);
      std::string candidate = (dir.empty() ? "." : dir) + "/" + binary;
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
      start = end + 1;
    }
    return binary;
  }

  // The test's environment with `changes` applied, as NAME=VALUE strings.
  static std::vector<std::string> environmentFor(const Environment& changes) {
    std::vector<std::string> out;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      std::string entry = *e;
      if (!changes.count(entry.substr(0, entry.find('=')))) out.push_back(entry);
    }
    for (const auto& [name, value] : changes) {
      if (value) out.push_back(name + "=" + *value);
    }
    return out;
  }

  pid_t pid_ = -1;
  std::optional<int> status_;
};

// A finished process: how it ended and what it printed.
struct ProcessResult {
  std::string commandLine;  // argv, shell-quoted
  int status = -1;          // wait status; -1 if it had to be killed for taking too long
  bool timedOut = false;
  int exitCode = -1;        // its exit code if it exited by itself, else -1
  std::string out;
  std::string err;
  bool exitedWith(int code) const { return exitCode == code; }
  std::string describe() const {
    return "`" + commandLine + "` " + (timedOut ? std::string("timed out") : describeWaitStatus(status)) +
           "\n--- stdout:\n" + out.substr(0, 4000) + "\n--- stderr:\n" + err.substr(0, 4000);
  }
};

inline std::ostream& operator<<(std::ostream& os, const ProcessResult& r) { return os << r.describe(); }

// Runs argv to its end (SIGKILLed after `timeout`) with stdin from `stdinPath` and `environment`
// applied to the test's own; its output is kept in files in `scratchDir`.
inline ProcessResult runProcess(const std::vector<std::string>& argv,
                                const std::filesystem::path& scratchDir,
                                std::chrono::milliseconds timeout = std::chrono::seconds(60),
                                const Environment& environment = {},
                                const std::filesystem::path& stdinPath = "/dev/null") {
  static std::atomic<int> runs{0};
  const std::string stem = "run" + std::to_string(++runs);
  ChildProcess::Spec spec;
  spec.argv = argv;
  spec.stdoutPath = scratchDir / (stem + ".out");
  spec.stderrPath = scratchDir / (stem + ".err");
  spec.stdinPath = stdinPath;
  spec.environment = environment;
  ProcessResult result;
  result.commandLine = commandLine(argv);
  {
    ChildProcess child(spec);
    auto status = child.waitFor(timeout);
    result.timedOut = !status.has_value();
    result.status = status ? *status : child.kill();
  }
  if (!result.timedOut && WIFEXITED(result.status)) result.exitCode = WEXITSTATUS(result.status);
  result.out = readFile(spec.stdoutPath);
  result.err = readFile(spec.stderrPath);
  return result;
}

// `tokenledgerd init --data-dir DIR --admin NAME` run by `binary`: the first admin's token it
// printed. Throws std::runtime_error with its output if it fails or prints no single token.
inline std::string initLedger(const std::string& binary, const std::filesystem::path& dataDir,
                              const std::string& admin, const std::filesystem::path& logDir) {
  auto result = runProcess({binary, "init", "--data-dir", dataDir.string(), "--admin", admin}, logDir,
                           std::chrono::seconds(30));
  if (!result.exitedWith(0)) throw std::runtime_error("tokenledgerd init failed: " + result.describe());
  auto tokens = credentialLines(result.out);
  if (tokens.size() != 1) {
    throw std::runtime_error("tokenledgerd init printed " + std::to_string(tokens.size()) +
                             " tokens instead of one: " + result.describe());
  }
  return tokens.front();
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
    ChildProcess::Spec child;
    child.argv = {spec_.binary.string(), "serve", "--data-dir", spec_.dataDir.string(), "--listen",
                  "127.0.0.1:0"};
    if (spec_.verbose) child.argv.push_back("--verbose");
    child.stdoutPath = stdoutPath_;
    child.stderrPath = stderrPath_;
    child.fileSizeLimit = spec_.fileSizeLimit;
    child_ = std::make_unique<ChildProcess>(child);
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

}  // namespace tokenledger::test
