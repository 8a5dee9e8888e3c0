// Blocking HTTP/1.1 over TCP: keep-alive connections in a thread-safe pool,
// TCP_NODELAY, sendmsg() straight from the request's segments, responses
// received into pooled buffers, and every wait bounded by a deadline through
// poll(). Callers release the GIL around perform(); nothing here touches Python.
//
// Copies: request segments: 0 (sendmsg gathers them); Content-Length response
// bodies: 0 beyond the kernel's (recv() lands in the final buffer).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/buffer.hpp"
#include "core/errors.hpp"
#include "core/fork.hpp"
#include "core/http.hpp"

namespace tritonfast {

// A point in time on the monotonic clock, or never.
class Deadline {
 public:
  static Deadline never();
  // `seconds` from now; a value <= 0 means already passed.
  static Deadline after(double seconds);

  bool is_never() const { return never_; }
  bool expired() const;
  // Milliseconds to pass to poll(): -1 for never, >= 0 otherwise (rounded up
  // so that a poll never wakes before the deadline).
  int poll_timeout_ms() const;
  // The moment it passes (meaningless when is_never()).
  std::chrono::steady_clock::time_point at() const { return at_; }

 private:
  bool never_ = true;
  std::chrono::steady_clock::time_point at_{};
  double budget_s_ = 0;  // the seconds after() was given: timeout messages quote it
  friend double budget_seconds(const Deadline& deadline);
};

struct Endpoint {
  std::string host;  // name or address; IPv6 without brackets
  std::uint16_t port = 0;
  std::string authority() const;  // Host header: "host:port", "[::1]:port"
};

class Connection {
 public:
  // Resolves and connects (non-blocking connect + poll), sets TCP_NODELAY.
  // Throws ConnectionError ("connection to host:port refused"/"...: <strerror>")
  // or TimeoutError ("connecting to host:port took longer than X s").
  static std::unique_ptr<Connection> open(const Endpoint& endpoint, Deadline deadline);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Writes head then segments with sendmsg (MSG_NOSIGNAL, batches of at most
  // IOV_MAX iovecs), waiting for POLLOUT under the deadline. `*sent` counts the
  // bytes the kernel accepted so far, also when an exception is thrown, so the
  // caller knows whether the request may have reached the server.
  void send(const http::Request& request, Deadline deadline, std::uint64_t* sent);

  // Receives up to `size` bytes into `data`, waiting under the deadline;
  // returns 0 when the peer closed the connection. Throws ConnectionError on
  // reset, TimeoutError when the deadline passes. With `wait` false it never
  // waits: kWouldBlock when nothing is there now.
  static constexpr std::size_t kWouldBlock = static_cast<std::size_t>(-1);
  std::size_t receive(std::uint8_t* data, std::size_t size, Deadline deadline, bool wait = true);
  // Waits until there is something to receive (or the peer closed): the first
  // read of a response, which is never there the moment the request went out,
  // costs poll + recv instead of recv + poll + recv. TimeoutError as receive().
  void await_readable(Deadline deadline);

  // For a kept-alive connection about to be reused: true when the peer has
  // neither closed it nor sent anything unasked (a poll with zero timeout).
  bool reusable() const;

  const Endpoint& endpoint() const { return endpoint_; }
  int fd() const { return fd_; }
  // The fork generation the connection was opened in: a forked child never
  // uses (or pools) its parent's sockets.
  std::uint64_t generation() const { return generation_; }

 private:
  Connection(int fd, Endpoint endpoint)
      : fd_(fd), endpoint_(std::move(endpoint)), generation_(fork::generation()) {}
  int fd_;
  Endpoint endpoint_;
  std::uint64_t generation_;
};

// Takes pooled connections from `pop` (a callable returning the most recently
// pooled one, or null when none is left) until one is still reusable(); the
// dead ones close on the way. Null when none was: the caller opens one.
template <class Pop>
std::unique_ptr<Connection> first_reusable(Pop&& pop) {
  for (;;) {
    std::unique_ptr<Connection> connection = pop();
    if (!connection || connection->reusable()) return connection;
  }
}

struct Response {
  http::ResponseHead head;
  http::Body body;
};

// Reading one response off a connection, in steps: what read_response keeps
// between calls.
struct ReadState {
  Buffer scratch;         // for chunked bodies, acquired when first needed
  bool reusable = true;   // false once end-of-stream or bytes past the response were seen
};

// Reads `parser`'s response from `connection`. With `wait`, blocks under the
// deadline until the response is complete and returns true; without, reads
// what is there now and returns whether the response is complete (false: come
// back when the socket is readable). `state->reusable` then says whether the
// connection may carry another request. Errors name the server: ConnectionError
// (reset, closed early: "... after N response bytes"), TimeoutError (the
// deadline passed while waiting), ProtocolError (a malformed response).
bool read_response(Connection& connection, http::ResponseParser& parser,
                   const std::shared_ptr<BufferPool>& pool, ReadState* state,
                   const Deadline& deadline, bool wait);

// The TimeoutError of a response that did not complete by `deadline`: "no
// response from host:port within X s", or "no complete response ... (N bytes
// received)" once some arrived.
TimeoutError response_timeout(const Connection& connection, const http::ResponseParser& parser,
                              const Deadline& deadline);

// Looks at a complete response before its connection goes back to the pool.
// What it throws propagates from perform() and the connection is closed rather
// than reused: a response that does not answer the request (another request's
// id, say) means the connection is out of step.
class ResponseCheck {
 public:
  virtual void check(const Response& response) = 0;

