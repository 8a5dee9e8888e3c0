// Coverage-guided fuzz target for every parser that reads bytes off the network:
// the HTTP/1.1 response framing, the inference response body (JSON header,
// binary spans, JSON-encoded outputs, the layout cache), the JSON reader, the
// BYTES wire decoder and Triton's error bodies.
//
// Each input is fed, as it is, to all of them. Errors the parsers report
// (every tritonfast error derives from std::exception) are the expected answer
// to malformed input and are ignored; a crash, a sanitizer report, a hang, an
// exception of any other type or a broken documented invariant (checked here,
// reported through abort()) is a bug.
//
// With libFuzzer (clang):
//   clang++ -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -I csrc
//       csrc/fuzz/fuzz_response.cpp csrc/core/*.cpp -ldl -pthread -o fuzz_response
//   ./fuzz_response -max_total_time=60 CORPUS_DIR
// Without it (any compiler): add -DTRITONFAST_FUZZ_STANDALONE (and drop
// "fuzzer" from -fsanitize); main() then runs every file of the directories
// (or files) given, then TRITONFAST_FUZZ_RUNS (default 20000) deterministic
// mutations of them. A crashing input is written to TRITONFAST_FUZZ_ARTIFACT
// (default ./crash-standalone); run the binary on that file to reproduce.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/buffer.hpp"
#include "core/bytes_codec.hpp"
#include "core/errors.hpp"
#include "core/http.hpp"
#include "core/infer.hpp"
#include "core/json.hpp"

