// tokenctl: manage and check tokens on a running tokenledgerd, for people and scripts.
//
// The login token comes from $TOKENLEDGER_TOKEN or --token-file FILE, never from the command line
// (argv is visible to every user of the machine). A credential to verify is read from stdin.
// Exit codes: 0 ok, 1 refused by the server (or `verify`: not valid), 2 usage,
// 3 server unreachable, 4 not authenticated.
#include <capnp/compat/json.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "ledger/credential.h"
#include "ledger/error.h"
#include "ledger/token.h"
#include "projections/event_text.h"
#include "rpc/client.h"
#include "rpc/wire.h"

namespace {

using tokenledger::Error;
using tokenledger::ErrorCode;
namespace wire = tokenledger::wire;

constexpr const char* kUsage = R"(usage: tokenctl [--server HOST:PORT] [--tls-ca PEM] [--token-file FILE] [--json] COMMAND

  whoami                                   who the login token acts as, and what it may do
  create --description TEXT [--owner NAME] [--expires 90d|180d|1y|never|YYYY-MM-DD]
         (--scopes ID,ID... | --all-scopes) [--reason TEXT]
                                           prints the new credential, once
  list [--all] [--owner NAME]              active tokens (--all: expired and revoked too)
  show SID
  scopes SID (--set IDS | --add IDS | --remove IDS | --all-scopes) [--reason TEXT]
  describe SID TEXT [--reason TEXT]
  revoke SID [--reason TEXT]
  revoke-all OWNER [--reason TEXT]         offboarding: revoke every token of OWNER
  rotate SID [--reason TEXT]               new secret, same SID; prints it once
  history [--token SID | --owner NAME | --actor NAME] [--from-seq N] [--to-seq N] [--limit N]
  verify [--scopes IDS]                    checks the credential on stdin (exit 0 valid, 1 not)
  roles [list] | roles grant NAME ROLE | roles revoke NAME ROLE     (ROLE: user admin auditor)
  catalog                                  the scopes a token can hold
  checkpoint                               sign a checkpoint of the head now (auditors)
  info                                     server version, head, signing keys

  The login token is read from $TOKENLEDGER_TOKEN or --token-file; the server from
  --server or $TOKENLEDGER_SERVER (default 127.0.0.1:7878).
)";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Cli {
  std::string server;
  std::string tlsCa;
  std::string tokenFile;
  std::string token;  // the login token, read before connecting (empty for verify and info)
  bool json = false;
  std::string command;
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;
  std::set<std::string> switches;

  std::string option(const std::string& name, const std::string& fallback = "") const {
    auto it = options.find(name);
    return it == options.end() ? fallback : it->second;
  }
  bool has(const std::string& name) const { return options.count(name) || switches.count(name); }
  const std::string& arg(size_t i, const char* what) const {
    if (i >= positional.size()) throw UsageError(std::string("missing ") + what);
    return positional[i];
  }
};

Cli parse(int argc, char** argv) {
  static const std::set<std::string> kSwitches = {"--json", "--all", "--all-scopes"};
  static const std::set<std::string> kValued = {
      "--server", "--tls-ca", "--token-file", "--description", "--owner", "--expires", "--scopes",
      "--reason", "--set", "--add", "--remove", "--token", "--actor", "--from-seq", "--to-seq",
      "--limit"};
  Cli cli;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (kSwitches.count(a)) {
      cli.switches.insert(a);
    } else if (kValued.count(a)) {
      if (i + 1 >= argc) throw UsageError(a + " needs a value");
      cli.options[a] = argv[++i];
    } else if (a.starts_with("--")) {
      throw UsageError("unknown option " + a);
    } else if (cli.command.empty()) {
      cli.command = a;
    } else {
      cli.positional.push_back(a);
    }
  }
  const char* env = std::getenv("TOKENLEDGER_SERVER");
  cli.server = cli.option("--server", env != nullptr && *env ? env : "127.0.0.1:7878");
  cli.tlsCa = cli.option("--tls-ca");
  cli.tokenFile = cli.option("--token-file");
  cli.json = cli.switches.count("--json") != 0;
  if (cli.command.empty()) throw UsageError("no command given");
  return cli;
}

