// Fault tests for the blocking transport (csrc/core/transport.cpp) against raw
// socket servers on 127.0.0.1 that misbehave on purpose: stall, reset, close
// mid-head or mid-body, refuse, never read. Plain asserts, no framework; run
// under ASan/UBSan:
//
//   g++ -std=c++17 -O1 -g -fsanitize=address,undefined -pthread -Icsrc
//       csrc/tests/test_transport.cpp
//       csrc/core/{transport,http,json,infer,buffer,dtype,bytes_codec}.cpp -o /tmp/test_transport
//   /tmp/test_transport            # every test
//   /tmp/test_transport retry      # only tests whose name contains "retry"
//
// Connection-level tests need nothing else; HttpClient tests need the real
// http::ResponseParser and are skipped (and say so) while it is a stub.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/errors.hpp"
#include "core/http.hpp"
#include "core/reactor.hpp"
#include "core/transport.hpp"

using namespace tritonfast;
using Clock = std::chrono::steady_clock;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                          \
    }                                                                        \
  } while (0)

#define CHECK_CONTAINS(text, part)                                                    \
  do {                                                                                \
    const std::string text_ = (text);                                                 \
    if (text_.find(part) == std::string::npos) {                                      \
      std::fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, \
                   text_.c_str(), std::string(part).c_str());                         \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)

// Runs `body`, which must throw E; returns the message.
template <typename E, typename F>
std::string expect_throw(F&& body, const char* where) {
  try {
    body();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: wrong exception: %s\n", where, e.what());
    std::abort();
  }
  std::fprintf(stderr, "%s: nothing was thrown\n", where);
  std::abort();
}
#define STR2(x) #x
#define STR(x) STR2(x)
#define EXPECT_THROW(E, ...) expect_throw<E>([&] { __VA_ARGS__; }, __FILE__ ":" STR(__LINE__))

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// ---------------------------------------------------------------------------
// A raw-socket test server: one thread accepts on 127.0.0.1:<ephemeral>, one
// thread per connection runs the handler. Every wait polls `stop`, so the
// destructor always joins.

class Server {
 public:
  using Handler = std::function<void(Server&, int fd, int index)>;

