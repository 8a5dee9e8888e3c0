// Transport and parser: PyHttpClient (HttpClient), the sans-I/O ResponseParser,
// parse_infer_body, and request bytes for drivers written in Python
// (build_infer_request, build_request).
#include <memory>
#include <utility>

#include "bindings/http.hpp"

namespace tritonfast {
namespace bindings TRITONFAST_BINDINGS_HIDDEN {

namespace {

// Parses a 200 answer to an inference request inside the transport, before its
// connection is pooled: a response that does not answer the request (ProtocolError)
// closes the connection. Other statuses are left to check_infer_status.
class InferCheck final : public ResponseCheck {
 public:
  explicit InferCheck(const ExpectedResponse& expected) : expected_(expected) {}
  void check(const Response& response) override {
    if (response.head.status != 200) return;
    parsed_ = parse_infer_response(response.body.data(), response.body.size,
                                   response.head.inference_header_length, expected_);
  }
  InferResponse& parsed() { return parsed_; }

 private:
  ExpectedResponse expected_;
  InferResponse parsed_;
};

}  // namespace

py::tuple PyHttpClient::request(const std::string& method, const std::string& target, py::handle headers,
                                py::handle body, std::optional<double> timeout_s, bool idempotent) {
  std::vector<http::Header> header_list = to_headers(headers);
  std::string payload = body.is_none() ? std::string() : body.cast<std::string>();
  Response response;
  {
    // Safe: only C++ objects owned by this frame are used.
    MaybeReleaseGil nogil;
    const http::Request wire =
        http::build_request(method, target, client_.endpoint().authority(), header_list, payload);
    response = client_.perform(wire, deadline(timeout_s), idempotent);
  }
  return py::make_tuple(response.head.status,
                        py::bytes(reinterpret_cast<const char*>(response.body.data()), response.body.size));
}

py::dict PyHttpClient::infer(const std::string& target, py::handle headers, const std::string& request_id,
                             py::handle inputs, py::handle outputs, py::handle parameters,
                             std::optional<double> timeout_s) {
  PreparedInfer prepared(target, client_.endpoint().authority(), headers, request_id, inputs,
                         outputs, parameters);
  Response response;
  InferCheck check(ExpectedResponse::to(prepared.request()));
  {
    // Safe: `prepared` holds references to every input array and owns the
    // serialized BYTES; the transport touches nothing else.
    MaybeReleaseGil nogil;
    response = client_.perform(prepared.build(), deadline(timeout_s), /*idempotent=*/false, &check);
    check_infer_status(response.head, response.body);
  }
  return outputs_from(check.parsed(), std::move(response.body));
}

void PyHttpClient::close() {
  MaybeReleaseGil nogil;  // Safe: C++ only; may wait for the pool's mutex.
  client_.close();
}

namespace {

py::str latin1(const std::string& text) {
  return py::reinterpret_steal<py::str>(
      PyUnicode_DecodeLatin1(text.data(), static_cast<Py_ssize_t>(text.size()), nullptr));
}

// The sans-I/O response parser, for drivers written in Python (TLS) and tests.
class PyResponseParser {
 public:
  explicit PyResponseParser(std::uint64_t max_body_bytes)
      : pool_(BufferPool::create(0)), parser_(pool_, max_body_bytes) {}

  std::size_t feed(py::buffer data) {
    BorrowedBuffer view(data, /*writable=*/false);
    return parser_.feed(view.data(), view.size());
  }

  // Writable memoryview of body_window() (None outside a body): receive into it, then commit().
  py::object body_window() {
    auto window = parser_.body_window();
    if (!window.first) return py::none();
    return py::memoryview::from_memory(window.first, static_cast<py::ssize_t>(window.second));
  }

  void commit(std::size_t n) { parser_.commit(n); }
  void finish() { parser_.finish(); }
  bool head_complete() const { return parser_.head_complete(); }
  bool done() const { return parser_.done(); }
  int status() const { return parser_.head().status; }
  bool keep_alive() const { return parser_.head().keep_alive; }
  std::optional<std::uint64_t> inference_header_length() const {
    return parser_.head().inference_header_length;
  }
  py::list headers() const {
    py::list out;
    // HTTP header values are bytes; latin-1 maps each one to a code point.
    for (const auto& h : parser_.head().headers) {
      out.append(py::make_tuple(latin1(h.name), latin1(h.value)));
    }
    return out;
  }
  py::bytes body() {
    take();
    return py::bytes(reinterpret_cast<const char*>(body_.data()), body_.size);
  }
  // `prepared`: build_infer_request's owner, to check the response against
  // the request (None: no check, for tests).
  py::dict infer_result(py::handle prepared) {
    take();
    ExpectedResponse expected;
    if (!prepared.is_none()) expected = ExpectedResponse::to(prepared.cast<PreparedInfer&>().request());
    return bindings::infer_result(parser_.head(), std::move(body_), expected);
  }

 private:
  void take() {
    if (!taken_) {
      body_ = parser_.take_body();
      taken_ = true;
    }
  }

