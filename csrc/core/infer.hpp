// One request model for every transport (HTTP now; gRPC, shared memory and
// streaming later): what an inference sends and what its response holds,
// independent of how bytes travel.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/fork.hpp"
#include "core/json.hpp"

namespace tritonfast {

// A contiguous piece of caller memory that goes on the wire as it is.
struct Segment {
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;
};

// Request or tensor parameter value (Triton accepts bool, int, double, string).
using ParameterValue = std::variant<bool, std::int64_t, double, std::string>;

struct Parameter {
  std::string key;
  ParameterValue value;
};

// A tensor placed in a registered shared-memory region.
struct SharedMemoryRef {
  std::string region;
  std::uint64_t byte_size = 0;
  std::uint64_t offset = 0;
};

struct InputTensor {
  std::string name;
  std::string datatype;  // wire name: "FP32", "BYTES", ...
  std::vector<std::int64_t> shape;
  // The tensor's bytes, in order (binary_data_size is their total). Empty when
  // the tensor is in shared memory.
  std::vector<Segment> segments;
  std::optional<SharedMemoryRef> shared_memory;
  std::vector<Parameter> parameters;

  std::uint64_t byte_size() const;
};

struct RequestedOutput {
  std::string name;
  bool binary = true;
  std::uint32_t class_count = 0;  // > 0: Triton's classification extension
  std::optional<SharedMemoryRef> shared_memory;
};

struct InferRequest {
  std::string id;  // empty: no "id" member
  std::vector<InputTensor> inputs;
  // Empty: every model output, in binary (request parameter binary_data_output).
  std::vector<RequestedOutput> outputs;
  std::vector<Parameter> parameters;
};

// The JSON inference header of `request` (Triton's binary tensor extension:
// binary inputs carry parameters.binary_data_size and follow the header in order).
std::string write_infer_header(const InferRequest& request);

enum class OutputKind { kBinary, kJson, kSharedMemory };

struct OutputTensor {
  std::string name;
  std::string datatype;
  std::vector<std::int64_t> shape;
  OutputKind kind = OutputKind::kBinary;
  // kBinary: the tensor's bytes; kJson: the text of its "data" array (checked
  // to be JSON, not yet against the datatype: decode_json_output does that).
  // Both as a span of the response body.
  std::uint64_t offset = 0;
  std::uint64_t size = 0;    // kSharedMemory: shared_memory_byte_size if given
  json::Value parameters;    // the output's "parameters" object (null when absent)
};

// Values a response header may hold outside its outputs' "data" arrays (names,
// shapes, parameters): the DOM of a hostile header stays under ~8 MiB however
// it is written. JSON "data" arrays are not built as a DOM at all.
constexpr std::size_t kMaxInferenceHeaderValues = 1 << 16;
// Dimensions of an output's shape at most (numpy 2's limit; numpy 1 allows 32,
// which the bindings check).
constexpr std::size_t kMaxOutputDims = 64;

// What a response must match: the request it answers.
struct ExpectedResponse {
  std::string_view id;  // the request's id ("" when none was sent)
  // The outputs the request listed (nullptr or empty: every output, binary).
  const std::vector<RequestedOutput>* outputs = nullptr;

  static ExpectedResponse to(const InferRequest& request) {
    return ExpectedResponse{request.id, &request.outputs};
  }
};

struct InferResponse {
  std::string model_name;
  std::string model_version;
  std::string id;
  json::Value parameters;  // the response "parameters" object (null when absent)
  std::vector<OutputTensor> outputs;  // in the order of the JSON header
};

// Parses a successful /infer response body. `header_length` is the value of
// Inference-Header-Content-Length (nullopt: the whole body is JSON). Walks the
// JSON outputs in order assigning binary spans; checks every span against the
// body, that fixed-size dtypes' sizes equal prod(shape) * element size, that no
// shape dimension is negative or overflows (nor, leaving out zero dimensions,
// spans 2^63 bytes or more: numpy's strides are int64), that no bytes are left
// over, and the response against `expected`: its id, no output twice, only
// outputs asked for (all of them), and no output without data unless it was
// asked for in shared memory. Throws ProtocolError naming the output, ids or
// byte offsets at fault.
InferResponse parse_infer_response(const std::uint8_t* body, std::size_t size,
                                   std::optional<std::uint64_t> header_length,
                                   const ExpectedResponse& expected = {});

// A JSON-encoded output's elements, checked against its datatype (BOOL: true or
// false; integers: integer literals in the type's range; FP16/FP32/BF16: numbers
// in range, NaN and infinities included; BYTES: strings) and its shape's element
// count, as little-endian bytes (BYTES: the length-prefixed wire format). FP16
// and BF16 come as FP64 (`datatype` says which) for the caller to narrow: every
// value fits. ProtocolError naming the output and the element at fault.
struct JsonOutputData {
  std::string datatype;
  std::uint64_t count = 0;
  std::vector<std::uint8_t> bytes;
};
JsonOutputData decode_json_output(const OutputTensor& output, const std::uint8_t* body);

// parse_infer_response that remembers the last response header it parsed. A
// model called with the same shapes answers with the same JSON header byte for
// byte, but for the request id it echoes: such a header is compared, not parsed
// again. Thread-safe; a layout, once returned, never changes.
class ResponseLayoutCache {
 public:
  struct Layout {
    // Outputs as parse_infer_response gives them, except that binary offsets
    // count from the end of the JSON header (add Parsed::base).
    InferResponse response;
    std::string key;  // the header with the `"id":"<id>",` member taken out
    bool id_stripped = false;
    std::uint64_t binary_bytes = 0;
  };
  struct Parsed {
    std::shared_ptr<const Layout> layout;
    std::uint64_t base = 0;  // body offset of the first binary output
  };

  // The response to the request with id `id` (empty: none was sent). Same
  // checks and errors as parse_infer_response; only headers whose outputs are
  // all binary are remembered.
  // A response with another id is a ProtocolError naming both.
  Parsed parse(const std::uint8_t* body, std::size_t size,
               std::optional<std::uint64_t> header_length, std::string_view id);

 private:
  std::unique_lock<fork::Mutex> locked();

  fork::Mutex mutex_;
  std::shared_ptr<const Layout> last_;
};

// The message of Triton's {"error": "..."} body, or nullopt if the body is not
// that shape (empty, not JSON, no "error" string, more than a few thousand values).
std::optional<std::string> parse_error_body(const std::uint8_t* body, std::size_t size);

// The message for a non-200 answer to an inference request: Triton's error
// message, else the status and what the body starts with.
std::string error_answer_message(int status, const std::string& reason, const std::uint8_t* body,
                                 std::size_t size);

}  // namespace tritonfast