  explicit Server(Handler handler, int backlog = 128) : handler_(std::move(handler)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(listen_fd_ >= 0);
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    CHECK(::listen(listen_fd_, backlog) == 0);
    socklen_t length = sizeof address;
    CHECK(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    port_ = ntohs(address.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~Server() {
    stop_ = true;
    acceptor_.join();
    std::vector<std::thread> workers;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      workers.swap(workers_);
    }
    for (auto& worker : workers) worker.join();
    ::close(listen_fd_);
  }

  Endpoint endpoint() const { return Endpoint{"127.0.0.1", port_}; }
  std::uint16_t port() const { return port_; }
  bool stopping() const { return stop_; }

  std::atomic<int> accepts{0};
  std::atomic<int> requests{0};

  // Waits until `fd` is readable; false when the server stops first.
  bool wait_readable(int fd) {
    while (!stop_) {
      pollfd entry{fd, POLLIN, 0};
      if (::poll(&entry, 1, 20) > 0) return true;
    }
    return false;
  }
  void idle_until_stopped() {
    while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd entry{listen_fd_, POLLIN, 0};
      if (::poll(&entry, 1, 20) <= 0) continue;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      const int index = accepts++;
      std::lock_guard<std::mutex> lock(mutex_);
      workers_.emplace_back([this, fd, index] {
        handler_(*this, fd, index);
        ::close(fd);
      });
    }
  }

  Handler handler_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::mutex mutex_;
  std::vector<std::thread> workers_;
};

struct WireRequest {
  std::string method;
  std::string target;
  std::string body;
};

// Reads one request (head, then a Content-Length body) from `fd`; `pending`
// keeps bytes past it for the next call. False on EOF, error or stop.
bool read_request(Server& server, int fd, std::string* pending, WireRequest* request,
                  bool read_body = true) {
  auto fill = [&]() {
    if (!server.wait_readable(fd)) return false;
    char chunk[65536];
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    pending->append(chunk, static_cast<std::size_t>(n));
    return true;
  };
  std::size_t end;
  while ((end = pending->find("\r\n\r\n")) == std::string::npos) {
    if (!fill()) return false;
  }
  const std::string head = pending->substr(0, end + 4);
  pending->erase(0, end + 4);
  const std::size_t space1 = head.find(' ');
  const std::size_t space2 = head.find(' ', space1 + 1);
  request->method = head.substr(0, space1);
  request->target = head.substr(space1 + 1, space2 - space1 - 1);
  std::size_t content_length = 0;
  std::string lower = head;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const std::size_t at = lower.find("\r\ncontent-length:");
  if (at != std::string::npos) content_length = std::strtoull(lower.c_str() + at + 17, nullptr, 10);
  if (!read_body) return true;
  while (pending->size() < content_length) {
    if (!fill()) return false;
  }
  request->body = pending->substr(0, content_length);
  pending->erase(0, content_length);
  return true;
}

bool write_all(int fd, const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

std::string response(const std::string& body, const std::string& extra_headers = "") {
  return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         extra_headers + "\r\n" + body;
}

// Closes with RST instead of FIN.
void reset(int fd) {
  linger option{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, sizeof option);
}

std::string pattern(std::size_t size, unsigned seed = 1) {
  std::string out(size, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (std::size_t i = 0; i < size; ++i) {
    x = x * 1664525u + 1013904223u;
    out[i] = static_cast<char>(x >> 24);
  }
  return out;
}

std::uint64_t fnv1a(const std::string& data) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : data) h = (h ^ c) * 1099511628211ull;
  return h;
}

// A well-behaved keep-alive server:
//   /echo          the request body back
//   /hash          FNV-1a of the request body, in decimal
//   /big?n=N       N bytes of pattern(N)
//   /chunked       "hello, chunked world" in three chunks
//   /close         "bye" with Connection: close, then closes
//   anything else  "ok"
void good_handler(Server& server, int fd, int) {
  std::string pending;
  WireRequest request;
  while (read_request(server, fd, &pending, &request)) {
    ++server.requests;
    const std::string& t = request.target;
    if (t == "/echo") {
      if (!write_all(fd, response(request.body))) return;
    } else if (t == "/hash") {
      if (!write_all(fd, response(std::to_string(fnv1a(request.body))))) return;
    } else if (t.rfind("/big?n=", 0) == 0) {
      const std::size_t n = std::strtoull(t.c_str() + 7, nullptr, 10);
      if (!write_all(fd, response(pattern(n)))) return;
    } else if (t == "/chunked") {
      if (!write_all(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "7\r\nhello, \r\n8\r\nchunked \r\n5\r\nworld\r\n0\r\n\r\n")) return;
    } else if (t == "/close") {
      write_all(fd, response("bye", "Connection: close\r\n"));
      return;
    } else {
      if (!write_all(fd, response("ok"))) return;
    }
  }
}

http::Request make_request(const std::string& method, const std::string& target,
                           const Endpoint& endpoint, const std::string* body = nullptr) {
  http::Request request;
  request.head = method + " " + target + " HTTP/1.1\r\nHost: " + endpoint.authority() + "\r\n";
  if (body) {
    request.head += "Content-Length: " + std::to_string(body->size()) + "\r\n\r\n";
    request.segments.push_back(
        Segment{reinterpret_cast<const std::uint8_t*>(body->data()), body->size()});
  } else {
    request.head += "\r\n";
  }
  return request;
}

// Reads one Content-Length response through Connection::receive (no parser).
std::string raw_response(Connection& connection, Deadline deadline) {
  std::string data;
  std::uint8_t chunk[4096];
  for (;;) {
    const std::size_t end = data.find("\r\n\r\n");
    if (end != std::string::npos) {
      const std::size_t at = data.find("Content-Length: ");
      CHECK(at != std::string::npos);
      const std::size_t length = std::strtoull(data.c_str() + at + 16, nullptr, 10);
      if (data.size() >= end + 4 + length) return data.substr(end + 4, length);
    }
    const std::size_t n = connection.receive(chunk, sizeof chunk, deadline);
    CHECK(n > 0);
    data.append(reinterpret_cast<char*>(chunk), n);
  }
}

// A port with nothing listening on it.
std::uint16_t closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  socklen_t length = sizeof address;
  CHECK(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
  ::close(fd);
  return ntohs(address.sin_port);
}

std::string body_text(const Response& r) {
  return std::string(reinterpret_cast<const char*>(r.body.data()), r.body.size);
}

// Timeouts must fire after the deadline, and soon after it.
constexpr double kTimeoutSlack = 0.050;
void check_timely(double elapsed, double deadline) {
  if (elapsed < deadline - 0.001 || elapsed > deadline + kTimeoutSlack) {
    std::fprintf(stderr, "timeout fired after %.4f s for a %.3f s deadline\n", elapsed, deadline);
    std::abort();
  }
}

// ---------------------------------------------------------------------------
// Deadline and Endpoint

void test_deadline() {
  const Deadline never = Deadline::never();
  CHECK(never.is_never() && !never.expired() && never.poll_timeout_ms() == -1);
  for (double s : {0.0, -1.0, std::nan("")}) {
    const Deadline passed = Deadline::after(s);
    CHECK(!passed.is_never() && passed.expired() && passed.poll_timeout_ms() == 0);
  }
  const Deadline soon = Deadline::after(0.0001);  // 0.1 ms rounds up to 1 ms
  const int ms = soon.poll_timeout_ms();
  CHECK(ms == 0 || ms == 1);
  const Deadline later = Deadline::after(2.0);
  CHECK(!later.expired() && later.poll_timeout_ms() > 1990 && later.poll_timeout_ms() <= 2000);
  CHECK(Deadline::after(3.0e6).poll_timeout_ms() == INT_MAX);  // 3e9 ms clamps
  CHECK(Deadline::after(std::numeric_limits<double>::infinity()).is_never());
  CHECK(Deadline::after(1e300).is_never());
  const auto start = Clock::now();
  const Deadline d = Deadline::after(0.02);
  while (!d.expired()) {
  }
  CHECK(seconds_since(start) >= 0.02);
}

void test_authority() {
  CHECK((Endpoint{"127.0.0.1", 8000}.authority() == "127.0.0.1:8000"));
  CHECK((Endpoint{"localhost", 80}.authority() == "localhost:80"));
  CHECK((Endpoint{"::1", 8000}.authority() == "[::1]:8000"));
  CHECK((Endpoint{"fe80::1%eth0", 1}.authority() == "[fe80::1%eth0]:1"));
}

// ---------------------------------------------------------------------------
// Connection

void test_connection_refused() {
  const std::uint16_t port = closed_port();
  const std::string message = EXPECT_THROW(
      ConnectionError, Connection::open(Endpoint{"127.0.0.1", port}, Deadline::after(2)));
  CHECK(message == "connection to 127.0.0.1:" + std::to_string(port) + " refused");
}

void test_connection_unresolvable() {
  const std::string message = EXPECT_THROW(
      ConnectionError, Connection::open(Endpoint{"nonexistent.invalid", 80}, Deadline::after(5)));
  CHECK_CONTAINS(message, "cannot resolve host 'nonexistent.invalid': ");
}

void test_connection_localhost_name() {
  Server server(good_handler);
  auto connection = Connection::open(Endpoint{"localhost", server.port()}, Deadline::after(2));
  CHECK(connection->endpoint().authority() == "localhost:" + std::to_string(server.port()));
}

void test_connection_ipv6() {
  const int listener = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 address{};
  address.sin6_family = AF_INET6;
  address.sin6_addr = in6addr_loopback;
  if (listener < 0 ||
      ::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(listener, 4) != 0) {
    if (listener >= 0) ::close(listener);
    std::printf("  (skipped: no IPv6 loopback here)\n");
    return;
  }
  socklen_t length = sizeof address;
  CHECK(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) == 0);
  const Endpoint endpoint{"::1", ntohs(address.sin6_port)};
  auto connection = Connection::open(endpoint, Deadline::after(2));
  CHECK(connection->reusable());
  connection.reset();
  ::close(listener);
  const std::string message =
      EXPECT_THROW(ConnectionError, Connection::open(endpoint, Deadline::after(2)));
  CHECK(message == "connection to [::1]:" + std::to_string(endpoint.port) + " refused");
}

