// Requests in flight, responses received on one thread (see reactor.hpp).
#include "core/reactor.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#ifdef __linux__
#include <sys/epoll.h>
#include <sys/eventfd.h>
#endif

#include "core/errors.hpp"

namespace tritonfast {

struct Reactor::Exchange {
  Exchange(std::uint64_t token, std::unique_ptr<Connection> connection, const std::shared_ptr<BufferPool>& pool,
           std::uint64_t max_body_bytes, Deadline deadline, ResponseCheck* check)
      : token(token),
        connection(std::move(connection)),
        parser(pool, max_body_bytes),
        deadline(deadline),
        check(check) {}
  std::uint64_t token;
  std::unique_ptr<Connection> connection;
  http::ResponseParser parser;
  ReadState state;
  Deadline deadline;
  ResponseCheck* check;
};

#ifdef __linux__

namespace {

// Events taken per epoll_wait(): more just wait for the next call.
constexpr int kMaxEvents = 64;

std::int64_t ticks(std::chrono::steady_clock::time_point at) { return at.time_since_epoch().count(); }

}  // namespace

Reactor::Reactor(Endpoint endpoint, std::shared_ptr<BufferPool> buffers, std::uint64_t max_response_body_bytes,
                 std::size_t max_idle_connections)
    : endpoint_(std::move(endpoint)),
      buffers_(std::move(buffers)),
      max_response_body_bytes_(max_response_body_bytes),
      max_idle_connections_(max_idle_connections) {
  open_poller();
}

Reactor::~Reactor() {
  exchanges_.clear();
  idle_.clear();
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Reactor::open_poller() {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) throw std::runtime_error("epoll_create1 failed: " + errno_text(errno));
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    const int error = errno;
    ::close(epoll_fd_);
    epoll_fd_ = -1;
    throw std::runtime_error("eventfd failed: " + errno_text(error));
  }
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.ptr = nullptr;  // the wake-up
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &event) != 0) {
    throw std::runtime_error("epoll_ctl failed: " + errno_text(errno));
  }
}

std::unique_lock<fork::Mutex> Reactor::locked() const {
  return fork::lock(mutex_, [this](bool intact) { const_cast<Reactor*>(this)->abandon(intact); });
}

void Reactor::abandon(bool intact) {
  // Our copies of the epoll instance and of the sockets: closing them leaves
  // the parent's open and registered; epoll_ctl on them would change the
  // parent's set, so it is never called.
  ::close(epoll_fd_);
  ::close(wake_fd_);
  if (intact) {
    exchanges_.clear();  // closes the copies of their sockets
    idle_.clear();
  } else {
    // A parent thread was changing them at the fork: abandoned unread.
    new (&exchanges_) std::unordered_map<Exchange*, std::unique_ptr<Exchange>>();
    new (&idle_) std::vector<std::unique_ptr<Connection>>();
  }
  waiting_until_.store(0);
  woken_.store(false);
  open_poller();
}

void Reactor::rearm(const Exchange& exchange, int op) {
  epoll_event event{};
  event.events = EPOLLIN | EPOLLONESHOT;
  event.data.ptr = const_cast<Exchange*>(&exchange);
  if (::epoll_ctl(epoll_fd_, op, exchange.connection->fd(), &event) != 0) {
    throw ConnectionError("cannot watch the connection to " + endpoint_.authority() +
                          " (epoll_ctl): " + errno_text(errno));
  }
}

void Reactor::start(std::uint64_t token, const http::Request& request, Deadline deadline, ResponseCheck* check) {
  for (int attempt = 0;; ++attempt) {
    // The retry goes to a fresh connection. A dead idle one closes outside the
    // lock (and so leaves the epoll set).
    std::unique_ptr<Connection> connection;
    if (attempt == 0) {
      connection = first_reusable([this] {
        std::unique_ptr<Connection> last;
        auto lock = locked();
        if (!idle_.empty()) {
          last = std::move(idle_.back());  // most recently used: the likeliest alive
          idle_.pop_back();
        }
        return last;
      });
    }
    const bool reused = connection != nullptr;
    if (!connection) connection = Connection::open(endpoint_, deadline);
    std::uint64_t sent = 0;
    try {
      connection->send(request, deadline, &sent);
    } catch (const ConnectionError&) {
      // A kept-alive connection the server closed just before: one retry on a
      // fresh one, as nothing of the request went out.
      if (reused && attempt == 0 && sent == 0) continue;
      throw;
    }
    auto owned = std::make_unique<Exchange>(token, std::move(connection), buffers_, max_response_body_bytes_,
                                            deadline, check);
    Exchange* exchange = owned.get();
    {
      // Registered under the lock: wait() finds it in exchanges_ for any event
      // it reports, and cannot expire and free it before it is watched.
      auto lock = locked();
      exchanges_.emplace(exchange, std::move(owned));
      try {
        rearm(*exchange, reused ? EPOLL_CTL_MOD : EPOLL_CTL_ADD);
      } catch (...) {
        exchanges_.erase(exchange);
        throw;
      }
    }
    if (!deadline.is_never() && ticks(deadline.at()) < waiting_until_.load()) wake();
    return;
  }
}

