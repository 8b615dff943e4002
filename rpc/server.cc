#include "rpc/server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <capnp/rpc-twoparty.h>
#include <spdlog/spdlog.h>

#include <pthread.h>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "rpc/asio_event_port.h"
#include "rpc/asio_stream.h"
#include "rpc/buffered_message_stream.h"
#include "rpc/question_limit.h"
#include "rpc/unpipelined_client.h"

namespace tokenledger::rpc {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using TlsSocket = asio::ssl::stream<tcp::socket>;

constexpr auto kTlsHandshakeTimeout = std::chrono::seconds(10);

// One connection's RPC stack. Members are destroyed bottom-up: RPC system, network, messages,
// stream.
struct Connection {
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::MessageStream> messages;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
};

// Counts a connection for as long as it lives.
class ConnectionSlot {
 public:
  explicit ConnectionSlot(std::atomic<size_t>& count) : count_(&count) {}
  ConnectionSlot(ConnectionSlot&& other) noexcept : count_(std::exchange(other.count_, nullptr)) {}
  ConnectionSlot& operator=(ConnectionSlot&&) = delete;
  ~ConnectionSlot() {
    if (count_ != nullptr) count_->fetch_sub(1);
  }

 private:
  std::atomic<size_t>* count_;
};

class Worker;

}  // namespace

class Server::Impl {
 public:
  Impl(LedgerInstance& instance, ServerOptions options);
  ~Impl() { stop(); }
  void stop();
  uint16_t port() const { return port_; }

  const ServerOptions& options() const { return options_; }
  const ServiceContext& context() const { return context_; }
  asio::ssl::context* tls() { return tls_ ? &*tls_ : nullptr; }
  std::atomic<size_t>& connections() { return connections_; }
  SharedBacklog& backlog() { return backlog_; }

 private:
  void accept();

  // Delivers ledger commits to every loop; cleared before the loops go away.
  struct HeadFanout {
    std::mutex mutex;
    std::vector<Worker*> workers;
  };

  LedgerInstance& instance_;
  ServerOptions options_;
  ServiceContext context_;
  std::optional<asio::ssl::context> tls_;
  std::atomic<size_t> connections_{0};
  SharedBacklog backlog_;  // before workers_: their connections' outboxes count in it
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::shared_ptr<HeadFanout> fanout_;
  uint16_t port_ = 0;
  size_t nextWorker_ = 0;
  bool stopped_ = false;
};

namespace {

class Worker final : public kj::TaskSet::ErrorHandler {
 public:
  explicit Worker(Server::Impl& server) : server_(server) {}

  // `index` names the thread ("tl-loop-0"...) for top -H, perf and gdb.
  void start(uint64_t head, unsigned index) {
    std::promise<void> ready;
    auto started = ready.get_future();
    thread_ = std::thread([this, head, &ready] { run(head, ready); });
    pthread_setname_np(thread_.native_handle(), ("tl-loop-" + std::to_string(index)).c_str());
    started.get();
  }

  asio::io_context& io() { return io_; }

  // Any thread: the socket was accepted onto this worker's io_context.
  void adopt(tcp::socket socket) {
    auto holder = std::make_shared<tcp::socket>(std::move(socket));
    asio::post(io_, [this, holder] { serve(std::move(*holder)); });
  }

  // Any thread.
  void notifyHead(uint64_t head) {
    asio::post(io_, [this, head] {
      if (hub_ != nullptr) hub_->headAdvanced(head);
    });
  }

  // Any thread but this worker's: closes every connection and joins the thread.
  void stop() {
    if (!thread_.joinable()) return;
    asio::post(io_, [this] {
      connections_ = nullptr;  // cancels and destroys every connection on this thread
      work_.reset();
      io_.stop();
    });
    thread_.join();
  }

 private:
  void run(uint64_t head, std::promise<void>& ready) {
    AsioEventPort port(io_);
    kj::EventLoop loop(port);
    kj::WaitScope scope(loop);
    port.attach(loop, scope);
    port_ = &port;
    {
      WatchHub hub(server_.context(), head);
      hub_ = &hub;
      connections_ = kj::heap<kj::TaskSet>(*this);
      work_.emplace(asio::make_work_guard(io_));
      ready.set_value();
      io_.run();
      connections_ = nullptr;
      hub_ = nullptr;
    }
    loop.run();  // let destructors' last events settle before the loop goes away
  }