void test_connect_timeout() {
  // A listener that never accepts, with a full backlog: the kernel drops
  // further SYNs and the connect hangs until the deadline.
  // (A bare listener: the test Server would accept them.)
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  CHECK(::listen(listener, 0) == 0);
  socklen_t length = sizeof address;
  CHECK(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) == 0);
  const Endpoint endpoint{"127.0.0.1", ntohs(address.sin_port)};
  std::vector<std::unique_ptr<Connection>> fillers;
  bool hung = false;
  for (int i = 0; i < 8 && !hung; ++i) {
    const auto start = Clock::now();
    try {
      fillers.push_back(Connection::open(endpoint, Deadline::after(0.2)));
    } catch (const TimeoutError& e) {
      check_timely(seconds_since(start), 0.2);
      CHECK(std::string(e.what()) ==
            "connecting to " + endpoint.authority() + " took longer than 0.200 s");
      hung = true;
    }
  }
  ::close(listener);
  if (!hung) std::printf("  (skipped: this kernel never dropped a SYN)\n");
}

void test_send_receive_keepalive() {
  Server server(good_handler);
  auto connection = Connection::open(server.endpoint(), Deadline::after(2));
  CHECK(connection->reusable());
  for (int i = 0; i < 3; ++i) {
    const std::string body = "request " + std::to_string(i);
    const http::Request request = make_request("POST", "/echo", server.endpoint(), &body);
    std::uint64_t sent = 0;
    connection->send(request, Deadline::after(2), &sent);
    CHECK(sent == request.head.size() + body.size());
    CHECK(raw_response(*connection, Deadline::after(2)) == body);
    CHECK(connection->reusable());
  }
  CHECK(server.accepts == 1 && server.requests == 3);
}

void test_send_many_segments() {
  // More segments than IOV_MAX, sizes 0..~6 KiB (zero-sized ones included), ~12 MiB in
  // all: sendmsg must take several calls and stop inside iovecs.
  Server server(good_handler);
  const std::size_t count = 3 * 1024 + 7;
  std::vector<std::string> pieces;
  pieces.reserve(count);
  std::string whole;
  for (std::size_t i = 0; i < count; ++i) {
    pieces.push_back(pattern((i * 7919) % 6151, static_cast<unsigned>(i)));
    whole += pieces.back();
  }
  http::Request request;
  request.head = "POST /hash HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                 std::to_string(whole.size()) + "\r\n\r\n";
  for (const auto& piece : pieces) {
    request.segments.push_back(
        Segment{reinterpret_cast<const std::uint8_t*>(piece.data()), piece.size()});
  }
  auto connection = Connection::open(server.endpoint(), Deadline::after(5));
  std::uint64_t sent = 0;
  connection->send(request, Deadline::after(20), &sent);
  CHECK(sent == request.head.size() + whole.size());
  CHECK(raw_response(*connection, Deadline::after(20)) == std::to_string(fnv1a(whole)));
}

void test_send_timeout() {
  // The server accepts and never reads: 64 MiB cannot fit in the socket buffers.
  Server server([](Server& s, int, int) { s.idle_until_stopped(); });
  const std::string body(64 << 20, 'x');
  const http::Request request = make_request("POST", "/echo", server.endpoint(), &body);
  auto connection = Connection::open(server.endpoint(), Deadline::after(2));
  std::uint64_t sent = 0;
  const auto start = Clock::now();
  const std::string message =
      EXPECT_THROW(TimeoutError, connection->send(request, Deadline::after(0.3), &sent));
  check_timely(seconds_since(start), 0.3);
  const std::uint64_t total = request.head.size() + body.size();
  CHECK(sent > 0 && sent < total);
  CHECK(message == "sending the request to " + server.endpoint().authority() +
                       " took longer than 0.300 s (" + std::to_string(sent) + " of " +
                       std::to_string(total) + " bytes sent)");
}

void test_send_expired_deadline() {
  Server server(good_handler);
  auto connection = Connection::open(server.endpoint(), Deadline::after(2));
  const http::Request request = make_request("GET", "/", server.endpoint());
  std::uint64_t sent = 123;
  const std::string message =
      EXPECT_THROW(TimeoutError, connection->send(request, Deadline::after(0), &sent));
  CHECK(sent == 0);  // nothing was attempted
  CHECK_CONTAINS(message, "(0 of " + std::to_string(request.head.size()) + " bytes sent)");
  EXPECT_THROW(TimeoutError, Connection::open(server.endpoint(), Deadline::after(-1)));
}

void test_send_reset() {
  // The server reads a little, then resets: the sender sees EPIPE or ECONNRESET.
  Server server([](Server& s, int fd, int) {
    if (!s.wait_readable(fd)) return;
    char chunk[1024];
    (void)::recv(fd, chunk, sizeof chunk, 0);
    reset(fd);
  });
  const std::string body(64 << 20, 'x');
  const http::Request request = make_request("POST", "/echo", server.endpoint(), &body);
  auto connection = Connection::open(server.endpoint(), Deadline::after(2));
  std::uint64_t sent = 0;
  const std::string message =
      EXPECT_THROW(ConnectionError, connection->send(request, Deadline::after(5), &sent));
  const std::uint64_t total = request.head.size() + body.size();
  CHECK(sent > 0 && sent < total);
  CHECK(message == "server closed the connection after " + std::to_string(sent) + " of " +
                       std::to_string(total) + " request bytes were sent to " +
                       server.endpoint().authority());
}

