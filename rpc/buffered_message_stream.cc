#include "rpc/buffered_message_stream.h"

#include <boost/endian/conversion.hpp>
#include <capnp/serialize.h>

#include <array>
#include <cstring>

namespace tokenledger::rpc {
namespace {

// Cap'n Proto's stream reader refuses more; such messages are left to it, and to its error.
constexpr uint32_t kMaxSegments = 511;

// What the buffer holds of the next message.
struct NextMessage {
  enum Kind { kWhole, kPartial, kForCapnp } kind;
  size_t words = 0;  // its size, once the segment table is whole
};

// A message starts with its segment table: the number of segments less one, then each
// segment's size in words (32-bit little-endian values, padded to a whole word).
NextMessage measure(kj::ArrayPtr<const kj::byte> bytes, size_t capacity, const capnp::ReaderOptions& options) {
  constexpr size_t kWord = sizeof(capnp::word);
  if (bytes.size() < kWord) return {NextMessage::kPartial};
  const uint32_t segmentsLessOne = boost::endian::load_little_u32(bytes.begin());
  if (segmentsLessOne >= kMaxSegments) return {NextMessage::kForCapnp};
  const size_t tableWords = (segmentsLessOne + 1) / 2 + 1;
  if (bytes.size() < tableWords * kWord) return {NextMessage::kPartial};
  std::array<capnp::word, kMaxSegments / 2 + 1> table;  // copied: the buffer is not word-aligned
  std::memcpy(table.data(), bytes.begin(), tableWords * kWord);
  const size_t words = capnp::expectedSizeInWordsFromPrefix(kj::arrayPtr(table.data(), tableWords));
  if (words > options.traversalLimitInWords || words * kWord > capacity) return {NextMessage::kForCapnp, words};
  return {bytes.size() >= words * kWord ? NextMessage::kWhole : NextMessage::kPartial, words};
}

}  // namespace

BufferedMessageStream::BufferedMessageStream(kj::AsyncIoStream& stream, BufferedInput& input,
                                             kj::Function<void(capnp::MessageReader&)> observe)
    : input_(input), stream_(stream), observe_(kj::mv(observe)) {}

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> BufferedMessageStream::tryReadMessage(
    kj::ArrayPtr<kj::AutoCloseFd>, capnp::ReaderOptions options, kj::ArrayPtr<capnp::word>) {
  KJ_IF_MAYBE(pause, input_.pauseBeforeReading()) {
    return pause->then([this, options] { return tryReadMessage(nullptr, options, nullptr); });
  }
  return readBuffered(options);
}

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> BufferedMessageStream::readBuffered(
    capnp::ReaderOptions options) {
  const NextMessage next = measure(input_.buffered(), input_.bufferCapacity(), options);
  switch (next.kind) {
    case NextMessage::kWhole: {
      kj::Own<capnp::MessageReader> message;
      KJ_IF_MAYBE(failure, kj::runCatchingExceptions([&] {
                    message = take(next.words, options);
                    observe_(*message);
                  })) {
        return kj::mv(*failure);
      }
      return kj::Maybe<capnp::MessageReaderAndFds>(capnp::MessageReaderAndFds{kj::mv(message), nullptr});
    }
    case NextMessage::kPartial:
      return input_.fill().then([this, options](size_t added) {
        // At the end of the stream Cap'n Proto tells a clean end from a message cut short.
        return added == 0 ? readByCapnp(options) : tryReadMessage(nullptr, options, nullptr);
      });
    case NextMessage::kForCapnp:
      break;
  }
  return readByCapnp(options);
}

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> BufferedMessageStream::readByCapnp(capnp::ReaderOptions options) {
  return stream_.tryReadMessage(nullptr, options).then([this](kj::Maybe<capnp::MessageReaderAndFds>&& read) {
    KJ_IF_MAYBE(message, read) observe_(*message->reader);
    return kj::mv(read);
  });
}

kj::Own<capnp::MessageReader> BufferedMessageStream::take(size_t words, const capnp::ReaderOptions& options) {
  auto message = kj::heapArray<capnp::word>(words);
  std::memcpy(message.begin(), input_.buffered().begin(), words * sizeof(capnp::word));
  input_.skip(words * sizeof(capnp::word));
  kj::Own<capnp::MessageReader> reader = kj::heap<capnp::FlatArrayMessageReader>(message, options);
  return reader.attach(kj::mv(message));
}

kj::Promise<void> BufferedMessageStream::writeMessage(
    kj::ArrayPtr<const int> fds, kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
  return stream_.writeMessage(fds, segments);
}

kj::Promise<void> BufferedMessageStream::writeMessages(
    kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) {
  return stream_.writeMessages(messages);
}

kj::Maybe<int> BufferedMessageStream::getSendBufferSize() { return stream_.getSendBufferSize(); }

kj::Promise<void> BufferedMessageStream::end() { return stream_.end(); }

}  // namespace tokenledger::rpc
