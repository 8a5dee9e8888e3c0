// Blocking HTTP/1.1 over TCP (see transport.hpp). Every socket is non-blocking
// from birth; every wait is a poll() bounded by the request's one Deadline.
//
// Copies on each path (besides the kernel's own copy to or from its socket buffers):
//   request head + segments -> socket ............ 0  (sendmsg gathers the caller's buffers)
//   response head (+ bytes that arrive with it) .. 1  (recv into a 16 KiB stack buffer,
//                                                      feed() copies body bytes to the body buffer)
//   Content-Length / read-until-close body ....... 0  (recv straight into body_window(),
//                                                      the pooled buffer handed to the caller)
//   chunked body ................................. 1  (recv into a 256 KiB pooled scratch
//                                                      buffer, feed() de-chunks into the body)
#include "core/transport.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>  // strerror_r
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/errors.hpp"

namespace tritonfast {

double budget_seconds(const Deadline& deadline);

namespace {

using Clock = std::chrono::steady_clock;

// sendmsg() refuses more iovecs than this in one call (EMSGSIZE).
#ifdef IOV_MAX
constexpr std::size_t kMaxIovecs = IOV_MAX;
#else
constexpr std::size_t kMaxIovecs = 1024;  // POSIX leaves it to <limits.h>; Linux's value
#endif

// Receives the response head into the stack; Triton's heads are a few hundred
// bytes, and a bigger one just takes more recv() calls (the parser keeps it).
constexpr std::size_t kHeadBufferBytes = 16 * 1024;
// Receives chunked bodies (which have no body_window() to land in): large enough
// that recv() calls, not memcpy, stay a small part of the cost.
constexpr std::size_t kChunkedScratchBytes = 256 * 1024;
// Deadlines further away than this (about 31 years) are never: steady_clock's
// nanosecond count would overflow well before 292 years, and nobody waits that long.
constexpr double kMaxDeadlineSeconds = 1e9;

#ifdef MSG_NOSIGNAL
constexpr int kSendFlags = MSG_NOSIGNAL;  // EPIPE instead of a process-killing SIGPIPE
#else
constexpr int kSendFlags = 0;  // macOS: SO_NOSIGPIPE is set on the socket instead
#endif


std::string seconds_text(double seconds) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.3f", seconds);
  return buffer;
}

// Waits until `fd` is ready for `events` (or in error: the next call reports
// it). Returns false when the deadline passed first, also when it had already
// passed on entry.
bool wait_for(int fd, short events, const Deadline& deadline) {
  for (;;) {
    if (deadline.expired()) return false;
    pollfd entry{fd, events, 0};
    const int ready = ::poll(&entry, 1, deadline.poll_timeout_ms());
    if (ready > 0) return true;
    if (ready < 0 && errno != EINTR) {
      throw ConnectionError("poll() failed: " + errno_text(errno));
    }
    // Timed out (the loop re-checks the deadline) or interrupted by a signal.
  }
}

#if !(defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC))
// For systems without socket(SOCK_NONBLOCK | SOCK_CLOEXEC) (macOS).
void set_nonblocking_cloexec(int fd) {
  const int flags = ::fcntl(fd, F_GETFL, 0);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
      ::fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
    const int error = errno;
    ::close(fd);
    throw ConnectionError("cannot configure a socket: " + errno_text(error));
  }
}
#endif

class AddrInfo {
 public:
  AddrInfo() = default;
  ~AddrInfo() {
    if (list_) ::freeaddrinfo(list_);
  }
  AddrInfo(const AddrInfo&) = delete;
  AddrInfo& operator=(const AddrInfo&) = delete;
  addrinfo** out() { return &list_; }
  const addrinfo* get() const { return list_; }

 private:
  addrinfo* list_ = nullptr;
};