namespace {

using namespace tritonfast;

constexpr std::uint64_t kMaxBodyBytes = 1 << 20;

// A documented invariant does not hold: report it the way a sanitizer would.
[[noreturn]] void invariant_broken(const char* what) {
  std::fprintf(stderr, "==fuzz_response== INVARIANT BROKEN: %s\n", what);
  std::fflush(stderr);
  std::abort();
}
#define FUZZ_CHECK(cond)                          \
  do {                                            \
    if (!(cond)) invariant_broken(#cond);         \
  } while (0)

// Reads every byte of [data, data + size) so that AddressSanitizer sees a span
// that is not what it claims to be.
std::uint8_t touch(const std::uint8_t* data, std::size_t size) {
  std::uint8_t x = 0;
  for (std::size_t k = 0; k < size; ++k) x ^= data[k];
  return x;
}

volatile std::uint64_t g_sink = 0;

// Split points: a small xorshift seeded by the input's first byte (and its
// length, so that inputs sharing the same first byte, as every HTTP response
// does, still split differently).
struct Splitter {
  std::uint64_t state;
  explicit Splitter(const std::uint8_t* data, std::size_t size)
      : state((size ? data[0] : 0x5Au) * 0x9E3779B97F4A7C15ull ^ (size * 0xBF58476D1CE4E5B9ull) ^
              0x94D049BB133111EBull) {}
  std::uint64_t next() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  }
  // How many bytes to hand over next (at most `left`, at least 1).
  std::size_t chunk(std::size_t left) {
    const std::uint64_t r = next();
    std::size_t n;
    switch (r & 3) {
      case 0: n = 1; break;
      case 1: n = 1 + (r >> 8) % 16; break;
      case 2: n = 1 + (r >> 8) % 512; break;
      default: n = left; break;
    }
    return std::min(n, left);
  }
};

void visit_scalar(void* context, std::size_t index, const json::Value& scalar) {
  auto* acc = static_cast<std::uint64_t*>(context);
  *acc += index + static_cast<std::uint64_t>(scalar.type());
  if (scalar.is_string()) *acc += scalar.as_string().size();
}

// Walks a DOM, running for_each_scalar on every raw span (which parse() checked
// to be JSON inside `text`).
void walk(const json::Value& v, std::string_view text, std::size_t depth) {
  FUZZ_CHECK(depth <= json::kMaxDepth + 1);
  switch (v.type()) {
    case json::Value::Type::kRaw: {
      FUZZ_CHECK(v.raw_offset() <= text.size() && v.raw_size() <= text.size() - v.raw_offset());
      std::uint64_t acc = 0;
      try {
        json::for_each_scalar(text.substr(v.raw_offset(), v.raw_size()), visit_scalar, &acc);
      } catch (const std::exception&) {
        invariant_broken("for_each_scalar refused a raw span that parse() accepted");
      }
      g_sink = g_sink + acc;
      break;
    }
    case json::Value::Type::kArray:
      for (const auto& item : v.as_array()) walk(item, text, depth + 1);
      break;
    case json::Value::Type::kObject:
      for (const auto& member : v.as_object()) walk(member.second, text, depth + 1);
      break;
    default:
      break;
  }
}

void check_outputs(const InferResponse& response, std::size_t body_size, std::uint64_t base,
                   const std::uint8_t* body, bool decode_json) {
  for (const auto& output : response.outputs) {
    FUZZ_CHECK(output.shape.size() <= kMaxOutputDims);
    if (output.kind == OutputKind::kBinary) {
      const std::uint64_t offset = output.offset + base;
      FUZZ_CHECK(offset <= body_size && output.size <= body_size - offset);
      g_sink = g_sink + touch(body + offset, static_cast<std::size_t>(output.size));
      if (output.datatype == "BYTES") {
        try {
          const std::size_t n = bytes::count_elements(body + offset, output.size);
          g_sink = g_sink + n;
        } catch (const std::exception&) {
        }
      }
    } else if (output.kind == OutputKind::kJson) {
      FUZZ_CHECK(output.offset <= body_size && output.size <= body_size - output.offset);
      if (decode_json) {
        try {
          JsonOutputData data = decode_json_output(output, body);
          g_sink = g_sink + data.count + data.bytes.size();
        } catch (const std::exception&) {
        }
      }
    }
  }
}

void fuzz_infer_body(const std::uint8_t* body, std::size_t size,
                     std::optional<std::uint64_t> header_length, std::string_view id,
                     const std::vector<RequestedOutput>* requested) {
  ExpectedResponse expected{id, requested};
  try {
    InferResponse response = parse_infer_response(body, size, header_length, expected);
    check_outputs(response, size, 0, body, /*decode_json=*/true);
  } catch (const std::exception&) {
  }
  // One cache for the whole run: a mutation that changes only binary bytes (or
  // the id) finds the previous layout there.
  static ResponseLayoutCache cache;
  for (std::string_view cache_id : {id, std::string_view(id.empty() ? "7" : "")}) {
    try {
      ResponseLayoutCache::Parsed parsed = cache.parse(body, size, header_length, cache_id);
      FUZZ_CHECK(parsed.layout != nullptr);
      FUZZ_CHECK(parsed.base <= size);
      check_outputs(parsed.layout->response, size, parsed.base, body, /*decode_json=*/false);
    } catch (const std::exception&) {
    }
  }
}

void fuzz_http(const std::uint8_t* data, std::size_t size) {
  static const std::shared_ptr<BufferPool> pool = BufferPool::create(0);
  Splitter split(data, size);
  // Some inputs are received as the transport does: recv() straight into the
  // body window, the rest fed through feed().
  const bool use_window = (split.next() & 1) != 0;
  std::optional<http::Body> body;
  std::optional<http::ResponseHead> head;
  try {
    http::ResponseParser parser(pool, kMaxBodyBytes);
    std::size_t pos = 0;
    while (pos < size && !parser.done()) {
      const std::size_t n = split.chunk(size - pos);
      const std::size_t used = parser.feed(data + pos, n);
      FUZZ_CHECK(used <= n);
      pos += used;
      if (used < n) {
        FUZZ_CHECK(parser.done());
        break;
      }
      while (use_window && pos < size && !parser.done()) {
        auto window = parser.body_window();
        if (window.first == nullptr || window.second == 0) break;
        const std::size_t m = std::min(window.second, split.chunk(size - pos));
        std::memcpy(window.first, data + pos, m);
        parser.commit(m);
        pos += m;
      }
    }
    if (!parser.done()) parser.finish();
    FUZZ_CHECK(parser.done() && parser.head_complete());
    FUZZ_CHECK(parser.received() == pos);
    if (pos < size) FUZZ_CHECK(parser.feed(data + pos, size - pos) == 0);
    head = parser.take_head();
    body = parser.take_body();
  } catch (const std::exception&) {
    return;
  }
  FUZZ_CHECK(body->offset <= body->buffer.capacity() &&
             body->size <= body->buffer.capacity() - body->offset);
  FUZZ_CHECK(body->size <= kMaxBodyBytes);
  g_sink = g_sink + touch(body->data(), body->size);

  // What the request was, chosen by bits of the last byte: its id "7" (as the
  // seed requests send) for half of the inputs, none for the others; every
  // output, or only OUTPUT0 (in binary, or in shared memory).
  const std::uint8_t choice = data[size - 1];
  const bool with_id = (choice & 1) != 0;
  std::vector<RequestedOutput> requested;
  if (choice & 2) {
    RequestedOutput output;
    output.name = "OUTPUT0";
    if (choice & 4) output.shared_memory = SharedMemoryRef{"region", 16, 0};
    requested.push_back(std::move(output));
  }
  if (head->status == 200) {
    fuzz_infer_body(body->data(), body->size, head->inference_header_length, with_id ? "7" : "",
                    &requested);
  } else {
    try {
      std::optional<std::string> message = parse_error_body(body->data(), body->size);
      std::string text = error_answer_message(head->status, head->reason, body->data(), body->size);
      if (message) FUZZ_CHECK(text == *message);
      g_sink = g_sink + text.size();
    } catch (const std::exception&) {
    }
  }
}

void fuzz_json(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    json::ParseOptions options;
    options.max_values = 4096;
    options.raw_key = "data";
    options.raw_depth = 3;
    const json::Value root = json::parse(text, options);
    walk(root, text, 0);
  } catch (const std::exception&) {
  }
  try {
    std::uint64_t acc = 0;
    g_sink = g_sink + json::for_each_scalar(text, visit_scalar, &acc) + acc;
  } catch (const std::exception&) {
  }
}