void Reactor::wait(std::vector<Completion>* out, int timeout_ms) {
  int wait_ms = timeout_ms;
  {
    auto lock = locked();
    for (const auto& entry : exchanges_) {
      const Deadline& deadline = entry.first->deadline;
      if (deadline.is_never()) continue;
      const int ms = deadline.poll_timeout_ms();
      wait_ms = wait_ms < 0 ? ms : std::min(wait_ms, ms);
    }
    const auto now = std::chrono::steady_clock::now();
    waiting_until_.store(wait_ms < 0 ? std::numeric_limits<std::int64_t>::max()
                                     : ticks(now + std::chrono::milliseconds(wait_ms)));
  }
  epoll_event events[kMaxEvents];
  int n = ::epoll_wait(epoll_fd_, events, kMaxEvents, wait_ms);
  waiting_until_.store(0);
  if (n < 0) {
    if (errno != EINTR) throw std::runtime_error("epoll_wait failed: " + errno_text(errno));
    n = 0;
  }
  for (int i = 0; i < n; ++i) {
    auto* exchange = static_cast<Exchange*>(events[i].data.ptr);
    if (exchange == nullptr) {
      woken_.store(false);
      std::uint64_t count = 0;
      while (::read(wake_fd_, &count, sizeof count) < 0 && errno == EINTR) {
      }
      continue;
    }
    {
      auto lock = locked();
      if (exchanges_.count(exchange) == 0) continue;  // defensive: completed already
    }
    if (!step(exchange, out)) {
      try {
        rearm(*exchange, EPOLL_CTL_MOD);
      } catch (...) {
        finish(exchange, out, std::current_exception());
      }
    }
  }
  std::vector<Exchange*> expired;
  {
    auto lock = locked();
    for (const auto& entry : exchanges_) {
      if (entry.first->deadline.expired()) expired.push_back(entry.first);
    }
  }
  for (Exchange* exchange : expired) {
    finish(exchange, out,
           std::make_exception_ptr(response_timeout(*exchange->connection, exchange->parser, exchange->deadline)));
  }
}

bool Reactor::step(Exchange* exchange, std::vector<Completion>* out) {
  bool done = false;
  try {
    done = read_response(*exchange->connection, exchange->parser, buffers_, &exchange->state, exchange->deadline,
                         /*wait=*/false);
  } catch (...) {
    finish(exchange, out, std::current_exception());
    return true;
  }
  if (done) finish(exchange, out, nullptr);
  return done;
}

void Reactor::finish(Exchange* exchange, std::vector<Completion>* out, std::exception_ptr error) {
  std::unique_ptr<Exchange> owned;
  {
    auto lock = locked();
    auto node = exchanges_.find(exchange);
    if (node == exchanges_.end()) return;
    owned = std::move(node->second);
    exchanges_.erase(node);
  }
  Completion completion;
  completion.token = owned->token;
  if (!error) {
    completion.response = Response{owned->parser.take_head(), owned->parser.take_body()};
    try {
      if (owned->check) owned->check->check(completion.response);
    } catch (...) {
      error = std::current_exception();  // out of step: the connection closes below
    }
  }
  if (error) {
    completion.response = Response{};
    completion.error = error;
  } else if (owned->state.reusable && completion.response.head.keep_alive &&
             owned->connection->generation() == fork::generation()) {
    auto lock = locked();
    if (idle_.size() < max_idle_connections_) idle_.push_back(std::move(owned->connection));
  }
  out->push_back(std::move(completion));
  // `owned` (and a connection not pooled) closes here, outside the lock.
}

void Reactor::wake() {
  if (woken_.exchange(true)) return;
  const std::uint64_t one = 1;
  while (::write(wake_fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

std::size_t Reactor::in_flight() const {
  auto lock = locked();
  return exchanges_.size();
}

void Reactor::close_idle() {
  std::vector<std::unique_ptr<Connection>> idle;
  {
    auto lock = locked();
    idle.swap(idle_);
  }
}

#else  // !__linux__

Reactor::Reactor(Endpoint endpoint, std::shared_ptr<BufferPool> buffers, std::uint64_t, std::size_t)
    : endpoint_(std::move(endpoint)), buffers_(std::move(buffers)) {
  throw std::runtime_error("the reactor needs epoll (Linux)");
}
Reactor::~Reactor() = default;
void Reactor::start(std::uint64_t, const http::Request&, Deadline, ResponseCheck*) {}
void Reactor::wait(std::vector<Completion>*, int) {}
void Reactor::wake() {}
std::size_t Reactor::in_flight() const { return 0; }
void Reactor::close_idle() {}

#endif

}  // namespace tritonfast