// Resolves without DNS when `host` is a numeric address (getaddrinfo cannot be
// bounded by the deadline; a numeric host never waits), else through the resolver.
void resolve(const Endpoint& endpoint, AddrInfo* result) {
  const std::string port = std::to_string(endpoint.port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  int rc = ::getaddrinfo(endpoint.host.c_str(), port.c_str(), &hints, result->out());
  if (rc == EAI_NONAME) {
    hints.ai_flags = AI_NUMERICSERV;
    rc = ::getaddrinfo(endpoint.host.c_str(), port.c_str(), &hints, result->out());
  }
  if (rc != 0) {
    const std::string reason = rc == EAI_SYSTEM ? errno_text(errno) : ::gai_strerror(rc);
    throw ConnectionError("cannot resolve host '" + endpoint.host + "': " + reason);
  }
  if (!result->get()) {
    throw ConnectionError("cannot resolve host '" + endpoint.host + "': no addresses");
  }
}

// Connects `fd` (non-blocking) to `address`. Returns 0 once connected, else the
// errno of the failure; throws TimeoutError when the deadline passes.
int connect_one(int fd, const addrinfo* address, const Endpoint& endpoint,
                const Deadline& deadline) {
  if (::connect(fd, address->ai_addr, address->ai_addrlen) == 0) return 0;
  // EINTR: a non-blocking connect goes on in the background, as for EINPROGRESS.
  if (errno != EINPROGRESS && errno != EINTR) return errno;
  if (!wait_for(fd, POLLOUT, deadline)) {
    throw TimeoutError("connecting to " + endpoint.authority() + " took longer than " +
                       seconds_text(budget_seconds(deadline)) + " s");
  }
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) return errno;
  return error;
}

// Closes a socket on scope exit unless released.
class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

}  // namespace

// ---------------------------------------------------------------------------
// Deadline

double budget_seconds(const Deadline& deadline) { return deadline.budget_s_; }

Deadline Deadline::never() { return Deadline(); }

Deadline Deadline::after(double seconds) {
  Deadline deadline;
  if (seconds >= kMaxDeadlineSeconds) return deadline;  // also +inf
  deadline.never_ = false;
  deadline.at_ = Clock::now();
  if (seconds > 0) {  // NaN and <= 0: already passed
    deadline.budget_s_ = seconds;
    deadline.at_ += std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(seconds));
  }
  return deadline;
}

bool Deadline::expired() const { return !never_ && Clock::now() >= at_; }

int Deadline::poll_timeout_ms() const {
  if (never_) return -1;
  const auto left = at_ - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return ms >= INT_MAX ? INT_MAX : static_cast<int>(ms);
}

// ---------------------------------------------------------------------------
// Endpoint

std::string Endpoint::authority() const {
  const std::string port_text = std::to_string(port);
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + port_text;
  return host + ":" + port_text;
}

// ---------------------------------------------------------------------------
// Connection

std::unique_ptr<Connection> Connection::open(const Endpoint& endpoint, Deadline deadline) {
  const std::string authority = endpoint.authority();
  auto timed_out = [&] {
    return TimeoutError("connecting to " + authority + " took longer than " +
                        seconds_text(budget_seconds(deadline)) + " s");
  };
  if (deadline.expired()) throw timed_out();
  AddrInfo addresses;
  resolve(endpoint, &addresses);  // may block on DNS: see resolve()
  if (deadline.expired()) throw timed_out();

  int last_error = 0;
  int tried = 0;
  for (const addrinfo* address = addresses.get(); address; address = address->ai_next) {
    ++tried;
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
    const int fd = ::socket(address->ai_family, address->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                            address->ai_protocol);
    if (fd < 0) {
      last_error = errno;
      continue;
    }
#else
    const int fd = ::socket(address->ai_family, address->ai_socktype, address->ai_protocol);
    if (fd < 0) {
      last_error = errno;
      continue;
    }
    set_nonblocking_cloexec(fd);
#endif
    FdGuard guard(fd);
#if !defined(MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
    const int one_nosigpipe = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one_nosigpipe, sizeof one_nosigpipe);
#endif
    // One deadline for every address: a timeout here ends the attempt.
    const int error = connect_one(fd, address, endpoint, deadline);
    if (error != 0) {
      last_error = error;
      continue;
    }
    // Small requests (the head, then a small body segment) must not wait for
    // Nagle's algorithm to see an ACK. Failure only costs latency.
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return std::unique_ptr<Connection>(new Connection(guard.release(), endpoint));
  }
  if (last_error == ECONNREFUSED) throw ConnectionError("connection to " + authority + " refused");
  std::string message = "connection to " + authority + " failed: " + errno_text(last_error);
  if (tried > 1) message += " (tried " + std::to_string(tried) + " addresses)";
  throw ConnectionError(message);
}

