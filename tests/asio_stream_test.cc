// rpc::AsioStream over a real TCP connection on 127.0.0.1: writes are buffered in an outbox and
// flushed after the event-loop turn, so these check what that must never change: every byte
// arrives once and in order, a writer is held back when the peer does not read, shutdownWrite()
// still delivers what was buffered before the end of stream, and a vanished peer fails writes.
#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <kj/async.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "rpc/asio_event_port.h"
#include "rpc/asio_stream.h"

namespace tokenledger::rpc {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Stream = AsioStream<tcp::socket>;

// One thread's loop with two ends of a loopback TCP connection as AsioStreams.
class AsioStreamTest : public ::testing::Test {
 protected:
  AsioStreamTest() : port_(io_), loop_(port_), scope_(loop_) {
    port_.attach(loop_, scope_);
    tcp::acceptor acceptor(io_, {asio::ip::make_address("127.0.0.1"), 0});
    tcp::socket client(io_), server(io_);
    client.connect(acceptor.local_endpoint());
    acceptor.accept(server);
    writer_ = kj::heap<Stream>(std::move(client));
    reader_ = kj::heap<Stream>(std::move(server));
  }
  // kj::Own's destructor may throw; gtest's fixtures may not. The streams go first (members in
  // reverse order), before the loop they run on.
  ~AsioStreamTest() noexcept override {}

  // Runs the loop until `promise` settles or `timeout` passes; true if it settled.
  template <typename T>
  bool settles(kj::Promise<T>& promise, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!promise.poll(scope_)) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      io_.run_one_for(std::chrono::milliseconds(5));
    }
    return true;
  }

  // Reads until `want` bytes or the end of the stream; what was read.
  std::string readUpTo(size_t want) {
    std::string got(want, '\0');
    size_t have = 0;
    while (have < want) {
      auto read = reader_->tryRead(got.data() + have, 1, want - have);
      if (!settles(read)) ADD_FAILURE() << "read stalled after " << have << " of " << want << " bytes";
      size_t n = read.wait(scope_);
      if (n == 0) break;
      have += n;
    }
    got.resize(have);
    return got;
  }

  asio::io_context io_{1};
  AsioEventPort port_;
  kj::EventLoop loop_;
  kj::WaitScope scope_;
  kj::Own<Stream> writer_;
  kj::Own<Stream> reader_;
};

// Pieces of many sizes, each with its own byte pattern, so a lost, doubled or reordered piece
// shows in the comparison.
std::vector<std::string> patternedPieces(size_t count) {
  std::vector<std::string> pieces;
  for (size_t i = 0; i < count; ++i) {
    size_t size = 1 + (i * 7919) % 70'000;
    std::string piece(size, '\0');
    for (size_t k = 0; k < size; ++k) piece[k] = static_cast<char>((i * 31 + k) & 0xff);
    pieces.push_back(std::move(piece));
  }
  return pieces;
}

TEST_F(AsioStreamTest, EveryByteArrivesOnceAndInOrderAcrossManyWrites) {
  auto pieces = patternedPieces(200);  // about 7 MB, far above the outbox's high-water mark
  std::string expected;
  for (const auto& p : pieces) expected += p;

  // Written as Cap'n Proto does: each write after the previous one resolved, while the other
  // end reads concurrently on the same loop.
  size_t next = 0;
  std::function<kj::Promise<void>()> writeNext = [&]() -> kj::Promise<void> {
    if (next == pieces.size()) return kj::READY_NOW;
    const std::string& piece = pieces[next++];
    return writer_->write(piece.data(), piece.size()).then([&] { return writeNext(); });
  };
  auto writes = writeNext().eagerlyEvaluate(nullptr);
  std::string got = readUpTo(expected.size());
  ASSERT_TRUE(settles(writes));
  writes.wait(scope_);
  EXPECT_EQ(got.size(), expected.size());
  EXPECT_TRUE(got == expected) << "the bytes differ from what was written";
}

TEST_F(AsioStreamTest, GatheredPiecesOfOneWriteStayTogetherInOrder) {
  std::string a = "first", b(100'000, 'b'), c = "third";
  kj::ArrayPtr<const kj::byte> pieces[] = {
      kj::arrayPtr(reinterpret_cast<const kj::byte*>(a.data()), a.size()),
      kj::arrayPtr(reinterpret_cast<const kj::byte*>(b.data()), b.size()),
      kj::arrayPtr(reinterpret_cast<const kj::byte*>(c.data()), c.size())};
  auto write = writer_->write(kj::arrayPtr(pieces, 3));
  EXPECT_EQ(readUpTo(a.size() + b.size() + c.size()), a + b + c);
  ASSERT_TRUE(settles(write));
}

TEST_F(AsioStreamTest, AWriterIsHeldBackWhileThePeerDoesNotRead) {
  // 1 MiB writes with nobody reading: once the kernel's buffers and the outbox are full, a
  // write must stay pending instead of the outbox growing without bound.
  const std::string chunk(1 << 20, 'x');
  std::vector<kj::Promise<void>> writes;
  bool heldBack = false;
  for (int i = 0; i < 64 && !heldBack; ++i) {
    writes.push_back(writer_->write(chunk.data(), chunk.size()));
    heldBack = !settles(writes.back(), std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(heldBack) << "64 MiB were accepted while the peer read nothing";
  // Once the peer reads, the held-back write completes and nothing was lost.
  const size_t written = writes.size() * chunk.size();
  EXPECT_EQ(readUpTo(written), std::string(written, 'x'));
  for (auto& w : writes) ASSERT_TRUE(settles(w));
}

TEST_F(AsioStreamTest, ShutdownWriteDeliversWhatWasBufferedThenEndOfStream) {
  const std::string message(300'000, 'm');  // more than one socket write
  auto write = writer_->write(message.data(), message.size());
  writer_->shutdownWrite();  // right away: the outbox still holds most of the message
  EXPECT_EQ(readUpTo(message.size() + 1), message);  // all of it, then the end of stream
  ASSERT_TRUE(settles(write));
}

TEST_F(AsioStreamTest, WritesFailOnceThePeerHasGone) {
  reader_ = nullptr;  // closes the other end
  const std::string chunk(64 * 1024, 'z');
  bool failed = false;
  for (int i = 0; i < 200 && !failed; ++i) {
    auto write = writer_->write(chunk.data(), chunk.size());
    ASSERT_TRUE(settles(write));
    try {
      write.wait(scope_);
      io_.run_for(std::chrono::milliseconds(1));  // let the flush meet the reset
    } catch (const kj::Exception& e) {
      EXPECT_EQ(e.getType(), kj::Exception::Type::DISCONNECTED);
      failed = true;
    }
  }
  EXPECT_TRUE(failed) << "12 MiB of writes to a closed peer all 'succeeded'";
}

}  // namespace
}  // namespace tokenledger::rpc
