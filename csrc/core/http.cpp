// HTTP/1.1 request building and a sans-I/O response parser (RFC 9112).
//
// The parser is a state machine over bytes: feed() may be given a response
// whole, one byte at a time or in any split, and reaches the same result (the
// same error, at the same point) every way. Nothing read from the wire is
// trusted before it is checked: Content-Length against max_body_bytes before
// the buffer is allocated, chunk sizes against the limit before any byte is
// copied, and chunked / read-until-close bodies grow only with bytes that
// actually arrived.
#include "core/http.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "core/errors.hpp"

namespace tritonfast::http {
namespace {

// ------------------------------------------------------------ characters

inline char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t k = 0; k < a.size(); ++k) {
    if (lower(a[k]) != lower(b[k])) return false;
  }
  return true;
}

// RFC 9110 tchar, as a table: header names are checked on every response.
struct TcharTable {
  bool allowed[256] = {};
  constexpr TcharTable() {
    for (int c = '0'; c <= '9'; ++c) allowed[c] = true;
    for (int c = 'a'; c <= 'z'; ++c) allowed[c] = true;
    for (int c = 'A'; c <= 'Z'; ++c) allowed[c] = true;
    for (const char c : {'!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~'}) {
      allowed[static_cast<unsigned char>(c)] = true;
    }
  }
};
constexpr TcharTable kTchar;

bool is_tchar(unsigned char c) { return kTchar.allowed[c]; }

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (const char c : s) {
    if (!is_tchar(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

inline bool is_ows(char c) { return c == ' ' || c == '\t'; }

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

// Calls f(element) for each non-empty element of a comma-separated list.
template <typename F>
void for_each_element(std::string_view list, F f) {
  while (true) {
    const std::size_t comma = list.find(',');
    const std::string_view element = trim_ows(list.substr(0, comma));
    if (!element.empty()) f(element);
    if (comma == std::string_view::npos) return;
    list.remove_prefix(comma + 1);
  }
}

// A printable rendering of untrusted bytes for error messages (at most 64).
std::string printable(std::string_view s) {
  static const char digits[] = "0123456789ABCDEF";
  std::string out;
  const std::size_t n = std::min<std::size_t>(s.size(), 64);
  for (std::size_t k = 0; k < n; ++k) {
    const auto c = static_cast<unsigned char>(s[k]);
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(digits[c >> 4]);
      out.push_back(digits[c & 15]);
    }
  }
  if (s.size() > n) out += "...";
  return out;
}

// Decimal digits only (no sign, no spaces); false when empty, not digits or
// past uint64.
bool parse_decimal(std::string_view s, std::uint64_t* out) {
  if (s.empty()) return false;
  std::uint64_t v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return false;
    if (v > (std::numeric_limits<std::uint64_t>::max() - 9) / 10) {
      // Might still fit: check exactly.
      if (v > std::numeric_limits<std::uint64_t>::max() / 10) return false;
      const std::uint64_t d = static_cast<std::uint64_t>(c - '0');
      if (v * 10 > std::numeric_limits<std::uint64_t>::max() - d) return false;
      v = v * 10 + d;
      continue;
    }
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

void append_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// ------------------------------------------------------------ requests

void check_request_line(std::string_view method, std::string_view target, std::string_view host) {
  if (!is_token(method)) {
    throw EncodeError("request method '" + printable(method) + "' is not an HTTP token");
  }
  if (target.empty()) throw EncodeError("request target is empty");
  for (const char c : target) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7F) {
      throw EncodeError("request target '" + printable(target) +
                        "' holds a space, control or non-ASCII byte (percent-encode it)");
    }
  }
  if (host.empty()) throw EncodeError("Host is empty");
  for (const char c : host) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7F) {
      throw EncodeError("Host '" + printable(host) + "' holds a space or control byte");
    }
  }
}

bool method_has_body(std::string_view method) {
  return method == "POST" || method == "PUT" || method == "PATCH";
}