Connection::~Connection() {
  if (fd_ >= 0) ::close(fd_);  // never retried on EINTR: Linux has closed it already
}

void Connection::send(const http::Request& request, Deadline deadline, std::uint64_t* sent) {
  std::vector<iovec> iovecs;
  iovecs.reserve(request.segments.size() + 1);
  std::uint64_t total = 0;
  auto add = [&](const void* data, std::size_t size) {
    if (size == 0) return;  // sendmsg would accept it; skipping keeps the advance loop simple
    iovecs.push_back(iovec{const_cast<void*>(data), size});
    total += size;
  };
  add(request.head.data(), request.head.size());
  for (const Segment& segment : request.segments) add(segment.data, segment.size);

  std::uint64_t done = 0;
  if (sent) *sent = 0;
  auto progress = [&] { return std::to_string(done) + " of " + std::to_string(total); };
  auto timed_out = [&] {
    return TimeoutError("sending the request to " + endpoint_.authority() + " took longer than " +
                        seconds_text(budget_seconds(deadline)) + " s (" + progress() +
                        " bytes sent)");
  };
  // A request whose deadline has passed is not started: the server would work
  // on it while nobody waits for the answer.
  if (deadline.expired()) throw timed_out();

  std::size_t first = 0;  // iovecs[first] is the next one (partly) unsent
  while (first < iovecs.size()) {
    msghdr message{};
    message.msg_iov = &iovecs[first];
    message.msg_iovlen = std::min(iovecs.size() - first, kMaxIovecs);
    const ssize_t n = ::sendmsg(fd_, &message, kSendFlags);
    if (n < 0) {
      const int error = errno;
      if (error == EINTR) continue;
      if (error == EAGAIN || error == EWOULDBLOCK) {
        if (!wait_for(fd_, POLLOUT, deadline)) throw timed_out();
        continue;
      }
      if (error == EPIPE || error == ECONNRESET) {
        throw ConnectionError("server closed the connection after " + progress() +
                              " request bytes were sent to " + endpoint_.authority());
      }
      throw ConnectionError("sending the request to " + endpoint_.authority() +
                            " failed: " + errno_text(error) + " (" + progress() + " bytes sent)");
    }
    auto accepted = static_cast<std::size_t>(n);
    done += accepted;
    if (sent) *sent = done;
    while (accepted > 0) {
      iovec& current = iovecs[first];
      if (accepted >= current.iov_len) {
        accepted -= current.iov_len;
        ++first;
      } else {
        current.iov_base = static_cast<std::uint8_t*>(current.iov_base) + accepted;
        current.iov_len -= accepted;
        accepted = 0;
      }
    }
  }
}

void Connection::await_readable(Deadline deadline) {
  if (!wait_for(fd_, POLLIN, deadline)) {
    throw TimeoutError("no response from " + endpoint_.authority() + " within " +
                       seconds_text(budget_seconds(deadline)) + " s");
  }
}

std::size_t Connection::receive(std::uint8_t* data, std::size_t size, Deadline deadline, bool wait) {
  if (size == 0) throw std::logic_error("Connection::receive: empty buffer");
  for (;;) {
    const ssize_t n = ::recv(fd_, data, size, 0);
    if (n >= 0) return static_cast<std::size_t>(n);
    const int error = errno;
    if (error == EINTR) continue;
    if (error == EAGAIN || error == EWOULDBLOCK) {
      if (!wait) return kWouldBlock;
      await_readable(deadline);
      continue;
    }
    if (error == ECONNRESET) {
      throw ConnectionError("connection to " + endpoint_.authority() + " was reset by the server");
    }
    throw ConnectionError("receiving from " + endpoint_.authority() + " failed: " +
                          errno_text(error));
  }
}

