// A kj::AsyncIoStream over an Asio stream, so Cap'n Proto's two-party RPC runs on Asio sockets.
// `Stream` is boost::asio::ip::tcp::socket or boost::asio::ssl::stream<tcp::socket>: only
// async_read_some/async_write_some and lowest_layer() are used.
//
// Must be used on the thread that runs the socket's io_context (the AsioEventPort's thread).
// Dropping a pending read promise cancels the socket's outstanding operations, which on that
// single thread guarantees no I/O touches the caller's buffer afterwards. Writes never hold the
// caller's buffer: they are copied into the outbox.
//
// A server's stream also protects itself from a peer that stops reading (see PeerLimits).
#pragma once

#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "rpc/asio_event_port.h"
#include "rpc/buffered_message_stream.h"

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

// Unsent reply bytes across all of a server's connections, counting only what each holds beyond
// Outbox::kFreeBytes: the per-connection limit alone lets 4096 connections hold 256 KiB each.
// Updated from every loop thread; the server owns it and outlives its connections.
struct SharedBacklog {
  explicit SharedBacklog(size_t limitBytes) : limit(limitBytes) {}
  bool over() const { return bytes.load(std::memory_order_relaxed) > limit; }
  const size_t limit;
  std::atomic<size_t> bytes{0};
};

// What a server expects of its peer. Without these, a peer that sends calls and never reads the
// replies makes the server buffer replies without bound: Cap'n Proto's flow limit counts a call
// only until its reply is handed to the stream, not until the peer has taken it.
struct PeerLimits {
  // Read nothing more while the outbox holds over Outbox::kHighWater bytes the peer has not taken.
  // Only for a server: a client that stopped reading while its calls back up could deadlock
  // against a server doing the same.
  bool pauseReadsWhileBacklogged = false;
  // Close the connection once buffered bytes have made no progress for this long; zero = never.
  std::chrono::milliseconds stalledWriteTimeout{0};
  // With pauseReadsWhileBacklogged: while all connections together hold more than its limit,
  // one that holds more than Outbox::kFreeBytes reads no new calls until what it holds is written.
  SharedBacklog* sharedBacklog = nullptr;
};

template <typename Stream>
class AsioStream final : public kj::AsyncIoStream, public BufferedInput {
 public:
  // `port` feeds the KJ loop of the thread running the stream's io_context, and outlives it.
  AsioStream(Stream stream, AsioEventPort& port, PeerLimits limits = {})
      : stream_(std::move(stream)), port_(port), limits_(limits), watchdog_(stream_.get_executor()) {}
  ~AsioStream() noexcept(false) {
    outbox_->owner = nullptr;  // a flush or watchdog still queued or in flight must not touch us
    boost::system::error_code ignored;
    stream_.lowest_layer().close(ignored);
  }

  Stream& stream() { return stream_; }

  // True once the connection was closed because the peer stopped taking what was written.
  bool stalled() const { return outbox_->stalled; }

