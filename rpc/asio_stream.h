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

#include <algorithm>
#include <cstring>
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

  // Cap'n Proto 0.9 reads each message in exact pieces (its first word, then the rest), which
  // cost one socket read each. Small reads therefore go through an inbox that one socket read
  // fills with all that has arrived (several pipelined messages at once); later reads are served
  // from it. Large reads go straight into the caller's buffer.
  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
    size_t n = inbox_->take(static_cast<kj::byte*>(buffer), maxBytes);
    if (n >= minBytes) return n;
    return kj::newAdaptedPromise<size_t, ReadOp>(*this, static_cast<kj::byte*>(buffer), n, minBytes,
                                                 maxBytes);
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

  // Bytes read from the socket beyond what the reader asked for. Shared with the read handler,
  // which may run after the stream is gone (with operation_aborted).
  struct Inbox {
    static constexpr size_t kCapacity = 64 * 1024;
    std::unique_ptr<kj::byte[]> bytes = std::make_unique<kj::byte[]>(kCapacity);
    size_t begin = 0, end = 0;
    size_t take(kj::byte* out, size_t max) {
      size_t n = std::min(max, end - begin);
      if (n == 0) return 0;  // `out` may be null when nothing is asked for
      std::memcpy(out, bytes.get() + begin, n);
      begin += n;
      if (begin == end) begin = end = 0;
      return n;
    }
  };

  // Completes a read of which `have` bytes are already in `buffer`: reads at least
  // minBytes - have more, into the inbox when the rest of the buffer is small.
  class ReadOp {
   public:
    ReadOp(kj::PromiseFulfiller<size_t>& fulfiller, AsioStream& owner, kj::byte* buffer,
           size_t have, size_t minBytes, size_t maxBytes)
        : owner_(owner), pending_(std::make_shared<detail::Pending<size_t>>(
                             detail::Pending<size_t>{&fulfiller})) {
      const size_t room = maxBytes - have;
      const size_t need = minBytes - have;
      auto finish = [pending = pending_, have](const boost::system::error_code& ec, size_t n) {
        auto* f = pending->fulfiller;
        if (f == nullptr) return;
        pending->fulfiller = nullptr;
        // End of stream is not an error: tryRead returns fewer than minBytes.
        if (!ec || ec == boost::asio::error::eof || n + have > 0) {
          f->fulfill(have + n);
        } else {
          f->reject(detail::disconnected(ec));
        }
      };
      if (room >= Inbox::kCapacity) {
        boost::asio::async_read(owner.stream_, boost::asio::buffer(buffer + have, room),
                                boost::asio::transfer_at_least(need), std::move(finish));
        return;
      }
      // The inbox is empty here: tryRead drained it before asking for more.
      boost::asio::async_read(
          owner.stream_, boost::asio::buffer(owner.inbox_->bytes.get(), Inbox::kCapacity),
          boost::asio::transfer_at_least(need),
          [inbox = owner.inbox_, pending = pending_, rest = buffer + have, room,
           finish = std::move(finish)](
              const boost::system::error_code& ec, size_t n) {
            inbox->end = n;  // kept even if the reader is gone: they are the stream's next bytes
            if (pending->fulfiller == nullptr) return;  // and its buffer may be gone too
            finish(ec, inbox->take(rest, room));
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
  std::shared_ptr<Inbox> inbox_ = std::make_shared<Inbox>();
};

}  // namespace tokenledger::rpc
