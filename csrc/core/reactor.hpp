// Requests in flight with their responses received on one thread.
//
// A thread that has a request sends it itself (start(): a pooled keep-alive
// connection or a new one, sendmsg() from the request's segments, as
// HttpClient::perform does), then goes on; the one thread in wait() receives
// every response as its bytes arrive (epoll, non-blocking reads through the
// same ResponseParser and read_response as the blocking client) and hands back
// a batch of completions per wake-up. A request so costs no thread hand-off on
// the way out and a share of one wake-up on the way back, where a pool of
// blocking workers costs two hand-offs per request (FuturesModelClient).
//
// Each request in flight has a connection of its own (HTTP/1.1, no
// pipelining); a connection whose response allowed keep-alive goes back to the
// reactor's idle list. Every request has a deadline, enforced by wait().
// Nothing here touches Python. Linux (epoll) only: elsewhere the constructor
// throws std::runtime_error and callers keep their blocking path.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <unordered_map>
#include <vector>

#include "core/fork.hpp"
#include "core/transport.hpp"

namespace tritonfast {

class Reactor {
 public:
  struct Completion {
    std::uint64_t token = 0;
    Response response;         // when error is null
    std::exception_ptr error;  // ConnectionError, TimeoutError, ProtocolError, or the check's
  };

  Reactor(Endpoint endpoint, std::shared_ptr<BufferPool> buffers, std::uint64_t max_response_body_bytes,
          std::size_t max_idle_connections);
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // Sends `request` (blocking under `deadline`: call it without the GIL) and
  // leaves it in flight: its completion, tagged `token`, comes out of wait().
  // A reused keep-alive connection that fails before any byte went out is
  // replaced by a fresh one, once. Throws the send's ConnectionError or
  // TimeoutError; nothing is in flight then. `check`, when given, runs on the
  // complete response in wait()'s thread (before its connection is pooled),
  // and must live until the completion is handed back.
  void start(std::uint64_t token, const http::Request& request, Deadline deadline, ResponseCheck* check);

  // Waits up to `timeout_ms` (-1: until something happens) for responses,
  // failures and passed deadlines, and appends their completions to `*out`.
  // Returns early, possibly with none, after wake(). One thread at a time.
  void wait(std::vector<Completion>* out, int timeout_ms);

  // Makes a wait() in progress (or the next one) return.
  void wake();

  std::size_t in_flight() const;

  // Closes the idle connections; those of requests in flight close after use.
  void close_idle();

 private:
  struct Exchange;

  // Locks mutex_; in a forked child's first use, abandons the parent's
  // exchanges, idle connections and epoll set unread (see abandon()).
  std::unique_lock<fork::Mutex> locked() const;
  // In a forked child: the epoll instance and the sockets are shared with the
  // parent; our copies are closed without touching its registrations.
  void abandon(bool intact);
  void open_poller();
  void rearm(const Exchange& exchange, int op);
  // Reads what exchange has; true when it completed (into *out).
  bool step(Exchange* exchange, std::vector<Completion>* out);
  void finish(Exchange* exchange, std::vector<Completion>* out, std::exception_ptr error);

  Endpoint endpoint_;
  std::shared_ptr<BufferPool> buffers_;
  std::uint64_t max_response_body_bytes_;
  std::size_t max_idle_connections_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  // When the wait() in progress times out (steady_clock ticks); start() wakes
  // it when its request's deadline is earlier.
  std::atomic<std::int64_t> waiting_until_{0};
  std::atomic<bool> woken_{false};

  mutable fork::Mutex mutex_;  // guards the two below (and the poller's fds after a fork)
  std::unordered_map<Exchange*, std::unique_ptr<Exchange>> exchanges_;
  std::vector<std::unique_ptr<Connection>> idle_;  // registered in epoll, disarmed (EPOLLONESHOT)
};

}  // namespace tritonfast
