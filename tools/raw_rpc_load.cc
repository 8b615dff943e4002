#include "tools/raw_rpc_load.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <capnp/serialize.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include "rpc/raw_frames.h"
#include "schemas/rpc.capnp.h"

namespace tokenledger::bench {
namespace {

using Clock = std::chrono::steady_clock;
using TokenLedger = wire::TokenLedger;
constexpr uint16_t kVerifyMethod = 0;  // TokenLedger.verify @0
constexpr uint32_t kBootstrapQuestion = 0;
constexpr uint32_t kTimerTag = UINT32_MAX;
constexpr auto kTick = std::chrono::microseconds(100);

double threadCpuSeconds() {
  timespec t{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

// Closes its descriptor when it goes.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

struct Connection {
  Fd socket;
  uint32_t nextQuestion = 1;
  std::unordered_map<uint32_t, Clock::time_point> outstanding;  // question -> counted from
  std::string out;       // bytes the socket has not taken yet
  std::string finishes;  // Finish messages that leave with the next call
  std::string in;        // bytes received that do not make a whole message yet
  bool writable = true;
  bool dead = false;
};

Fd connectTo(uint16_t port) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    throw std::runtime_error("cannot connect to 127.0.0.1:" + std::to_string(port) + ": " + std::strerror(errno));
  }
  int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  int flags = ::fcntl(fd.get(), F_GETFL);
  ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK);
  return fd;
}

// The length of the whole message at the front of `in` (segment table and segments), or 0 while
// it has not all arrived.
size_t wholeMessageLength(const std::string& in) {
  auto word32 = [&](size_t at) {
    uint32_t v;
    std::memcpy(&v, in.data() + at, 4);
    return static_cast<size_t>(v);
  };
  if (in.size() < 4) return 0;
  const size_t segments = word32(0) + 1;
  if (segments > 512) throw std::runtime_error("the server sent a message of " + std::to_string(segments) + " segments");
  const size_t table = (4 + 4 * segments + 7) / 8 * 8;
  if (in.size() < table) return 0;
  size_t words = 0;
  for (size_t s = 0; s < segments; ++s) words += word32(4 + 4 * s);
  const size_t total = table + words * sizeof(capnp::word);
  return in.size() >= total ? total : 0;
}

class RawClient {
 public:
  RawClient(const RawLoad& load, const std::vector<std::string>& credentials, size_t offset)
      : load_(load), credentials_(credentials), next_(offset), epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
    for (unsigned c = 0; c < load.connections; ++c) {
      connections_.emplace_back().socket = connectTo(load.port);
      epoll_event e{};
      e.events = EPOLLIN;
      e.data.u32 = c;
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, connections_.back().socket.get(), &e);
    }
  }

  RawResult run() {
    RawResult result;
    const double cpuBefore = threadCpuSeconds();
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(load_.seconds));
    const bool paced = load_.pacedRate > 0;
    const auto interval = paced ? std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / load_.pacedRate))
                                : Clock::duration::zero();
    Fd timer;
    auto due = start;
    unsigned turn = 0;
    for (auto& c : connections_) {
      c.out = rpc::bootstrapMessage(kBootstrapQuestion);
      for (unsigned p = 0; p < (paced ? 0 : load_.pipeline); ++p) appendCall(c, Clock::now());
      flush(c);
    }
    if (paced) {
      timer = Fd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
      epoll_event e{};
      e.events = EPOLLIN;
      e.data.u32 = kTimerTag;
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, timer.get(), &e);
      arm(timer, due);
    }
    bool sending = true;
    const auto graceEnd = deadline + std::chrono::seconds(2);  // for the answers still due
    epoll_event events[64];
    while (Clock::now() < graceEnd && (sending || outstanding() > 0)) {
      if (sending && Clock::now() >= deadline) sending = false;
      int n = ::epoll_wait(epoll_.get(), events, 64, 20);
      for (int i = 0; i < n; ++i) {
        if (events[i].data.u32 == kTimerTag) {
          uint64_t expirations;
          [[maybe_unused]] ssize_t ignored = ::read(timer.get(), &expirations, sizeof(expirations));
          const auto now = Clock::now();
          for (; sending && due <= now && due < deadline; due += interval) {
            Connection& c = connections_[turn++ % connections_.size()];
            if (c.dead) continue;
            appendCall(c, due);
            flush(c);
          }
          // At most one wake-up per kTick: calls due in between leave together at the next one
          // (their latency still counts from when they were due).
          if (due < deadline) arm(timer, std::max(due, now + kTick));
          continue;
        }
        Connection& c = connections_[events[i].data.u32];
        if (events[i].events & EPOLLOUT) {
          c.writable = true;
          watch(c, EPOLLIN);  // flush() asks for EPOLLOUT again if the socket is still full
          flush(c);
        }
        if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) receive(c, sending && !paced, result);
      }
    }
    result.failures += outstanding();  // never answered
    result.seconds = std::chrono::duration<double>(std::min(Clock::now(), deadline) - start).count();
    result.cpuSeconds = threadCpuSeconds() - cpuBefore;
    std::sort(latencies_.begin(), latencies_.end());
    result.latenciesMicros = std::move(latencies_);
    result.answered = result.latenciesMicros.size();
    return result;
  }

 private:
  static void arm(const Fd& timer, Clock::time_point when) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
    itimerspec spec{};
    spec.it_value.tv_sec = ns / 1'000'000'000;
    spec.it_value.tv_nsec = ns % 1'000'000'000;
    if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;
    ::timerfd_settime(timer.get(), TFD_TIMER_ABSTIME, &spec, nullptr);  // steady_clock is CLOCK_MONOTONIC
  }

  size_t outstanding() const {
    size_t n = 0;
    for (const auto& c : connections_) n += c.dead ? 0 : c.outstanding.size();
    return n;
  }

  // The call, after the Finish messages waiting for it.
  void appendCall(Connection& c, Clock::time_point countedFrom) {
    const uint32_t question = c.nextQuestion++;
    c.outstanding.emplace(question, countedFrom);
    const std::string& credential = credentials_[next_++ % credentials_.size()];
    c.out += c.finishes;
    c.finishes.clear();
    c.out += rpc::callMessage<TokenLedger, TokenLedger::VerifyParams>(
        question, kBootstrapQuestion, false, kVerifyMethod, [&](TokenLedger::VerifyParams::Builder params) {
          auto request = params.initRequest();
          request.initCredential().setToken(credential);
          request.initRequiredScopes(1).set(0, "contact:read");
        });
  }

  void flush(Connection& c) {
    while (!c.out.empty() && c.writable && !c.dead) {
      ssize_t n = ::send(c.socket.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (n > 0) {
        c.out.erase(0, static_cast<size_t>(n));
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c.writable = false;  // until the socket says it has room again
        watch(c, EPOLLIN | EPOLLOUT);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        c.dead = true;
      }
    }
  }

  void watch(Connection& c, uint32_t events) {
    epoll_event e{};
    e.events = events;
    e.data.u32 = static_cast<uint32_t>(&c - connections_.data());
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.socket.get(), &e);
  }

  void receive(Connection& c, bool callAgain, RawResult& result) {
    char buffer[65536];
    for (;;) {
      ssize_t n = ::recv(c.socket.get(), buffer, sizeof(buffer), 0);
      if (n > 0) {
        c.in.append(buffer, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0 && errno == EINTR) continue;
      result.failures += c.dead ? 0 : c.outstanding.size();  // the server closed or reset it
      c.dead = true;
      c.outstanding.clear();
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.socket.get(), nullptr);
      return;
    }
    bool answered = false;
    while (size_t length = wholeMessageLength(c.in)) {
      const size_t words = length / sizeof(capnp::word);
      if (words_.size() < words) words_ = kj::heapArray<capnp::word>(words);  // aligned for the reader
      std::memcpy(words_.begin(), c.in.data(), length);
      c.in.erase(0, length);
      capnp::FlatArrayMessageReader reader(kj::arrayPtr(words_.begin(), words));
      auto message = reader.getRoot<capnp::rpc::Message>();
      if (message.isAbort()) {
        result.failures += c.outstanding.size() + 1;
        c.outstanding.clear();
        c.dead = true;
        return;
      }
      if (!message.isReturn()) continue;
      auto ret = message.getReturn();
      auto it = c.outstanding.find(ret.getAnswerId());
      if (it == c.outstanding.end()) continue;  // the bootstrap's answer
      latencies_.push_back(std::chrono::duration<double, std::micro>(Clock::now() - it->second).count());
      if (!ret.isResults()) ++result.failures;
      c.outstanding.erase(it);
      c.finishes += rpc::finishMessage(ret.getAnswerId());
      if (callAgain) appendCall(c, Clock::now());
      answered = true;
    }
    if (answered && callAgain) flush(c);
  }

  const RawLoad& load_;
  const std::vector<std::string>& credentials_;
  size_t next_;
  Fd epoll_;
  std::vector<Connection> connections_;
  kj::Array<capnp::word> words_;
  std::vector<double> latencies_;
};

}  // namespace

RawResult runRawLoad(const RawLoad& load, const std::vector<std::string>& credentials, size_t offset) {
  RawClient client(load, credentials, offset);
  return client.run();
}

}  // namespace tokenledger::bench