std::string trimmed(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t start = 0;
  while (start < s.size() && std::isspace(static_cast<unsigned char>(s[start]))) ++start;
  return s.substr(start);
}

std::string loginToken(const Cli& cli) {
  if (!cli.tokenFile.empty()) {
    std::ifstream in(cli.tokenFile);
    std::string line;
    if (!in || !std::getline(in, line)) {
      throw UsageError(tokenledger::looksLikeSecret(cli.tokenFile)
                           ? std::string("--token-file takes a file name, not the token itself")
                           : "cannot read a token from " + cli.tokenFile);
    }
    return trimmed(line);
  }
  const char* env = std::getenv("TOKENLEDGER_TOKEN");
  if (env == nullptr || *env == '\0') {
    throw UsageError("no login token: set TOKENLEDGER_TOKEN or pass --token-file FILE");
  }
  return trimmed(env);
}

std::vector<std::string> splitIds(const std::string& text) {
  std::vector<std::string> ids;
  std::stringstream in(text);
  std::string id;
  while (std::getline(in, id, ',')) {
    id = trimmed(id);
    if (!id.empty()) ids.push_back(id);
  }
  return ids;
}

void setScopes(tokenledger::schema::Scopes::Builder out, bool all, const std::vector<std::string>& ids) {
  if (all) {
    out.setAll();
    return;
  }
  auto list = out.initSelected(static_cast<unsigned>(ids.size()));
  for (unsigned i = 0; i < list.size(); ++i) list.set(i, ids[i]);
}

const char* statusText(wire::TokenStatus status) {
  switch (status) {
    case wire::TokenStatus::ACTIVE: return "Active";
    case wire::TokenStatus::EXPIRED: return "Expired";
    case wire::TokenStatus::REVOKED: return "Revoked";
  }
  return "?";
}

// Any struct reader, or an RPC response (which is one).
template <typename Reader>
void printJson(const Reader& reader) {
  using Struct = typename Reader::Reads;
  capnp::JsonCodec codec;
  codec.handleByAnnotation<Struct>();
  std::cout << codec.encode(typename Struct::Reader(reader)).cStr() << "\n";
}

void printTable(const std::vector<std::vector<std::string>>& rows) {
  std::cout << tokenledger::formatTable(rows);
}

void printToken(wire::TokenInfo::Reader t) {
  printTable({{"AccountSID", t.getSid().cStr()},
              {"Owner", t.getOwner().cStr()},
              {"Description", t.getDescription().cStr()},
              {"Status", statusText(t.getStatus())},
              {"Scopes", tokenledger::describeScopes(t.getScopes())},
              {"Expiration", tokenledger::formatTime(t.getExpiresAtMicros())},
              {"Created", tokenledger::formatTime(t.getCreatedAtMicros()) + " by " +
                              tokenledger::describeActor(t.getCreatedBy())},
              {"Revoked", t.getStatus() == wire::TokenStatus::REVOKED
                              ? tokenledger::formatTime(t.getRevokedAtMicros()) + " by " +
                                    tokenledger::describeActor(t.getRevokedBy()) +
                                    (t.getRevokeReason().size() ? " (" + std::string(t.getRevokeReason().cStr()) + ")" : "")
                              : "-"},
              {"Last event", std::to_string(t.getLastSeq())}});
}

void printCredential(const std::string& credential, wire::TokenInfo::Reader token) {
  std::cout << "Token " << token.getSid().cStr() << " for " << token.getOwner().cStr()
            << " (expires " << tokenledger::formatTime(token.getExpiresAtMicros()) << ").\n"
            << "Copy the credential now; it is shown only this once:\n\n"
            << credential << "\n";
}