void start_head(std::string& head, std::string_view method, std::string_view target,
                std::string_view host) {
  check_request_line(method, target, host);
  head.append(method.data(), method.size());
  head.push_back(' ');
  head.append(target.data(), target.size());
  head += " HTTP/1.1\r\nHost: ";
  head.append(host.data(), host.size());
  head += "\r\n";
}

void add_header(std::string& head, std::string_view name, std::string_view value) {
  head.append(name.data(), name.size());
  head += ": ";
  head.append(value.data(), value.size());
  head += "\r\n";
}

void add_user_headers(std::string& head, const std::vector<Header>& headers) {
  for (const auto& h : headers) {
    validate_header(h);
    add_header(head, h.name, h.value);
  }
}

// An /infer head after its framing headers: Content-Type (unless the caller
// gives one), the caller's headers, the blank line.
void add_end_of_infer_head(std::string& head, const std::vector<Header>& headers, bool binary) {
  bool user_content_type = false;
  for (const auto& h : headers) {
    if (iequals(h.name, "Content-Type")) user_content_type = true;
  }
  if (!user_content_type) {
    head += binary ? "Content-Type: application/octet-stream\r\n"
                   : "Content-Type: application/json\r\n";
  }
  add_user_headers(head, headers);
  head += "\r\n";
}

void check_body_size(std::uint64_t size) {
  if (size >= kMaxRequestBodyBytes) {
    throw EncodeError("request body of " + std::to_string(size) +
                      " bytes reaches Triton's limit of " + std::to_string(kMaxRequestBodyBytes) +
                      " bytes (the server parses Content-Length as a 32-bit integer)");
  }
}

}  // namespace

void validate_header(const Header& header) {
  if (!is_token(header.name)) {
    throw EncodeError("header name '" + printable(header.name) + "' is not an HTTP token");
  }
  for (const char c : header.value) {
    if (c == '\r' || c == '\n' || c == '\0') {
      throw EncodeError("header '" + header.name +
                        "': value holds CR, LF or NUL, which would split the request");
    }
  }
  static const char* const kFramingHeaders[] = {"Host", "Content-Length", "Transfer-Encoding",
                                                "Inference-Header-Content-Length", "Connection"};
  for (const char* framing : kFramingHeaders) {
    if (iequals(header.name, framing)) {
      throw EncodeError("header '" + header.name +
                        "' is set by tritonfast's HTTP framing and cannot be given");
    }
  }
}

std::uint64_t Request::size() const {
  std::uint64_t total = head.size();
  for (const auto& s : segments) total += s.size;
  return total;
}

Request build_request(std::string_view method, std::string_view target, std::string_view host,
                      const std::vector<Header>& headers, std::string_view body) {
  check_body_size(body.size());
  Request request;
  std::string& head = request.head;
  head.reserve(128 + target.size() + body.size());
  start_head(head, method, target, host);
  if (!body.empty() || method_has_body(method)) {
    head += "Content-Length: ";
    append_uint(head, body.size());
    head += "\r\n";
  }
  add_user_headers(head, headers);
  head += "\r\n";
  head.append(body.data(), body.size());
  return request;
}

Request build_infer_request(std::string_view target, std::string_view host,
                            const std::vector<Header>& headers, const InferRequest& infer) {
  const std::string json = write_infer_header(infer);
  Request request;
  std::uint64_t body_size = json.size();
  bool binary = false;
  for (const auto& input : infer.inputs) {
    if (input.shared_memory) continue;
    binary = true;  // carries binary_data_size, even when it is 0
    for (const auto& segment : input.segments) {
      body_size += segment.size;
      if (segment.size > 0) request.segments.push_back(segment);
    }
  }
  check_body_size(body_size);

  std::string& head = request.head;
  head.reserve(192 + target.size() + json.size());
  start_head(head, "POST", target, host);
  head += "Content-Length: ";
  append_uint(head, body_size);
  head += "\r\n";
  if (binary) {
    head += "Inference-Header-Content-Length: ";
    append_uint(head, json.size());
    head += "\r\n";
  }
  add_end_of_infer_head(head, headers, binary);
  head += json;
  return request;
}

