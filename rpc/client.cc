#include "rpc/client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <capnp/rpc-twoparty.h>

#include "ledger/error.h"
#include "ledger/token.h"
#include "rpc/asio_event_port.h"
#include "rpc/asio_stream.h"

namespace tokenledger::rpc {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class ClientLoop::Impl {
 public:
  Impl() : port_(io_), loop_(port_), scope_(loop_) { port_.attach(loop_, scope_); }

  asio::io_context& io() { return io_; }
  AsioEventPort& port() { return port_; }
  kj::WaitScope& waitScope() { return scope_; }

 private:
  asio::io_context io_{1};
  AsioEventPort port_;
  kj::EventLoop loop_;
  kj::WaitScope scope_;
};

namespace {

// A steady_timer as a KJ promise; dropping the promise cancels the timer.
class TimerOp {
 public:
  TimerOp(kj::PromiseFulfiller<void>& fulfiller, asio::io_context& io,
          std::chrono::steady_clock::time_point when)
      : timer_(io, when),
        pending_(std::make_shared<detail::Pending<void>>(detail::Pending<void>{&fulfiller})) {
    // The handler may run after this op is gone (with operation_aborted): it keeps only pending_.
    timer_.async_wait([pending = pending_](const boost::system::error_code&) {
      if (auto* f = std::exchange(pending->fulfiller, nullptr)) f->fulfill();
    });
  }
  ~TimerOp() {
    pending_->fulfiller = nullptr;
    timer_.cancel();
  }

 private:
  asio::steady_timer timer_;
  std::shared_ptr<detail::Pending<void>> pending_;
};

}  // namespace

ClientLoop::ClientLoop() : impl_(std::make_unique<Impl>()) {}
ClientLoop::~ClientLoop() = default;
kj::WaitScope& ClientLoop::waitScope() { return impl_->waitScope(); }
kj::Promise<void> ClientLoop::sleepUntil(std::chrono::steady_clock::time_point when) {
  return kj::newAdaptedPromise<void, TimerOp>(impl_->io(), when);
}

class Client::Impl {
 public:
  Impl(ClientLoop::Impl& loop, const ClientOptions& options) : loop_(loop) {
    asio::io_context& io = loop_.io();
    tcp::socket socket(io);
    const std::string where = options.host + ":" + std::to_string(options.port);
    try {
      tcp::resolver resolver(io);
      asio::connect(socket, resolver.resolve(options.host, std::to_string(options.port)));
      socket.set_option(tcp::no_delay(true));
    } catch (const boost::system::system_error& e) {
      throw Error(ErrorCode::kUnavailable,
                  "cannot connect to tokenledgerd at " + where + ": " + e.code().message() +
                      " (is `tokenledgerd serve` running?)");
    }
    if (options.tlsCaFile) {
      try {
        tls_.emplace(asio::ssl::context::tls_client);
        tls_->load_verify_file(*options.tlsCaFile);
        auto stream = asio::ssl::stream<tcp::socket>(std::move(socket), *tls_);
        stream.set_verify_mode(asio::ssl::verify_peer);
        stream.set_verify_callback(asio::ssl::host_name_verification(options.host));
        stream.handshake(asio::ssl::stream_base::client);
        stream_ = kj::heap<AsioStream<asio::ssl::stream<tcp::socket>>>(std::move(stream), loop_.port());
      } catch (const boost::system::system_error& e) {
        throw Error(ErrorCode::kUnavailable,
                    "TLS with tokenledgerd at " + where + " failed: " + e.code().message());
      }
    } else {
      stream_ = kj::heap<AsioStream<tcp::socket>>(std::move(socket), loop_.port());
    }
    capnp::ReaderOptions reader;
    reader.traversalLimitInWords = options.maxMessageBytes / sizeof(capnp::word);
    network_ = kj::heap<capnp::TwoPartyVatNetwork>(*stream_, capnp::rpc::twoparty::Side::CLIENT,
                                                   reader);
    rpc_ = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(capnp::makeRpcClient(*network_));
    capnp::word scratch[4];
    memset(&scratch, 0, sizeof(scratch));
    capnp::MallocMessageBuilder message(scratch);
    auto server = message.getRoot<capnp::rpc::twoparty::VatId>();
    server.setSide(capnp::rpc::twoparty::Side::SERVER);
    ledger_ = rpc_->bootstrap(server).castAs<wire::TokenLedger>();
  }

  ~Impl() noexcept(false) {
    ledger_ = nullptr;
    rpc_ = nullptr;
    network_ = nullptr;
    stream_ = nullptr;
  }

  wire::TokenLedger::Client ledger() { return ledger_; }
  kj::WaitScope& waitScope() { return loop_.waitScope(); }

 private:
  ClientLoop::Impl& loop_;
  std::optional<asio::ssl::context> tls_;
  kj::Own<kj::AsyncIoStream> stream_;
  kj::Own<capnp::TwoPartyVatNetwork> network_;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc_;
  wire::TokenLedger::Client ledger_{nullptr};
};

bool parseHostPort(std::string_view text, std::string& host, uint16_t& port) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view name = text.substr(0, colon);
  if (name.size() > 2 && name.front() == '[' && name.back() == ']') name = name.substr(1, name.size() - 2);
  uint64_t number = 0;
  if (!parseUnsigned(text.substr(colon + 1), 65535, number)) return false;
  host = name;
  port = static_cast<uint16_t>(number);
  return true;
}

Client::Client(ClientOptions options)
    : ownLoop_(std::make_unique<ClientLoop>()),
      impl_(std::make_unique<Impl>(*ownLoop_->impl_, options)) {}
Client::Client(ClientLoop& loop, ClientOptions options)
    : impl_(std::make_unique<Impl>(*loop.impl_, options)) {}
Client::~Client() = default;
wire::TokenLedger::Client Client::ledger() { return impl_->ledger(); }
kj::WaitScope& Client::waitScope() { return impl_->waitScope(); }

}  // namespace tokenledger::rpc