class Commands {
 public:
  Commands(const Cli& cli, tokenledger::rpc::Client& client)
      : cli_(cli), client_(client), ws_(client.waitScope()) {}

  struct Spec {
    std::string_view name;
    bool needsLogin;
    int (Commands::*run)();
  };
  // The command named `name`, or a usage error that does not echo a pasted token.
  static const Spec& find(const std::string& name);
  int run(const Spec& spec) { return (this->*spec.run)(); }

 private:
  uint64_t number(const std::string& option) const {
    uint64_t value = 0;
    if (cli_.has(option) && !tokenledger::parseUnsigned(cli_.option(option), UINT64_MAX, value)) {
      throw UsageError(option + " takes a whole number");
    }
    return value;
  }

  wire::Session::Client session() {
    auto request = client_.ledger().loginRequest();
    request.initCredential().setToken(cli_.token);
    return request.send().getSession();
  }

  int verify() {
    std::string credential;
    std::getline(std::cin, credential);
    auto request = client_.ledger().verifyRequest();
    auto v = request.initRequest();
    v.initCredential().setToken(trimmed(credential));
    auto ids = splitIds(cli_.option("--scopes"));
    auto list = v.initRequiredScopes(static_cast<unsigned>(ids.size()));
    for (unsigned i = 0; i < list.size(); ++i) list.set(i, ids[i]);
    auto response = request.send().wait(ws_);
    auto result = response.getResult();
    if (cli_.json) {
      printJson(result);
    } else {
      auto reason = capnp::Schema::from<wire::VerifyReason>().getEnumerants()[static_cast<uint>(result.getReason())];
      std::cout << (result.getValid() ? "valid" : "not valid") << " ("
                << reason.getProto().getName().cStr() << ")";
      if (result.getSid().size() > 0) {
        std::cout << ": " << result.getSid().cStr() << " of " << result.getOwner().cStr()
                  << ", scopes " << tokenledger::describeScopes(result.getScopes()) << ", expires "
                  << tokenledger::formatTime(result.getExpiresAtMicros());
      }
      std::cout << "\n";
    }
    return result.getValid() ? 0 : 1;
  }

  int info() {
    auto response = client_.ledger().infoRequest().send().wait(ws_);
    auto i = response.getInfo();
    if (cli_.json) {
      printJson(i);
      return 0;
    }
    std::cout << "tokenledgerd " << i.getVersion().cStr() << ", head seq " << i.getHeadSeq()
              << ", latest checkpoint at seq " << i.getLatestCheckpoint().getSeq() << "\n";
    for (auto key : i.getPublicKeys()) {
      std::cout << "signing key " << key.getKeyId().cStr() << " since seq "
                << key.getIntroducedAtSeq() << "\n";
    }
    return 0;
  }

  int whoami() {
    auto response = session().whoamiRequest().send().wait(ws_);
    if (cli_.json) {
      printJson(response);
      return 0;
    }
    std::string roles;
    for (auto role : response.getRoles()) {
      roles += std::string(roles.empty() ? "" : ", ") + tokenledger::roleName(static_cast<tokenledger::Role>(role));
    }
    printTable({{"Principal", response.getPrincipal().cStr()},
                {"Roles", roles.empty() ? "none" : roles},
                {"Token", response.getTokenSid().cStr()},
                {"Token scopes", tokenledger::describeScopes(response.getScopes())}});
    return 0;
  }