  void serve(tcp::socket socket) {
    if (!connections_) return;
    if (server_.connections().fetch_add(1) >= server_.options().maxConnections) {
      ConnectionSlot release(server_.connections());
      spdlog::warn("refusing a connection: {} connections already open",
                   server_.options().maxConnections);
      return;  // the socket closes as it goes out of scope
    }
    ConnectionSlot slot(server_.connections());
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    if (server_.tls() == nullptr) {
      startRpc(kj::heap<AsioStream<tcp::socket>>(std::move(socket), *port_, peerLimits()), std::move(slot));
      return;
    }
    auto tls = std::make_shared<TlsSocket>(std::move(socket), *server_.tls());
    auto timer = std::make_shared<asio::steady_timer>(io_, kTlsHandshakeTimeout);
    timer->async_wait([tls](const boost::system::error_code& ec) {
      if (!ec) {
        boost::system::error_code ignored;
        tls->lowest_layer().close(ignored);  // too slow: give up on this client
      }
    });
    auto slotHolder = std::make_shared<ConnectionSlot>(std::move(slot));
    tls->async_handshake(asio::ssl::stream_base::server,
                         [this, tls, timer, slotHolder](const boost::system::error_code& ec) {
                           timer->cancel();
                           if (ec) {
                             spdlog::info("TLS handshake failed: {}", ec.message());
                             return;
                           }
                           if (!connections_) return;
                           startRpc(kj::heap<AsioStream<TlsSocket>>(std::move(*tls), *port_, peerLimits()),
                                    std::move(*slotHolder));
                         });
  }

  // A peer that stops reading its replies is first throttled (none of its calls is read while
  // their replies back up), then closed.
  PeerLimits peerLimits() const {
    return PeerLimits{.pauseReadsWhileBacklogged = true,
                      .stalledWriteTimeout = server_.options().stalledReplyTimeout,
                      .sharedBacklog = &server_.backlog()};
  }

  template <typename Stream>
  void startRpc(kj::Own<AsioStream<Stream>> stream, ConnectionSlot slot) {
    std::string peer = stream->peerAddress();
    AsioStream<Stream>& watched = *stream;  // owned by the connection until it is done
    capnp::ReaderOptions reader;
    reader.traversalLimitInWords = server_.options().maxMessageBytes / sizeof(capnp::word);
    auto connection = kj::heap<Connection>();
    connection->messages = kj::heap<BufferedMessageStream>(
        *stream, *stream, [limit = QuestionLimit(server_.options().maxUnfinishedCalls)](
                              capnp::MessageReader& message) mutable { limit.count(message); });
    connection->network = kj::heap<capnp::TwoPartyVatNetwork>(
        *connection->messages, capnp::rpc::twoparty::Side::SERVER, reader);
    connection->stream = kj::mv(stream);
    connection->rpc = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(capnp::makeRpcServer(
        *connection->network,
        withoutNeedlessPipelining(newLedgerServer(server_.context(), *hub_, peer),
                                  capnp::Schema::from<wire::TokenLedger>())));
    connection->rpc->setFlowLimit(server_.options().maxInFlightBytes / sizeof(capnp::word));
    spdlog::debug("connection from {}", peer);
    auto done = connection->network->onDisconnect().then([&watched] { return watched.flushed(); })
                    .then([this, &watched, peer] {
      if (watched.stalled()) {
        spdlog::warn("closed the connection from {}: it took none of its replies for {} ms", peer,
                     server_.options().stalledReplyTimeout.count());
      } else {
        spdlog::debug("connection from {} closed", peer);
      }
    });
    connections_->add(done.attach(kj::mv(connection), kj::heap<ConnectionSlot>(std::move(slot))));
  }

  void taskFailed(kj::Exception&& exception) override {
    // One connection failed (e.g. sent an oversized or malformed message); others are unaffected.
    spdlog::info("connection ended: {}", exception.getDescription().cStr());
  }

