// The HTTP area's shared types: PreparedInfer (a general-path request built
// from Python objects), PyHttpClient (the native transport, also driven by the
// fast lane), the check of an inference answer's status and the conversion of
// outputs to numpy arrays (outputs.cpp).
//
// Inference over HTTP, copies per request: contiguous numeric inputs 0 (their
// memory goes to sendmsg), non-contiguous or byte-swapped inputs 1 (numpy makes
// a contiguous one), BYTES inputs 1 (serialized once into a buffer of their
// own); numeric outputs 0 (views over the receive buffer; 1 only if misaligned
// for their dtype), BYTES outputs 1 (a bytes object per element).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bindings/codec.hpp"
#include "bindings/common.hpp"
#include "core/http.hpp"
#include "core/infer.hpp"
#include "core/transport.hpp"

namespace tritonfast {
namespace bindings TRITONFAST_BINDINGS_HIDDEN {

// An inference request built from Python objects, ready to go on the wire
// without the GIL: it owns (references to) every byte it points at.
class PreparedInfer {
 public:
  PreparedInfer(std::string target, std::string authority, py::handle headers,
                const std::string& request_id, py::handle inputs, py::handle outputs,
                py::handle parameters);

  // Pure C++ over memory this object owns or references: safe without the GIL.
  const http::Request& build();

  const http::Request& wire() const { return wire_; }
  const InferRequest& request() const { return request_; }

 private:
  static SharedMemoryRef shared_memory_ref(py::handle obj);

  // (name, datatype, shape, (region, byte_size, offset)): the tensor is already
  // in a registered shared-memory region.
  void add_shared_memory_input(const py::tuple& entry);

  void add_input(const std::string& name, py::handle value);

  struct PendingBytes {
    std::size_t input;
    std::unique_ptr<BytesTensor> tensor;
    std::vector<std::uint8_t> storage;
  };

  std::string target_;
  std::string authority_;
  std::vector<http::Header> headers_;
  InferRequest request_;
  std::vector<py::object> keep_;
  std::vector<PendingBytes> bytes_inputs_;
  http::Request wire_;
};

// Throws ServerError (Triton's message, else the status and the body's start)
// unless the status is 200.
inline void check_infer_status(const http::ResponseHead& head, const http::Body& body) {
  if (head.status != 200) {
    throw ServerError{head.status, error_answer_message(head.status, head.reason, body.data(), body.size)};
  }
}

// output_array, with numpy's refusal of what the server sent (JSON data that
// does not fit the shape or datatype, a shape numpy cannot hold) reported as the
// server's fault, naming the output.
[[noreturn]] void conversion_failed(const OutputTensor& output, const std::string& why);

py::object converted_output(const OutputTensor& output, const std::uint8_t* data, py::handle owner);

// Dict of output name -> numpy array (None for shared-memory outputs), in the
// order of the response.
py::dict outputs_from(const InferResponse& response, http::Body body);

// Checks the status, parses a complete /infer response and converts its outputs.
py::dict infer_result(const http::ResponseHead& head, http::Body body, const ExpectedResponse& expected);

// The native transport bound for Python; every network wait runs without the GIL.
class PyHttpClient {
 public:
  PyHttpClient(std::string host, std::uint16_t port, std::size_t max_idle_connections,
               std::size_t max_idle_buffer_bytes, std::uint64_t max_response_body_bytes)
      : client_(Endpoint{std::move(host), port},
                ClientOptions{max_idle_connections, max_idle_buffer_bytes, max_response_body_bytes}) {}

  py::tuple request(const std::string& method, const std::string& target, py::handle headers,
                    py::handle body, std::optional<double> timeout_s, bool idempotent);

  py::dict infer(const std::string& target, py::handle headers, const std::string& request_id,
                 py::handle inputs, py::handle outputs, py::handle parameters,
                 std::optional<double> timeout_s);

  void close();

  std::size_t idle_buffer_bytes() const { return client_.buffers()->idle_bytes(); }
  std::string authority() const { return client_.endpoint().authority(); }
  HttpClient& native() { return client_; }

 private:
  static Deadline deadline(std::optional<double> timeout_s) {
    return timeout_s ? Deadline::after(*timeout_s) : Deadline::never();
  }

  HttpClient client_;
};

}  // namespace bindings
}  // namespace tritonfast