void test_receive_timeout() {
  Server server([](Server& s, int, int) { s.idle_until_stopped(); });
  auto connection = Connection::open(server.endpoint(), Deadline::after(2));
  std::uint8_t buffer[16];
  const auto start = Clock::now();
  const std::string message = EXPECT_THROW(
      TimeoutError, connection->receive(buffer, sizeof buffer, Deadline::after(0.2)));
  check_timely(seconds_since(start), 0.2);
  CHECK(message == "no response from " + server.endpoint().authority() + " within 0.200 s");
}

void test_receive_reset_and_eof() {
  Server server([](Server& s, int fd, int index) {
    if (!s.wait_readable(fd)) return;  // the client's request
    char chunk[1024];
    (void)::recv(fd, chunk, sizeof chunk, 0);  // read it: closing with unread bytes sends RST
    if (index == 0) reset(fd);                 // first connection: RST; second: FIN
  });
  const http::Request request = make_request("GET", "/", server.endpoint());
  std::uint8_t buffer[16];
  {
    auto connection = Connection::open(server.endpoint(), Deadline::after(2));
    connection->send(request, Deadline::after(2), nullptr);
    const std::string message = EXPECT_THROW(
        ConnectionError, connection->receive(buffer, sizeof buffer, Deadline::after(2)));
    CHECK(message == "connection to " + server.endpoint().authority() + " was reset by the server");
  }
  {
    auto connection = Connection::open(server.endpoint(), Deadline::after(2));
    connection->send(request, Deadline::after(2), nullptr);
    CHECK(connection->receive(buffer, sizeof buffer, Deadline::after(2)) == 0);
    CHECK(!connection->reusable());
  }
}

void test_reusable() {
  // Connection 0: the server sends a byte nobody asked for. Connection 1: the
  // server closes. Connection 2: the server resets.
  Server server([](Server& s, int fd, int index) {
    if (index == 0) write_all(fd, "X");
    if (index == 2) reset(fd);
    if (index == 0) s.idle_until_stopped();
  });
  for (int i = 0; i < 3; ++i) {
    auto connection = Connection::open(server.endpoint(), Deadline::after(2));
    const auto start = Clock::now();
    while (connection->reusable()) {
      CHECK(seconds_since(start) < 2);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
}

// ---------------------------------------------------------------------------
// HttpClient (needs the real ResponseParser)

void test_client_keepalive_reuse() {
  Server server(good_handler);
  HttpClient client(server.endpoint(), ClientOptions{});
  for (int i = 0; i < 10; ++i) {
    const Response r =
        client.perform(make_request("GET", "/", server.endpoint()), Deadline::after(2), true);
    CHECK(r.head.status == 200 && body_text(r) == "ok");
  }
  CHECK(server.accepts == 1 && server.requests == 10);
}

void test_client_connection_close() {
  Server server(good_handler);
  HttpClient client(server.endpoint(), ClientOptions{});
  for (int i = 0; i < 5; ++i) {
    const Response r = client.perform(make_request("GET", "/close", server.endpoint()),
                                      Deadline::after(2), true);
    CHECK(r.head.status == 200 && !r.head.keep_alive && body_text(r) == "bye");
  }
  CHECK(server.accepts == 5);
}

void test_client_bodies() {
  Server server(good_handler);
  HttpClient client(server.endpoint(), ClientOptions{});
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{16000}, std::size_t{16384},
                        std::size_t{100000}, std::size_t{32} << 20}) {
    const Response r = client.perform(
        make_request("GET", "/big?n=" + std::to_string(n), server.endpoint()), Deadline::after(10),
        true);
    CHECK(r.head.status == 200 && r.body.size == n);
    CHECK(body_text(r) == pattern(n));
  }
  const Response chunked =
      client.perform(make_request("GET", "/chunked", server.endpoint()), Deadline::after(2), true);
  CHECK(body_text(chunked) == "hello, chunked world");
  const std::string big = pattern(5 << 20, 7);
  const Response echoed = client.perform(make_request("POST", "/echo", server.endpoint(), &big),
                                         Deadline::after(10), false);
  CHECK(body_text(echoed) == big);
  CHECK(server.accepts == 1);
}

void test_client_stall_timeout() {
  Server server([](Server& s, int, int) { s.idle_until_stopped(); });
  HttpClient client(server.endpoint(), ClientOptions{});
  const auto start = Clock::now();
  const std::string message = EXPECT_THROW(
      TimeoutError,
      client.perform(make_request("GET", "/", server.endpoint()), Deadline::after(0.25), true));
  check_timely(seconds_since(start), 0.25);
  CHECK(message == "no response from " + server.endpoint().authority() + " within 0.250 s");
  CHECK(server.accepts == 1);  // timeouts are never retried
}

void test_client_stall_mid_body() {
  Server server([](Server& s, int fd, int) {
    std::string pending;
    WireRequest request;
    if (!read_request(s, fd, &pending, &request)) return;
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
    s.idle_until_stopped();
  });
  HttpClient client(server.endpoint(), ClientOptions{});
  const auto start = Clock::now();
  const std::string message = EXPECT_THROW(
      TimeoutError,
      client.perform(make_request("GET", "/", server.endpoint()), Deadline::after(0.25), true));
  check_timely(seconds_since(start), 0.25);
  CHECK_CONTAINS(message, "no complete response from " + server.endpoint().authority() +
                              " within 0.250 s (");
}

void test_client_close_mid_body() {
  Server server([](Server& s, int fd, int) {
    std::string pending;
    WireRequest request;
    if (!read_request(s, fd, &pending, &request)) return;
    ++s.requests;
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + std::string(400, 'a'));
  });
  HttpClient client(server.endpoint(), ClientOptions{});
  const std::string message = EXPECT_THROW(
      ConnectionError,
      client.perform(make_request("GET", "/", server.endpoint()), Deadline::after(2), true));
  CHECK(message == "server closed the connection after 400 of 1000 body bytes (from " +
                       server.endpoint().authority() + ")");
  CHECK(server.requests == 1);
}

