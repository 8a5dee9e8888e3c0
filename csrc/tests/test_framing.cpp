// Standalone tests of the sans-I/O framing: json, infer and http (no Python).
//
//   g++ -std=c++17 -O1 -g -fsanitize=address,undefined -Icsrc csrc/tests/test_framing.cpp
//       csrc/core/{json,infer,http,buffer,dtype,bytes_codec}.cpp -o /tmp/test_framing
//   /tmp/test_framing [fuzz-iterations]
//
// Golden wire bytes (request headers were produced by tritonclient 2.73's
// _get_inference_request), a JSON corpus, the response parser fed whole, one
// byte at a time, in random splits and the way the transport drives it
// (feed() then recv straight into body_window()), every malformed case, and a
// randomized fuzz loop that may only ever see ProtocolError / DecodeError /
// ConnectionError.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "core/errors.hpp"
#include "core/http.hpp"
#include "core/infer.hpp"
#include "core/json.hpp"

#include "tests/check.hpp"

using namespace tritonfast;

namespace {


const std::uint8_t* u8(const std::string& s) {
  return reinterpret_cast<const std::uint8_t*>(s.data());
}

// ======================================================================= JSON

void test_json_valid() {
  using json::Value;
  auto v = json::parse(" { \"a\" : [1, -2.5, 3e2, true, false, null, \"x\"], \"b\": {} } ");
  CHECK(v.is_object());
  CHECK_EQ(v.as_object().size(), std::size_t{2});
  const Value* a = v.find("a");
  CHECK(a && a->is_array() && a->as_array().size() == 7);
  CHECK(a->as_array()[0].is_integer() && a->as_array()[0].as_int() == 1);
  CHECK(!a->as_array()[1].is_integer() && a->as_array()[1].as_double() == -2.5);
  CHECK(!a->as_array()[2].is_integer() && a->as_array()[2].as_double() == 300.0);
  CHECK(a->as_array()[3].is_bool() && a->as_array()[3].as_bool());
  CHECK(a->as_array()[4].is_bool() && !a->as_array()[4].as_bool());
  CHECK(a->as_array()[5].is_null());
  CHECK(a->as_array()[6].as_string() == "x");
  CHECK(v.find("b")->is_object() && v.find("b")->as_object().empty());
  CHECK(v.find("zzz") == nullptr);
  CHECK(a->find("a") == nullptr);  // not an object

  CHECK(json::parse("0").as_int() == 0 && json::parse("0").is_integer());
  CHECK(json::parse("-0").is_integer());
  CHECK(json::parse("9223372036854775807").is_integer());
  CHECK_EQ(json::parse("9223372036854775807").as_int(), std::numeric_limits<std::int64_t>::max());
  CHECK_EQ(json::parse("-9223372036854775808").as_int(), std::numeric_limits<std::int64_t>::min());
  CHECK(!json::parse("9223372036854775808").is_integer());
  CHECK_EQ(json::parse("9223372036854775808").as_double(), 9223372036854775808.0);
  CHECK(!json::parse("1.0").is_integer());
  CHECK(!json::parse("1e2").is_integer());
  CHECK_EQ(json::parse("1E+2").as_double(), 100.0);
  CHECK_EQ(json::parse("0.1").as_double(), 0.1);
  CHECK_EQ(json::parse("-1.5e-3").as_double(), -1.5e-3);
  CHECK_EQ(json::parse("2.2250738585072014e-308").as_double(), 2.2250738585072014e-308);
  CHECK_EQ(json::parse("5e-324").as_double(), 5e-324);
  CHECK(std::isinf(json::parse("1e400").as_double()) && json::parse("1e400").as_double() > 0);
  CHECK(std::isinf(json::parse("-1e400").as_double()) && json::parse("-1e400").as_double() < 0);
  CHECK_EQ(json::parse("1e-400").as_double(), 0.0);
  CHECK_EQ(json::parse("0.0000000000000000000000000000001e-400").as_double(), 0.0);
  CHECK(std::isinf(json::parse("123456789e400").as_double()));
  // Triton's writer emits these for NaN / inf tensor values (kWriteNanAndInfFlag).
  CHECK(std::isnan(json::parse("NaN").as_double()));
  CHECK(json::parse("[Infinity,-Infinity]").as_array()[1].as_double() ==
        -std::numeric_limits<double>::infinity());

  CHECK_EQ(json::parse("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"").as_string(), std::string("\"\\/\b\f\n\r\t"));
  CHECK_EQ(json::parse("\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\"").as_string(),
           std::string("A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"));
  CHECK_EQ(json::parse("\"\\u0000\"").as_string(), std::string(1, '\0'));
  CHECK_EQ(json::parse("\"h\xC3\xA9llo \xF0\x9F\x98\x80 \xEF\xBF\xBF\"").as_string(),
           std::string("h\xC3\xA9llo \xF0\x9F\x98\x80 \xEF\xBF\xBF"));
  CHECK_EQ(json::parse("\"\x7F\"").as_string(), std::string("\x7F"));
  CHECK(json::parse(" \t\r\n[ ] \n").is_array());

  std::string deep(json::kMaxDepth, '[');
  deep += std::string(json::kMaxDepth, ']');
  CHECK(json::parse(deep).is_array());
  // Duplicate keys: find() returns the first.
  CHECK_EQ(json::parse("{\"k\":1,\"k\":2}").find("k")->as_int(), std::int64_t{1});
}

void test_json_invalid() {
  struct Case {
    std::string text;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {"", "at byte 0: unexpected end of input"},
      {"   ", "at byte 3"},
      {"nul", "at byte 0"},
      {"True", "at byte 0"},
      {"[1,]", "at byte 3"},
      {"[1 2]", "at byte 3: unexpected '2', expected ',' or ']'"},
      {"{\"a\":1,}", "at byte 7: unexpected '}', expected a string key"},
      {"{\"a\" 1}", "at byte 5"},
      {"{1:2}", "at byte 1"},
      {"{\"a\":1", "at byte 6: unexpected end of input"},
      {"01", "at byte 1: unexpected data after the JSON value"},
      {"1.", "at byte 2"},
      {".5", "at byte 0"},
      {"-", "at byte 1"},
      {"-a", "at byte 1"},
      {"1e", "at byte 2"},
      {"1e+", "at byte 3"},
      {"+1", "at byte 0"},
      {"- 1", "at byte 1"},
      {"-NaN", "at byte 1"},
      {"Inf", "at byte 0"},
      {"\"abc", "at byte 0: unterminated string"},
      {"\"\\x\"", "at byte 1: invalid escape"},
      {"\"\\", "at byte 1: truncated escape"},
      {"\"\\u12\"", "at byte 3: truncated \\u escape"},
      {"\"\\u12G4\"", "at byte 5: invalid hex digit"},
      {"\"\\ud800\"", "at byte 1: high surrogate not followed"},
      {"\"\\ud800\\u0041\"", "at byte 1: high surrogate"},
      {"\"\\ud800\\ud800\"", "at byte 1: high surrogate"},
      {"\"\\udc00\"", "at byte 1: lone low surrogate"},
      {"\"a\x01\"", "at byte 2: unescaped control character"},
      {"\"\n\"", "at byte 1: unescaped control"},
      {"\"\xC3\x28\"", "at byte 1: invalid UTF-8"},
      {"\"\xC0\xAF\"", "at byte 1: invalid UTF-8"},       // overlong
      {"\"\xE0\x80\xAF\"", "at byte 1: invalid UTF-8"},   // overlong
      {"\"\xED\xA0\x80\"", "at byte 1: invalid UTF-8"},   // encoded surrogate
      {"\"\xF4\x90\x80\x80\"", "at byte 1: invalid UTF-8"},  // past U+10FFFF
      {"\"\xF5\x80\x80\x80\"", "at byte 1: invalid UTF-8"},
      {"\"\x80\"", "at byte 1: invalid UTF-8"},
      {"\"\xE2\x82\"", "at byte 1: invalid UTF-8"},        // truncated
      {"\"\xE2\x82", "at byte 1: invalid UTF-8"},
      {"[1] x", "at byte 4: unexpected data"},
      {"{} {}", "at byte 3"},
  };
  for (const auto& c : cases) {
    EXPECT_THROW(DecodeError, json::parse(c.text), "invalid JSON " + c.needle);
  }
  EXPECT_THROW(DecodeError, json::parse(std::string_view("[\0]", 3)), "at byte 1: unexpected 0x00");
  std::string deep(json::kMaxDepth + 1, '[');
  deep += std::string(json::kMaxDepth + 1, ']');
  EXPECT_THROW(DecodeError, json::parse(deep), "at byte 64: nesting deeper than 64 levels");
  std::string deep_obj;
  for (std::size_t k = 0; k <= json::kMaxDepth; ++k) deep_obj += "{\"a\":";
  EXPECT_THROW(DecodeError, json::parse(deep_obj), "nesting deeper than 64");
  // Far deeper than the stack could take without the limit.
  EXPECT_THROW(DecodeError, json::parse(std::string(1000000, '[')), "nesting deeper");
}

void test_json_writer() {
  std::string out;
  json::write_string(out, "a\"b\\c\n\r\t\b\f\x01\x1f\x7f/\xC3\xA9");
  CHECK_EQ(out, std::string("\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\x7f/\xC3\xA9\""));
  out.clear();
  json::write_string(out, std::string_view("\0x", 2));
  CHECK_EQ(out, std::string("\"\\u0000x\""));

  // Every byte string that is valid UTF-8 reads back as itself.
  std::mt19937_64 rng(7);
  const std::vector<std::string> pieces = {"a", "\"", "\\", "\n", "\x01", "\x1f", " ", "\xC3\xA9",
                                           "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "/", "\x7f",
                                           std::string(1, '\0')};
  for (int k = 0; k < 2000; ++k) {
    std::string s;
    const int n = static_cast<int>(rng() % 20);
    for (int j = 0; j < n; ++j) s += pieces[rng() % pieces.size()];
    std::string w;
    json::write_string(w, s);
    CHECK_EQ(json::parse(w).as_string(), s);
  }

  out.clear();
  json::write_int(out, std::numeric_limits<std::int64_t>::min());
  out += ",";
  json::write_int(out, 0);
  out += ",";
  json::write_int(out, std::numeric_limits<std::int64_t>::max());
  CHECK_EQ(out, std::string("-9223372036854775808,0,9223372036854775807"));

  auto dbl = [](double d) {
    std::string s;
    json::write_double(s, d);
    return s;
  };
  CHECK_EQ(dbl(1.0), std::string("1.0"));
  CHECK_EQ(dbl(-0.0), std::string("-0.0"));
  CHECK_EQ(dbl(0.1), std::string("0.1"));
  CHECK_EQ(dbl(2.5e-7), std::string("2.5e-07"));  // as Python's repr
  CHECK_EQ(dbl(1e16), std::string("1e+16"));
  CHECK_EQ(dbl(123456.0), std::string("123456.0"));
  CHECK(!json::parse(dbl(3.0)).is_integer());
  EXPECT_THROW(EncodeError, dbl(std::nan("")), "NaN");
  EXPECT_THROW(EncodeError, dbl(std::numeric_limits<double>::infinity()), "Infinity");
  EXPECT_THROW(EncodeError, dbl(-std::numeric_limits<double>::infinity()), "-Infinity");

  // Round trip of random finite doubles, bit for bit.
  for (int k = 0; k < 20000; ++k) {
    std::uint64_t bits = rng();
    double d;
    std::memcpy(&d, &bits, sizeof d);
    if (!std::isfinite(d)) continue;
    const json::Value v = json::parse(dbl(d));
    double back = v.as_double();
    CHECK(std::memcmp(&back, &d, sizeof d) == 0);
  }
  // Values that look like integers stay doubles.
  for (double d : {0.0, 1.0, -7.0, 1e15, 9007199254740993.0, 1e300}) {
    const json::Value v = json::parse(dbl(d));
    CHECK(!v.is_integer());
    CHECK_EQ(v.as_double(), d);
  }
}

// ================================================================ infer header

InferRequest two_input_request(const std::vector<std::uint8_t>& fp32,
                               const std::vector<std::uint8_t>& bytes) {
  InferRequest r;
  r.id = "0";
  InputTensor a;
  a.name = "INPUT0";
  a.datatype = "FP32";
  a.shape = {1, 16};
  a.segments.push_back(Segment{fp32.data(), fp32.size()});
  InputTensor b;
  b.name = "INPUT1";
  b.datatype = "BYTES";
  b.shape = {2};
  // Two segments to show they are kept apart (never concatenated).
  b.segments.push_back(Segment{bytes.data(), 9});
  b.segments.push_back(Segment{bytes.data() + 9, bytes.size() - 9});
  r.inputs.push_back(std::move(a));
  r.inputs.push_back(std::move(b));
  return r;
}

void test_infer_header() {
  std::vector<std::uint8_t> fp32(64, 0xAB);
  // BYTES [b"hello", b""]: 4-byte LE lengths.
  std::vector<std::uint8_t> bytes = {5, 0, 0, 0, 'h', 'e', 'l', 'l', 'o', 0, 0, 0, 0};
  const InferRequest req = two_input_request(fp32, bytes);
  CHECK_EQ(req.inputs[1].byte_size(), std::uint64_t{13});

  // Golden: tritonclient 2.73 _get_inference_request for the same inputs.
  const std::string golden1 =
      "{\"id\":\"0\",\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[1,16],\"datatype\":\"FP32\","
      "\"parameters\":{\"binary_data_size\":64}},{\"name\":\"INPUT1\",\"shape\":[2],\"datatype\":"
      "\"BYTES\",\"parameters\":{\"binary_data_size\":13}}],\"parameters\":{\"binary_data_output\":"
      "true}}";
  CHECK_EQ(write_infer_header(req), golden1);
  CHECK_EQ(golden1.size(), std::size_t{236});

  const http::Request wire = http::build_infer_request(
      http::model_target("simple", "", "/infer"), "localhost:8000", {{"X-Trace", "abc"}}, req);
  const std::string head_golden =
      "POST /v2/models/simple/infer HTTP/1.1\r\n"
      "Host: localhost:8000\r\n"
      "Content-Length: 313\r\n"
      "Inference-Header-Content-Length: 236\r\n"
      "Content-Type: application/octet-stream\r\n"
      "X-Trace: abc\r\n"
      "\r\n" +
      golden1;
  CHECK_EQ(wire.head, head_golden);
  CHECK_EQ(wire.segments.size(), std::size_t{3});
  CHECK(wire.segments[0].data == fp32.data() && wire.segments[0].size == 64);
  CHECK(wire.segments[1].data == bytes.data() && wire.segments[1].size == 9);
  CHECK(wire.segments[2].data == bytes.data() + 9 && wire.segments[2].size == 4);
  CHECK_EQ(wire.size(), std::uint64_t(head_golden.size() + 77));

  // Golden 2: the spec's example, tritonclient 2.73.
  InferRequest r2;
  r2.id = "42";
  InputTensor i0;
  i0.name = "input0";
  i0.datatype = "UINT32";
  i0.shape = {2, 2};
  std::vector<std::uint8_t> zeros(16, 0);
  i0.segments.push_back(Segment{zeros.data(), 16});
  InputTensor i1;
  i1.name = "in_shm";
  i1.datatype = "FP32";
  i1.shape = {4};
  i1.shared_memory = SharedMemoryRef{"in_region", 16, 32};
  r2.inputs = {i0, i1};
  RequestedOutput o0{"output0", true, 0, std::nullopt};
  RequestedOutput o1{"output1", false, 3, std::nullopt};
  RequestedOutput o2{"output2", true, 0, SharedMemoryRef{"out_region", 1024, 64}};
  RequestedOutput o3{"output3", false, 0, std::nullopt};
  RequestedOutput o4{"output4", true, 0, SharedMemoryRef{"r2", 8, 0}};
  r2.outputs = {o0, o1, o2, o3, o4};
  r2.parameters = {{"sequence_id", std::int64_t{7}}, {"sequence_start", true},
                   {"sequence_end", false},          {"priority", std::int64_t{1}},
                   {"timeout", std::int64_t{1000}},  {"my_param", std::string("x")},
                   {"f", 1.0},                       {"g", 2.5e-7},
                   {"b", true},                      {"i", std::int64_t{-3}}};
  const std::string golden2 =
      "{\"id\":\"42\",\"inputs\":[{\"name\":\"input0\",\"shape\":[2,2],\"datatype\":\"UINT32\","
      "\"parameters\":{\"binary_data_size\":16}},{\"name\":\"in_shm\",\"shape\":[4],\"datatype\":"
      "\"FP32\",\"parameters\":{\"shared_memory_region\":\"in_region\",\"shared_memory_byte_size\":"
      "16,\"shared_memory_offset\":32}}],\"outputs\":[{\"name\":\"output0\",\"parameters\":{"
      "\"binary_data\":true}},{\"name\":\"output1\",\"parameters\":{\"classification\":3,"
      "\"binary_data\":false}},{\"name\":\"output2\",\"parameters\":{\"binary_data\":false,"
      "\"shared_memory_region\":\"out_region\",\"shared_memory_byte_size\":1024,"
      "\"shared_memory_offset\":64}},{\"name\":\"output3\",\"parameters\":{\"binary_data\":false}},"
      "{\"name\":\"output4\",\"parameters\":{\"binary_data\":false,\"shared_memory_region\":\"r2\","
      "\"shared_memory_byte_size\":8}}],\"parameters\":{\"sequence_id\":7,\"sequence_start\":true,"
      "\"sequence_end\":false,\"priority\":1,\"timeout\":1000,\"my_param\":\"x\",\"f\":1.0,\"g\":"
      "2.5e-07,\"b\":true,\"i\":-3}}";
  CHECK_EQ(write_infer_header(r2), golden2);

  // Golden 3: shared-memory input only, no outputs, sequence (tritonclient
  // sends no Inference-Header-Content-Length: nothing is binary).
  InferRequest r3;
  InputTensor s;
  s.name = "in_shm";
  s.datatype = "FP32";
  s.shape = {4};
  s.shared_memory = SharedMemoryRef{"in_region", 16, 0};
  r3.inputs = {s};
  r3.parameters = {{"sequence_id", std::int64_t{5}},
                   {"sequence_start", true},
                   {"sequence_end", true},
                   {"custom", std::string("y")}};
  const std::string golden3 =
      "{\"inputs\":[{\"name\":\"in_shm\",\"shape\":[4],\"datatype\":\"FP32\",\"parameters\":{"
      "\"shared_memory_region\":\"in_region\",\"shared_memory_byte_size\":16}}],\"parameters\":{"
      "\"sequence_id\":5,\"sequence_start\":true,\"sequence_end\":true,\"binary_data_output\":true,"
      "\"custom\":\"y\"}}";
  CHECK_EQ(write_infer_header(r3), golden3);
  const http::Request w3 = http::build_infer_request("/v2/models/m/infer", "h:1", {}, r3);
  CHECK_EQ(w3.head, "POST /v2/models/m/infer HTTP/1.1\r\nHost: h:1\r\nContent-Length: " +
                        std::to_string(golden3.size()) +
                        "\r\nContent-Type: application/json\r\n\r\n" + golden3);
  CHECK(w3.segments.empty());

  // Tensor parameters merge into the tensor's object; empty binary inputs
  // still carry binary_data_size 0 and the header length; empty segments are
  // not sent; a caller's Content-Type replaces the framing's.
  InferRequest r4;
  InputTensor e;
  e.name = "E";
  e.datatype = "INT8";
  e.shape = {0};
  e.segments.push_back(Segment{zeros.data(), 0});
  e.parameters = {{"p", std::string("q")}, {"n", std::int64_t{3}}};
  r4.inputs = {e};
  r4.outputs = {RequestedOutput{"o", true, 0, std::nullopt}};
  const std::string j4 = write_infer_header(r4);
  CHECK_EQ(j4, std::string("{\"inputs\":[{\"name\":\"E\",\"shape\":[0],\"datatype\":\"INT8\","
                           "\"parameters\":{\"binary_data_size\":0,\"p\":\"q\",\"n\":3}}],"
                           "\"outputs\":[{\"name\":\"o\",\"parameters\":{\"binary_data\":true}}]}"));
  const http::Request w4 =
      http::build_infer_request("/x", "h", {{"content-type", "application/x"}}, r4);
  CHECK_EQ(w4.head, "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: " + std::to_string(j4.size()) +
                        "\r\nInference-Header-Content-Length: " + std::to_string(j4.size()) +
                        "\r\ncontent-type: application/x\r\n\r\n" + j4);
  CHECK(w4.segments.empty());

  // A caller's binary_data_output is not doubled; escapes in names.
  InferRequest r5;
  r5.id = "a\"b";
  r5.parameters = {{"binary_data_output", false}};
  CHECK_EQ(write_infer_header(r5),
           std::string("{\"id\":\"a\\\"b\",\"inputs\":[],\"parameters\":{\"binary_data_output\":false}}"));

  // Errors.
  InferRequest bad = r4;
  bad.parameters = {{"x", std::nan("")}};
  EXPECT_THROW(EncodeError, write_infer_header(bad), "request parameter 'x': NaN cannot be written");
  bad = r4;
  bad.inputs[0].parameters = {{"binary_data_size", std::int64_t{1}}};
  EXPECT_THROW(EncodeError, write_infer_header(bad), "input 'E': parameter 'binary_data_size' is set by");
  bad = r4;
  bad.inputs[0].parameters = {{"w", -std::numeric_limits<double>::infinity()}};
  EXPECT_THROW(EncodeError, write_infer_header(bad), "input parameter 'w': -Infinity");
  bad = r4;
  bad.outputs[0].class_count = 2;
  bad.outputs[0].shared_memory = SharedMemoryRef{"r", 1, 0};
  EXPECT_THROW(EncodeError, write_infer_header(bad), "output 'o': classification cannot be combined");
  bad = r4;
  bad.inputs[0].shared_memory = SharedMemoryRef{"r", 1, 0};
  EXPECT_THROW(EncodeError, write_infer_header(bad), "input 'E' has both data segments and a shared");

  // The 2 GiB limit (segments are never read while building).
  InferRequest big;
  InputTensor bi;
  bi.name = "B";
  bi.datatype = "UINT8";
  bi.shape = {1};
  bi.segments.push_back(Segment{zeros.data(), 0x7FFFFFFFull - 100});
  big.inputs = {bi};
  const std::size_t jbig = write_infer_header(big).size();
  big.inputs[0].segments[0].size = 0x7FFFFFFFull - jbig - 1;
  CHECK(http::build_infer_request("/x", "h", {}, big).size() > 0x7FFFFFFEull);
  big.inputs[0].segments[0].size = 0x7FFFFFFFull - jbig;
  EXPECT_THROW(EncodeError, http::build_infer_request("/x", "h", {}, big),
               "request body of 2147483647 bytes reaches Triton's limit of 2147483647 bytes (the "
               "server parses Content-Length as a 32-bit integer)");
}

void test_build_request() {
  CHECK_EQ(http::build_request("GET", "/v2/health/ready", "localhost:8000", {}, "").head,
           std::string("GET /v2/health/ready HTTP/1.1\r\nHost: localhost:8000\r\n\r\n"));
  CHECK_EQ(http::build_request("POST", "/v2/repository/index", "h:1", {}, "").head,
           std::string("POST /v2/repository/index HTTP/1.1\r\nHost: h:1\r\nContent-Length: 0\r\n\r\n"));
  const http::Request r = http::build_request("POST", "/v2/models/m/load", "[::1]:8000",
                                              {{"Content-Type", "application/json"}}, "{}");
  CHECK_EQ(r.head, std::string("POST /v2/models/m/load HTTP/1.1\r\nHost: [::1]:8000\r\n"
                               "Content-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"));
  CHECK(r.segments.empty());
  CHECK_EQ(r.size(), std::uint64_t(r.head.size()));

  EXPECT_THROW(EncodeError, http::validate_header({"X-A", "v\r\nEvil: 1"}), "header 'X-A': value holds CR, LF or NUL");
  EXPECT_THROW(EncodeError, http::validate_header({"X-A", std::string("a\0b", 3)}), "CR, LF or NUL");
  EXPECT_THROW(EncodeError, http::validate_header({"Bad Name", "v"}), "header name 'Bad Name' is not an HTTP token");
  EXPECT_THROW(EncodeError, http::validate_header({"", "v"}), "is not an HTTP token");
  EXPECT_THROW(EncodeError, http::validate_header({"X:Y", "v"}), "not an HTTP token");
  for (const char* name : {"host", "Content-Length", "TRANSFER-ENCODING",
                           "inference-header-content-length", "Connection"}) {
    EXPECT_THROW(EncodeError, http::validate_header({name, "v"}), "is set by tritonfast's HTTP framing");
  }
  http::validate_header({"Accept-Encoding", "gzip, deflate\t"});
  EXPECT_THROW(EncodeError, http::build_request("GET", "/a b", "h", {}, ""), "request target '/a b'");
  EXPECT_THROW(EncodeError, http::build_request("GET", "/a\r\n", "h", {}, ""), "request target");
  EXPECT_THROW(EncodeError, http::build_request("G T", "/", "h", {}, ""), "request method");
  EXPECT_THROW(EncodeError, http::build_request("GET", "/", "h\r\nX: y", {}, ""), "Host");
  EXPECT_THROW(EncodeError, http::build_request("GET", "/", "h", {{"Host", "x"}}, ""), "'Host' is set by");

  CHECK_EQ(http::model_target("simple", "", "/infer"), std::string("/v2/models/simple/infer"));
  CHECK_EQ(http::model_target("my model/v1", "2", "/ready"),
           std::string("/v2/models/my%20model%2Fv1/versions/2/ready"));
  CHECK_EQ(http::model_target("a-b.c_d~e", "", ""), std::string("/v2/models/a-b.c_d~e"));
  CHECK_EQ(http::model_target("\xC3\xA9%?#", "1 ", "/config"),
           std::string("/v2/models/%C3%A9%25%3F%23/versions/1%20/config"));
}

// ============================================================== infer response

std::string json_header_body(const std::string& json, const std::string& binary) {
  return json + binary;
}

void test_infer_response() {
  // Golden: binary, JSON and shared-memory outputs (spec section 1.5).
  const std::string hdr =
      "{\"id\":\"42\",\"model_name\":\"m\",\"model_version\":\"1\",\"parameters\":{\"p\":1},"
      "\"outputs\":[{\"name\":\"o_bin\",\"datatype\":\"FP32\",\"shape\":[3,2],\"parameters\":{"
      "\"binary_data_size\":24}},{\"name\":\"o_json\",\"datatype\":\"INT32\",\"shape\":[2],"
      "\"data\":[1,2]},{\"name\":\"o_shm\",\"datatype\":\"FP32\",\"shape\":[4],\"parameters\":{"
      "\"shared_memory_region\":\"r\",\"shared_memory_byte_size\":16}},{\"name\":\"o_str\","
      "\"datatype\":\"BYTES\",\"shape\":[1],\"parameters\":{\"binary_data_size\":7}},{\"name\":"
      "\"o_empty\",\"datatype\":\"FP64\",\"shape\":[0,3],\"parameters\":{\"binary_data_size\":0}}]}";
  std::string bin(24, '\x11');
  bin += std::string("\x03\0\0\0abc", 7);
  const std::string body = json_header_body(hdr, bin);
  std::vector<RequestedOutput> asked;
  for (const char* name : {"o_bin", "o_json", "o_shm", "o_str", "o_empty"}) asked.push_back(RequestedOutput{name});
  asked[2].shared_memory = SharedMemoryRef{"r", 16, 0};
  ExpectedResponse expected{"42", &asked};
  InferResponse r = parse_infer_response(u8(body), body.size(), hdr.size(), expected);
  CHECK_EQ(r.id, std::string("42"));
  CHECK_EQ(r.model_name, std::string("m"));
  CHECK_EQ(r.model_version, std::string("1"));
  CHECK(r.parameters.is_object() && r.parameters.find("p")->as_int() == 1);
  CHECK_EQ(r.outputs.size(), std::size_t{5});
  CHECK(r.outputs[0].kind == OutputKind::kBinary);
  CHECK_EQ(r.outputs[0].offset, std::uint64_t(hdr.size()));
  CHECK_EQ(r.outputs[0].size, std::uint64_t{24});
  CHECK(r.outputs[0].shape == std::vector<std::int64_t>({3, 2}));
  CHECK_EQ(r.outputs[0].datatype, std::string("FP32"));
  CHECK(r.outputs[1].kind == OutputKind::kJson);
  CHECK_EQ(decode_json_output(r.outputs[1], u8(body)).count, std::uint64_t{2});
  CHECK(r.outputs[1].parameters.is_null());
  CHECK(r.outputs[2].kind == OutputKind::kSharedMemory);
  CHECK_EQ(r.outputs[2].size, std::uint64_t{16});
  CHECK(r.outputs[3].kind == OutputKind::kBinary);
  CHECK_EQ(r.outputs[3].offset, std::uint64_t(hdr.size() + 24));
  CHECK_EQ(r.outputs[3].size, std::uint64_t{7});
  CHECK(r.outputs[4].kind == OutputKind::kBinary);
  CHECK_EQ(r.outputs[4].offset, std::uint64_t(body.size()));
  CHECK_EQ(r.outputs[4].size, std::uint64_t{0});

  // Every binary output empty: no Inference-Header-Content-Length at all.
  const std::string empty =
      "{\"model_name\":\"m\",\"model_version\":\"1\",\"outputs\":[{\"name\":\"a\",\"datatype\":"
      "\"FP32\",\"shape\":[0],\"parameters\":{\"binary_data_size\":0}},{\"name\":\"b\","
      "\"datatype\":\"BYTES\",\"shape\":[0],\"parameters\":{\"binary_data_size\":0}}]}  \n";
  r = parse_infer_response(u8(empty), empty.size(), std::nullopt);
  CHECK_EQ(r.outputs.size(), std::size_t{2});
  CHECK(r.outputs[1].kind == OutputKind::kBinary && r.outputs[1].size == 0 &&
        r.outputs[1].offset == empty.size());
  CHECK(r.id.empty());
  CHECK(r.parameters.is_null());
  // JSON only.
  const std::string js =
      "{\"outputs\":[{\"name\":\"a\",\"datatype\":\"FP32\",\"shape\":[2],\"data\":[NaN,1.5]}]}";
  r = parse_infer_response(u8(js), js.size(), std::nullopt);
  {
    CHECK(r.outputs[0].kind == OutputKind::kJson);
    const JsonOutputData decoded = decode_json_output(r.outputs[0], u8(js));
    float first = 0;
    std::memcpy(&first, decoded.bytes.data(), sizeof first);
    CHECK(decoded.count == 2 && std::isnan(first));
  }
  // Shared memory without a size.
  const std::string sm = "{\"outputs\":[{\"name\":\"a\",\"datatype\":\"FP32\",\"shape\":[2]}]}";
  std::vector<RequestedOutput> asked_a{RequestedOutput{"a"}};
  asked_a[0].shared_memory = SharedMemoryRef{"r", 8, 0};
  const ExpectedResponse expected_a{"", &asked_a};
  r = parse_infer_response(u8(sm), sm.size(), std::nullopt, expected_a);
  CHECK(r.outputs[0].kind == OutputKind::kSharedMemory && r.outputs[0].size == 0);
  // Header length equal to the body.
  r = parse_infer_response(u8(sm), sm.size(), sm.size(), expected_a);
  CHECK_EQ(r.outputs.size(), std::size_t{1});
  // Integer model_version from a non-Triton server.
  const std::string iv = "{\"model_version\":3,\"outputs\":[]}";
  CHECK_EQ(parse_infer_response(u8(iv), iv.size(), std::nullopt).model_version, std::string("3"));
  // A zero dimension makes an empty tensor, but the other dimensions must still
  // fit an array's int64 strides.
  const std::string zd = "{\"outputs\":[{\"name\":\"z\",\"datatype\":\"FP64\",\"shape\":"
                         "[1024,1024,0],\"parameters\":{\"binary_data_size\":0}}]}";
  CHECK_EQ(parse_infer_response(u8(zd), zd.size(), std::nullopt).outputs.size(), std::size_t{1});
  const std::string zh = "{\"outputs\":[{\"name\":\"z\",\"datatype\":\"FP64\",\"shape\":"
                         "[9223372036854775807,9223372036854775807,0],\"parameters\":{"
                         "\"binary_data_size\":0}}]}";
  bool refused = false;
  try {
    parse_infer_response(u8(zh), zh.size(), std::nullopt);
  } catch (const ProtocolError&) {
    refused = true;
  }
  CHECK(refused);

  // Errors.
  auto out = [](const std::string& o) {
    return "{\"outputs\":[" + o + "]}";
  };
  struct Case {
    std::string body;
    std::optional<std::uint64_t> header_length;
    std::string needle;
  };
  const std::string one =
      out("{\"name\":\"OUTPUT0\",\"datatype\":\"FP32\",\"shape\":[16],\"parameters\":{"
          "\"binary_data_size\":64}}");
  const std::string x20 = out(
      "{\"name\":\"X\",\"datatype\":\"FP32\",\"shape\":[2,3],\"parameters\":{"
      "\"binary_data_size\":20}}");
  const std::vector<Case> cases = {
      {one + std::string(30, 'x'), one.size(),
       "output 'OUTPUT0': binary_data_size 64 at byte " + std::to_string(one.size()) +
           " runs past the end of the " + std::to_string(one.size() + 30) + "-byte body"},
      {one, std::nullopt,
       "output 'OUTPUT0': binary_data_size 64 at byte " + std::to_string(one.size()) +
           " runs past the end"},
      {x20 + std::string(20, 'x'), x20.size(),
       "output 'X' of shape [2,3] FP32 needs 24 bytes but binary_data_size is 20"},
      {one + std::string(76, 'x'), one.size(), "response body has 12 bytes after the last output"},
      {sm + "abc", sm.size(), "neither binary_data_size nor data"},
      {std::string(300, ' '), 500, "response header length 500 exceeds the 300-byte body"},
      {"{\"model_name\":\"m\"}", std::nullopt, "response has no 'outputs' array"},
      {"{\"outputs\":{}}", std::nullopt, "response has no 'outputs' array"},
      {"[]", std::nullopt, "response header is not a JSON object"},
      {"{\"outputs\":[", std::nullopt, "response header: invalid JSON at byte 12"},
      {"", std::nullopt, "response header: invalid JSON at byte 0"},
      {out("{\"name\":\"X\",\"datatype\":\"FP8\",\"shape\":[1]}"), std::nullopt,
       "output 'X' has unknown datatype 'FP8'"},
      {out("{\"name\":\"X\",\"shape\":[1]}"), std::nullopt, "output 'X' has no 'datatype' string"},
      {out("{\"datatype\":\"FP32\",\"shape\":[1]}"), std::nullopt,
       "response output 0 has no 'name' string"},
      {out("1"), std::nullopt, "response output 0 is not an object"},
      {out("{\"name\":\"X\",\"datatype\":\"FP32\"}"), std::nullopt, "output 'X' has no 'shape' array"},
      {out("{\"name\":\"X\",\"datatype\":\"FP32\",\"shape\":[2,-1]}"), std::nullopt,
       "output 'X': shape [2,-1] has a negative dimension"},
      {out("{\"name\":\"X\",\"datatype\":\"FP32\",\"shape\":[2.5]}"), std::nullopt,
       "output 'X': shape holds a dimension that is not an integer"},
      {out("{\"name\":\"X\",\"datatype\":\"FP32\",\"shape\":[9223372036854775807,4]}"), std::nullopt,
       "output 'X': shape [9223372036854775807,4] FP32 is too large for an array"},
      {out("{\"name\":\"X\",\"datatype\":\"FP64\",\"shape\":[4611686018427387904]}"), std::nullopt,
       "is too large for an array"},
      {out("{\"name\":\"X\",\"datatype\":\"FP32\",\"shape\":[1],\"parameters\":{"
           "\"binary_data_size\":-4}}"),
       std::nullopt, "output 'X': binary_data_size is not a non-negative integer"},
      {out("{\"name\":\"X\",\"datatype\":\"FP32\",\"shape\":[1],\"parameters\":{"
           "\"binary_data_size\":\"4\"}}"),
       std::nullopt, "binary_data_size is not a non-negative integer"},
      {out("{\"name\":\"X\",\"datatype\":\"FP32\",\"shape\":[1],\"parameters\":[]}"), std::nullopt,
       "output 'X': 'parameters' is not an object"},
      {out("{\"name\":\"X\",\"datatype\":\"FP32\",\"shape\":[1],\"parameters\":{"
           "\"shared_memory_byte_size\":1.5}}"),
       std::nullopt, "neither binary_data_size nor data"},
      {"{\"model_name\":1.5,\"outputs\":[]}", std::nullopt, "response 'model_name' is not a string"},
      {"{\"parameters\":1,\"outputs\":[]}", std::nullopt, "response: 'parameters' is not an object"},
  };
  for (const auto& c : cases) {
    EXPECT_THROW(ProtocolError, parse_infer_response(u8(c.body), c.body.size(), c.header_length),
                 c.needle);
  }
  // The same two bodies answering a request that asked for the output in shared
  // memory: the checks behind the one above still speak.
  auto in_shm = [](const char* name) {
    std::vector<RequestedOutput> outputs{RequestedOutput{name}};
    outputs[0].shared_memory = SharedMemoryRef{"r", 8, 0};
    return outputs;
  };
  const auto asked_a_shm = in_shm("a");
  EXPECT_THROW(ProtocolError,
               parse_infer_response(u8(sm + "abc"), sm.size() + 3, sm.size(), ExpectedResponse{"", &asked_a_shm}),
               "response body has 3 bytes after the last output");
  const auto asked_x = in_shm("X");
  const std::string bad_size = out("{\"name\":\"X\",\"datatype\":\"FP32\",\"shape\":[1],\"parameters\":{"
                                   "\"shared_memory_byte_size\":1.5}}");
  EXPECT_THROW(ProtocolError,
               parse_infer_response(u8(bad_size), bad_size.size(), std::nullopt, ExpectedResponse{"", &asked_x}),
               "shared_memory_byte_size is not a non-negative integer");
  // BYTES sizes are not checked against the shape here.
  const std::string bs = out("{\"name\":\"s\",\"datatype\":\"BYTES\",\"shape\":[5],\"parameters\":{"
                             "\"binary_data_size\":3}}") + "abc";
  CHECK_EQ(parse_infer_response(u8(bs), bs.size(), bs.size() - 3).outputs[0].size, std::uint64_t{3});

  // Error bodies.
  auto err = [](const std::string& s) { return parse_error_body(u8(s), s.size()); };
  CHECK(err("{\"error\":\"Model version not ready\"}") == std::optional<std::string>("Model version not ready"));
  CHECK(err(" {\"x\":1, \"error\" : \"a\\nb\"} ") == std::optional<std::string>("a\nb"));
  CHECK(!err(""));
  CHECK(!err("Not Found"));
  CHECK(!err("{\"error\":1}"));
  CHECK(!err("[\"error\"]"));
  CHECK(!err("{\"error\":\"x\""));
  CHECK(!err(std::string(100000, '[')));
  CHECK(!parse_error_body(nullptr, 0));
}

// ============================================================ response parser

struct Outcome {
  bool ok = false;
  std::string error_kind;  // "protocol", "connection", "other"
  std::string message;
  std::size_t consumed = 0;
  int status = 0;
  std::string reason;
  std::vector<http::Header> headers;
  std::optional<std::uint64_t> content_length;
  std::optional<std::uint64_t> inference_header_length;
  bool chunked = false;
  bool keep_alive = false;
  std::string body;
  bool aligned = true;