bool Connection::reusable() const {
  short events = POLLIN;
#ifdef POLLRDHUP
  events |= POLLRDHUP;
#endif
  for (;;) {
    // POLLHUP and POLLERR are always reported; any event means the server
    // closed the connection, reset it, or sent bytes nobody asked for.
    pollfd entry{fd_, events, 0};
    const int ready = ::poll(&entry, 1, 0);
    if (ready == 0) return true;
    if (ready < 0 && errno == EINTR) continue;
    return false;
  }
}

// ---------------------------------------------------------------------------
// HttpClient

namespace {

}  // namespace

TimeoutError response_timeout(const Connection& connection, const http::ResponseParser& parser,
                              const Deadline& deadline) {
  if (parser.received() == 0) {
    return TimeoutError("no response from " + connection.endpoint().authority() + " within " +
                        seconds_text(budget_seconds(deadline)) + " s");
  }
  return TimeoutError("no complete response from " + connection.endpoint().authority() + " within " +
                      seconds_text(budget_seconds(deadline)) + " s (" + std::to_string(parser.received()) +
                      " bytes received)");
}

// The parser's errors do not know the server: " (from host:port)" is added to them.
bool read_response(Connection& connection, http::ResponseParser& parser,
                   const std::shared_ptr<BufferPool>& pool, ReadState* state,
                   const Deadline& deadline, bool wait) {
  auto from = [&] { return " (from " + connection.endpoint().authority() + ")"; };
  std::uint8_t head[kHeadBufferBytes];
  // Says how far the response got when the connection breaks or stalls.
  auto receive = [&](std::uint8_t* data, std::size_t size) {
    try {
      return connection.receive(data, size, deadline, wait);
    } catch (const ConnectionError& e) {
      if (parser.received() == 0) throw;
      throw ConnectionError(std::string(e.what()) + " after " +
                            std::to_string(parser.received()) + " response bytes");
    } catch (const TimeoutError&) {
      if (parser.received() == 0) throw;
      throw response_timeout(connection, parser, deadline);
    }
  };
  // The peer closed the connection: completes a read-until-close body, else throws.
  auto end_of_stream = [&] {
    state->reusable = false;
    try {
      parser.finish();
    } catch (const ConnectionError& e) {
      throw ConnectionError(e.what() + from());
    }
  };
  try {
    while (!parser.done()) {
      const auto window = parser.body_window();
      if (window.first && window.second > 0) {
        // Straight into the body's final buffer: no copy.
        const std::size_t n = receive(window.first, window.second);
        if (n == Connection::kWouldBlock) return false;
        if (n == 0) {
          end_of_stream();
          break;
        }
        parser.commit(n);
        continue;
      }
      std::uint8_t* into = head;
      std::size_t capacity = sizeof head;
      if (parser.head_complete()) {
        if (!state->scratch.data()) state->scratch = pool->acquire(kChunkedScratchBytes);
        into = state->scratch.data();
        capacity = state->scratch.capacity();
      }
      const std::size_t n = receive(into, capacity);
      if (n == Connection::kWouldBlock) return false;
      if (n == 0) {
        end_of_stream();
        break;
      }
      std::size_t used = 0;
      while (used < n && !parser.done()) {
        const std::size_t consumed = parser.feed(into + used, n - used);
        if (consumed == 0) {
          // The parser takes every byte until the response ends; anything
          // else would loop forever here.
          throw std::logic_error("ResponseParser::feed consumed nothing before the end");
        }
        used += consumed;
      }
      // The server must not send anything past the response (no pipelining):
      // such a connection is out of step, so it is closed.
      if (used < n) state->reusable = false;
    }
  } catch (const ProtocolError& e) {
    throw ProtocolError(e.what() + from());
  }
  return true;
}

namespace {

// Reads one response from `connection` into `parser`, waiting under the
// deadline. On return the parser is done(); `reusable` says whether the
// connection may carry another request.
void receive_response(Connection& connection, http::ResponseParser& parser,
                      const std::shared_ptr<BufferPool>& pool, const Deadline& deadline,
                      bool* reusable) {
  ReadState state;
  connection.await_readable(deadline);  // the answer takes the server a while
  read_response(connection, parser, pool, &state, deadline, /*wait=*/true);
  *reusable = state.reusable;
}

}  // namespace