void test_client_partial_head() {
  Server server([](Server& s, int fd, int) {
    std::string pending;
    WireRequest request;
    if (!read_request(s, fd, &pending, &request)) return;
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Le");
  });
  HttpClient client(server.endpoint(), ClientOptions{});
  const std::string message = EXPECT_THROW(
      ConnectionError,
      client.perform(make_request("GET", "/", server.endpoint()), Deadline::after(2), true));
  CHECK_CONTAINS(message, "in the middle of the response head");
}

void test_client_reset_fresh_not_retried() {
  Server server([](Server& s, int fd, int) {
    std::string pending;
    WireRequest request;
    if (!read_request(s, fd, &pending, &request)) return;
    ++s.requests;
    reset(fd);
  });
  HttpClient client(server.endpoint(), ClientOptions{});
  const std::string message = EXPECT_THROW(
      ConnectionError,
      client.perform(make_request("GET", "/", server.endpoint()), Deadline::after(2), true));
  CHECK_CONTAINS(message, server.endpoint().authority());
  CHECK(server.requests == 1 && server.accepts == 1);  // fresh connection: thrown, not retried
}

void test_client_reset_mid_body() {
  Server server([](Server& s, int fd, int) {
    std::string pending;
    WireRequest request;
    if (!read_request(s, fd, &pending, &request)) return;
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + std::string(5000, 'a'));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    reset(fd);
  });
  HttpClient client(server.endpoint(), ClientOptions{});
  const std::string message = EXPECT_THROW(
      ConnectionError,
      client.perform(make_request("GET", "/", server.endpoint()), Deadline::after(2), true));
  CHECK_CONTAINS(message, "connection to " + server.endpoint().authority() +
                              " was reset by the server after ");
  CHECK_CONTAINS(message, " response bytes");
  CHECK(server.accepts == 1);  // the server had begun to answer: no retry
}

void test_client_protocol_error() {
  Server server([](Server& s, int fd, int) {
    std::string pending;
    WireRequest request;
    if (!read_request(s, fd, &pending, &request)) return;
    write_all(fd, "SMTP ready\r\n\r\n");
  });
  HttpClient client(server.endpoint(), ClientOptions{});
  const std::string message = EXPECT_THROW(
      ProtocolError,
      client.perform(make_request("GET", "/", server.endpoint()), Deadline::after(2), true));
  CHECK_CONTAINS(message, "(from " + server.endpoint().authority() + ")");
}