  std::shared_ptr<BufferPool> pool_;
  http::ResponseParser parser_;
  http::Body body_;
  bool taken_ = false;
};

py::list parse_infer_body(py::buffer body, std::optional<std::uint64_t> header_length) {
  BorrowedBuffer view(body, /*writable=*/false);
  InferResponse parsed = parse_infer_response(view.data(), view.size(), header_length);
  py::list out;
  for (const auto& o : parsed.outputs) {
    out.append(py::make_tuple(o.name, o.datatype, py::tuple(py::cast(o.shape)),
                              static_cast<int>(o.kind), o.offset, o.size));
  }
  return out;
}

// Request bytes for drivers written in Python: (head, [segment memoryviews]).
// The segments point into `inputs`' arrays: keep those alive until sent.
py::tuple build_infer_request(const std::string& target, const std::string& authority,
                              py::handle headers, const std::string& request_id,
                              py::handle inputs, py::handle outputs, py::handle parameters) {
  auto prepared = std::make_shared<PreparedInfer>(target, authority, headers, request_id,
                                                  inputs, outputs, parameters);
  const http::Request& wire = prepared->build();
  py::object owner = py::cast(prepared);
  py::list segments;
  for (const auto& seg : wire.segments) {
    segments.append(py::memoryview::from_memory(seg.data, static_cast<py::ssize_t>(seg.size)));
  }
  return py::make_tuple(py::bytes(wire.head), segments, owner);
}

py::bytes build_request(const std::string& method, const std::string& target,
                        const std::string& authority, py::handle headers, py::handle body) {
  std::string payload = body.is_none() ? std::string() : body.cast<std::string>();
  return py::bytes(http::build_request(method, target, authority, to_headers(headers), payload).head);
}

}  // namespace

void register_http_client(py::module_& m) {
  m.def("set_numpy_dtypes", &set_numpy_dtypes, py::arg("dtypes"),
        "Registers the numpy dtype of each Triton datatype name (done by tritonfast._http).");

  py::class_<PreparedInfer, std::shared_ptr<PreparedInfer>>(m, "_PreparedInfer");

  py::class_<PyHttpClient>(m, "HttpClient",
                           "Thread-safe HTTP/1.1 keep-alive client; every wait releases the GIL.")
      .def(py::init<std::string, std::uint16_t, std::size_t, std::size_t, std::uint64_t>(), py::arg("host"),
           py::arg("port"), py::arg("max_idle_connections") = 64,
           py::arg("max_idle_buffer_bytes") = std::size_t{1} << 30,
           py::arg("max_response_body_bytes") = http::kDefaultMaxResponseBodyBytes)
      .def("request", &PyHttpClient::request, py::arg("method"), py::arg("target"),
           py::arg("headers") = py::none(), py::arg("body") = py::none(),
           py::arg("timeout_s") = py::none(), py::arg("idempotent") = true,
           "Sends a request; returns (status, body bytes).")
      .def("infer", &PyHttpClient::infer, py::arg("target"), py::arg("headers"),
           py::arg("request_id"), py::arg("inputs"), py::arg("outputs"),
           py::arg("parameters"), py::arg("timeout_s"),
           "Runs one inference; returns {output name: numpy array}.")
      .def("close", &PyHttpClient::close)
      .def_property_readonly("idle_buffer_bytes", &PyHttpClient::idle_buffer_bytes)
      .def_property_readonly("authority", &PyHttpClient::authority);
}

void register_http_parser(py::module_& m) {
  py::class_<PyResponseParser>(m, "ResponseParser", "Sans-I/O HTTP/1.1 response parser.")
      .def(py::init<std::uint64_t>(), py::arg("max_body_bytes") = http::kDefaultMaxResponseBodyBytes)
      .def("feed", &PyResponseParser::feed, py::arg("data"),
           "Feeds received bytes; returns how many belong to this response.")
      .def("body_window", &PyResponseParser::body_window)
      .def("commit", &PyResponseParser::commit, py::arg("n"))
      .def("finish", &PyResponseParser::finish, "The peer closed the connection.")
      .def_property_readonly("head_complete", &PyResponseParser::head_complete)
      .def_property_readonly("done", &PyResponseParser::done)
      .def_property_readonly("status", &PyResponseParser::status)
      .def_property_readonly("keep_alive", &PyResponseParser::keep_alive)
      .def_property_readonly("inference_header_length", &PyResponseParser::inference_header_length)
      .def_property_readonly("headers", &PyResponseParser::headers)
      .def("body", &PyResponseParser::body)
      .def("infer_result", &PyResponseParser::infer_result, py::arg("request") = py::none(),
           "The outputs of a complete /infer response, checked against `request` "
           "(build_infer_request's third item) when given.");

  m.def("parse_infer_body", &parse_infer_body, py::arg("body"), py::arg("header_length"),
        "Outputs of an /infer response body as (name, datatype, shape, kind, offset, size).");
  m.def("build_infer_request", &build_infer_request, py::arg("target"), py::arg("authority"),
        py::arg("headers"), py::arg("request_id"), py::arg("inputs"), py::arg("outputs"),
        py::arg("parameters"));
  m.def("build_request", &build_request, py::arg("method"), py::arg("target"),
        py::arg("authority"), py::arg("headers") = py::none(), py::arg("body") = py::none());
  m.def("model_target", &http::model_target, py::arg("model"), py::arg("version"),
        py::arg("suffix"));
}

}  // namespace bindings
}  // namespace tritonfast