  int create() {
    auto request = session().createTokenRequest();
    request.setOwner(cli_.option("--owner"));
    request.setDescription(cli_.option("--description"));
    request.setReason(cli_.option("--reason"));
    std::string expires = cli_.option("--expires", "90d");
    auto expiration = request.initExpiration();
    if (expires == "90d") {
      expiration.setDays90();
    } else if (expires == "180d") {
      expiration.setDays180();
    } else if (expires == "1y") {
      expiration.setYear();
    } else if (expires == "never") {
      expiration.setNever();
    } else {
      int64_t micros = 0;
      if (!tokenledger::parseTime(expires, micros)) {
        throw UsageError("--expires takes 90d, 180d, 1y, never or a date like 2027-03-31");
      }
      expiration.setCustomMicros(micros);
    }
    if (!cli_.has("--scopes") && !cli_.has("--all-scopes")) {
      throw UsageError("choose the token's scopes: --scopes ID,ID... or --all-scopes (see `tokenctl catalog`)");
    }
    setScopes(request.initScopes(), cli_.has("--all-scopes"), splitIds(cli_.option("--scopes")));
    return printCredentialResult(request.send().wait(ws_));
  }

  int list() {
    auto s = session();
    std::vector<std::vector<std::string>> rows = {{"USER", "DESCRIPTION", "ACCOUNT SID", "EXPIRATION", "STATUS"}};
    std::string after;
    capnp::JsonCodec codec;
    codec.handleByAnnotation<wire::TokenInfo>();
    do {
      auto request = s.listTokensRequest();
      auto filter = request.initFilter();
      filter.setOwner(cli_.option("--owner"));
      filter.setShowAll(cli_.has("--all"));
      filter.setAfter(after);
      filter.setLimit(500);
      auto response = request.send().wait(ws_);
      for (auto t : response.getTokens()) {
        if (cli_.json) {
          std::cout << codec.encode(t).cStr() << "\n";  // one JSON object per line
        } else {
          rows.push_back({t.getOwner().cStr(), t.getDescription().cStr(), t.getSid().cStr(),
                          tokenledger::formatTime(t.getExpiresAtMicros()), statusText(t.getStatus())});
        }
      }
      after = response.getNextAfter();
    } while (!after.empty());
    if (!cli_.json) {
      if (rows.size() == 1) {
        std::cout << (cli_.has("--all") ? "No access tokens\n" : "No active access tokens (--all shows every token)\n");
      } else {
        printTable(rows);
      }
    }
    return 0;
  }

  int show() {
    auto request = session().getTokenRequest();
    request.setSid(cli_.arg(0, "SID"));
    auto response = request.send().wait(ws_);
    if (cli_.json) {
      printJson(response.getToken());
    } else {
      printToken(response.getToken());
    }
    return 0;
  }

  int scopes() {
    auto s = session();
    const std::string& sid = cli_.arg(0, "SID");
    bool all = cli_.has("--all-scopes");
    std::vector<std::string> ids;
    if (cli_.has("--set")) {
      ids = splitIds(cli_.option("--set"));
    } else if (cli_.has("--add") || cli_.has("--remove")) {
      auto get = s.getTokenRequest();
      get.setSid(sid);
      auto response = get.send().wait(ws_);  // owns what `current` points into
      auto current = response.getToken().getScopes();
      if (current.isAll()) throw UsageError("the token has All Scopes; use --set to choose a set");
      std::set<std::string> set;
      for (auto id : current.getSelected()) set.insert(id.cStr());
      for (const auto& id : splitIds(cli_.option("--add"))) set.insert(id);
      for (const auto& id : splitIds(cli_.option("--remove"))) set.erase(id);
      ids.assign(set.begin(), set.end());
    } else if (!all) {
      throw UsageError("scopes needs --set, --add, --remove or --all-scopes");
    }
    auto request = s.changeScopesRequest();
    request.setSid(sid);
    request.setReason(cli_.option("--reason"));
    setScopes(request.initScopes(), all, ids);
    return printTokenResult(request.send().wait(ws_).getToken());
  }

  int describe() {
    auto request = session().setDescriptionRequest();
    request.setSid(cli_.arg(0, "SID"));
    request.setDescription(cli_.arg(1, "description"));
    request.setReason(cli_.option("--reason"));
    return printTokenResult(request.send().wait(ws_).getToken());
  }

