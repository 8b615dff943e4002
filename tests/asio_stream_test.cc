// rpc::AsioStream over a real TCP connection on 127.0.0.1: writes are buffered in an outbox and
// flushed after the event-loop turn, so these check what that must never change: every byte
// arrives once and in order, a writer is held back when the peer does not read, shutdownWrite()
// still delivers what was buffered before the end of stream, and a vanished peer fails writes.
// With a server's PeerLimits: reads pause while the outbox is backlogged, and a write that makes
// no progress for the stall timeout closes the connection, but a slow, steady reader is kept.
// flushed() tells when all of it is on the socket, so a server can close without losing any.
// BufferedMessageStream takes whole messages from the inbox: they read back as written, however
// they arrive, its observer sees each, and it waits while reads are paused as the stream does.
#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <capnp/message.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <kj/async.h>

#include <chrono>
#include <cstdint>
#include <thread>
#include <string>
#include <vector>

#include "rpc/asio_event_port.h"
#include "rpc/asio_stream.h"
#include "rpc/buffered_message_stream.h"

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
    connect();
  }

  // A new connection: the writer with `limits`; small kernel buffers make a stalled peer show
  // within a few hundred KiB instead of several MiB.
  void connect(PeerLimits limits = {}, bool smallBuffers = false) {
    writer_ = nullptr;
    reader_ = nullptr;
    tcp::acceptor acceptor(io_, {asio::ip::make_address("127.0.0.1"), 0});
    tcp::socket client(io_), server(io_);
    client.open(tcp::v4());
    if (smallBuffers) {
      client.set_option(asio::socket_base::send_buffer_size(16 << 10));
      acceptor.set_option(asio::socket_base::receive_buffer_size(16 << 10));  // inherited
    }
    client.connect(acceptor.local_endpoint());
    acceptor.accept(server);
    writer_ = kj::heap<Stream>(std::move(client), port_, limits);
    reader_ = kj::heap<Stream>(std::move(server), port_);
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

  // Writes `bytes` from the writer's end.
  void send(const std::string& bytes) {
    auto write = writer_->write(bytes.data(), bytes.size());
    ASSERT_TRUE(settles(write));
    write.wait(scope_);
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

TEST_F(AsioStreamTest, ReadsAfterTheEndOfStreamEndAtOnce) {
  send("last");
  writer_->shutdownWrite();
  EXPECT_EQ(readUpTo(100), "last");  // then the end of the stream
  for (int i = 0; i < 3; ++i) {
    char byte;
    auto read = reader_->tryRead(&byte, 1, 1);
    ASSERT_TRUE(settles(read, std::chrono::seconds(2))) << "read " << i << " after the end never ended";
    EXPECT_EQ(read.wait(scope_), 0u);
  }
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

TEST_F(AsioStreamTest, AWriteThePeerStopsTakingFailsAfterTheStallTimeout) {
  constexpr auto kTimeout = std::chrono::milliseconds(200);
  connect(PeerLimits{.stalledWriteTimeout = kTimeout}, /*smallBuffers=*/true);
  const auto start = std::chrono::steady_clock::now();
  const std::string chunk(1 << 20, 's');
  std::string failure;
  for (int i = 0; i < 16 && failure.empty(); ++i) {  // the peer never reads
    auto write = writer_->write(chunk.data(), chunk.size());
    if (!settles(write, std::chrono::seconds(5))) break;
    try {
      write.wait(scope_);
    } catch (const kj::Exception& e) {
      failure = e.getDescription().cStr();
    }
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(failure.empty()) << "writes to a peer that reads nothing neither failed nor stopped";
  EXPECT_NE(failure.find("stalled"), std::string::npos) << failure;
  EXPECT_TRUE(writer_->stalled());
  EXPECT_GE(elapsed, kTimeout) << "the connection was closed before the timeout";
}

TEST_F(AsioStreamTest, ASlowButSteadyReaderIsNotCutOff) {
  // 1 MiB in one write, read 32 KiB at a time every 50 ms: the write takes seconds, far over the
  // 300 ms timeout, but it moves at every read.
  constexpr auto kTimeout = std::chrono::milliseconds(300);
  connect(PeerLimits{.stalledWriteTimeout = kTimeout}, /*smallBuffers=*/true);
  const std::string message(1 << 20, 'w');
  auto write = writer_->write(message.data(), message.size());
  size_t have = 0;
  std::string piece(32 << 10, '\0');
  while (have < message.size()) {
    auto read = reader_->tryRead(piece.data(), 1, piece.size());
    ASSERT_TRUE(settles(read)) << "stalled after " << have << " bytes";
    const size_t n = read.wait(scope_);
    ASSERT_GT(n, 0u) << "end of stream after " << have << " bytes: the writer was cut off";
    have += n;
    io_.run_for(std::chrono::milliseconds(50));  // the writer's loop runs on while we dawdle
  }
  ASSERT_TRUE(settles(write));
  write.wait(scope_);  // no exception
  EXPECT_FALSE(writer_->stalled());
}

TEST_F(AsioStreamTest, ReadsPauseWhileTheOutboxIsBackloggedWhenTheLimitsSaySo) {
  connect(PeerLimits{.pauseReadsWhileBacklogged = true}, /*smallBuffers=*/true);
  // The peer sends a call, but reads none of the 2 MiB of replies already written to it.
  const std::string reply(2 << 20, 'r');
  auto write = writer_->write(reply.data(), reply.size());
  auto send = reader_->write("call", 4);
  ASSERT_TRUE(settles(send));
  char call[4] = {};
  auto read = writer_->tryRead(call, 4, 4);
  EXPECT_FALSE(settles(read, std::chrono::milliseconds(300)))
      << "a call was read while 2 MiB of replies waited for the peer";
  // Once the peer takes its replies, the call is read.
  EXPECT_EQ(readUpTo(reply.size()), reply);
  ASSERT_TRUE(settles(read));
  EXPECT_EQ(read.wait(scope_), 4u);
  EXPECT_EQ(std::string(call, 4), "call");
  ASSERT_TRUE(settles(write));
}

TEST_F(AsioStreamTest, FlushedResolvesOnceEverythingWrittenIsOnTheSocket) {
  connect(PeerLimits{}, /*smallBuffers=*/true);
  auto idle = writer_->flushed();
  EXPECT_TRUE(settles(idle, std::chrono::milliseconds(0))) << "nothing written, nothing to wait for";
  const std::string message(2 << 20, 'f');
  auto write = writer_->write(message.data(), message.size());
  auto flushed = writer_->flushed();
  EXPECT_FALSE(settles(flushed, std::chrono::milliseconds(200))) << "2 MiB cannot be on the socket yet";
  EXPECT_EQ(readUpTo(message.size()), message);
  ASSERT_TRUE(settles(flushed));
  ASSERT_TRUE(settles(write));
}

// ---------------------------------------------------------------------------------------------
// Messages through BufferedMessageStream.

// A framed message whose Abort reason is `reason`; with `segmentWords` set, in segments of
// that many words (a long reason then spans several).
std::string framedAbort(const std::string& reason, unsigned segmentWords = 0) {
  auto builder = segmentWords == 0
                     ? kj::heap<capnp::MallocMessageBuilder>()
                     : kj::heap<capnp::MallocMessageBuilder>(segmentWords, capnp::AllocationStrategy::FIXED_SIZE);
  builder->initRoot<capnp::rpc::Message>().initAbort().setReason(reason);
  auto words = capnp::messageToFlatArray(*builder);
  return std::string(reinterpret_cast<const char*>(words.asBytes().begin()), words.asBytes().size());
}

class BufferedMessagesTest : public AsioStreamTest {
 protected:
  BufferedMessagesTest() { useReader(); }
  ~BufferedMessagesTest() noexcept override {}
  void useReader() {
    messages_ = kj::heap<BufferedMessageStream>(*reader_, *reader_, [this](capnp::MessageReader& message) {
      const std::string reason = message.getRoot<capnp::rpc::Message>().getAbort().getReason().cStr();
      if (reason == "refused by the observer") throw std::runtime_error("the observer refused it");
      ++observed_;
    });
  }

  static kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> next(BufferedMessageStream& messages,
                                                                uint64_t limitWords = 1 << 20) {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = limitWords;
    return messages.tryReadMessage(nullptr, options, nullptr);
  }
  static std::string reasonOf(capnp::MessageReaderAndFds& message) {
    return message.reader->getRoot<capnp::rpc::Message>().getAbort().getReason().cStr();
  }
  // The next message's Abort reason; "<end>" at the end of the stream, "<error: …>" if it fails.
  std::string nextReason(uint64_t limitWords = 1 << 20) {
    auto read = next(*messages_, limitWords);
    if (!settles(read)) return "<stalled>";
    try {
      KJ_IF_MAYBE(message, read.wait(scope_)) return reasonOf(*message);
      return "<end>";
    } catch (const kj::Exception& e) {
      return std::string("<error: ") + e.getDescription().cStr() + ">";
    }
  }

  kj::Own<BufferedMessageStream> messages_;
  size_t observed_ = 0;  // messages the observer saw
};

TEST_F(BufferedMessagesTest, MessagesReadBackAsWrittenHoweverTheyArrive) {
  const std::string small = "small", large(100'000, 'L');  // larger than the 64 KiB inbox
  std::string manySegments;
  for (int i = 0; i < 200; ++i) manySegments += "segment " + std::to_string(i) + "; ";
  // Several whole messages in one write (taken from the inbox), one over the inbox's size, one
  // in many segments, then one cut in two with a pause between (read on from the socket).
  send(framedAbort(small) + framedAbort(manySegments, 4) + framedAbort(large) + framedAbort(small + "2"));
  EXPECT_EQ(nextReason(), small);
  EXPECT_EQ(nextReason(), manySegments);
  EXPECT_EQ(nextReason(), large);
  EXPECT_EQ(nextReason(), small + "2");

  const std::string split = framedAbort("arrived in two pieces", 2);
  send(split.substr(0, 13));
  auto partial = next(*messages_);
  EXPECT_FALSE(settles(partial, std::chrono::milliseconds(50))) << "a message read before it was whole";
  send(split.substr(13) + framedAbort("after it"));
  ASSERT_TRUE(settles(partial));
  KJ_IF_MAYBE(message, partial.wait(scope_)) {
    EXPECT_EQ(reasonOf(*message), "arrived in two pieces");
  } else {
    ADD_FAILURE() << "end of stream instead of the split message";
  }
  EXPECT_EQ(nextReason(), "after it");
  EXPECT_EQ(observed_, 6u) << "the observer sees every message, however it was read";
  send(framedAbort("before it") + framedAbort("refused by the observer") + framedAbort("next"));
  EXPECT_EQ(nextReason(), "before it");
  EXPECT_EQ(nextReason().rfind("<error: ", 0), 0u) << "the observer's exception fails the read";
  EXPECT_EQ(nextReason(), "next");
  writer_->shutdownWrite();
  EXPECT_EQ(nextReason(), "<end>");
}

TEST_F(BufferedMessagesTest, MalformedMessagesFailAsCapnProtosOwnReaderSaysEvenWhenBuffered) {
  // 600 segments (Cap'n Proto reads at most 511), then, on a new connection, a message over
  // the reader's size limit: both whole in the inbox.
  std::string tooManySegments(8 + 600 * 4, '\0');
  const uint32_t count = 599;
  std::memcpy(tooManySegments.data(), &count, sizeof(count));
  send(tooManySegments + framedAbort("never read"));
  EXPECT_NE(nextReason().find("too many segments"), std::string::npos);

  connect();
  useReader();
  send(framedAbort(std::string(4000, 'x')));
  EXPECT_NE(nextReason(/*limitWords=*/100).find("too large"), std::string::npos);
}

TEST_F(BufferedMessagesTest, AMessageCutShortByTheEndOfTheStreamFails) {
  const std::string whole = framedAbort("cut short");
  send(framedAbort("whole") + whole.substr(0, whole.size() - 3));
  writer_->shutdownWrite();
  EXPECT_EQ(nextReason(), "whole");
  const std::string last = nextReason();
  EXPECT_EQ(last.rfind("<error: ", 0), 0u) << last;
}

TEST_F(BufferedMessagesTest, ABufferedMessageWaitsWhileReadsArePaused) {
  connect(PeerLimits{.pauseReadsWhileBacklogged = true}, /*smallBuffers=*/true);
  // The server end is the one with limits here: it reads the peer's messages.
  BufferedMessageStream serverMessages(*writer_, *writer_, [](capnp::MessageReader&) {});
  const std::string two = framedAbort("first call") + framedAbort("second call");
  auto call = reader_->write(two.data(), two.size());
  ASSERT_TRUE(settles(call));
  auto first = next(serverMessages);
  ASSERT_TRUE(settles(first));
  ASSERT_TRUE(first.wait(scope_) != nullptr);
  // Now 2 MiB of replies the peer does not read: the second call, already in the inbox, waits.
  const std::string reply(2 << 20, 'r');
  auto write = writer_->write(reply.data(), reply.size());
  auto second = next(serverMessages);
  EXPECT_FALSE(settles(second, std::chrono::milliseconds(300)))
      << "a call was taken from the inbox while 2 MiB of replies waited for the peer";
  EXPECT_EQ(readUpTo(reply.size()), reply);
  ASSERT_TRUE(settles(second));
  KJ_IF_MAYBE(message, second.wait(scope_)) {
    EXPECT_EQ(reasonOf(*message), "second call");
  } else {
    ADD_FAILURE() << "end of stream instead of the second call";
  }
  ASSERT_TRUE(settles(write));
}

}  // namespace
}  // namespace tokenledger::rpc