InferTemplate::InferTemplate(std::string_view target, std::string_view host,
                             const std::vector<Header>& headers, const InferRequest& layout) {
  InferRequest without_id = layout;
  without_id.id.clear();
  const std::string json = write_infer_header(without_id);
  json_tail_ = json.substr(1);  // after '{'
  for (const auto& input : layout.inputs) {
    if (input.shared_memory) continue;
    binary_ = true;
    for (const auto& segment : input.segments) binary_bytes_ += segment.size;
  }
  check_body_size(json.size() + binary_bytes_);
  start_head(request_line_, "POST", target, host);
  add_end_of_infer_head(rest_of_head_, headers, binary_);
}

Request InferTemplate::render(std::string_view id, std::vector<Segment> segments) const {
  Request request;
  render_into(id, segments.data(), segments.size(), &request);
  return request;
}

void InferTemplate::render_into(std::string_view id, const Segment* segments, std::size_t count,
                                Request* out) const {
  std::uint64_t given = 0;
  for (std::size_t k = 0; k < count; ++k) given += segments[k].size;
  if (given != binary_bytes_) {
    throw std::logic_error("InferTemplate::render: " + std::to_string(given) +
                           " tensor bytes given for a layout of " + std::to_string(binary_bytes_));
  }
  std::string id_member;
  if (!id.empty()) {
    id_member = "\"id\":";
    json::write_string(id_member, id);
    id_member.push_back(',');
  }
  const std::uint64_t json_size = 1 + id_member.size() + json_tail_.size();
  const std::uint64_t body_size = json_size + binary_bytes_;
  check_body_size(body_size);

  std::string& head = out->head;
  head.clear();
  head.reserve(request_line_.size() + rest_of_head_.size() + json_size + 80);
  head += request_line_;
  head += "Content-Length: ";
  append_uint(head, body_size);
  head += "\r\n";
  if (binary_) {
    head += "Inference-Header-Content-Length: ";
    append_uint(head, json_size);
    head += "\r\n";
  }
  head += rest_of_head_;
  head.push_back('{');
  head += id_member;
  head += json_tail_;
  out->segments.clear();
  for (std::size_t k = 0; k < count; ++k) {
    if (segments[k].size > 0) out->segments.push_back(segments[k]);
  }
}