 protected:
  ~ResponseCheck() = default;
};

struct ClientOptions {
  // Idle keep-alive connections kept for reuse; more in flight are closed after use.
  std::size_t max_idle_connections = 64;
  // Idle receive buffers kept for reuse (see BufferPool).
  std::size_t max_idle_buffer_bytes = std::size_t{1} << 30;
  std::uint64_t max_response_body_bytes = http::kDefaultMaxResponseBodyBytes;
};

// Thread-safe: any number of threads may call perform() at once; each request
// in flight has a connection of its own.
class HttpClient {
 public:
  HttpClient(Endpoint endpoint, ClientOptions options);

  // Sends `request` and returns the whole response. Reuses an idle connection
  // that is still reusable(), else opens one. Never resends a request once any
  // of its bytes may have reached the server (sent > 0), unless `idempotent`;
  // an idempotent request whose reused connection turns out dead is retried
  // once on a fresh connection. The connection returns to the pool when the
  // response allows keep-alive and was read completely; otherwise it is closed.
  // `check`, when given, runs on the complete response before the connection
  // is pooled (see ResponseCheck).
  Response perform(const http::Request& request, Deadline deadline, bool idempotent,
                   ResponseCheck* check = nullptr);

  // Closes idle connections and frees idle buffers. Requests in flight finish;
  // their connections are then closed instead of pooled.
  void close();

  const Endpoint& endpoint() const { return endpoint_; }
  const ClientOptions& options() const { return options_; }
  const std::shared_ptr<BufferPool>& buffers() const { return buffers_; }

 private:
  std::unique_ptr<Connection> checkout(Deadline deadline, bool* reused);
  void checkin(std::unique_ptr<Connection> connection);
  // Locks mutex_; a forked child's first lock drops the parent's idle
  // connections (into *inherited, to close outside the lock).
  std::unique_lock<fork::Mutex> locked(std::vector<std::unique_ptr<Connection>>* inherited);

  Endpoint endpoint_;
  ClientOptions options_;
  std::shared_ptr<BufferPool> buffers_;
  fork::Mutex mutex_;
  std::vector<std::unique_ptr<Connection>> idle_;
  bool closed_ = false;
};

}  // namespace tritonfast