void test_client_odd_framings() {
  // A head over the 16 KiB head buffer, a 100 Continue before the answer, a
  // response dribbled a few bytes per write, and a read-until-close body.
  Server server([](Server& s, int fd, int index) {
    std::string pending;
    WireRequest request;
    while (read_request(s, fd, &pending, &request)) {
      if (request.target == "/long-head") {
        write_all(fd, response("long", "X-Padding: " + std::string(40000, 'p') + "\r\n"));
      } else if (request.target == "/continue") {
        write_all(fd, "HTTP/1.1 100 Continue\r\n\r\n" + response("continued"));
      } else if (request.target == "/dribble") {
        const std::string wire = response("dribbled body");
        for (std::size_t i = 0; i < wire.size(); i += 3) {
          write_all(fd, wire.substr(i, 3));
          std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
      } else if (request.target == "/until-close") {
        write_all(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + pattern(300000));
        return;
      }
    }
    (void)index;
  });
  HttpClient client(server.endpoint(), ClientOptions{});
  auto get = [&](const char* target) {
    return client.perform(make_request("GET", target, server.endpoint()), Deadline::after(5), true);
  };
  const Response long_head = get("/long-head");
  CHECK(body_text(long_head) == "long" && long_head.head.find("x-padding")->size() == 40000);
  CHECK(body_text(get("/continue")) == "continued");
  CHECK(body_text(get("/dribble")) == "dribbled body");
  CHECK(server.accepts == 1);
  const Response until_close = get("/until-close");
  CHECK(body_text(until_close) == pattern(300000));
  CHECK(body_text(get("/dribble")) == "dribbled body");
  CHECK(server.accepts == 2);  // the read-until-close connection was not pooled
}

void test_client_refused() {
  const Endpoint endpoint{"127.0.0.1", closed_port()};
  HttpClient client(endpoint, ClientOptions{});
  const std::string message = EXPECT_THROW(
      ConnectionError,
      client.perform(make_request("GET", "/", endpoint), Deadline::after(2), true));
  CHECK(message == "connection to " + endpoint.authority() + " refused");
}

void test_client_send_timeout() {
  Server server([](Server& s, int, int) { s.idle_until_stopped(); });
  HttpClient client(server.endpoint(), ClientOptions{});
  const std::string body(64 << 20, 'x');
  const auto start = Clock::now();
  const std::string message = EXPECT_THROW(
      TimeoutError, client.perform(make_request("POST", "/echo", server.endpoint(), &body),
                                   Deadline::after(0.3), false));
  check_timely(seconds_since(start), 0.3);
  CHECK_CONTAINS(message, "sending the request to " + server.endpoint().authority() +
                              " took longer than 0.300 s (");
}

void test_client_early_error_response() {
  // A server that refuses a huge body: answers 413 after the head and closes
  // without reading the rest. The client reports the 413, not its EPIPE.
  Server server([](Server& s, int fd, int) {
    std::string pending;
    WireRequest request;
    if (!read_request(s, fd, &pending, &request, /*read_body=*/false)) return;
    ++s.requests;
    write_all(fd, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n"
                  "Connection: close\r\n\r\ntoo big!");
  });
  HttpClient client(server.endpoint(), ClientOptions{});
  const std::string body(64 << 20, 'x');
  try {
    const Response r = client.perform(make_request("POST", "/echo", server.endpoint(), &body),
                                      Deadline::after(5), false);
    CHECK(r.head.status == 413 && body_text(r) == "too big!");
  } catch (const ConnectionError& e) {
    // Acceptable when the kernel dropped the answer with the reset.
    std::printf("  (early response lost: %s)\n", e.what());
  }
  CHECK(server.requests == 1);
}

void test_client_leftover_bytes() {
  // The server appends bytes after the response: the connection is out of step
  // and must not be pooled.
  Server server([](Server& s, int fd, int) {
    std::string pending;
    WireRequest request;
    while (read_request(s, fd, &pending, &request)) {
      ++s.requests;
      if (!write_all(fd, response("ok") + "JUNK")) return;
    }
  });
  HttpClient client(server.endpoint(), ClientOptions{});
  for (int i = 0; i < 3; ++i) {
    const Response r =
        client.perform(make_request("GET", "/", server.endpoint()), Deadline::after(2), true);
    CHECK(body_text(r) == "ok");
  }
  CHECK(server.accepts == 3 && server.requests == 3);
}

void test_client_closed_while_idle() {
  // The server closes each connection after one response (without saying so):
  // the client notices at checkout and opens a fresh one, no error, no retry.
  Server server([](Server& s, int fd, int) {
    std::string pending;
    WireRequest request;
    if (!read_request(s, fd, &pending, &request)) return;
    ++s.requests;
    write_all(fd, response("ok"));
  });
  // A POST, which a retry could not rescue: checkout must notice by itself.
  HttpClient client(server.endpoint(), ClientOptions{});
  const std::string body = "{}";
  for (int i = 0; i < 3; ++i) {
    const Response r = client.perform(make_request("POST", "/", server.endpoint(), &body),
                                      Deadline::after(2), false);
    CHECK(body_text(r) == "ok");
    // Let the FIN arrive before the next checkout.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(server.accepts == 3 && server.requests == 3);
}

// The server answers the first request on connection 0, then reads the second
// and closes without answering, the way a keep-alive timeout races a request.
// Later connections behave.
void racing_handler(Server& s, int fd, int index) {
  std::string pending;
  WireRequest request;
  int served = 0;
  while (read_request(s, fd, &pending, &request)) {
    ++s.requests;
    if (index == 0 && served == 1) return;
    if (!write_all(fd, response("ok"))) return;
    ++served;
  }
}

void test_client_retry_idempotent() {
  Server server(racing_handler);
  HttpClient client(server.endpoint(), ClientOptions{});
  for (int i = 0; i < 2; ++i) {
    const Response r =
        client.perform(make_request("GET", "/", server.endpoint()), Deadline::after(2), true);
    CHECK(body_text(r) == "ok");
  }
  // 1 answered + 1 swallowed by the dying connection + 1 retried.
  CHECK(server.requests == 3 && server.accepts == 2);
}

void test_client_retry_not_post() {
  Server server(racing_handler);
  HttpClient client(server.endpoint(), ClientOptions{});
  const std::string body = "{}";
  CHECK(body_text(client.perform(make_request("POST", "/", server.endpoint(), &body),
                                 Deadline::after(2), false)) == "ok");
  const std::string message = EXPECT_THROW(
      ConnectionError, client.perform(make_request("POST", "/", server.endpoint(), &body),
                                      Deadline::after(2), false));
  CHECK(message == "server closed the connection before sending a response (from " +
                       server.endpoint().authority() + ")");
  CHECK(server.requests == 2 && server.accepts == 1);  // the POST was not resent
  // The client recovers: the next request opens a fresh connection.
  CHECK(body_text(client.perform(make_request("POST", "/", server.endpoint(), &body),
                                 Deadline::after(2), false)) == "ok");
}

// Connection 0 answers one request, then resets while the next (huge) request
// is being sent. Later connections behave.
void reset_during_second_send(Server& s, int fd, int index) {
  if (index > 0) return good_handler(s, fd, index);
  std::string pending;
  WireRequest request;
  if (!read_request(s, fd, &pending, &request)) return;
  ++s.requests;
  write_all(fd, response("ok"));
  if (!read_request(s, fd, &pending, &request, /*read_body=*/false)) return;
  ++s.requests;
  reset(fd);
}

void test_client_retry_after_send_reset() {
  const std::string body = pattern(64 << 20, 3);
  const std::string hash = std::to_string(fnv1a(body));
  {
    // Idempotent (say a PUT): resent on a fresh connection.
    Server server(reset_during_second_send);
    HttpClient client(server.endpoint(), ClientOptions{});
    CHECK(body_text(client.perform(make_request("GET", "/", server.endpoint()),
                                   Deadline::after(2), true)) == "ok");
    const Response r = client.perform(make_request("PUT", "/hash", server.endpoint(), &body),
                                      Deadline::after(10), true);
    CHECK(body_text(r) == hash);
    CHECK(server.accepts == 2 && server.requests == 3);
  }
  {
    // Not idempotent: part of it reached the server, so it is not resent.
    Server server(reset_during_second_send);
    HttpClient client(server.endpoint(), ClientOptions{});
    CHECK(body_text(client.perform(make_request("GET", "/", server.endpoint()),
                                   Deadline::after(2), true)) == "ok");
    const std::string message = EXPECT_THROW(
        ConnectionError, client.perform(make_request("POST", "/hash", server.endpoint(), &body),
                                        Deadline::after(10), false));
    CHECK_CONTAINS(message, "server closed the connection after ");
    CHECK_CONTAINS(message, " request bytes were sent to " + server.endpoint().authority());
    CHECK(server.accepts == 1 && server.requests == 2);
  }
}

void test_client_threads() {
  Server server(good_handler);
  HttpClient client(server.endpoint(), ClientOptions{});
  constexpr int kThreads = 16;
  constexpr int kRequests = 200;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRequests; ++i) {
        const std::string body = "thread " + std::to_string(t) + " request " + std::to_string(i) +
                                 std::string(static_cast<std::size_t>(i * 37 % 3000), '.');
        const Response r = client.perform(make_request("POST", "/echo", server.endpoint(), &body),
                                          Deadline::after(10), false);
        if (r.head.status == 200 && body_text(r) == body) ++ok;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(ok == kThreads * kRequests);
  CHECK(server.requests == kThreads * kRequests);
  CHECK(server.accepts <= kThreads);  // every connection went back to the pool
  client.close();
}

void test_client_close() {
  Server server(good_handler);
  HttpClient client(server.endpoint(), ClientOptions{});
  const std::string n = "/big?n=" + std::to_string(1 << 20);
  CHECK(client.perform(make_request("GET", n, server.endpoint()), Deadline::after(2), true)
            .body.size == (1u << 20));
  CHECK(client.buffers()->idle_bytes() > 0);
  client.close();
  CHECK(client.buffers()->idle_bytes() == 0);
  // Still usable, but nothing is pooled any more.
  for (int i = 0; i < 2; ++i) {
    client.perform(make_request("GET", "/", server.endpoint()), Deadline::after(2), true);
  }
  CHECK(server.accepts == 3);
}

void test_client_max_idle() {
  Server server(good_handler);
  ClientOptions options;
  options.max_idle_connections = 0;
  HttpClient client(server.endpoint(), options);
  for (int i = 0; i < 3; ++i) {
    client.perform(make_request("GET", "/", server.endpoint()), Deadline::after(2), true);
  }
  CHECK(server.accepts == 3);
}

// ---------------------------------------------------------------------------

bool parser_available() {
  try {
    http::ResponseParser parser(BufferPool::create(0));
    const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    parser.feed(reinterpret_cast<const std::uint8_t*>(head), sizeof head - 1);
    return parser.done();
  } catch (const std::logic_error&) {
    return false;
  }
}

// ---------------------------------------------------------------------------
// Reactor: requests started by one thread, completions collected by wait().

// Waits (in slices) until `count` completions are in, or 5 s pass.
std::vector<Reactor::Completion> collect(Reactor& reactor, std::size_t count) {
  std::vector<Reactor::Completion> done;
  const auto start = Clock::now();
  while (done.size() < count && seconds_since(start) < 5) reactor.wait(&done, 100);
  return done;
}

Reactor make_reactor(const Server& server) {
  return Reactor(server.endpoint(), BufferPool::create(1 << 20), http::kDefaultMaxResponseBodyBytes, 64);
}

void test_reactor_many_in_flight_and_reuse() {
  Server server(good_handler);
  Reactor reactor = make_reactor(server);
  std::vector<http::Request> requests;
  for (int i = 0; i < 32; ++i) requests.push_back(make_request("GET", "/big?n=" + std::to_string(1000 + i), server.endpoint()));
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 32; ++i) reactor.start(static_cast<std::uint64_t>(i), requests[i], Deadline::after(5), nullptr);
    CHECK(reactor.in_flight() <= 32);
    auto done = collect(reactor, 32);
    CHECK(done.size() == 32 && reactor.in_flight() == 0);
    std::vector<bool> seen(32, false);
    for (const auto& c : done) {
      CHECK(!c.error && c.token < 32 && !seen[c.token]);
      seen[c.token] = true;
      CHECK(c.response.head.status == 200 && body_text(c.response) == pattern(1000 + c.token));
    }
  }
  CHECK(server.accepts == 32 && server.requests == 96);  // kept alive: 32 connections for 3 rounds
}