std::string model_target(std::string_view model, std::string_view version,
                         std::string_view suffix) {
  static const char digits[] = "0123456789ABCDEF";
  auto encode = [](std::string& out, std::string_view s) {
    for (const char c : s) {
      const auto u = static_cast<unsigned char>(c);
      if ((u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') ||
          u == '-' || u == '.' || u == '_' || u == '~') {
        out.push_back(c);
      } else {
        out.push_back('%');
        out.push_back(digits[u >> 4]);
        out.push_back(digits[u & 15]);
      }
    }
  };
  std::string target = "/v2/models/";
  encode(target, model);
  if (!version.empty()) {
    target += "/versions/";
    encode(target, version);
  }
  target.append(suffix.data(), suffix.size());
  return target;
}

const std::string* ResponseHead::find(std::string_view name) const {
  for (const auto& h : headers) {
    if (iequals(h.name, name)) return &h.value;
  }
  return nullptr;
}

// ------------------------------------------------------------ response parser

namespace {

// Smallest buffer a chunked or read-until-close body starts with; it doubles
// from there (one copy per doubling, so each byte is copied about once more
// on average).
constexpr std::size_t kMinGrowBytes = 16 * 1024;
// Header fields reserved for on the first one: Triton sends 3-5.
constexpr std::size_t kTypicalHeaderCount = 8;

enum class Phase {
  kHead,          // status line and header fields (interim 1xx heads too)
  kBody,          // Content-Length body
  kChunkSize,     // chunk-size line
  kChunkData,     // chunk data
  kChunkDataEnd,  // the CRLF after chunk data
  kTrailers,      // trailer fields after the last chunk, up to the blank line
  kUntilClose,    // no length: the body ends when the server closes
  kDone,
};

}  // namespace

struct ResponseParser::State {
  std::shared_ptr<BufferPool> pool;
  std::uint64_t max_body = 0;

  Phase phase = Phase::kHead;
  bool head_complete = false;
  ResponseHead head;
  bool status_seen = false;  // the current head's status line was parsed
  bool http10 = false;
  std::size_t head_bytes = 0;  // bytes of the current head's complete lines
  std::string line;            // the line being read (head, chunk-size or trailer)
  std::size_t trailer_bytes = 0;
  std::size_t trailer_count = 0;
  std::uint64_t received = 0;

  // Body bytes live at buffer.data() + lead, `got` of them so far.
  Buffer buffer;
  std::size_t lead = 0;
  std::uint64_t got = 0;
  std::uint64_t body_length = 0;  // kBody: the Content-Length
  std::uint64_t chunk_left = 0;   // kChunkData
  bool chunk_cr = false;          // kChunkDataEnd: CR seen, LF expected

  std::string failed;  // set once feed() threw: the parser stays failed

  [[noreturn]] void fail(const std::string& message) {
    failed = message;
    throw ProtocolError(message);
  }

  std::uint64_t capacity() const {
    return buffer.data() ? buffer.capacity() - lead : 0;
  }

  // Makes room for `need` body bytes (geometric growth, copying what is there).
  void reserve(std::uint64_t need, std::uint64_t cap_limit) {
    const std::uint64_t cap = capacity();
    if (need <= cap) return;
    std::uint64_t grown = std::max<std::uint64_t>({need, cap * 2, kMinGrowBytes});
    grown = std::max(need, std::min(grown, cap_limit));
    if (grown > std::numeric_limits<std::size_t>::max() - lead) {
      fail("response body of " + std::to_string(grown) + " bytes does not fit in memory");
    }
    Buffer bigger = pool->acquire(lead + static_cast<std::size_t>(grown));
    if (got > 0) std::memcpy(bigger.data() + lead, buffer.data() + lead, got);
    buffer = std::move(bigger);
  }

  // One more than the body limit, for read-until-close: a window that reaches
  // past the limit lets finish() accept a body of exactly max_body bytes.
  std::uint64_t limit_plus_one() const {
    return max_body == std::numeric_limits<std::uint64_t>::max() ? max_body : max_body + 1;
  }

  [[noreturn]] void body_too_large() {
    fail("response body exceeds the " + std::to_string(max_body) +
         "-byte limit (raise it with the client option max_response_body_bytes)");
  }

  std::size_t feed(const std::uint8_t* data, std::size_t size);
  std::size_t feed_line(const std::uint8_t* data, std::size_t size, std::size_t budget,
                        const char* limit_message, bool* complete);
  void head_line(std::string_view line);
  void status_line(std::string_view line);
  void header_line(std::string_view line);
  void end_of_head();
  void chunk_size_line(std::string_view line);
  void append_body(const std::uint8_t* data, std::size_t n);
};

// Reads into `line` up to and including an LF. A line may take at most
// `budget` bytes, its terminator included. Returns bytes consumed; *complete
// is set when the LF was reached, and `line` then holds the line without its
// terminator (CRLF, or a bare LF as RFC 9112 section 2.2 allows).
std::size_t ResponseParser::State::feed_line(const std::uint8_t* data, std::size_t size,
                                             std::size_t budget, const char* limit_message,
                                             bool* complete) {
  const void* lf = std::memchr(data, '\n', size);
  const std::size_t take =
      lf ? static_cast<std::size_t>(static_cast<const std::uint8_t*>(lf) - data) + 1 : size;
  if (line.size() + take > budget) fail(limit_message);
  line.append(reinterpret_cast<const char*>(data), lf ? take - 1 : take);
  *complete = lf != nullptr;
  if (lf) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find('\r') != std::string::npos) fail("bare CR inside a line of the response");
  }
  return take;
}