  // Resolves once everything written so far is on the socket, or the stream has failed (never
  // rejects). Destroying the stream drops what is unsent, so a server waits for this first: the
  // last replies and Cap'n Proto's Abort (why a connection ends) are written before it closes.
  kj::Promise<void> flushed() {
    Outbox& out = *outbox_;
    if (out.failed || (out.pending.empty() && !out.flushing)) return kj::READY_NOW;
    auto paf = kj::newPromiseAndFulfiller<void>();
    (out.pending.empty() ? out.sendingWaiters : out.pendingWaiters).push_back(kj::mv(paf.fulfiller));
    return paf.promise.catch_([](kj::Exception&&) {});
  }

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
    KJ_IF_MAYBE(backlog, pauseBeforeReading()) {
      return backlog->then(
          [this, buffer, minBytes, maxBytes] { return tryRead(buffer, minBytes, maxBytes); });
    }
    size_t n = inbox_->take(static_cast<kj::byte*>(buffer), maxBytes);
    if (n >= minBytes || inbox_->ended) return n;
    return kj::newAdaptedPromise<size_t, ReadOp>(*this, static_cast<kj::byte*>(buffer), n, minBytes,
                                                 maxBytes);
  }

  // The inbox, for BufferedMessageStream to read whole messages into and take them from.
  kj::ArrayPtr<const kj::byte> buffered() override {
    return kj::arrayPtr(inbox_->bytes.get() + inbox_->begin, inbox_->end - inbox_->begin);
  }
  size_t bufferCapacity() const override { return Inbox::kCapacity; }
  void skip(size_t bytes) override { inbox_->drop(bytes); }
  kj::Promise<size_t> fill() override {
    if (inbox_->ended) return size_t{0};
    return kj::newAdaptedPromise<size_t, FillOp>(*this);
  }

  // What a server's stream waits for before it reads the next call, if anything: no new calls
  // while the replies to earlier ones wait for the peer; nor, while all connections' replies
  // back up, while this one holds some of them (a peer that reads has written them within a turn
  // or two). counted > 0 implies a shared backlog.
  kj::Maybe<kj::Promise<void>> pauseBeforeReading() override {
    if (!limits_.pauseReadsWhileBacklogged) return nullptr;
    const Outbox& out = *outbox_;
    if (out.pending.size() > Outbox::kHighWater) return whenPendingWritten();
    if (out.counted > 0 && !out.failed && limits_.sharedBacklog->over()) return flushed();
    return nullptr;
  }

  // Cap'n Proto writes each message on its own, one write after the previous one completed: a
  // socket write per message. Writes are therefore copied into an outbox and flushed once the
  // current event-loop turn is over, so the replies to pipelined calls (and a call with the
  // Finish before it) leave in one socket write. The promise resolves at once unless the outbox
  // holds more than Outbox::kHighWater bytes; then it waits for the flush (back-pressure).
  kj::Promise<void> write(const void* buffer, size_t size) override {
    kj::ArrayPtr<const kj::byte> piece(static_cast<const kj::byte*>(buffer), size);
    return write(kj::arrayPtr(&piece, 1));
  }

  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    Outbox& out = *outbox_;
    if (out.failed) return out.failure(out.error);
    if (out.shutdown) return KJ_EXCEPTION(DISCONNECTED, "write after shutdownWrite()");
    for (auto piece : pieces) out.pending.insert(out.pending.end(), piece.begin(), piece.end());
    out.recount();
    scheduleFlush();
    if (out.pending.size() <= Outbox::kHighWater) return kj::READY_NOW;
    return whenPendingWritten();
  }

  kj::Promise<void> whenWriteDisconnected() override { return kj::NEVER_DONE; }

  // After what the outbox still holds has been written.
  void shutdownWrite() override {
    outbox_->shutdown = true;
    if (outbox_->pending.empty() && !outbox_->flushing) shutdownSend();
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
    // Not zeroed: only the pages that bytes arrive in become resident, so a connection that
    // sends nothing costs ~17 KiB rather than 77 (hostile_tests' IdleConnectionsTest).
    std::unique_ptr<kj::byte[]> bytes = std::make_unique_for_overwrite<kj::byte[]>(kCapacity);
    size_t begin = 0, end = 0;
    // A read met the end of the stream. The socket is not read again: Asio 1.74 would wait for
    // readiness that epoll (edge-triggered) does not report twice, and the read would never end.
    bool ended = false;
    size_t take(kj::byte* out, size_t max) {
      size_t n = std::min(max, end - begin);
      if (n == 0) return 0;  // `out` may be null when nothing is asked for
      std::memcpy(out, bytes.get() + begin, n);
      drop(n);
      return n;
    }
    void drop(size_t n) {
      begin += n;
      if (begin == end) begin = end = 0;
    }
    // Moves what it holds to the front, making room behind it.
    void compact() {
      if (begin == 0) return;
      std::memmove(bytes.get(), bytes.get() + begin, end - begin);
      end -= begin;
      begin = 0;
    }
  };

  // A read in flight. Dropping its promise cancels the socket's operations.
  class PendingRead {
   protected:
    PendingRead(kj::PromiseFulfiller<size_t>& fulfiller, AsioStream& owner)
        : owner_(owner), pending_(std::make_shared<detail::Pending<size_t>>(detail::Pending<size_t>{&fulfiller})) {}
    ~PendingRead() {
      if (pending_->fulfiller != nullptr) {
        pending_->fulfiller = nullptr;
        owner_.cancel();
      }
    }
    // A completion handler for a socket read of `n` bytes: notes the end of the stream, hands
    // `have + n` to the reader if it still waits, and runs what that makes ready.
    auto finisher(size_t have) {
      return [pending = pending_, inbox = owner_.inbox_, outbox = owner_.outbox_, port = &owner_.port_, have](
                 const boost::system::error_code& ec, size_t n) {
        if (ec == boost::asio::error::eof) inbox->ended = true;
        auto* f = pending->fulfiller;
        if (f == nullptr) return;
        pending->fulfiller = nullptr;
        // End of stream is not an error: the read returns fewer bytes than it asked for.
        if (!ec || ec == boost::asio::error::eof || n + have > 0) {
          f->fulfill(have + n);
        } else {
          f->reject(outbox->failure(ec));
        }
        port->runReady();  // may destroy the stream: nothing of it is touched after this
      };
    }

    AsioStream& owner_;
    std::shared_ptr<detail::Pending<size_t>> pending_;
  };

  // Reads what has arrived into the inbox, after what it holds.
  class FillOp : PendingRead {
   public:
    FillOp(kj::PromiseFulfiller<size_t>& fulfiller, AsioStream& owner) : PendingRead(fulfiller, owner) {
      Inbox& inbox = *owner.inbox_;
      inbox.compact();
      KJ_REQUIRE(inbox.end < Inbox::kCapacity, "the inbox is full");
      owner.stream_.async_read_some(
          boost::asio::buffer(inbox.bytes.get() + inbox.end, Inbox::kCapacity - inbox.end),
          [inbox = owner.inbox_, finish = this->finisher(0)](const boost::system::error_code& ec, size_t n) {
            inbox->end += n;  // kept even if the reader is gone: they are the stream's next bytes
            finish(ec, n);
          });
    }
  };

  // Completes a read of which `have` bytes are already in `buffer`: reads at least
  // minBytes - have more, into the inbox when the rest of the buffer is small.
  class ReadOp : PendingRead {
   public:
    ReadOp(kj::PromiseFulfiller<size_t>& fulfiller, AsioStream& owner, kj::byte* buffer,
           size_t have, size_t minBytes, size_t maxBytes)
        : PendingRead(fulfiller, owner) {
      const size_t room = maxBytes - have;
      const size_t need = minBytes - have;
      if (room >= Inbox::kCapacity) {
        boost::asio::async_read(owner.stream_, boost::asio::buffer(buffer + have, room),
                                boost::asio::transfer_at_least(need), this->finisher(have));
        return;
      }
      // The inbox is empty here: tryRead drained it before asking for more.
      boost::asio::async_read(
          owner.stream_, boost::asio::buffer(owner.inbox_->bytes.get(), Inbox::kCapacity),
          boost::asio::transfer_at_least(need),
          [inbox = owner.inbox_, pending = this->pending_, rest = buffer + have, room,
           finish = this->finisher(have)](const boost::system::error_code& ec, size_t n) {
            inbox->end = n;  // kept even if the reader is gone: they are the stream's next bytes
            // Nothing is taken for a reader that is gone: its buffer may be gone too.
            finish(ec, pending->fulfiller == nullptr ? 0 : inbox->take(rest, room));
          });
    }
  };

  // Bytes written but not yet on the socket. Shared with the flush and watchdog handlers, which
  // may run after the stream is gone (they find owner null then).
  struct Outbox {
    static constexpr size_t kHighWater = 256 * 1024;
    static constexpr size_t kFreeBytes = 16 * 1024;  // held without counting in a SharedBacklog
    using Clock = std::chrono::steady_clock;
    Outbox(AsioStream* stream, SharedBacklog* backlog) : owner(stream), shared(backlog) {}
    ~Outbox() {
      if (shared != nullptr) shared->bytes -= counted;
    }
    // Brings the shared count up to date with what this outbox holds now.
    void recount() {
      if (shared == nullptr) return;
      const size_t held = pending.size() + sending.size();
      const size_t excess = held > kFreeBytes ? held - kFreeBytes : 0;
      if (excess > counted) shared->bytes += excess - counted;
      if (excess < counted) shared->bytes -= counted - excess;
      counted = excess;
    }
    // Why a read or write failed with `ec`.
    kj::Exception failure(const boost::system::error_code& ec) const {
      if (!stalled) return detail::disconnected(ec);
      return KJ_EXCEPTION(DISCONNECTED,
                          "the peer took none of the replies for too long (stalled-reply timeout); "
                          "connection closed");
    }
    AsioStream* owner;
    SharedBacklog* const shared;  // may be null
    size_t counted = 0;           // what this outbox adds to shared->bytes
    std::vector<kj::byte> pending, sending;  // sending: the one socket write in flight
    std::vector<kj::Own<kj::PromiseFulfiller<void>>> pendingWaiters, sendingWaiters;
    bool scheduled = false;  // a flush is posted
    bool flushing = false;   // a socket write is in flight
    bool shutdown = false;   // shutdownWrite() once everything is written
    bool failed = false;
    boost::system::error_code error;
    bool watching = false;           // the stalled-write watchdog is armed
    bool stalled = false;            // the watchdog closed the connection
    Clock::time_point lastProgress;  // the write in flight began or last moved bytes
  };

  // Resolves once everything the outbox holds now is on the socket; rejects if the stream fails.
  kj::Promise<void> whenPendingWritten() {
    Outbox& out = *outbox_;
    if (out.failed) return out.failure(out.error);
    auto paf = kj::newPromiseAndFulfiller<void>();
    out.pendingWaiters.push_back(kj::mv(paf.fulfiller));
    return kj::mv(paf.promise);
  }

  // Checks, while a write is in flight, that it keeps moving; closes the connection if not.
  void watchWrites() {
    Outbox& out = *outbox_;
    if (limits_.stalledWriteTimeout.count() == 0 || out.watching) return;
    out.watching = true;
    watchdog_.expires_at(out.lastProgress + limits_.stalledWriteTimeout);
    watchdog_.async_wait([outbox = outbox_](const boost::system::error_code& ec) {
      Outbox& o = *outbox;
      o.watching = false;
      if (ec || o.owner == nullptr || !o.flushing) return;
      if (Outbox::Clock::now() - o.lastProgress < o.owner->limits_.stalledWriteTimeout) {
        o.owner->watchWrites();  // it moved meanwhile: look again a timeout after that
        return;
      }
      o.stalled = true;
      boost::system::error_code ignored;
      o.owner->stream_.lowest_layer().close(ignored);  // the write fails, and the connection with it
    });
  }

  void shutdownSend() {
    boost::system::error_code ignored;
    stream_.lowest_layer().shutdown(boost::asio::ip::tcp::socket::shutdown_send, ignored);
  }

  // Posted, so every write of this event-loop turn joins the same socket write.
  void scheduleFlush() {
    Outbox& out = *outbox_;
    if (out.scheduled || out.flushing) return;  // a flush is coming (or will follow the one in flight)
    out.scheduled = true;
    boost::asio::post(stream_.get_executor(), [outbox = outbox_] {
      outbox->scheduled = false;
      if (outbox->owner != nullptr) outbox->owner->flush();
    });
  }

  void flush() {
    Outbox& out = *outbox_;
    if (out.flushing || out.failed) return;
    if (out.pending.empty()) {
      if (out.shutdown) shutdownSend();
      return;
    }
    out.flushing = true;
    std::swap(out.pending, out.sending);
    std::swap(out.pendingWaiters, out.sendingWaiters);
    out.lastProgress = Outbox::Clock::now();
    watchWrites();
    // The completion condition runs before the first socket write and after each one that moved
    // bytes: that is the progress the watchdog looks for.
    auto progress = [outbox = outbox_](const boost::system::error_code& ec, size_t) -> size_t {
      outbox->lastProgress = Outbox::Clock::now();
      return boost::asio::transfer_all()(ec, 0);
    };
    boost::asio::async_write(stream_, boost::asio::buffer(out.sending), progress,
                             [outbox = outbox_](const boost::system::error_code& ec, size_t) {
                               Outbox& o = *outbox;
                               o.flushing = false;
                               o.sending.clear();
                               o.recount();
                               auto waiters = std::move(o.sendingWaiters);
                               o.sendingWaiters.clear();
                               if (ec) {
                                 o.failed = true;
                                 o.error = ec;
                                 for (auto& w : waiters) w->reject(o.failure(ec));
                                 for (auto& w : o.pendingWaiters) w->reject(o.failure(ec));
                                 o.pendingWaiters.clear();
                                 return;
                               }
                               for (auto& w : waiters) w->fulfill();
                               if (o.owner != nullptr) o.owner->flush();
                             });
  }

  Stream stream_;
  AsioEventPort& port_;
  PeerLimits limits_;
  boost::asio::steady_timer watchdog_;  // cancelled with the stream; its handler holds the outbox
  std::shared_ptr<Inbox> inbox_ = std::make_shared<Inbox>();
  std::shared_ptr<Outbox> outbox_ = std::make_shared<Outbox>(this, limits_.sharedBacklog);
};

}  // namespace tokenledger::rpc
