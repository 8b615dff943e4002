#include "rpc/asio_event_port.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

namespace tokenledger::rpc {

bool AsioEventPort::wait() {
  ++kjDriving_;
  if (io_.stopped()) io_.restart();
  // Block until some handler runs, even one that wake() posts from another thread.
  auto work = boost::asio::make_work_guard(io_);
  io_.run_one();
  --kjDriving_;
  return woken_.exchange(false);
}

bool AsioEventPort::poll() {
  // Inside pump() we are already in an Asio handler: Asio must not be re-entered from there.
  if (!pumping_) {
    ++kjDriving_;
    if (io_.stopped()) io_.restart();
    io_.poll();
    --kjDriving_;
  }
  return woken_.exchange(false);
}

void AsioEventPort::setRunnable(bool runnable) {
  // When KJ drives or a pump is running, KJ empties its own queue; otherwise Asio must be asked to.
  if (runnable && kjDriving_ == 0 && !pumping_) schedulePump();
}

void AsioEventPort::wake() const {
  woken_.store(true);
  // Posting is thread-safe; the handler finds the port through the loop thread only.
  auto* self = const_cast<AsioEventPort*>(this);
  boost::asio::post(io_, [self] { self->pump(); });
}

void AsioEventPort::schedulePump() {
  if (pumpScheduled_) return;
  pumpScheduled_ = true;
  boost::asio::post(io_, [this] {
    pumpScheduled_ = false;
    pump();
  });
}

void AsioEventPort::pump() {
  if (kjDriving_ > 0 || pumping_ || scope_ == nullptr) return;
  struct Pumping {
    bool& flag;
    explicit Pumping(bool& f) : flag(f) { flag = true; }
    ~Pumping() { flag = false; }
  } pumping(pumping_);
  scope_->poll();  // runs events (and cross-thread work, via poll()) until the queue is empty
  // KJ reports runnable only on a change; poll() leaves the loop believing it is still runnable,
  // so a zero-turn run() resynchronises it and the next event will call setRunnable(true) again.
  loop_->run(0);
}

}  // namespace tokenledger::rpc