std::size_t ResponseParser::State::feed(const std::uint8_t* data, std::size_t size) {
  std::size_t used = 0;
  try {
    while (used < size && phase != Phase::kDone) {
      const std::uint8_t* p = data + used;
      const std::size_t n = size - used;
      switch (phase) {
        case Phase::kHead: {
          static const std::string kLimit =
              "response head exceeds " + std::to_string(kMaxHeadBytes) + " bytes (kMaxHeadBytes)";
          if (line.empty()) {
            // A whole line in this buffer (the usual case): handled where it is,
            // not copied. The same checks, in the same order, as feed_line.
            const std::size_t budget = kMaxHeadBytes - head_bytes;
            const void* lf = std::memchr(p, '\n', n);
            if (lf != nullptr) {
              const auto take = static_cast<std::size_t>(static_cast<const std::uint8_t*>(lf) - p) + 1;
              if (take > budget) fail(kLimit);
              std::string_view current(reinterpret_cast<const char*>(p), take - 1);
              if (!current.empty() && current.back() == '\r') current.remove_suffix(1);
              if (current.find('\r') != std::string_view::npos) {
                fail("bare CR inside a line of the response");
              }
              used += take;
              head_bytes += take;
              head_line(current);
              break;
            }
          }
          bool complete = false;
          const std::size_t before = line.size();
          const std::size_t take =
              feed_line(p, n, kMaxHeadBytes - head_bytes, kLimit.c_str(), &complete);
          used += take;
          if (complete) {
            head_bytes += before + take;  // the whole line, its terminator included
            std::string current;
            current.swap(line);  // `line` is empty again when head_line runs
            head_line(current);
          }
          break;
        }
        case Phase::kBody: {
          const std::size_t take =
              static_cast<std::size_t>(std::min<std::uint64_t>(n, body_length - got));
          std::memcpy(buffer.data() + lead + got, p, take);
          got += take;
          used += take;
          if (got == body_length) phase = Phase::kDone;
          break;
        }
        case Phase::kUntilClose: {
          if (n > max_body - got) body_too_large();
          reserve(got + n, limit_plus_one());
          append_body(p, n);
          used += n;
          break;
        }
        case Phase::kChunkSize: {
          static const std::string kLimit = "chunk-size line exceeds " +
                                            std::to_string(kMaxChunkLineBytes) +
                                            " bytes (kMaxChunkLineBytes)";
          bool complete = false;
          used += feed_line(p, n, kMaxChunkLineBytes, kLimit.c_str(), &complete);
          if (complete) {
            const std::string current = std::move(line);
            line.clear();
            chunk_size_line(current);
          }
          break;
        }
        case Phase::kChunkData: {
          const std::size_t take =
              static_cast<std::size_t>(std::min<std::uint64_t>(n, chunk_left));
          reserve(got + take, max_body);
          append_body(p, take);
          chunk_left -= take;
          used += take;
          if (chunk_left == 0) {
            phase = Phase::kChunkDataEnd;
            chunk_cr = false;
          }
          break;
        }
        case Phase::kChunkDataEnd: {
          const std::uint8_t c = *p;
          if (!chunk_cr && c == '\r') {
            chunk_cr = true;
            used += 1;
          } else if (c == '\n') {
            used += 1;
            phase = Phase::kChunkSize;
          } else {
            fail("chunk data is not followed by CRLF (" + std::to_string(got) +
                 " body bytes in)");
          }
          break;
        }
        case Phase::kTrailers: {
          static const std::string kLimit = "chunked trailer section exceeds " +
                                            std::to_string(kMaxHeadBytes) +
                                            " bytes (kMaxHeadBytes)";
          bool complete = false;
          const std::size_t before = line.size();
          const std::size_t take =
              feed_line(p, n, kMaxHeadBytes - trailer_bytes, kLimit.c_str(), &complete);
          used += take;
          if (complete) {
            trailer_bytes += before + take;
            if (line.empty()) {
              phase = Phase::kDone;
            } else if (++trailer_count > kMaxHeaderCount) {
              fail("chunked trailer section has more than " + std::to_string(kMaxHeaderCount) +
                   " fields (kMaxHeaderCount)");
            }
            // Trailer fields are skipped: Triton sends none, and none of them
            // could change how the body is read.
            line.clear();
          }
          break;
        }
        case Phase::kDone:
          break;
      }
    }
  } catch (...) {
    received += used;
    throw;
  }
  received += used;
  return used;
}

