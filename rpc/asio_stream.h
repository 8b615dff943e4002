// A kj::AsyncIoStream over an Asio stream, so Cap'n Proto's two-party RPC runs on Asio sockets.
// `Stream` is boost::asio::ip::tcp::socket or boost::asio::ssl::stream<tcp::socket>: only
// async_read_some/async_write_some and lowest_layer() are used.
//
// Must be used on the thread that runs the socket's io_context (the AsioEventPort's thread).
// Dropping a pending read or write promise cancels the socket's outstanding operations, which
// on that single thread guarantees no I/O touches the caller's buffer afterwards.
#pragma once

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <kj/async-io.h>

#include <memory>
#include <string>
#include <vector>

namespace tokenledger::rpc {

namespace detail {

template <typename T>
struct Pending {
  kj::PromiseFulfiller<T>* fulfiller;  // null once the promise was dropped
};

inline kj::Exception disconnected(const boost::system::error_code& ec) {
  return KJ_EXCEPTION(DISCONNECTED, "connection lost", ec.message());
}

}  // namespace detail

template <typename Stream>
class AsioStream final : public kj::AsyncIoStream {
 public:
  explicit AsioStream(Stream stream) : stream_(std::move(stream)) {}
  ~AsioStream() noexcept(false) {
    boost::system::error_code ignored;
    stream_.lowest_layer().close(ignored);
  }

  Stream& stream() { return stream_; }

  // "127.0.0.1:51234", or "unknown".
  std::string peerAddress() const {
    boost::system::error_code ec;
    auto endpoint = stream_.lowest_layer().remote_endpoint(ec);
    if (ec) return "unknown";
    return endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
  }

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
    return kj::newAdaptedPromise<size_t, ReadOp>(*this, buffer, minBytes, maxBytes);
  }

  kj::Promise<void> write(const void* buffer, size_t size) override {
    std::vector<boost::asio::const_buffer> buffers{boost::asio::buffer(buffer, size)};
    return kj::newAdaptedPromise<void, WriteOp>(*this, std::move(buffers));
  }

  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    std::vector<boost::asio::const_buffer> buffers;
    buffers.reserve(pieces.size());
    for (auto piece : pieces) buffers.push_back(boost::asio::buffer(piece.begin(), piece.size()));
    return kj::newAdaptedPromise<void, WriteOp>(*this, std::move(buffers));
  }

  kj::Promise<void> whenWriteDisconnected() override { return kj::NEVER_DONE; }

  void shutdownWrite() override {
    boost::system::error_code ignored;
    stream_.lowest_layer().shutdown(boost::asio::ip::tcp::socket::shutdown_send, ignored);
  }

  void abortRead() override {
    boost::system::error_code ignored;
    stream_.lowest_layer().shutdown(boost::asio::ip::tcp::socket::shutdown_receive, ignored);
  }

 private:
  void cancel() {
    boost::system::error_code ignored;
    stream_.lowest_layer().cancel(ignored);
  }

  class ReadOp {
   public:
    ReadOp(kj::PromiseFulfiller<size_t>& fulfiller, AsioStream& owner, void* buffer,
           size_t minBytes, size_t maxBytes)
        : owner_(owner), pending_(std::make_shared<detail::Pending<size_t>>(
                             detail::Pending<size_t>{&fulfiller})) {
      if (maxBytes == 0) {
        fulfiller.fulfill(0);
        pending_->fulfiller = nullptr;
        return;
      }
      boost::asio::async_read(
          owner.stream_, boost::asio::buffer(buffer, maxBytes),
          boost::asio::transfer_at_least(minBytes),
          [pending = pending_](const boost::system::error_code& ec, size_t n) {
            auto* f = pending->fulfiller;
            if (f == nullptr) return;
            pending->fulfiller = nullptr;
            // End of stream is not an error: tryRead returns fewer than minBytes.
            if (!ec || ec == boost::asio::error::eof || n > 0) {
              f->fulfill(kj::cp(n));
            } else {
              f->reject(detail::disconnected(ec));
            }
          });
    }
    ~ReadOp() {
      if (pending_->fulfiller != nullptr) {
        pending_->fulfiller = nullptr;
        owner_.cancel();
      }
    }

   private:
    AsioStream& owner_;
    std::shared_ptr<detail::Pending<size_t>> pending_;
  };

  class WriteOp {
   public:
    WriteOp(kj::PromiseFulfiller<void>& fulfiller, AsioStream& owner,
            std::vector<boost::asio::const_buffer> buffers)
        : owner_(owner), pending_(std::make_shared<detail::Pending<void>>(
                             detail::Pending<void>{&fulfiller})) {
      boost::asio::async_write(owner.stream_, buffers,
                               [pending = pending_](const boost::system::error_code& ec, size_t) {
                                 auto* f = pending->fulfiller;
                                 if (f == nullptr) return;
                                 pending->fulfiller = nullptr;
                                 if (ec) {
                                   f->reject(detail::disconnected(ec));
                                 } else {
                                   f->fulfill();
                                 }
                               });
    }
    ~WriteOp() {
      if (pending_->fulfiller != nullptr) {
        pending_->fulfiller = nullptr;
        owner_.cancel();
      }
    }

   private:
    AsioStream& owner_;
    std::shared_ptr<detail::Pending<void>> pending_;
  };

  Stream stream_;
};

}  // namespace tokenledger::rpc