HttpClient::HttpClient(Endpoint endpoint, ClientOptions options)
    : endpoint_(std::move(endpoint)),
      options_(options),
      buffers_(BufferPool::create(options.max_idle_buffer_bytes)) {}

std::unique_lock<fork::Mutex> HttpClient::locked(std::vector<std::unique_ptr<Connection>>* inherited) {
  return fork::lock(mutex_, [this, inherited](bool intact) {
    // In a forked child: the idle connections are the parent's sockets, whose
    // responses the parent reads. Closing our copies leaves the parent's open.
    if (intact) {
      inherited->swap(idle_);
    } else {
      // A parent thread was changing the list at the fork: abandon it unread
      // (its descriptors stay open in this process).
      new (&idle_) std::vector<std::unique_ptr<Connection>>();
    }
  });
}

std::unique_ptr<Connection> HttpClient::checkout(Deadline deadline, bool* reused) {
  std::vector<std::unique_ptr<Connection>> inherited;  // closed on return, outside the lock
  // Most recently used first: the likeliest to be alive. A dead (or out of
  // step) one closes outside the lock.
  std::unique_ptr<Connection> connection = first_reusable([&] {
    std::unique_ptr<Connection> last;
    auto lock = locked(&inherited);
    if (!idle_.empty()) {
      last = std::move(idle_.back());
      idle_.pop_back();
    }
    return last;
  });
  *reused = connection != nullptr;
  return connection ? std::move(connection) : Connection::open(endpoint_, deadline);
}

void HttpClient::checkin(std::unique_ptr<Connection> connection) {
  std::vector<std::unique_ptr<Connection>> inherited;
  {
    auto lock = locked(&inherited);
    if (!closed_ && idle_.size() < options_.max_idle_connections &&
        connection->generation() == fork::generation()) {
      idle_.push_back(std::move(connection));
      return;
    }
  }
  // `connection` closes here, outside the lock.
}

Response HttpClient::perform(const http::Request& request, Deadline deadline, bool idempotent,
                             ResponseCheck* check) {
  for (int attempt = 0;; ++attempt) {
    bool reused = false;
    // The retry goes to a fresh connection: the idle ones are as old as the dead one.
    std::unique_ptr<Connection> connection =
        attempt == 0 ? checkout(deadline, &reused) : Connection::open(endpoint_, deadline);
    http::ResponseParser parser(buffers_, options_.max_response_body_bytes);
    std::uint64_t sent = 0;
    bool reusable = false;
    try {
      try {
        connection->send(request, deadline, &sent);
      } catch (const ConnectionError&) {
        // A server that refuses a request (say 413 for a huge body) may answer
        // and close before reading all of it; show its answer, not our EPIPE,
        // when it is already here. Nothing more is waited for.
        bool ok = false;
        try {
          receive_response(*connection, parser, buffers_, Deadline::after(0), &reusable);
          ok = parser.done();
        } catch (const std::exception&) {
        }
        if (!ok) throw;
        Response answer{parser.take_head(), parser.take_body()};
        if (check) check->check(answer);  // the connection is closed regardless
        return answer;
      }
      receive_response(*connection, parser, buffers_, deadline, &reusable);
    } catch (const ConnectionError&) {
      // A reused keep-alive connection may have been closed by the server just
      // before this request went out: one retry on a fresh connection, when
      // resending cannot run the request twice (nothing sent, or idempotent)
      // and the server never began to answer. A fresh connection's failure is real.
      const bool stale = reused && attempt == 0 && parser.received() == 0;
      if (!(stale && (sent == 0 || idempotent))) throw;
      continue;
    }
    Response response{parser.take_head(), parser.take_body()};
    if (check) check->check(response);  // throws: `connection` closes on the way out
    if (reusable && response.head.keep_alive) checkin(std::move(connection));
    return response;
  }
}

void HttpClient::close() {
  std::vector<std::unique_ptr<Connection>> idle;
  {
    auto lock = locked(&idle);
    closed_ = true;
    for (auto& connection : idle_) idle.push_back(std::move(connection));
    idle_.clear();
  }
  idle.clear();  // closes the sockets, outside the lock
  buffers_->trim();
}

}  // namespace tritonfast