  bool operator==(const Outcome& o) const {
    if (ok != o.ok || error_kind != o.error_kind || message != o.message) return false;
    if (!ok) return true;
    if (headers.size() != o.headers.size()) return false;
    for (std::size_t k = 0; k < headers.size(); ++k) {
      if (headers[k].name != o.headers[k].name || headers[k].value != o.headers[k].value) {
        return false;
      }
    }
    return consumed == o.consumed && status == o.status && reason == o.reason &&
           content_length == o.content_length &&
           inference_header_length == o.inference_header_length && chunked == o.chunked &&
           keep_alive == o.keep_alive && body == o.body && aligned == o.aligned;
  }
};

std::string describe(const Outcome& o) {
  if (!o.ok) return o.error_kind + ": " + o.message;
  return "ok status=" + std::to_string(o.status) + " consumed=" + std::to_string(o.consumed) +
         " body=" + show(o.body) + " keep_alive=" + std::to_string(o.keep_alive) +
         " chunked=" + std::to_string(o.chunked);
}

enum class Strategy { kWhole, kByteByByte, kRandom, kTransport };

// Drives a parser over `input` the given way; at the end of the input, if the
// response is not done and `eof`, calls finish() as a transport would when the
// server closes.
Outcome drive(const std::string& input, Strategy strategy, std::mt19937_64& rng, bool eof,
              std::uint64_t max_body = http::kDefaultMaxResponseBodyBytes,
              const std::shared_ptr<BufferPool>& shared_pool = nullptr) {
  auto pool = shared_pool ? shared_pool : BufferPool::create(1 << 20);
  http::ResponseParser parser(pool, max_body);
  Outcome out;
  std::size_t pos = 0;
  try {
    const auto* data = u8(input);
    while (pos < input.size() && !parser.done()) {
      std::size_t n = input.size() - pos;
      if (strategy == Strategy::kByteByByte) n = 1;
      if (strategy == Strategy::kRandom || strategy == Strategy::kTransport) {
        n = 1 + rng() % std::min<std::size_t>(n, rng() % 2 ? 7 : 200);
      }
      const std::size_t used = parser.feed(data + pos, n);
      if (used > n) throw std::logic_error("feed() consumed more than given");
      pos += used;
      if (used < n) break;  // the response ended inside this piece
      if (strategy == Strategy::kTransport) {
        // recv() straight into the body window, in random amounts.
        for (;;) {
          auto window = parser.body_window();
          if (window.second == 0 || pos == input.size()) break;
          std::size_t m = std::min(window.second, input.size() - pos);
          m = 1 + rng() % m;
          std::memcpy(window.first, data + pos, m);
          parser.commit(m);
          pos += m;
        }
      }
    }
    if (!parser.done() && eof) parser.finish();
    if (parser.done()) {
      // A finished parser consumes nothing more.
      if (pos < input.size() && parser.feed(data + pos, input.size() - pos) != 0) {
        throw std::logic_error("feed() consumed past the end of the response");
      }
      out.ok = true;
      out.consumed = pos;
      if (parser.received() != pos) throw std::logic_error("received() disagrees");
      const http::ResponseHead& h = parser.head();
      out.status = h.status;
      out.reason = h.reason;
      out.headers = h.headers;
      out.content_length = h.content_length;
      out.inference_header_length = h.inference_header_length;
      out.chunked = h.chunked;
      out.keep_alive = h.keep_alive;
      http::Body body = parser.take_body();
      if (body.size) out.body.assign(reinterpret_cast<const char*>(body.data()), body.size);
      if (body.size && h.inference_header_length && *h.inference_header_length <= body.size) {
        const auto addr = reinterpret_cast<std::uintptr_t>(body.data() + *h.inference_header_length);
        out.aligned = addr % BufferPool::kAlignment == 0;
      }
    } else {
      out.error_kind = "incomplete";
    }
  } catch (const ProtocolError& e) {
    out.error_kind = "protocol";
    out.message = e.what();
  } catch (const ConnectionError& e) {
    out.error_kind = "connection";
    out.message = e.what();
  } catch (const DecodeError& e) {
    out.error_kind = "decode";
    out.message = e.what();
  } catch (const std::exception& e) {
    out.error_kind = "other";
    out.message = e.what();
  }
  return out;
}

// Runs every strategy (several random seeds) and checks they agree.
Outcome drive_all_at(const char* file, int line, const std::string& input, bool eof = true,
                     std::uint64_t max_body = http::kDefaultMaxResponseBodyBytes) {
  std::mt19937_64 rng(12345);
  const Outcome whole = drive(input, Strategy::kWhole, rng, eof, max_body);
  std::vector<Outcome> others;
  others.push_back(drive(input, Strategy::kByteByByte, rng, eof, max_body));
  for (int k = 0; k < 4; ++k) {
    others.push_back(drive(input, Strategy::kRandom, rng, eof, max_body));
    others.push_back(drive(input, Strategy::kTransport, rng, eof, max_body));
  }
  for (const auto& o : others) {
    ++g_checks;
    if (!(o == whole)) {
      ++g_failures;
      std::fprintf(stderr, "%s:%d: strategies disagree:\n  whole: %s\n  other: %s\n", file, line,
                   describe(whole).c_str(), describe(o).c_str());
      break;
    }
  }
  return whole;
}
#define drive_all(...) drive_all_at(__FILE__, __LINE__, __VA_ARGS__)

void test_parser_valid() {
  // Content-Length body, with trailing bytes that belong to no response.
  const std::string r1 =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\":\"bcd\"}";
  Outcome o = drive_all(r1 + "HTTP/1.1 200 OK\r\n", true);
  CHECK(o.ok);
  CHECK_EQ(o.consumed, r1.size());
  CHECK_EQ(o.status, 200);
  CHECK_EQ(o.reason, std::string("OK"));
  CHECK_EQ(o.body, std::string("{\"a\":\"bcd\"}"));
  CHECK(o.keep_alive);
  CHECK(!o.chunked);
  CHECK(o.content_length == std::optional<std::uint64_t>(11));
  CHECK_EQ(o.headers.size(), std::size_t{2});
  CHECK_EQ(o.headers[0].name, std::string("Content-Type"));
  // Same without the trailing bytes and without EOF.
  o = drive_all(r1, false);
  CHECK(o.ok && o.consumed == r1.size());

  // The lookup is case-insensitive; values are trimmed.
  {
    auto pool = BufferPool::create(0);
    http::ResponseParser p(pool);
    const std::string r = "HTTP/1.1 404 Not Found\r\ncOnTeNt-LeNgTh:\t 0 \t\r\nX-A: 1\r\nx-a: 2\r\n\r\n";
    CHECK_EQ(p.feed(u8(r), r.size()), r.size());
    CHECK(p.done() && p.head_complete());
    CHECK(p.head().find("content-length") && *p.head().find("content-length") == "0");
    CHECK(p.head().find("X-a") && *p.head().find("X-a") == "1");
    CHECK(p.head().find("missing") == nullptr);
    CHECK_EQ(p.head().status, 404);
    CHECK_EQ(p.head().reason, std::string("Not Found"));
    auto window = p.body_window();
    CHECK(window.first == nullptr && window.second == 0);
    http::Body b = p.take_body();
    CHECK_EQ(b.size, std::size_t{0});
    p.finish();  // no-op once done
    CHECK_EQ(p.feed(u8(r), r.size()), std::size_t{0});
  }

  // Chunked, with extensions, upper/lower hex, and trailers; trailing bytes.
  const std::string r2 =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;name=value;x=\"q\"\r\nhello\r\n"
      "1A \t; ext\r\nabcdefghijklmnopqrstuvwxyz\r\n"
      "0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n";
  o = drive_all(r2 + "garbage", true);
  CHECK(o.ok && o.chunked);
  CHECK_EQ(o.consumed, r2.size());
  CHECK_EQ(o.body, std::string("helloabcdefghijklmnopqrstuvwxyz"));
  CHECK(o.keep_alive);
  // Chunked without trailers, any case, LF-only lines.
  o = drive_all("HTTP/1.1 200 OK\nTransfer-Encoding: CHUNKED\n\n3\nabc\n0\n\n");
  CHECK(o.ok && o.body == "abc" && o.chunked);
  // Empty chunked body.
  o = drive_all("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  CHECK(o.ok && o.body.empty());
  // A large chunked body (several buffer growths).
  {
    std::string big = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    std::string expect;
    for (int k = 0; k < 40; ++k) {
      std::string piece(1000 + k * 37, static_cast<char>('a' + k % 26));
      char hex[16];
      std::snprintf(hex, sizeof hex, "%zx", piece.size());
      big += std::string(hex) + "\r\n" + piece + "\r\n";
      expect += piece;
    }
    big += "0\r\n\r\n";
    o = drive_all(big);
    CHECK(o.ok && o.body == expect);
  }

  // Read until close (no length): completes on finish(), never keep-alive.
  o = drive_all("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\nstream of bytes", true);
  CHECK(o.ok && o.body == "stream of bytes" && !o.keep_alive);
  o = drive_all("HTTP/1.1 200 OK\r\n\r\n", true);
  CHECK(o.ok && o.body.empty());
  {
    std::string big = "HTTP/1.0 200 OK\r\n\r\n";
    std::string payload;
    for (int k = 0; k < 100000; ++k) payload.push_back(static_cast<char>(k * 7));
    o = drive_all(big + payload, true);
    CHECK(o.ok && o.body == payload && !o.keep_alive);
  }
  // Exactly at the limit is fine, one past is not.
  o = drive_all("HTTP/1.1 200 OK\r\n\r\n0123456789", true, 10);
  CHECK(o.ok && o.body == "0123456789");
  o = drive_all("HTTP/1.1 200 OK\r\n\r\n0123456789X", true, 10);
  CHECK(o.error_kind == "protocol" &&
        o.message == "response body exceeds the 10-byte limit (raise it with the client option max_response_body_bytes)");
  o = drive_all("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", true, 10);
  CHECK(o.ok);
  o = drive_all("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n", true, 10);
  CHECK(o.ok && o.body == "0123456789");

  // Connection: close / HTTP/1.0.
  o = drive_all("HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 1\r\n\r\nx");
  CHECK(o.ok && !o.keep_alive);
  o = drive_all("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx");
  CHECK(o.ok && !o.keep_alive);
  o = drive_all("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx");
  CHECK(o.ok && o.keep_alive);

  // Interim responses are skipped.
  const std::string r3 =
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
      "HTTP/1.1 400 Bad Request\r\nContent-Length: 19\r\n\r\n{\"error\":\"bad req\"}";
  o = drive_all(r3 + "x");
  CHECK(o.ok && o.status == 400 && o.consumed == r3.size() && o.headers.size() == 1);
  CHECK(o.body == "{\"error\":\"bad req\"}");
  {
    auto pool = BufferPool::create(0);
    http::ResponseParser p(pool);
    const std::string c = "HTTP/1.1 100 Continue\r\n\r\n";
    CHECK_EQ(p.feed(u8(c), c.size()), c.size());
    CHECK(!p.head_complete() && !p.done());
    CHECK_EQ(p.received(), std::uint64_t(c.size()));
  }

  // No body for 204 / 304, whatever the headers say.
  o = drive_all("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nHTTP/1.1", false);
  CHECK(o.ok && o.body.empty() && o.consumed == 46 && o.keep_alive);
  o = drive_all("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", false);
  CHECK(o.ok && o.body.empty());

  // Status line variants.
  o = drive_all("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n");
  CHECK(o.ok && o.status == 200 && o.reason.empty());
  o = drive_all("HTTP/1.1 503 \r\nContent-Length: 0\r\n\r\n");
  CHECK(o.ok && o.status == 503 && o.reason.empty());
  o = drive_all("HTTP/1.1 299 Odd \xC3\xA9 reason\tphrase\r\nContent-Length: 0\r\n\r\n");
  CHECK(o.ok && o.reason == "Odd \xC3\xA9 reason\tphrase");
  // Duplicate agreeing Content-Length and lists.
  o = drive_all("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\nabc");
  CHECK(o.ok && o.body == "abc");
  o = drive_all("HTTP/1.1 200 OK\r\nContent-Length: 00003\r\n\r\nabc");
  CHECK(o.ok && o.body == "abc");
  // Empty header value.
  o = drive_all("HTTP/1.1 200 OK\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n");
  CHECK(o.ok && o.headers[0].value.empty());

  // Inference-Header-Content-Length and the alignment of the first tensor.
  for (std::size_t j : {0, 1, 13, 63, 64, 65, 200}) {
    const std::string json(j, ' ');
    const std::string payload = json + std::string(24, '\x42');
    const std::string resp = "HTTP/1.1 200 OK\r\nInference-Header-Content-Length: " +
                             std::to_string(j) + "\r\nContent-Length: " +
                             std::to_string(payload.size()) + "\r\n\r\n" + payload;
    o = drive_all(resp);
    CHECK(o.ok && o.inference_header_length == std::optional<std::uint64_t>(j));
    CHECK(o.aligned);
    CHECK(o.body == payload);
    char hex[16];
    std::snprintf(hex, sizeof hex, "%zx", payload.size() - 7);
    const std::string chunked = "HTTP/1.1 200 OK\r\nInference-Header-Content-Length: " +
                                std::to_string(j) +
                                "\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n" +
                                payload.substr(0, 7) + "\r\n" + hex + "\r\n" +
                                payload.substr(7) + "\r\n0\r\n\r\n";
    o = drive_all(chunked);
    CHECK(o.ok && o.aligned && o.body == payload);
    const std::string close = "HTTP/1.1 200 OK\r\nInference-Header-Content-Length: " +
                              std::to_string(j) + "\r\n\r\n" + payload;
    o = drive_all(close);
    CHECK(o.ok && o.aligned && o.body == payload);
  }

  // The transport's way, by hand: the body lands in the window, zero copies.
  {
    auto pool = BufferPool::create(1 << 20);
    http::ResponseParser p(pool);
    const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nAB";
    CHECK_EQ(p.feed(u8(head), head.size()), head.size());
    CHECK(p.head_complete() && !p.done());
    auto w = p.body_window();
    CHECK(w.first != nullptr && w.second == 99998);
    std::memset(w.first, 'z', 50000);
    p.commit(50000);
    w = p.body_window();
    CHECK(w.second == 49998);
    EXPECT_THROW(std::logic_error, p.commit(49999), "past the body window");
    std::memset(w.first, 'y', 49998);
    p.commit(49998);
    CHECK(p.done());
    CHECK_EQ(p.received(), std::uint64_t(head.size() - 2 + 100000));
    http::Body b = p.take_body();
    CHECK_EQ(b.size, std::size_t{100000});
    CHECK(b.data()[0] == 'A' && b.data()[1] == 'B' && b.data()[2] == 'z' && b.data()[99999] == 'y');
    EXPECT_THROW(std::logic_error, p.commit(1), "outside a body window");
  }
  // take_body before done.
  {
    http::ResponseParser p(BufferPool::create(0));
    EXPECT_THROW(std::logic_error, p.take_body(), "before the response is complete");
  }
  // Buffers come back to the pool and are reused.
  {
    auto pool = BufferPool::create(std::size_t{64} << 20);
    std::mt19937_64 rng(1);
    const std::string resp =
        "HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + std::string(200000, 'q');
    Outcome a = drive(resp, Strategy::kTransport, rng, true, http::kDefaultMaxResponseBodyBytes, pool);
    CHECK(a.ok && pool->idle_bytes() >= 200000);
    Outcome b = drive(resp, Strategy::kWhole, rng, true, http::kDefaultMaxResponseBodyBytes, pool);
    CHECK(b.ok && b.body == a.body);
  }
}

void test_parser_malformed() {
  struct Case {
    std::string input;
    std::string message;  // a ProtocolError's exact message, or a prefix ending in '*'
  };
  const std::string ok_head = "HTTP/1.1 200 OK\r\n";
  std::string many_headers = ok_head;
  for (std::size_t k = 0; k <= http::kMaxHeaderCount; ++k) many_headers += "X: 1\r\n";
  many_headers += "\r\n";
  std::string huge_head = ok_head + "X: " + std::string(http::kMaxHeadBytes, 'a') + "\r\n\r\n";
  std::string long_chunk_line = ok_head + "Transfer-Encoding: chunked\r\n\r\n1;" +
                                std::string(http::kMaxChunkLineBytes, 'e') + "\r\n";
  std::string many_trailers = ok_head + "Transfer-Encoding: chunked\r\n\r\n0\r\n";
  for (std::size_t k = 0; k <= http::kMaxHeaderCount; ++k) many_trailers += "T: 1\r\n";
  many_trailers += "\r\n";
  const std::vector<Case> cases = {
      {"HTTP/1.1 20 OK\r\n\r\n", "malformed status line 'HTTP/1.1 20 OK'"},
      {"HTTX/1.1 200 OK\r\n\r\n", "malformed status line*"},
      {"HTTP/2.0 200 OK\r\n\r\n", "malformed status line*"},
      {"HTTP/1.1  200 OK\r\n\r\n", "malformed status line*"},
      {"HTTP/1.1 099 OK\r\n\r\n", "malformed status line*"},
      {"HTTP/1.1 2x0 OK\r\n\r\n", "malformed status line*"},
      {"HTTP/1.1 200OK\r\n\r\n", "malformed status line*"},
      {"HTTP/1.1 200 O\x01K\r\n\r\n", "malformed status line 'HTTP/1.1 200 O\\x01K'"},
      {"\r\nHTTP/1.1 200 OK\r\n\r\n", "malformed status line ''"},
      {"garbage\r\n", "malformed status line 'garbage'"},
      {"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", "response header name 'Bad Header' is not an HTTP token"},
      {"HTTP/1.1 200 OK\r\nName : x\r\n\r\n", "response header name 'Name ' is not an HTTP token"},
      {"HTTP/1.1 200 OK\r\n: x\r\n\r\n", "response header name '' is not an HTTP token"},
      {"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", "response header line 'NoColon' has no ':'"},
      {"HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n",
       "obsolete line folding (obs-fold) in response header after 'A'"},
      {"HTTP/1.1 200 OK\r\n\tfolded\r\n\r\n", "obsolete line folding*"},
      {"HTTP/1.1 200 OK\r\nA: x\x01y\r\n\r\n", "response header 'A' holds a control character"},
      {"HTTP/1.1 200 OK\r\nA: x\x7Fy\r\n\r\n", "response header 'A' holds a control character"},
      {"HTTP/1.1 200 OK\r\nA: x\ry\r\n\r\n", "bare CR inside a line of the response"},
      {"HTTP/1.1 200 OK\rContent-Length: 0\r\n\r\n", "bare CR inside a line of the response"},
      {"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", "invalid Content-Length '+5'"},
      {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length '-1'"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\n", "invalid Content-Length '5 5'"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", "invalid Content-Length '0x10'"},
      {"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", "invalid Content-Length ''"},
      {"HTTP/1.1 200 OK\r\nContent-Length: ,\r\n\r\n", "invalid Content-Length ','"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n",
       "invalid Content-Length '18446744073709551616'"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", "invalid Content-Length*"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n",
       "Content-Length 18446744073709551615 exceeds the 17179869184-byte limit (raise it with the client option max_response_body_bytes)"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
       "conflicting Content-Length values 3 and 4"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd", "conflicting Content-Length values 3 and 4"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding 'gzip'"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity, chunked\r\n\r\n",
       "unsupported Transfer-Encoding 'identity'"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
       "Transfer-Encoding has 'chunked' before its end"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
       "Transfer-Encoding has 'chunked' before its end"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding:  \r\n\r\n", "empty Transfer-Encoding"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
       "response has both Transfer-Encoding and Content-Length"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk-size line 'zz'"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", "malformed chunk-size line ''"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", "malformed chunk-size line '-1'"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\n", "malformed chunk-size line '5 x'"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;\x01\r\n",
       "chunk extension holds a control character"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n",
       "chunk size '11111111111111111' overflows 64 bits"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
       "chunked response body of at least 0 + 18446744073709551615 bytes exceeds the 17179869184-byte "
       "limit (raise it with the client option max_response_body_bytes)"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
       "chunk data is not followed by CRLF (3 body bytes in)"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\r\n",
       "chunk data is not followed by CRLF (3 body bytes in)"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\rx\r\n\r\n",
       "bare CR inside a line of the response"},
      {"HTTP/1.1 101 Switching Protocols\r\n\r\n",
       "unexpected 101 Switching Protocols (no upgrade was requested)"},
      {"HTTP/1.1 200 OK\r\nInference-Header-Content-Length: x\r\n\r\n",
       "invalid Inference-Header-Content-Length 'x'"},
      {"HTTP/1.1 200 OK\r\nInference-Header-Content-Length: 1\r\nInference-Header-Content-Length: 2\r\n\r\n",
       "conflicting Inference-Header-Content-Length values 1 and 2"},
      {many_headers, "response has more than 128 header fields (kMaxHeaderCount)"},
      {huge_head, "response head exceeds 65536 bytes (kMaxHeadBytes)"},
      {long_chunk_line, "chunk-size line exceeds 1024 bytes (kMaxChunkLineBytes)"},
      {many_trailers, "chunked trailer section has more than 128 fields (kMaxHeaderCount)"},
  };
  for (const auto& c : cases) {
    const Outcome o = drive_all(c.input);
    ++g_checks;
    bool match = o.error_kind == "protocol";
    if (match) {
      if (!c.message.empty() && c.message.back() == '*') {
        match = o.message.compare(0, c.message.size() - 1, c.message, 0, c.message.size() - 1) == 0;
      } else {
        match = o.message == c.message;
      }
    }
    if (!match) {
      ++g_failures;
      std::fprintf(stderr, "malformed case %s: got %s, expected %s\n", show(c.input.substr(0, 120)).c_str(),
                   describe(o).c_str(), show(c.message).c_str());
    }
  }

  // The head limit counts the blank line too; exactly at the limit is fine.
  {
    const std::string base = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX: ";
    const std::string fill(http::kMaxHeadBytes - base.size() - 4, 'a');
    Outcome o = drive_all(base + fill + "\r\n\r\n");
    CHECK(o.ok);
    o = drive_all(base + fill + "a\r\n\r\n");
    CHECK(o.error_kind == "protocol" && o.message == "response head exceeds 65536 bytes (kMaxHeadBytes)");
  }

  // A failed parser stays failed.
  {
    http::ResponseParser p(BufferPool::create(0));
    const std::string bad = "HTTP/1.1 200 OK\r\nA B: 1\r\n";
    EXPECT_THROW(ProtocolError, p.feed(u8(bad), bad.size()), "not an HTTP token");
    EXPECT_THROW(ProtocolError, p.feed(u8(bad), 1), "not an HTTP token");
    EXPECT_THROW(ProtocolError, p.finish(), "not an HTTP token");
    EXPECT_THROW(ProtocolError, p.body_window(), "not an HTTP token");
  }

  // Premature EOF.
  struct Eof {
    std::string input;
    std::string message;
  };
  const std::vector<Eof> eofs = {
      {"", "server closed the connection before sending a response"},
      {"HTTP/1.1 200 OK\r\nContent-Le", "server closed the connection in the middle of the response head (27 bytes received)"},
      {"HTTP/1.1 100 Continue\r\n\r\n", "server closed the connection in the middle of the response head (25 bytes received)"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "server closed the connection after 3 of 10 body bytes"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "server closed the connection after 0 of 10 body bytes"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
       "server closed the connection in the middle of a chunked body (2 body bytes received)"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n",
       "server closed the connection in the middle of a chunked body (2 body bytes received)"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "server closed the connection in the middle of a chunked body (0 body bytes received)"},
  };
  for (const auto& e : eofs) {
    const Outcome o = drive_all(e.input, true);
    ++g_checks;
    if (!(o.error_kind == "connection" && o.message == e.message)) {
      ++g_failures;
      std::fprintf(stderr, "eof case %s: got %s, expected %s\n", show(e.input).c_str(),
                   describe(o).c_str(), show(e.message).c_str());
    }
    const Outcome no_eof = drive_all(e.input, false);
    CHECK(no_eof.error_kind == "incomplete");
  }
}

// ======================================================================= fuzz

std::string mutate(const std::string& in, std::mt19937_64& rng) {
  std::string s = in;
  static const std::vector<std::string> tokens = {
      "\r\n", "\n", "\r", ":", " ", "\t", ";", ",", "0", "9", "f", "ffffffff", "18446744073709551615",
      "Content-Length: ", "Transfer-Encoding: chunked", "chunked", "Connection: close",
      "Inference-Header-Content-Length: ", "HTTP/1.1 100 Continue\r\n\r\n", "\r\n\r\n", "-", "\"",
      "{", "}", "[", "]", "\\u", "\xff", std::string(1, '\0')};
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits; ++e) {
    const std::size_t pos = s.empty() ? 0 : rng() % (s.size() + 1);
    switch (rng() % 7) {
      case 0:  // flip a byte
        if (!s.empty()) s[pos % s.size()] = static_cast<char>(rng());
        break;
      case 1:  // insert random bytes
        s.insert(pos, std::string(1 + rng() % 3, static_cast<char>(rng())));
        break;
      case 2:  // delete a range
        if (!s.empty()) s.erase(pos % s.size(), 1 + rng() % 8);
        break;
      case 3:  // insert a token
        s.insert(pos, tokens[rng() % tokens.size()]);
        break;
      case 4:  // duplicate a range
        if (!s.empty()) {
          const std::size_t a = pos % s.size();
          s.insert(a, s.substr(a, 1 + rng() % 16));
        }
        break;
      case 5:  // truncate
        s.resize(pos);
        break;
      case 6:  // change a digit
        for (std::size_t k = 0; k < s.size(); ++k) {
          const std::size_t j = (pos + k) % s.size();
          if (s[j] >= '0' && s[j] <= '9') {
            s[j] = static_cast<char>('0' + rng() % 10);
            break;
          }
        }
        break;
    }
  }
  return s;
}

void fuzz(long iterations) {
  const std::string infer_json =
      "{\"model_name\":\"m\",\"model_version\":\"1\",\"outputs\":[{\"name\":\"a\",\"datatype\":"
      "\"FP32\",\"shape\":[1,2],\"parameters\":{\"binary_data_size\":8}},{\"name\":\"b\","
      "\"datatype\":\"BYTES\",\"shape\":[1],\"parameters\":{\"binary_data_size\":5}},{\"name\":"
      "\"c\",\"datatype\":\"INT64\",\"shape\":[2],\"data\":[1,-2]},{\"name\":\"d\",\"datatype\":"
      "\"UINT8\",\"shape\":[3]}]}";
  const std::string infer_body = infer_json + "ABCDEFGH" + std::string("\x01\0\0\0z", 5);
  const std::vector<std::string> corpus = {
      "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nInference-Header-Content-Length: " +
          std::to_string(infer_json.size()) + "\r\nContent-Length: " +
          std::to_string(infer_body.size()) + "\r\n\r\n" + infer_body,
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n",
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 Bad Request\r\nContent-Length: 17\r\nConnection: close\r\n\r\n{\"error\":\"nope\"}",
      "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close body",
      "HTTP/1.1 204 No Content\r\n\r\n",
      "HTTP/1.1 200\nContent-Length: 2\n\nok",
  };
  const std::vector<std::string> json_corpus = {
      infer_json, "{\"error\":\"a\\u00e9\\ud83d\\ude00\\n\"}", "[1,-2.5e10,true,false,null,\"x\"]",
      "{\"a\":{\"b\":{\"c\":[[[]]]}}}", "[NaN,Infinity,-Infinity,0.1,1e400]"};
  std::mt19937_64 rng(20260501);
  long ok = 0, protocol = 0, connection = 0, incomplete = 0;
  for (long it = 0; it < iterations; ++it) {
    const std::string& base = corpus[rng() % corpus.size()];
    const std::string input = (rng() % 10 == 0) ? base : mutate(base, rng);
    const bool eof = rng() % 4 != 0;
    const std::uint64_t max_body = 1 << 16;
    const Outcome whole = drive(input, Strategy::kWhole, rng, eof, max_body);
    const Strategy other = static_cast<Strategy>(1 + rng() % 3);
    const Outcome split = drive(input, other, rng, eof, max_body);
    ++g_checks;
    if (whole.error_kind == "other" || whole.error_kind == "decode" || !(whole == split)) {
      ++g_failures;
      std::fprintf(stderr, "fuzz %ld: input %s\n  whole: %s\n  split: %s\n", it,
                   show(input).c_str(), describe(whole).c_str(), describe(split).c_str());
      if (g_failures > 20) return;
    }
    if (whole.ok) {
      ++ok;
      // Feed the body on to the Triton layer too, as the client would.
      try {
        if (whole.status == 200) {
          parse_infer_response(u8(whole.body), whole.body.size(), whole.inference_header_length);
        } else {
          parse_error_body(u8(whole.body), whole.body.size());
        }
      } catch (const ProtocolError&) {
      }
    } else if (whole.error_kind == "protocol") {
      ++protocol;
    } else if (whole.error_kind == "connection") {
      ++connection;
    } else {
      ++incomplete;
    }

    // The Triton body and JSON layers on their own.
    if (it % 2 == 0) {
      const std::string body = mutate(infer_body, rng);
      std::optional<std::uint64_t> hl;
      if (rng() % 4) hl = rng() % 2 ? infer_json.size() : rng() % (body.size() + 2);
      try {
        const InferResponse r = parse_infer_response(u8(body), body.size(), hl);
        for (const auto& o : r.outputs) {
          if (o.kind == OutputKind::kBinary) CHECK(o.offset + o.size <= body.size());
        }
      } catch (const ProtocolError&) {
      } catch (const std::exception& e) {
        ++g_failures;
        std::fprintf(stderr, "fuzz infer %ld: unexpected %s\n", it, e.what());
      }
      (void)parse_error_body(u8(body), body.size());
      const std::string js = mutate(json_corpus[rng() % json_corpus.size()], rng);
      try {
        const json::Value v = json::parse(js);
        (void)v;
      } catch (const DecodeError&) {
      } catch (const std::exception& e) {
        ++g_failures;
        std::fprintf(stderr, "fuzz json %ld: unexpected %s\n", it, e.what());
      }
    }
  }
  std::printf("fuzz: %ld iterations: %ld ok, %ld protocol errors, %ld connection errors, %ld incomplete\n",
              iterations, ok, protocol, connection, incomplete);
}

// ============================================================== fast-lane pieces

void test_infer_template() {
  std::vector<std::uint8_t> fp32(64, 0xAB);
  std::vector<std::uint8_t> bytes = {5, 0, 0, 0, 'h', 'e', 'l', 'l', 'o', 0, 0, 0, 0};
  InferRequest layout = two_input_request(fp32, bytes);
  const std::string target = http::model_target("simple", "", "/infer");
  const std::vector<http::Header> headers = {{"X-Trace", "abc"}};
  const http::InferTemplate t(target, "localhost:8000", headers, layout);
  CHECK_EQ(t.binary_bytes(), std::uint64_t{77});

  // The same bytes as build_infer_request, whatever the id (escaped as JSON).
  for (const std::string id : {"0", "7", "123456789012", "", "q\"uote\\", "\xC3\xA9"}) {
    InferRequest request = layout;
    request.id = id;
    const http::Request expected = http::build_infer_request(target, "localhost:8000", headers, request);
    const http::Request got = t.render(id, {Segment{fp32.data(), 64}, Segment{bytes.data(), 13}});
    CHECK_EQ(got.head, expected.head);
    CHECK_EQ(got.size(), expected.size());
    CHECK_EQ(got.segments.size(), std::size_t{2});
    CHECK(got.segments[0].data == fp32.data() && got.segments[1].data == bytes.data());
  }
  // Empty segments are dropped, as build_infer_request drops them.
  const http::Request dropped = t.render("1", {Segment{fp32.data(), 64}, Segment{nullptr, 0},
                                               Segment{bytes.data(), 13}});
  CHECK_EQ(dropped.segments.size(), std::size_t{2});
  EXPECT_THROW(std::logic_error, t.render("1", {Segment{fp32.data(), 64}}),
               "64 tensor bytes given for a layout of 77");

  // Outputs, parameters, a user Content-Type and shared-memory inputs keep their bytes too.
  InferRequest rich = layout;
  rich.id = "9";
  rich.parameters.push_back(Parameter{"priority", std::int64_t{2}});
  rich.outputs.push_back(RequestedOutput{"OUT", true, 0, std::nullopt});
  InputTensor in_shm;
  in_shm.name = "S";
  in_shm.datatype = "FP32";
  in_shm.shape = {4};
  in_shm.shared_memory = SharedMemoryRef{"region", 16, 64};
  rich.inputs.push_back(in_shm);
  const std::vector<http::Header> typed = {{"Content-Type", "application/x-test"}};
  const http::InferTemplate t2(target, "h:1", typed, rich);
  CHECK_EQ(t2.render("9", {Segment{fp32.data(), 64}, Segment{bytes.data(), 13}}).head,
           http::build_infer_request(target, "h:1", typed, rich).head);

  // Only shared-memory inputs: no binary body, JSON content type, no header length.
  InferRequest only_shm;
  only_shm.inputs.push_back(in_shm);
  const http::InferTemplate t3(target, "h:1", {}, only_shm);
  only_shm.id = "3";
  const http::Request shm_wire = t3.render("3", {});
  CHECK_EQ(shm_wire.head, http::build_infer_request(target, "h:1", {}, only_shm).head);
  CHECK(shm_wire.head.find("Inference-Header-Content-Length") == std::string::npos);

  // Bad headers and oversized bodies fail when the template is made.
  EXPECT_THROW(EncodeError, http::InferTemplate(target, "h:1", {{"X-A", "v\r\nEvil: 1"}}, layout),
               "value holds CR, LF or NUL");
  InferRequest huge = layout;
  huge.inputs[0].segments = {Segment{nullptr, std::size_t{1} << 31}};
  EXPECT_THROW(EncodeError, http::InferTemplate(target, "h:1", {}, huge), "reaches Triton's limit");
}

// Whether `cached` (from ResponseLayoutCache) describes the same outputs as
// `fresh` (from parse_infer_response).
bool same_outputs(const ResponseLayoutCache::Parsed& cached, const InferResponse& fresh) {
  const auto& outputs = cached.layout->response.outputs;
  if (outputs.size() != fresh.outputs.size()) return false;
  for (std::size_t k = 0; k < outputs.size(); ++k) {
    const OutputTensor& a = outputs[k];
    const OutputTensor& b = fresh.outputs[k];
    if (a.name != b.name || a.datatype != b.datatype || a.shape != b.shape || a.kind != b.kind ||
        a.size != b.size) {
      return false;
    }
    if (a.kind == OutputKind::kBinary && cached.base + a.offset != b.offset) return false;
  }
  return true;
}

std::string triton_response_json(const std::string& id, const std::string& shape, std::uint64_t size) {
  std::string json = "{";
  if (!id.empty()) json += "\"id\":\"" + id + "\",";
  json += "\"model_name\":\"m\",\"model_version\":\"1\",\"outputs\":[{\"name\":\"OUTPUT0\","
          "\"datatype\":\"FP32\",\"shape\":" + shape + ",\"parameters\":{\"binary_data_size\":" +
          std::to_string(size) + "}}]}";
  return json;
}

void test_response_cache() {
  ResponseLayoutCache cache;
  const std::string data(64, '\x22');
  // First response: parsed; the same header with another id: the same layout.
  const std::string j0 = triton_response_json("0", "[1,16]", 64);
  const std::string b0 = j0 + data;
  const auto p0 = cache.parse(u8(b0), b0.size(), j0.size(), "0");
  CHECK(same_outputs(p0, parse_infer_response(u8(b0), b0.size(), j0.size())));
  CHECK_EQ(p0.base, std::uint64_t(j0.size()));
  const std::string j1 = triton_response_json("12345", "[1,16]", 64);
  const std::string b1 = j1 + data;
  const auto p1 = cache.parse(u8(b1), b1.size(), j1.size(), "12345");
  CHECK(p1.layout == p0.layout);  // a hit: compared, not parsed
  CHECK_EQ(p1.base, std::uint64_t(j1.size()));
  CHECK(same_outputs(p1, parse_infer_response(u8(b1), b1.size(), j1.size())));

  // An id other than the one sent: refused (it answers another request).
  bool refused = false;
  try {
    (void)cache.parse(u8(b1), b1.size(), j1.size(), "999");
  } catch (const ProtocolError& e) {
    refused = std::string(e.what()).find("'12345' does not match the request id '999'") != std::string::npos;
  }
  CHECK(refused);
  // Another shape, no id: parsed again, still right.
  const std::string j3 = triton_response_json("4", "[2,8]", 64);
  const std::string b3 = j3 + data;
  const auto p3 = cache.parse(u8(b3), b3.size(), j3.size(), "4");
  CHECK(same_outputs(p3, parse_infer_response(u8(b3), b3.size(), j3.size())));
  CHECK(p3.layout->response.outputs[0].shape == std::vector<std::int64_t>({2, 8}));
  const std::string j4 = triton_response_json("", "[2,8]", 64);
  const std::string b4 = j4 + data;
  CHECK(same_outputs(cache.parse(u8(b4), b4.size(), j4.size(), ""),
                     parse_infer_response(u8(b4), b4.size(), j4.size())));

  // The remembered header with a body that does not match it: the parser's own errors.
  const std::string j5 = triton_response_json("5", "[2,8]", 64);
  (void)cache.parse(u8(j5 + data), j5.size() + 64, j5.size(), "5");
  const std::string short_body = j5 + data.substr(0, 60);
  EXPECT_THROW(ProtocolError, cache.parse(u8(short_body), short_body.size(), j5.size(), "5"),
               "binary_data_size 64", "runs past the end");
  const std::string long_body = j5 + data + "xx";
  EXPECT_THROW(ProtocolError, cache.parse(u8(long_body), long_body.size(), j5.size(), "5"),
               "2 bytes after the last output");
  EXPECT_THROW(ProtocolError, cache.parse(u8(j5), j5.size(), j5.size() + 1, "5"),
               "exceeds the");

  // JSON outputs are parsed every time (their data is in the header), never remembered.
  const std::string js = "{\"id\":\"6\",\"outputs\":[{\"name\":\"a\",\"datatype\":\"INT32\","
                         "\"shape\":[2],\"data\":[1,2]}]}";
  const auto pj = cache.parse(u8(js), js.size(), std::nullopt, "6");
  CHECK_EQ(pj.base, std::uint64_t{0});
  CHECK(pj.layout->response.outputs[0].kind == OutputKind::kJson);
  const std::string jm = "{\"id\":\"7\",\"outputs\":[{\"name\":\"a\",\"datatype\":\"INT32\","
                         "\"shape\":[1],\"data\":[5]},{\"name\":\"b\",\"datatype\":\"FP32\","
                         "\"shape\":[1],\"parameters\":{\"binary_data_size\":4}}]}";
  const std::string bm = jm + "abcd";
  const auto m1 = cache.parse(u8(bm), bm.size(), jm.size(), "7");
  const auto m2 = cache.parse(u8(bm), bm.size(), jm.size(), "7");
  CHECK(m1.layout != m2.layout);
  CHECK(same_outputs(m2, parse_infer_response(u8(bm), bm.size(), jm.size())));
}

// Random bodies through one long-lived cache: the same outputs as
// parse_infer_response, or the same ProtocolError, every time.
void fuzz_response_cache(long iterations, std::mt19937_64& rng) {
  ResponseLayoutCache cache;
  const std::string data(64, '\x22');
  long hits = 0;
  for (long it = 0; it < iterations; ++it) {
    const std::string id = std::to_string(rng() % 3);
    std::string json = triton_response_json(id, rng() % 2 ? "[1,16]" : "[4,4]", 64);
    std::string body = json + data;
    std::optional<std::uint64_t> hl = json.size();
    switch (rng() % 4) {
      case 0:
        break;  // as the server sends it: mostly hits
      case 1:
        body = mutate(body, rng);
        break;
      case 2:
        body = mutate(json, rng) + data;
        hl = body.size() - data.size();
        break;
      case 3:
        hl = rng() % 3 ? std::optional<std::uint64_t>(rng() % (body.size() + 2)) : std::nullopt;
        break;
    }
    const std::string sent = rng() % 5 ? id : std::to_string(rng() % 3);
    std::optional<InferResponse> fresh;
    std::string fresh_error;
    try {
      ExpectedResponse expected;
      expected.id = sent;  // the cache checks the id as the parser does
      fresh = parse_infer_response(u8(body), body.size(), hl, expected);
    } catch (const ProtocolError& e) {
      fresh_error = e.what();
    }
    try {
      const auto parsed = cache.parse(u8(body), body.size(), hl, sent);
      if (!fresh || !same_outputs(parsed, *fresh)) {
        ++g_failures;
        std::fprintf(stderr, "fuzz cache %ld: cache gave outputs, parser %s for %s\n", it,
                     fresh ? "others" : fresh_error.c_str(), show(body).c_str());
      }
      hits += parsed.base != 0;
    } catch (const ProtocolError& e) {
      if (fresh || fresh_error != e.what()) {
        ++g_failures;
        std::fprintf(stderr, "fuzz cache %ld: cache threw %s, parser %s\n", it, e.what(),
                     fresh ? "did not" : fresh_error.c_str());
      }
    } catch (const std::exception& e) {
      ++g_failures;
      std::fprintf(stderr, "fuzz cache %ld: unexpected %s\n", it, e.what());
    }
    if (g_failures > 20) return;
  }
  ++g_checks;
  std::printf("fuzz cache: %ld iterations, %ld with a binary section\n", iterations, hits);
}

}  // namespace

int main(int argc, char** argv) {
  const long iterations = argc > 1 ? std::atol(argv[1]) : 200000;
  test_json_valid();
  test_json_invalid();
  test_json_writer();
  test_infer_header();
  test_build_request();
  test_infer_response();
  test_parser_valid();
  test_parser_malformed();
  test_infer_template();
  test_response_cache();
  fuzz(iterations);
  std::mt19937_64 rng(20261124);
  fuzz_response_cache(iterations / 4, rng);
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
