// A capnp::MessageStream that takes a message already read from the socket in one step.
//
// Cap'n Proto 0.9 reads a message in pieces: its first word, the rest of its segment table, its
// segments, each a separate asynchronous read with its own promises and a heap reader to carry
// them, though the stream's inbox usually holds the whole message (and the next) already. When it
// does, this stream copies the message out and hands Cap'n Proto's flat-array reader over it at
// once; otherwise (a message still arriving, reads paused, anything unusual) it reads the usual
// way, which also reports what is wrong with a malformed message.
#pragma once

#include <capnp/serialize-async.h>
#include <kj/array.h>

namespace tokenledger::rpc {

// What a stream has read from its socket but not yet handed out.
class BufferedInput {
 public:
  // Empty while reads are paused (the stream waits before it reads on).
  virtual kj::ArrayPtr<const kj::byte> buffered() = 0;
  // Hands out the first `bytes` of buffered().
  virtual void skip(size_t bytes) = 0;

 protected:
  ~BufferedInput() = default;
};

class BufferedMessageStream final : public capnp::MessageStream {
 public:
  // `input` is `stream`'s buffer.
  BufferedMessageStream(kj::AsyncIoStream& stream, BufferedInput& input);

  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> tryReadMessage(
      kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options,
      kj::ArrayPtr<capnp::word> scratchSpace) override;
  kj::Promise<void> writeMessage(kj::ArrayPtr<const int> fds,
                                 kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) override;
  kj::Promise<void> writeMessages(
      kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) override;
  kj::Maybe<int> getSendBufferSize() override;
  kj::Promise<void> end() override;

 private:
  kj::Maybe<kj::Own<capnp::MessageReader>> takeBuffered(const capnp::ReaderOptions& options);

  BufferedInput& input_;
  capnp::AsyncIoMessageStream stream_;
};

}  // namespace tokenledger::rpc