void test_reactor_stall_times_out_and_others_complete() {
  Server server([](Server& s, int fd, int index) {
    if (index == 0) {
      s.idle_until_stopped();  // never answers
      return;
    }
    good_handler(s, fd, index);
  });
  Reactor reactor = make_reactor(server);
  const auto start = Clock::now();
  reactor.start(1, make_request("GET", "/", server.endpoint()), Deadline::after(0.3), nullptr);
  while (server.accepts < 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  reactor.start(2, make_request("GET", "/", server.endpoint()), Deadline::after(5), nullptr);
  auto done = collect(reactor, 2);
  CHECK(done.size() == 2);
  for (const auto& c : done) {
    if (c.token == 2) {
      CHECK(!c.error && body_text(c.response) == "ok");
    } else {
      const std::string message = expect_throw<TimeoutError>([&] { std::rethrow_exception(c.error); }, "stall");
      CHECK_CONTAINS(message, "no response from 127.0.0.1:");
      check_timely(seconds_since(start), 0.3);
    }
  }
  CHECK(reactor.in_flight() == 0);
}

void test_reactor_reset_mid_body_and_protocol_error() {
  Server server([](Server& s, int fd, int index) {
    std::string pending;
    WireRequest request;
    if (!read_request(s, fd, &pending, &request)) return;
    if (index == 0) {
      write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      reset(fd);
    } else {
      write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n");
    }
  });
  Reactor reactor = make_reactor(server);
  reactor.start(1, make_request("GET", "/", server.endpoint()), Deadline::after(5), nullptr);
  while (server.accepts < 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  reactor.start(2, make_request("GET", "/", server.endpoint()), Deadline::after(5), nullptr);
  auto done = collect(reactor, 2);
  CHECK(done.size() == 2);
  for (const auto& c : done) {
    CHECK(c.error);
    if (c.token == 1) {
      const std::string message = expect_throw<ConnectionError>([&] { std::rethrow_exception(c.error); }, "reset");
      CHECK_CONTAINS(message, "response bytes");
    } else {
      const std::string message = expect_throw<ProtocolError>([&] { std::rethrow_exception(c.error); }, "protocol");
      CHECK_CONTAINS(message, "(from 127.0.0.1:");
    }
  }
}

void test_reactor_check_failure_closes_the_connection() {
  struct Refuse final : ResponseCheck {
    void check(const Response&) override { throw ProtocolError("response id '7' does not answer request '1'"); }
  } refuse;
  Server server(good_handler);
  Reactor reactor = make_reactor(server);
  reactor.start(1, make_request("GET", "/", server.endpoint()), Deadline::after(5), &refuse);
  auto done = collect(reactor, 1);
  CHECK(done.size() == 1 && done[0].error);
  reactor.start(2, make_request("GET", "/", server.endpoint()), Deadline::after(5), nullptr);
  done = collect(reactor, 1);
  CHECK(done.size() == 1 && !done[0].error);
  CHECK(server.accepts == 2);  // the out-of-step connection was not reused
}

void test_reactor_refused_and_wake() {
  int port = 0;
  {
    Server gone(good_handler);
    port = gone.port();
  }
  Reactor reactor(Endpoint{"127.0.0.1", static_cast<std::uint16_t>(port)}, BufferPool::create(1 << 20),
                  http::kDefaultMaxResponseBodyBytes, 64);
  EXPECT_THROW(ConnectionError, reactor.start(1, make_request("GET", "/", Endpoint{"127.0.0.1", static_cast<std::uint16_t>(port)}),
                                              Deadline::after(1), nullptr));
  CHECK(reactor.in_flight() == 0);
  std::thread waker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    reactor.wake();
  });
  const auto start = Clock::now();
  std::vector<Reactor::Completion> done;
  reactor.wait(&done, 5000);
  waker.join();
  CHECK(done.empty() && seconds_since(start) < 2);
}

