// Sans-I/O HTTP/1.1 framing: building requests as a head plus a list of
// caller-owned segments (tensors are never concatenated), and a response
// parser that is fed bytes and never touches a socket. The blocking C++
// transport, the Python TLS driver and a future asyncio driver share it.
//
// Copies: request segments go to the socket as they are (0 copies). A
// Content-Length body is received straight into its final buffer through
// body_window() (0 copies beyond the kernel's); only bytes fed through feed()
// (head leftovers, chunked bodies) are copied once into that buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/buffer.hpp"
#include "core/infer.hpp"

namespace tritonfast::http {

// Triton parses Content-Length and Inference-Header-Content-Length with
// std::stoi: a request body must stay below 2 GiB.
constexpr std::uint64_t kMaxRequestBodyBytes = 0x7FFFFFFFull;
// Status line plus headers of a response; Triton's are a few hundred bytes.
constexpr std::size_t kMaxHeadBytes = 64 * 1024;
constexpr std::size_t kMaxHeaderCount = 128;
// A chunk-size line (hex size plus extensions).
constexpr std::size_t kMaxChunkLineBytes = 1024;
// Largest response body accepted by default: its buffer is reserved up front
// from Content-Length, so a bound keeps a lying server from asking for more.
constexpr std::uint64_t kDefaultMaxResponseBodyBytes = 16ull << 30;

struct Header {
  std::string name;
  std::string value;
};

// Throws EncodeError naming the header when its name is not an HTTP token or
// its value holds CR, LF or NUL (header injection), or when it names a header
// the framing sets itself (Host, Content-Length, Transfer-Encoding,
// Inference-Header-Content-Length, Connection).
void validate_header(const Header& header);

struct Request {
  std::string head;               // request line, headers, blank line, and any inline body
  std::vector<Segment> segments;  // body bytes that follow the head, in order
  std::uint64_t size() const;     // head + segments
};

// A request with an optional inline body (JSON for management endpoints).
// `host` is the Host header value ("host:port").
Request build_request(std::string_view method, std::string_view target, std::string_view host,
                      const std::vector<Header>& headers, std::string_view body);

// POST target with the JSON inference header followed by every binary input's
// segments. Sends Inference-Header-Content-Length when any input is binary.
// EncodeError when the body would reach kMaxRequestBodyBytes.
Request build_infer_request(std::string_view target, std::string_view host,
                            const std::vector<Header>& headers, const InferRequest& request);

// build_infer_request for one layout (input names, datatypes, shapes and byte
// sizes; outputs; parameters; headers), rendered once: a client that sends the
// same layout again and again (the common case: one model, one shape) pays two
// appends and two integers per request instead of writing JSON. render() gives
// the bytes build_infer_request gives for the same request with that id.
class InferTemplate {
 public:
  // `layout`'s id is ignored; its inputs' segments give their byte sizes.
  // EncodeError as build_infer_request (bad header, body too large).
  InferTemplate(std::string_view target, std::string_view host, const std::vector<Header>& headers,
                const InferRequest& layout);

  // The request with id `id` whose binary inputs' bytes are `segments`, in input
  // order, `binary_bytes()` in all (std::logic_error otherwise).
  Request render(std::string_view id, std::vector<Segment> segments) const;
  // The same into `*out`, reusing its memory (a caller that renders request
  // after request allocates nothing once warm).
  void render_into(std::string_view id, const Segment* segments, std::size_t count,
                   Request* out) const;

  std::uint64_t binary_bytes() const { return binary_bytes_; }

 private:
  std::string request_line_;  // request line and Host
  std::string rest_of_head_;  // Content-Type, user headers, blank line
  std::string json_tail_;     // the JSON header after its opening brace (no id)
  std::uint64_t binary_bytes_ = 0;
  bool binary_ = false;
};

// "/v2/models/<model, percent-encoded>[/versions/<version>]" + suffix.
std::string model_target(std::string_view model, std::string_view version,
                         std::string_view suffix);

struct ResponseHead {
  int status = 0;
  std::string reason;
  std::vector<Header> headers;  // as received
  std::optional<std::uint64_t> content_length;
  bool chunked = false;
  bool keep_alive = true;  // false: "Connection: close" or HTTP/1.0 without keep-alive
  std::optional<std::uint64_t> inference_header_length;
  // Case-insensitive lookup; nullptr when absent.
  const std::string* find(std::string_view name) const;
};

// A complete body: `size` bytes at `data()`, inside `buffer` at `offset`.
struct Body {
  Buffer buffer;
  std::size_t offset = 0;
  std::size_t size = 0;
  const std::uint8_t* data() const { return buffer.data() + offset; }
};

class ResponseParser {
 public:
  // Body buffers come from `pool`; a body larger than max_body_bytes is refused
  // before anything is allocated.
  explicit ResponseParser(std::shared_ptr<BufferPool> pool,
                          std::uint64_t max_body_bytes = kDefaultMaxResponseBodyBytes);

  // Feeds received bytes. Returns how many belong to this response; it stops
  // at the end of the response (bytes past it are not consumed). Interim 1xx
  // responses are skipped. Throws ProtocolError on malformed input.
  std::size_t feed(const std::uint8_t* data, std::size_t size);

  // While inside a body (Content-Length, or read-until-close): memory the next
  // received bytes may be written to directly; {nullptr, 0} otherwise.
  std::pair<std::uint8_t*, std::size_t> body_window();
  // Declares that `n` bytes were written into body_window().
  void commit(std::size_t n);

  // The peer closed the connection. Completes a read-until-close body;
  // otherwise throws ConnectionError saying where the response stopped:
  // "server closed the connection before sending a response",
  // "... in the middle of the response head (N bytes received)",
  // "... after N of M body bytes".
  void finish();

  bool head_complete() const;
  bool done() const;
  const ResponseHead& head() const;  // valid once head_complete()
  // Moves the head out (valid once head_complete(); head() is empty after).
  ResponseHead take_head();
  // Bytes of this response received so far (head and body).
  std::uint64_t received() const;
  // Moves the finished body out (valid once done()). The body starts at an
  // offset chosen so that the first binary tensor after the inference header
  // (Inference-Header-Content-Length bytes in) is BufferPool::kAlignment-aligned.
  Body take_body();

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace tritonfast::http