void ResponseParser::State::append_body(const std::uint8_t* data, std::size_t n) {
  if (n == 0) return;
  std::memcpy(buffer.data() + lead + got, data, n);
  got += n;
}

void ResponseParser::State::head_line(std::string_view current) {
  if (!status_seen) {
    status_line(current);
    status_seen = true;
    return;
  }
  if (current.empty()) {
    end_of_head();
    return;
  }
  header_line(current);
}

void ResponseParser::State::status_line(std::string_view s) {
  // HTTP-version SP 3DIGIT SP reason-phrase; the reason (and the SP before
  // it) may be missing.
  const auto bad = [&]() {
    fail("malformed status line '" + printable(s) + "'");
  };
  if (s.size() < 12 || s.compare(0, 7, "HTTP/1.") != 0 || s[7] < '0' || s[7] > '9' ||
      s[8] != ' ') {
    bad();
  }
  http10 = s[7] == '0';
  int status = 0;
  for (std::size_t k = 9; k < 12; ++k) {
    if (s[k] < '0' || s[k] > '9') bad();
    status = status * 10 + (s[k] - '0');
  }
  if (status < 100) bad();
  std::string_view reason;
  if (s.size() > 12) {
    if (s[12] != ' ') bad();
    reason = s.substr(13);
  }
  for (const char c : reason) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7F) bad();
  }
  head.status = status;
  head.reason = std::string(reason);
}

void ResponseParser::State::header_line(std::string_view s) {
  if (is_ows(s.front())) {
    fail("obsolete line folding (obs-fold) in response header after '" +
         printable(head.headers.empty() ? std::string_view() : head.headers.back().name) + "'");
  }
  const std::size_t colon = s.find(':');
  if (colon == std::string_view::npos) {
    fail("response header line '" + printable(s) + "' has no ':'");
  }
  const std::string_view name = s.substr(0, colon);
  if (!is_token(name)) fail("response header name '" + printable(name) + "' is not an HTTP token");
  const std::string_view value = trim_ows(s.substr(colon + 1));
  for (const char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7F) {
      fail("response header '" + std::string(name) + "' holds a control character");
    }
  }
  if (head.headers.size() >= kMaxHeaderCount) {
    fail("response has more than " + std::to_string(kMaxHeaderCount) +
         " header fields (kMaxHeaderCount)");
  }
  if (head.headers.empty()) head.headers.reserve(kTypicalHeaderCount);
  head.headers.push_back(Header{std::string(name), std::string(value)});
}