  int revoke() {
    auto request = session().revokeRequest();
    request.setSid(cli_.arg(0, "SID"));
    request.setReason(cli_.option("--reason"));
    return printTokenResult(request.send().wait(ws_).getToken());
  }

  int revokeAll() {
    auto request = session().revokeAllForRequest();
    request.setOwner(cli_.arg(0, "OWNER"));
    request.setReason(cli_.option("--reason"));
    auto response = request.send().wait(ws_);
    if (cli_.json) {
      printJson(response);
    } else {
      std::cout << "Revoked " << response.getRevoked().size() << " token(s) of " << cli_.arg(0, "OWNER") << "\n";
      for (auto sid : response.getRevoked()) std::cout << sid.cStr() << "\n";
    }
    return 0;
  }

  int rotate() {
    auto request = session().rotateRequest();
    request.setSid(cli_.arg(0, "SID"));
    request.setReason(cli_.option("--reason"));
    return printCredentialResult(request.send().wait(ws_));
  }

  int history() {
    auto s = session();
    uint64_t from = number("--from-seq");
    uint64_t limit = number("--limit");  // 0: everything
    uint64_t to = number("--to-seq");
    uint64_t shown = 0;
    capnp::JsonCodec codec;
    codec.handleByAnnotation<tokenledger::schema::LogEntry>();
    for (;;) {
      auto request = s.historyRequest();
      auto filter = request.initFilter();
      if (cli_.has("--token")) filter.setToken(cli_.option("--token"));
      else if (cli_.has("--owner")) filter.setOwner(cli_.option("--owner"));
      else if (cli_.has("--actor")) filter.setActor(cli_.option("--actor"));
      else filter.setAll();
      filter.setFromSeq(from);
      filter.setToSeq(to);
      filter.setLimit(static_cast<uint32_t>(limit == 0 ? 1000 : std::min<uint64_t>(1000, limit - shown)));
      auto response = request.send().wait(ws_);
      for (auto entry : response.getEntries()) {
        auto e = entry.getEvent();
        if (cli_.json) {
          std::cout << codec.encode(entry).cStr() << "\n";
        } else {
          std::cout << tokenledger::historyLine(e) << "\n";
        }
        ++shown;
      }
      from = response.getNextFromSeq();
      if (from == 0 || (limit != 0 && shown >= limit)) break;
    }
    return 0;
  }

  int roles() {
    std::string verb = cli_.positional.empty() ? "list" : cli_.positional[0];
    auto s = session();
    if (verb == "list") {
      auto response = s.listRolesRequest().send().wait(ws_);
      if (cli_.json) {
        printJson(response);
        return 0;
      }
      std::vector<std::vector<std::string>> rows = {{"PRINCIPAL", "ROLES"}};
      for (auto p : response.getPrincipals()) {
        std::string roles;
        for (auto r : p.getRoles()) {
          roles += std::string(roles.empty() ? "" : ", ") + tokenledger::roleName(static_cast<tokenledger::Role>(r));
        }
        rows.push_back({p.getPrincipal().cStr(), roles});
      }
      printTable(rows);
      return 0;
    }
    if (verb != "grant" && verb != "revoke") throw UsageError("roles takes list, grant or revoke");
    tokenledger::Role role;
    if (!tokenledger::parseRole(cli_.arg(2, "ROLE"), role)) throw UsageError("ROLE is user, admin or auditor");
    auto schemaRole = static_cast<tokenledger::schema::Role>(role);
    if (verb == "grant") {
      auto request = s.grantRoleRequest();
      request.setPrincipal(cli_.arg(1, "NAME"));
      request.setRole(schemaRole);
      request.setReason(cli_.option("--reason"));
      request.send().wait(ws_);
    } else {
      auto request = s.revokeRoleRequest();
      request.setPrincipal(cli_.arg(1, "NAME"));
      request.setRole(schemaRole);
      request.setReason(cli_.option("--reason"));
      request.send().wait(ws_);
    }
    if (!cli_.json) std::cout << "ok\n";
    return 0;
  }