void fuzz_bytes(const std::uint8_t* data, std::size_t size) {
  std::size_t count = 0;
  try {
    count = bytes::count_elements(data, size);
  } catch (const std::exception&) {
    return;
  }
  bytes::Reader reader(data, size);
  std::string_view element;
  std::size_t seen = 0;
  const char* const begin = reinterpret_cast<const char*>(data);
  while (reader.next(&element)) {
    FUZZ_CHECK(element.data() >= begin && element.data() <= begin + size &&
               element.size() <= static_cast<std::size_t>(begin + size - element.data()));
    g_sink = g_sink + touch(reinterpret_cast<const std::uint8_t*>(element.data()), element.size());
    ++seen;
    FUZZ_CHECK(seen <= count);
  }
  FUZZ_CHECK(seen == count);
}

void fuzz_error_body(const std::uint8_t* data, std::size_t size) {
  try {
    std::optional<std::string> message = parse_error_body(data, size);
    const int status = size ? 400 + data[0] % 200 : 500;
    std::string text = error_answer_message(status, size % 2 ? "Bad Request" : "", data, size);
    if (message) FUZZ_CHECK(text == *message);
    g_sink = g_sink + text.size();
  } catch (const std::exception&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  fuzz_http(data, size);
  fuzz_json(data, size);
  fuzz_bytes(data, size);
  fuzz_error_body(data, size);
  return 0;
}

#ifdef TRITONFAST_FUZZ_STANDALONE
// ---------------------------------------------------------------------------
// Standalone driver: the corpus, then deterministic mutations of it.

#include <csignal>
#include <dirent.h>
#include <fstream>
#include <iterator>
#include <sys/stat.h>
#include <unistd.h>

// Under AddressSanitizer, its own handlers report crashes (with the stack) and
// then call the death callback, which writes the input out; without it, plain
// signal handlers do that.
#if defined(__SANITIZE_ADDRESS__)
#define TRITONFAST_FUZZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TRITONFAST_FUZZ_ASAN 1
#endif
#endif
#if defined(TRITONFAST_FUZZ_ASAN) || defined(__SANITIZE_UNDEFINED__) || defined(__UNDEFINED_SANITIZER__)
#define TRITONFAST_FUZZ_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(undefined_behavior_sanitizer)
#define TRITONFAST_FUZZ_SANITIZED 1
#endif
#endif
#if defined(TRITONFAST_FUZZ_SANITIZED) && defined(__has_include)
#if __has_include(<sanitizer/common_interface_defs.h>)
#include <sanitizer/common_interface_defs.h>
#define TRITONFAST_HAVE_SANITIZER_CALLBACK 1
#endif
#endif

namespace {

constexpr std::size_t kMaxInputBytes = 1 << 20;
constexpr unsigned kTimeoutSeconds = 5;

// The input being run, for the crash report.
const std::vector<std::uint8_t>* g_current = nullptr;
std::string g_current_name;
std::string g_artifact = "crash-standalone";

void dump_current() {
  if (g_current == nullptr) return;
  const std::vector<std::uint8_t>& input = *g_current;
  g_current = nullptr;  // once, whichever of the handlers comes first
  // Only async-signal-tolerant-ish calls: this runs as the process dies.
  if (FILE* f = std::fopen(g_artifact.c_str(), "wb")) {
    std::fwrite(input.data(), 1, input.size(), f);
    std::fclose(f);
  }
  std::fprintf(stderr, "==fuzz_response== failing input (%s, %zu bytes) written to %s\n",
               g_current_name.c_str(), input.size(), g_artifact.c_str());
  const std::size_t shown = std::min<std::size_t>(input.size(), 4096);
  std::fprintf(stderr, "==fuzz_response== hex: ");
  for (std::size_t k = 0; k < shown; ++k) std::fprintf(stderr, "%02x", input[k]);
  std::fprintf(stderr, "%s\n", shown < input.size() ? "..." : "");
  std::fflush(stderr);
}

extern "C" void on_signal(int sig) {
  if (sig == SIGALRM) std::fprintf(stderr, "==fuzz_response== TIMEOUT: one input ran over %u s\n",
                                   kTimeoutSeconds);
  dump_current();
  std::signal(sig, SIG_DFL);
  if (sig == SIGALRM) _exit(70);
  std::raise(sig);
}

void run_one(const std::vector<std::uint8_t>& input, const std::string& name) {
  g_current = &input;
  g_current_name = name;
  alarm(kTimeoutSeconds);
  // A copy of exactly the input's size, so that a read past its end is caught.
  std::unique_ptr<std::uint8_t[]> copy(new std::uint8_t[input.size() ? input.size() : 1]);
  if (!input.empty()) std::memcpy(copy.get(), input.data(), input.size());
  LLVMFuzzerTestOneInput(copy.get(), input.size());
  alarm(0);
  g_current = nullptr;
}

bool read_file(const std::string& path, std::vector<std::uint8_t>* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (out->size() > kMaxInputBytes) out->resize(kMaxInputBytes);
  return true;
}

// Every regular file under `path` (a file, or a directory read recursively),
// in name order.
void collect(const std::string& path, std::vector<std::string>* files) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    std::fprintf(stderr, "fuzz_response: cannot stat %s\n", path.c_str());
    std::exit(2);
  }
  if (S_ISREG(st.st_mode)) {
    files->push_back(path);
    return;
  }
  if (!S_ISDIR(st.st_mode)) return;
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return;
  std::vector<std::string> names;
  while (dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  for (const auto& name : names) collect(path + "/" + name, files);
}

// splitmix64: deterministic on every platform (unlike <random>'s distributions).
struct Rng {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) { return n ? static_cast<std::size_t>(next() % n) : 0; }
};