void ResponseParser::State::end_of_head() {
  const int status = head.status;
  if (status >= 100 && status < 200) {
    if (status == 101) fail("unexpected 101 Switching Protocols (no upgrade was requested)");
    // Interim response (100 Continue, 103 Early Hints): skip it, the final
    // response follows.
    head = ResponseHead();
    status_seen = false;
    head_bytes = 0;
    return;
  }

  bool close = false, keep_alive_token = false;
  std::optional<std::uint64_t> content_length;
  std::optional<std::uint64_t> header_length;
  std::vector<std::string_view> codings;
  bool has_transfer_encoding = false;
  for (const auto& h : head.headers) {
    if (iequals(h.name, "Content-Length")) {
      // "42" or a list of identical values ("42, 42", RFC 9110 section 8.6).
      bool any = false;
      for_each_element(h.value, [&](std::string_view element) {
        std::uint64_t v = 0;
        if (!parse_decimal(element, &v)) {
          fail("invalid Content-Length '" + printable(h.value) + "'");
        }
        if (content_length && *content_length != v) {
          fail("conflicting Content-Length values " + std::to_string(*content_length) +
               " and " + std::to_string(v));
        }
        content_length = v;
        any = true;
      });
      if (!any) fail("invalid Content-Length '" + printable(h.value) + "'");
    } else if (iequals(h.name, "Transfer-Encoding")) {
      has_transfer_encoding = true;
      for_each_element(h.value, [&](std::string_view element) { codings.push_back(element); });
    } else if (iequals(h.name, "Connection")) {
      for_each_element(h.value, [&](std::string_view element) {
        if (iequals(element, "close")) close = true;
        if (iequals(element, "keep-alive")) keep_alive_token = true;
      });
    } else if (iequals(h.name, "Inference-Header-Content-Length")) {
      std::uint64_t v = 0;
      if (!parse_decimal(trim_ows(h.value), &v)) {
        fail("invalid Inference-Header-Content-Length '" + printable(h.value) + "'");
      }
      if (header_length && *header_length != v) {
        fail("conflicting Inference-Header-Content-Length values " +
             std::to_string(*header_length) + " and " + std::to_string(v));
      }
      header_length = v;
    }
  }
  head.inference_header_length = header_length;
  head.keep_alive = http10 ? (keep_alive_token && !close) : !close;
  head_complete = true;

  // The first binary tensor starts header_length bytes into the body: put it
  // on a kAlignment boundary of the (kAlignment-aligned) buffer.
  if (header_length) {
    const std::size_t a = BufferPool::kAlignment;
    lead = static_cast<std::size_t>((a - *header_length % a) % a);
  }

  if (status == 204 || status == 304) {
    // No body, whatever the headers say (RFC 9112 section 6.3).
    head.content_length = content_length;
    phase = Phase::kDone;
    return;
  }
  if (has_transfer_encoding) {
    if (content_length) fail("response has both Transfer-Encoding and Content-Length");
    if (codings.empty()) fail("empty Transfer-Encoding");
    for (std::size_t k = 0; k < codings.size(); ++k) {
      const bool last = k + 1 == codings.size();
      if (last && iequals(codings[k], "chunked")) continue;
      if (iequals(codings[k], "chunked")) fail("Transfer-Encoding has 'chunked' before its end");
      fail("unsupported Transfer-Encoding '" + printable(codings[k]) + "'");
    }
    head.chunked = true;
    phase = Phase::kChunkSize;
    return;
  }
  if (content_length) {
    head.content_length = content_length;
    if (*content_length > max_body) {
      fail("Content-Length " + std::to_string(*content_length) + " exceeds the " +
           std::to_string(max_body) + "-byte limit (raise it with the client option max_response_body_bytes)");
    }
    if (*content_length > std::numeric_limits<std::size_t>::max() - lead) {
      fail("Content-Length " + std::to_string(*content_length) + " does not fit in memory");
    }
    body_length = *content_length;
    if (body_length == 0) {
      phase = Phase::kDone;
      return;
    }
    buffer = pool->acquire(lead + static_cast<std::size_t>(body_length));
    phase = Phase::kBody;
    return;
  }
  // Neither: the body runs until the server closes the connection.
  head.keep_alive = false;
  phase = Phase::kUntilClose;
}

void ResponseParser::State::chunk_size_line(std::string_view s) {
  // chunk-size [ BWS ";" chunk-ext ] : hex digits, then extensions (ignored).
  std::uint64_t size = 0;
  std::size_t k = 0;
  while (k < s.size()) {
    const char c = s[k];
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else break;
    if (size > (std::numeric_limits<std::uint64_t>::max() >> 4)) {
      fail("chunk size '" + printable(s) + "' overflows 64 bits");
    }
    size = (size << 4) | static_cast<std::uint64_t>(d);
    ++k;
  }
  if (k == 0) fail("malformed chunk-size line '" + printable(s) + "'");
  std::size_t e = k;
  while (e < s.size() && is_ows(s[e])) ++e;
  if (e < s.size()) {
    if (s[e] != ';') fail("malformed chunk-size line '" + printable(s) + "'");
    for (std::size_t j = e; j < s.size(); ++j) {
      const auto u = static_cast<unsigned char>(s[j]);
      if ((u < 0x20 && s[j] != '\t') || u == 0x7F) {
        fail("chunk extension holds a control character");
      }
    }
  }
  if (size == 0) {
    phase = Phase::kTrailers;
    return;
  }
  if (size > max_body - got) {
    fail("chunked response body of at least " + std::to_string(got) + " + " +
         std::to_string(size) + " bytes exceeds the " + std::to_string(max_body) +
         "-byte limit (raise it with the client option max_response_body_bytes)");
  }
  chunk_left = size;
  phase = Phase::kChunkData;
}