  Server::Impl& server_;
  asio::io_context io_{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
  // Loop-thread only, set while it runs:
  AsioEventPort* port_ = nullptr;
  WatchHub* hub_ = nullptr;
  kj::Own<kj::TaskSet> connections_;
};

}  // namespace

Server::Impl::Impl(LedgerInstance& instance, ServerOptions options)
    : instance_(instance),
      options_(std::move(options)),
      context_{instance, TOKENLEDGER_VERSION, options_.limits},
      backlog_(options_.maxBacklogBytes),
      fanout_(std::make_shared<HeadFanout>()) {
  // spdlog creates its registry on first use; do that here, before the loop threads start, so
  // two of them never race to be first (TSan saw exactly that through the uninstrumented lib).
  spdlog::default_logger_raw();
  if (options_.tls) {
    try {
      tls_.emplace(asio::ssl::context::tls_server);
      tls_->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                        asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                        asio::ssl::context::no_tlsv1_1);
      tls_->use_certificate_chain_file(options_.tls->certificateChain);
      tls_->use_private_key_file(options_.tls->privateKey, asio::ssl::context::pem);
    } catch (const boost::system::system_error& e) {
      throw Error(ErrorCode::kInvalidArgument,
                  std::string("cannot use the TLS certificate or key: ") + e.what());
    }
  }
  const unsigned threads = std::max(1u, options_.threads);
  const uint64_t head = instance_.ledger().headSeq();
  for (unsigned i = 0; i < threads; ++i) {
    workers_.push_back(std::make_unique<Worker>(*this));
    workers_.back()->start(head, i);
  }
  {
    std::lock_guard lock(fanout_->mutex);
    for (auto& w : workers_) fanout_->workers.push_back(w.get());
  }
  instance_.ledger().setCommitListener([fanout = fanout_](uint64_t, uint64_t last) {
    std::lock_guard lock(fanout->mutex);
    for (Worker* w : fanout->workers) w->notifyHead(last);
  });

  try {
    auto address = asio::ip::make_address(options_.address);
    tcp::endpoint endpoint(address, options_.port);
    acceptor_ = std::make_unique<tcp::acceptor>(workers_[0]->io());
    acceptor_->open(endpoint.protocol());
    acceptor_->set_option(tcp::acceptor::reuse_address(true));
    acceptor_->bind(endpoint);
    acceptor_->listen(asio::socket_base::max_listen_connections);
    port_ = acceptor_->local_endpoint().port();
  } catch (const boost::system::system_error& e) {
    stop();
    throw Error(ErrorCode::kUnavailable, "cannot listen on " + options_.address + ":" +
                                             std::to_string(options_.port) + ": " +
                                             e.code().message());
  }
  asio::post(workers_[0]->io(), [this] { accept(); });
}

void Server::Impl::accept() {
  Worker& target = *workers_[nextWorker_++ % workers_.size()];
  acceptor_->async_accept(target.io(), [this, &target](const boost::system::error_code& ec,
                                                        tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_->is_open()) return;
    if (!ec) {
      target.adopt(std::move(socket));
    } else {
      spdlog::warn("accept failed: {}", ec.message());
    }
    accept();
  });
}

void Server::Impl::stop() {
  if (stopped_) return;
  stopped_ = true;
  {
    std::lock_guard lock(fanout_->mutex);
    fanout_->workers.clear();
  }
  instance_.ledger().setCommitListener(nullptr);
  if (acceptor_ && !workers_.empty()) {
    std::promise<void> closed;
    asio::post(workers_[0]->io(), [this, &closed] {
      boost::system::error_code ignored;
      acceptor_->close(ignored);
      closed.set_value();
    });
    closed.get_future().get();
  }
  for (auto& w : workers_) w->stop();
  acceptor_.reset();
  workers_.clear();
}

Server::Server(LedgerInstance& instance, ServerOptions options)
    : impl_(std::make_unique<Impl>(instance, std::move(options))) {}
Server::~Server() = default;
uint16_t Server::port() const { return impl_->port(); }
size_t Server::backlogBytes() const { return impl_->backlog().bytes.load(); }
void Server::stop() { impl_->stop(); }

}  // namespace tokenledger::rpc