void test_reactor_threads_start_while_waiting() {
  Server server(good_handler);
  Reactor reactor = make_reactor(server);
  std::atomic<bool> stop{false};
  std::atomic<int> completed{0};
  std::thread waiter([&] {
    std::vector<Reactor::Completion> done;
    while (!stop) {
      done.clear();
      reactor.wait(&done, 50);
      for (const auto& c : done) {
        CHECK(!c.error && body_text(c.response) == pattern(100 + c.token % 50));
        ++completed;
      }
    }
  });
  std::vector<std::thread> senders;
  for (int t = 0; t < 4; ++t) {
    senders.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const std::uint64_t token = static_cast<std::uint64_t>(t * 1000 + i);
        reactor.start(token, make_request("GET", "/big?n=" + std::to_string(100 + token % 50), server.endpoint()),
                      Deadline::after(5), nullptr);
        while (reactor.in_flight() > 16) std::this_thread::yield();
      }
    });
  }
  for (auto& s : senders) s.join();
  const auto start = Clock::now();
  while (completed < 800 && seconds_since(start) < 5) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  stop = true;
  waiter.join();
  CHECK(completed == 800);
}

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  ::signal(SIGPIPE, SIG_IGN);  // the test servers write to closed sockets on purpose
  ::alarm(300);                // a deadlock fails the run instead of hanging it
  struct Test {
    const char* name;
    void (*run)();
    bool needs_parser;
  };
  const Test tests[] = {
      {"deadline", test_deadline, false},
      {"authority", test_authority, false},
      {"connection_refused", test_connection_refused, false},
      {"connection_unresolvable", test_connection_unresolvable, false},
      {"connection_localhost_name", test_connection_localhost_name, false},
      {"connection_ipv6", test_connection_ipv6, false},
      {"connect_timeout", test_connect_timeout, false},
      {"send_receive_keepalive", test_send_receive_keepalive, false},
      {"send_many_segments", test_send_many_segments, false},
      {"send_timeout", test_send_timeout, false},
      {"send_expired_deadline", test_send_expired_deadline, false},
      {"send_reset", test_send_reset, false},
      {"receive_timeout", test_receive_timeout, false},
      {"receive_reset_and_eof", test_receive_reset_and_eof, false},
      {"reusable", test_reusable, false},
      {"client_keepalive_reuse", test_client_keepalive_reuse, true},
      {"client_connection_close", test_client_connection_close, true},
      {"client_bodies", test_client_bodies, true},
      {"client_stall_timeout", test_client_stall_timeout, true},
      {"client_stall_mid_body", test_client_stall_mid_body, true},
      {"client_close_mid_body", test_client_close_mid_body, true},
      {"client_partial_head", test_client_partial_head, true},
      {"client_reset_fresh_not_retried", test_client_reset_fresh_not_retried, true},
      {"client_reset_mid_body", test_client_reset_mid_body, true},
      {"client_protocol_error", test_client_protocol_error, true},
      {"client_odd_framings", test_client_odd_framings, true},
      {"client_refused", test_client_refused, true},
      {"client_send_timeout", test_client_send_timeout, true},
      {"client_early_error_response", test_client_early_error_response, true},
      {"client_leftover_bytes", test_client_leftover_bytes, true},
      {"client_closed_while_idle", test_client_closed_while_idle, true},
      {"client_retry_idempotent", test_client_retry_idempotent, true},
      {"client_retry_not_post", test_client_retry_not_post, true},
      {"client_retry_after_send_reset", test_client_retry_after_send_reset, true},
      {"client_threads", test_client_threads, true},
      {"client_close", test_client_close, true},
      {"client_max_idle", test_client_max_idle, true},
      {"reactor_many_in_flight_and_reuse", test_reactor_many_in_flight_and_reuse, true},
      {"reactor_stall_times_out_and_others_complete", test_reactor_stall_times_out_and_others_complete, true},
      {"reactor_reset_mid_body_and_protocol_error", test_reactor_reset_mid_body_and_protocol_error, true},
      {"reactor_check_failure_closes_the_connection", test_reactor_check_failure_closes_the_connection, true},
      {"reactor_refused_and_wake", test_reactor_refused_and_wake, true},
      {"reactor_threads_start_while_waiting", test_reactor_threads_start_while_waiting, true},
  };
  const bool have_parser = parser_available();
  int ran = 0;
  int skipped = 0;
  for (const Test& test : tests) {
    if (argc > 1 && std::strstr(test.name, argv[1]) == nullptr) continue;
    if (test.needs_parser && !have_parser) {
      std::printf("SKIP %s (http::ResponseParser is a stub)\n", test.name);
      ++skipped;
      continue;
    }
    const auto start = Clock::now();
    try {
      test.run();
    } catch (const std::exception& e) {
      std::printf("FAIL %s: uncaught %s\n", test.name, e.what());
      return 1;
    }
    std::printf("ok   %s (%.3f s)\n", test.name, seconds_since(start));
    ++ran;
  }
  std::printf("%d passed, %d skipped\n", ran, skipped);
  return 0;
}