  int catalog() {
    auto response = session().scopeCatalogRequest().send().wait(ws_);
    if (cli_.json) {
      printJson(response.getCatalog());
      return 0;
    }
    std::vector<std::vector<std::string>> rows = {{"SCOPE", "NAME", "WHAT IT ALLOWS"}};
    for (auto s : response.getCatalog().getScopes()) {
      rows.push_back({s.getId().cStr(), s.getDisplayName().cStr(), s.getDescription().cStr()});
    }
    printTable(rows);
    return 0;
  }

  int checkpoint() {
    auto response = session().makeCheckpointRequest().send().wait(ws_);
    printJson(response.getCheckpoint());  // a checkpoint is for keeping: always JSON
    return 0;
  }

  // create and rotate: the credential, shown once, with its token.
  template <typename Response>
  int printCredentialResult(const Response& response) {
    if (cli_.json) {
      printJson(response);
    } else {
      printCredential(response.getCredential(), response.getToken());
    }
    return 0;
  }

  int printTokenResult(wire::TokenInfo::Reader token) {
    if (cli_.json) {
      printJson(token);
    } else {
      printToken(token);
    }
    return 0;
  }

  const Cli& cli_;
  tokenledger::rpc::Client& client_;
  kj::WaitScope& ws_;
};

const Commands::Spec& Commands::find(const std::string& name) {
  static constexpr Spec kCommands[] = {
      {"verify", false, &Commands::verify},     {"info", false, &Commands::info},
      {"whoami", true, &Commands::whoami},      {"create", true, &Commands::create},
      {"list", true, &Commands::list},          {"show", true, &Commands::show},
      {"scopes", true, &Commands::scopes},      {"describe", true, &Commands::describe},
      {"revoke", true, &Commands::revoke},      {"revoke-all", true, &Commands::revokeAll},
      {"rotate", true, &Commands::rotate},      {"history", true, &Commands::history},
      {"roles", true, &Commands::roles},        {"catalog", true, &Commands::catalog},
      {"checkpoint", true, &Commands::checkpoint},
  };
  for (const auto& spec : kCommands) {
    if (spec.name == name) return spec;
  }
  throw UsageError(tokenledger::looksLikeSecret(name)
                       ? std::string("unknown command (it looks like a token: pass tokens in "
                                     "TOKENLEDGER_TOKEN or a --token-file)")
                       : "unknown command " + name);
}

int exitCodeFor(const Error& e) {
  switch (e.code()) {
    case ErrorCode::kUnavailable: return 3;
    case ErrorCode::kUnauthenticated: return 4;
    default: return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  Cli cli;
  try {
    cli = parse(argc, argv);
    // Everything that can be a usage error is checked before connecting: a typo is exit 2 even
    // when the server is down.
    const Commands::Spec& command = Commands::find(cli.command);
    if (command.needsLogin) cli.token = loginToken(cli);
    tokenledger::rpc::ClientOptions options;
    if (!tokenledger::rpc::parseHostPort(cli.server, options.host, options.port)) {
      throw UsageError("--server takes HOST:PORT with a port from 0 to 65535");
    }
    if (!cli.tlsCa.empty()) options.tlsCaFile = cli.tlsCa;
    tokenledger::rpc::Client client(options);
    return Commands(cli, client).run(command);
  } catch (const UsageError& e) {
    std::cerr << "tokenctl: " << e.what() << "\n\n" << kUsage;
    return 2;
  } catch (const Error& e) {
    std::cerr << "tokenctl: " << e.what() << "\n";
    return exitCodeFor(e);
  } catch (const kj::Exception& e) {
    Error error = tokenledger::rpc::fromKjException(e);
    std::cerr << "tokenctl: " << error.what() << "\n";
    return exitCodeFor(error);
  }
}