// Bytes that matter to the parsers, spliced in by the mutator.
const char* const kTokens[] = {
    "\r\n", "\r\n\r\n", ":", " ", "0", "-1", "18446744073709551616", "9223372036854775807",
    "Content-Length: ", "Transfer-Encoding: chunked\r\n", "Inference-Header-Content-Length: ",
    "Connection: close\r\n", "HTTP/1.1 200 OK\r\n", "HTTP/1.0 ", "HTTP/1.1 100 Continue\r\n\r\n",
    "0\r\n\r\n", "ffffffffffffffff", ";ext=1", "\"", "\\u0000", "\\ud800", "{", "}", "[", "]",
    ",", "null", "true", "1e999", "-0.0", "NaN", "\"data\":", "\"shape\":", "\"datatype\":",
    "\"BYTES\"", "\"FP32\"", "\"FP16\"", "\"BF16\"", "\"BOOL\"", "\"INT64\"", "\"UINT8\"",
    "\"binary_data_size\":", "\"outputs\":", "\"parameters\":", "\"id\":\"7\",", "\"error\":",
    "\xff\xff\xff\xff", "\x00\x00\x00\x00", "\x80",
};

void mutate_once(std::vector<std::uint8_t>* data, const std::vector<std::vector<std::uint8_t>>& pool,
                 Rng* rng) {
  std::vector<std::uint8_t>& d = *data;
  switch (rng->below(9)) {
    case 0:  // flip a bit
      if (!d.empty()) d[rng->below(d.size())] ^= static_cast<std::uint8_t>(1u << rng->below(8));
      break;
    case 1:  // set a byte
      if (!d.empty()) d[rng->below(d.size())] = static_cast<std::uint8_t>(rng->next());
      break;
    case 2: {  // insert random bytes
      const std::size_t at = rng->below(d.size() + 1);
      const std::size_t n = 1 + rng->below(8);
      std::vector<std::uint8_t> bytes(n);
      for (auto& b : bytes) b = static_cast<std::uint8_t>(rng->next());
      d.insert(d.begin() + static_cast<std::ptrdiff_t>(at), bytes.begin(), bytes.end());
      break;
    }
    case 3: {  // delete a range
      if (d.empty()) break;
      const std::size_t at = rng->below(d.size());
      const std::size_t n = 1 + rng->below(std::min<std::size_t>(d.size() - at, 32));
      d.erase(d.begin() + static_cast<std::ptrdiff_t>(at),
              d.begin() + static_cast<std::ptrdiff_t>(at + n));
      break;
    }
    case 4: {  // splice: a prefix of this, a suffix of another corpus file
      const auto& other = pool[rng->below(pool.size())];
      const std::size_t cut = rng->below(d.size() + 1);
      const std::size_t from = rng->below(other.size() + 1);
      d.resize(cut);
      d.insert(d.end(), other.begin() + static_cast<std::ptrdiff_t>(from), other.end());
      break;
    }
    case 5: {  // insert a token
      const char* token = kTokens[rng->below(sizeof kTokens / sizeof kTokens[0])];
      std::size_t n = std::strlen(token);
      if (n == 0) n = 4;  // the all-zero prefix
      const std::size_t at = rng->below(d.size() + 1);
      d.insert(d.begin() + static_cast<std::ptrdiff_t>(at), token, token + n);
      break;
    }
    case 6: {  // overwrite with a token
      if (d.empty()) break;
      const char* token = kTokens[rng->below(sizeof kTokens / sizeof kTokens[0])];
      std::size_t n = std::strlen(token);
      if (n == 0) n = 4;
      const std::size_t at = rng->below(d.size());
      for (std::size_t k = 0; k < n && at + k < d.size(); ++k) d[at + k] = static_cast<std::uint8_t>(token[k]);
      break;
    }
    case 7: {  // duplicate a range
      if (d.empty()) break;
      const std::size_t at = rng->below(d.size());
      const std::size_t n = 1 + rng->below(std::min<std::size_t>(d.size() - at, 64));
      std::vector<std::uint8_t> copy(d.begin() + static_cast<std::ptrdiff_t>(at),
                                     d.begin() + static_cast<std::ptrdiff_t>(at + n));
      const std::size_t to = rng->below(d.size() + 1);
      d.insert(d.begin() + static_cast<std::ptrdiff_t>(to), copy.begin(), copy.end());
      break;
    }
    default: {  // change a decimal digit run (lengths, sizes, shapes)
      if (d.empty()) break;
      const std::size_t at = rng->below(d.size());
      for (std::size_t k = at; k < d.size(); ++k) {
        if (d[k] >= '0' && d[k] <= '9') {
          d[k] = static_cast<std::uint8_t>('0' + rng->below(10));
          break;
        }
      }
      break;
    }
  }
  if (d.size() > kMaxInputBytes) d.resize(kMaxInputBytes);
}

}  // namespace

