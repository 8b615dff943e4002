// A capnp::MessageStream that reads messages whole into its stream's buffer and takes them from
// there in one step.
//
// Cap'n Proto 0.9 reads a message in pieces: its first word, the rest of its segment table, its
// segments, each a separate asynchronous read with its own promises and a heap reader to carry
// them. Here a message is read into the stream's buffer until it is whole (usually one socket
// read, which often brings the next message too), copied out and handed to Cap'n Proto's
// flat-array reader. A message larger than the buffer, or one Cap'n Proto would refuse, is read
// the usual way, so Cap'n Proto's own errors are unchanged.
#pragma once

#include <capnp/serialize-async.h>
#include <kj/array.h>
#include <kj/function.h>

namespace tokenledger::rpc {

// A stream's read buffer, as BufferedMessageStream uses it.
class BufferedInput {
 public:
  // What the stream waits for before it reads the next message, if anything.
  virtual kj::Maybe<kj::Promise<void>> pauseBeforeReading() = 0;
  // Bytes read from the socket and not yet handed out.
  virtual kj::ArrayPtr<const kj::byte> buffered() = 0;
  virtual size_t bufferCapacity() const = 0;
  // Hands out the first `bytes` of buffered().
  virtual void skip(size_t bytes) = 0;
  // Reads what has arrived into the buffer, after what it holds; resolves to the number of bytes
  // added, 0 at the end of the stream.
  virtual kj::Promise<size_t> fill() = 0;

 protected:
  ~BufferedInput() = default;
};

class BufferedMessageStream final : public capnp::MessageStream {
 public:
  // `input` is `stream`'s buffer. `observe` sees every message read before Cap'n Proto does;
  // an exception it throws fails the read (and ends the connection).
  BufferedMessageStream(kj::AsyncIoStream& stream, BufferedInput& input,
                        kj::Function<void(capnp::MessageReader&)> observe);

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
  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> readBuffered(capnp::ReaderOptions options);
  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> readByCapnp(capnp::ReaderOptions options);
  kj::Own<capnp::MessageReader> take(size_t words, const capnp::ReaderOptions& options);

  BufferedInput& input_;
  capnp::AsyncIoMessageStream stream_;
  kj::Function<void(capnp::MessageReader&)> observe_;
};

}  // namespace tokenledger::rpc