ResponseParser::ResponseParser(std::shared_ptr<BufferPool> pool, std::uint64_t max_body_bytes)
    : state_(std::make_shared<State>()) {
  state_->pool = std::move(pool);
  state_->max_body = max_body_bytes;
}

std::size_t ResponseParser::feed(const std::uint8_t* data, std::size_t size) {
  State& s = *state_;
  if (!s.failed.empty()) throw ProtocolError(s.failed);
  if (size == 0) return 0;
  return s.feed(data, size);
}

std::pair<std::uint8_t*, std::size_t> ResponseParser::body_window() {
  State& s = *state_;
  if (!s.failed.empty()) throw ProtocolError(s.failed);
  if (s.phase == Phase::kBody) {
    return {s.buffer.data() + s.lead + s.got,
            static_cast<std::size_t>(s.body_length - s.got)};
  }
  if (s.phase == Phase::kUntilClose) {
    const std::uint64_t limit = s.limit_plus_one();
    if (s.got >= limit) return {nullptr, 0};
    s.reserve(s.got + 1, limit);
    const std::uint64_t room = std::min(s.capacity(), limit) - s.got;
    return {s.buffer.data() + s.lead + s.got, static_cast<std::size_t>(room)};
  }
  return {nullptr, 0};
}

void ResponseParser::commit(std::size_t n) {
  State& s = *state_;
  if (n == 0) return;
  if (!s.failed.empty()) throw ProtocolError(s.failed);
  if (s.phase == Phase::kBody) {
    if (n > s.body_length - s.got) {
      throw std::logic_error("ResponseParser::commit() past the body window");
    }
    s.got += n;
    s.received += n;
    if (s.got == s.body_length) s.phase = Phase::kDone;
    return;
  }
  if (s.phase == Phase::kUntilClose) {
    if (n > s.capacity() - s.got) {
      throw std::logic_error("ResponseParser::commit() past the body window");
    }
    s.got += n;
    s.received += n;
    if (s.got > s.max_body) s.body_too_large();
    return;
  }
  throw std::logic_error("ResponseParser::commit() outside a body window");
}

void ResponseParser::finish() {
  State& s = *state_;
  if (!s.failed.empty()) throw ProtocolError(s.failed);
  switch (s.phase) {
    case Phase::kDone:
      return;
    case Phase::kUntilClose:
      s.phase = Phase::kDone;
      return;
    case Phase::kHead:
      if (s.received == 0) {
        throw ConnectionError("server closed the connection before sending a response");
      }
      throw ConnectionError(
          "server closed the connection in the middle of the response head (" +
          std::to_string(s.received) + " bytes received)");
    case Phase::kBody:
      throw ConnectionError("server closed the connection after " + std::to_string(s.got) +
                            " of " + std::to_string(s.body_length) + " body bytes");
    case Phase::kChunkSize:
    case Phase::kChunkData:
    case Phase::kChunkDataEnd:
    case Phase::kTrailers:
      throw ConnectionError(
          "server closed the connection in the middle of a chunked body (" +
          std::to_string(s.got) + " body bytes received)");
  }
}

bool ResponseParser::head_complete() const { return state_->head_complete; }

bool ResponseParser::done() const { return state_->phase == Phase::kDone; }

const ResponseHead& ResponseParser::head() const { return state_->head; }

std::uint64_t ResponseParser::received() const { return state_->received; }

ResponseHead ResponseParser::take_head() {
  if (!state_->head_complete) {
    throw std::logic_error("ResponseParser::take_head() before the head is complete");
  }
  return std::move(state_->head);
}

Body ResponseParser::take_body() {
  State& s = *state_;
  if (s.phase != Phase::kDone) {
    throw std::logic_error("ResponseParser::take_body() before the response is complete");
  }
  Body body;
  body.size = static_cast<std::size_t>(s.got);
  if (s.buffer.data()) {
    body.offset = s.lead;
    body.buffer = std::move(s.buffer);
  }
  s.got = 0;
  return body;
}

}  // namespace tritonfast::http