#ifdef TRITONFAST_HAVE_SANITIZER_CALLBACK
extern "C" void tritonfast_fuzz_on_death() { dump_current(); }
#endif

int main(int argc, char** argv) {
  if (const char* artifact = std::getenv("TRITONFAST_FUZZ_ARTIFACT")) g_artifact = artifact;
  std::uint64_t runs = 20000;
  if (const char* env = std::getenv("TRITONFAST_FUZZ_RUNS")) runs = std::strtoull(env, nullptr, 10);
#ifdef TRITONFAST_HAVE_SANITIZER_CALLBACK
  __sanitizer_set_death_callback(tritonfast_fuzz_on_death);
#endif
  std::signal(SIGALRM, on_signal);
  std::signal(SIGABRT, on_signal);  // abort(): a broken invariant, std::terminate
#ifndef TRITONFAST_FUZZ_ASAN
  std::signal(SIGSEGV, on_signal);
  std::signal(SIGBUS, on_signal);
  std::signal(SIGFPE, on_signal);
  std::signal(SIGILL, on_signal);
#endif

  std::vector<std::string> files;
  for (int k = 1; k < argc; ++k) collect(argv[k], &files);
  std::vector<std::vector<std::uint8_t>> corpus;
  for (const auto& path : files) {
    std::vector<std::uint8_t> data;
    if (!read_file(path, &data)) {
      std::fprintf(stderr, "fuzz_response: cannot read %s\n", path.c_str());
      return 2;
    }
    run_one(data, path);
    corpus.push_back(std::move(data));
  }
  std::fprintf(stderr, "fuzz_response: ran %zu corpus files\n", corpus.size());
  if (corpus.empty()) corpus.push_back({});

  Rng rng{0x7F17F457u};
  for (std::uint64_t run = 0; run < runs; ++run) {
    std::vector<std::uint8_t> input = corpus[rng.below(corpus.size())];
    const std::size_t stacked = 1 + rng.below(rng.below(2) ? 2 : 8);
    for (std::size_t k = 0; k < stacked; ++k) mutate_once(&input, corpus, &rng);
    run_one(input, "mutation " + std::to_string(run));
    if ((run + 1) % 5000 == 0) {
      std::fprintf(stderr, "fuzz_response: %llu mutations\n", static_cast<unsigned long long>(run + 1));
    }
  }
  std::fprintf(stderr, "fuzz_response: done, %zu corpus files and %llu mutations, no crash\n",
               corpus.size(), static_cast<unsigned long long>(runs));
  return 0;
}
#endif  // TRITONFAST_FUZZ_STANDALONE
