// tokenledgerd: the token ledger service.
//
//   tokenledgerd init  [--data-dir DIR] [--admin NAME]   create a ledger, print the admin token once
//
// DIR defaults to ./data (or $TOKENLEDGER_DATA_DIR).
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "ledger/error.h"
#include "ledger/log_verifier.h"
#include "projections/ledger_instance.h"

namespace {

using tokenledger::Error;

constexpr const char* kUsage =
    "usage: tokenledgerd init [--data-dir DIR] [--admin NAME]\n"
    "  DIR defaults to $TOKENLEDGER_DATA_DIR or ./data; NAME defaults to admin\n";

struct Args {
  std::string command;
  std::string dataDir;
  std::string admin = "admin";
};

bool parseArgs(int argc, char** argv, Args& args) {
  const char* env = std::getenv("TOKENLEDGER_DATA_DIR");
  args.dataDir = env != nullptr && *env != '\0' ? env : "data";
  if (argc < 2) return false;
  args.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) return false;
    if (flag == "--data-dir") {
      args.dataDir = argv[++i];
    } else if (flag == "--admin") {
      args.admin = argv[++i];
    } else {
      return false;
    }
  }
  return true;
}

int init(const Args& args) {
  tokenledger::Credential credential = tokenledger::LedgerInstance::init(args.dataDir, args.admin);
  std::cout << "Initialised a new ledger in " << args.dataDir << "\n"
            << "Admin principal: " << args.admin << "\n"
            << "Admin token (shown once; store it now, e.g. in TOKENLEDGER_TOKEN):\n"
            << credential.encode() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (!parseArgs(argc, argv, args) || args.command != "init") {
    std::cerr << kUsage;
    return 2;
  }
  try {
    return init(args);
  } catch (const Error& e) {
    std::cerr << "tokenledgerd: " << e.what() << "\n";
    return 1;
  }
}
