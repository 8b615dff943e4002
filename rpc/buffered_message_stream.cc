#include "rpc/buffered_message_stream.h"

#include <boost/endian/conversion.hpp>
#include <capnp/serialize.h>

#include <array>
#include <cstring>

namespace tokenledger::rpc {
namespace {

// Cap'n Proto's stream reader refuses more; such messages are left to it, and to its error.
constexpr uint32_t kMaxSegments = 511;

}  // namespace

BufferedMessageStream::BufferedMessageStream(kj::AsyncIoStream& stream, BufferedInput& input)
    : input_(input), stream_(stream) {}

// A message starts with its segment table: the number of segments less one, then each
// segment's size in words (32-bit little-endian values, padded to a whole word).
kj::Maybe<kj::Own<capnp::MessageReader>> BufferedMessageStream::takeBuffered(
    const capnp::ReaderOptions& options) {
  const kj::ArrayPtr<const kj::byte> bytes = input_.buffered();
  if (bytes.size() < sizeof(capnp::word)) return nullptr;
  const uint32_t segmentsLessOne = boost::endian::load_little_u32(bytes.begin());
  if (segmentsLessOne >= kMaxSegments) return nullptr;
  std::array<capnp::word, kMaxSegments / 2 + 1> table;
  const size_t tableWords = (segmentsLessOne + 1) / 2 + 1;
  if (bytes.size() < tableWords * sizeof(capnp::word)) return nullptr;
  std::memcpy(table.data(), bytes.begin(), tableWords * sizeof(capnp::word));
  const size_t words = capnp::expectedSizeInWordsFromPrefix(kj::arrayPtr(table.data(), tableWords));
  if (words > options.traversalLimitInWords || bytes.size() < words * sizeof(capnp::word)) return nullptr;

  // Copied out: the inbox's bytes are not word-aligned, and it is refilled by the next read.
  auto message = kj::heapArray<capnp::word>(words);
  std::memcpy(message.begin(), bytes.begin(), words * sizeof(capnp::word));
  input_.skip(words * sizeof(capnp::word));
  kj::Own<capnp::MessageReader> reader = kj::heap<capnp::FlatArrayMessageReader>(message, options);
  return reader.attach(kj::mv(message));
}

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> BufferedMessageStream::tryReadMessage(
    kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options,
    kj::ArrayPtr<capnp::word> scratchSpace) {
  KJ_IF_MAYBE(reader, takeBuffered(options)) {
    return kj::Maybe<capnp::MessageReaderAndFds>(capnp::MessageReaderAndFds{kj::mv(*reader), nullptr});
  }
  return stream_.tryReadMessage(fdSpace, options, scratchSpace);
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
