// tokenledgerd: the token ledger service.
//
//   tokenledgerd init  [--data-dir DIR] [--admin NAME]
//       Creates a ledger and prints the first admin's token, once.
//   tokenledgerd serve [--data-dir DIR] [--listen ADDR:PORT] [--threads N]
//                      [--tls-cert PEM --tls-key PEM] [--admin NAME] [--verbose]
//       Serves Cap'n Proto RPC; on a directory with no ledger yet it runs `init` first.
//       Stops cleanly on SIGINT/SIGTERM, after in-flight writes are durable.
//
// DIR defaults to $TOKENLEDGER_DATA_DIR, else ./data. ADDR:PORT defaults to 127.0.0.1:7878.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>

#include "ledger/error.h"
#include "ledger/token.h"
#include "projections/ledger_instance.h"
#include "rpc/client.h"
#include "rpc/server.h"

namespace {

using tokenledger::Error;
using tokenledger::ErrorCode;

constexpr const char* kUsage =
    "usage: tokenledgerd init  [--data-dir DIR] [--admin NAME]\n"
    "       tokenledgerd serve [--data-dir DIR] [--listen ADDR:PORT] [--threads N]\n"
    "                          [--tls-cert PEM --tls-key PEM] [--admin NAME] [--verbose]\n"
    "  DIR defaults to $TOKENLEDGER_DATA_DIR or ./data; ADDR:PORT to 127.0.0.1:7878;\n"
    "  NAME (the first admin, created by init) to admin.\n";

struct Args {
  std::string command;
  std::map<std::string, std::string> flags;
  bool verbose = false;

  std::string get(const std::string& flag, std::string fallback) const {
    auto it = flags.find(flag);
    return it == flags.end() ? fallback : it->second;
  }
};

bool parseArgs(int argc, char** argv, Args& args) {
  if (argc < 2) return false;
  args.command = argv[1];
  static const char* kValued[] = {"--data-dir", "--admin", "--listen", "--threads", "--tls-cert",
                                  "--tls-key"};
  for (int i = 2; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--verbose") {
      args.verbose = true;
      continue;
    }
    bool known = false;
    for (const char* v : kValued) known = known || flag == v;
    if (!known || i + 1 >= argc) return false;
    args.flags[flag] = argv[++i];
  }
  return true;
}

std::string dataDir(const Args& args) {
  const char* env = std::getenv("TOKENLEDGER_DATA_DIR");
  return args.get("--data-dir", env != nullptr && *env != '\0' ? env : "data");
}

void printAdminToken(const std::string& dir, const std::string& admin,
                     const tokenledger::Credential& credential) {
  std::cout << "Initialised a new ledger in " << dir << "\n"
            << "Admin principal: " << admin << "\n"
            << "Admin token (shown once; keep it in a file or in TOKENLEDGER_TOKEN):\n"
            << credential.encode() << "\n"
            << std::flush;
}

int init(const Args& args) {
  std::string dir = dataDir(args);
  std::string admin = args.get("--admin", "admin");
  printAdminToken(dir, admin, tokenledger::LedgerInstance::init(dir, admin));
  return 0;
}

tokenledger::rpc::ServerOptions serverOptions(const Args& args) {
  tokenledger::rpc::ServerOptions options;
  if (!tokenledger::rpc::parseHostPort(args.get("--listen", "127.0.0.1:7878"), options.address,
                                        options.port)) {
    throw Error(ErrorCode::kInvalidArgument,
                "--listen takes ADDRESS:PORT with a port from 0 to 65535, e.g. 127.0.0.1:7878");
  }
  uint64_t threads = 0;
  if (!tokenledger::parseUnsigned(args.get("--threads", "2"), 64, threads) || threads == 0) {
    throw Error(ErrorCode::kInvalidArgument, "--threads takes a number from 1 to 64");
  }
  options.threads = static_cast<unsigned>(threads);
  bool cert = args.flags.count("--tls-cert") != 0;
  bool key = args.flags.count("--tls-key") != 0;
  if (cert != key) throw Error(ErrorCode::kInvalidArgument, "--tls-cert and --tls-key go together");
  if (cert) options.tls = tokenledger::rpc::TlsFiles{args.get("--tls-cert", ""), args.get("--tls-key", "")};
  return options;
}

int serve(const Args& args) {
  // Logs go to stderr, so stdout carries only what a person must copy (the first admin token).
  spdlog::set_default_logger(spdlog::stderr_color_mt("tokenledgerd"));
  spdlog::set_level(args.verbose ? spdlog::level::debug : spdlog::level::info);
  std::string dir = dataDir(args);
  auto options = serverOptions(args);
  if (!std::filesystem::exists(std::filesystem::path(dir) / "db" / "CURRENT")) {
    std::string admin = args.get("--admin", "admin");
    printAdminToken(dir, admin, tokenledger::LedgerInstance::init(dir, admin));
  }
  auto instance = tokenledger::LedgerInstance::open(dir);
  tokenledger::rpc::Server server(*instance, options);
  spdlog::info("tokenledgerd {} serving {} (head seq {}) on {}:{}{}", TOKENLEDGER_VERSION, dir,
               instance->ledger().headSeq(), options.address, server.port(),
               options.tls ? " with TLS" : "");

  boost::asio::io_context signals;
  boost::asio::signal_set stopOn(signals, SIGINT, SIGTERM);
  stopOn.async_wait([](const boost::system::error_code&, int signal) {
    spdlog::info("received signal {}, stopping", signal);
  });
  signals.run();

  instance->ledger().stop();  // in-flight writes become durable and are answered
  server.stop();
  instance.reset();
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (!parseArgs(argc, argv, args) || (args.command != "init" && args.command != "serve")) {
    std::cerr << kUsage;
    return 2;
  }
  ::umask(077);  // everything the service creates is private to its user
  try {
    return args.command == "init" ? init(args) : serve(args);
  } catch (const Error& e) {
    std::cerr << "tokenledgerd: " << e.what() << "\n";
    return e.code() == ErrorCode::kInvalidArgument ? 2 : 1;
  }
}
