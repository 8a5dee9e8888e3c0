// The response side of the general path: outputs of a parsed /infer response as
// numpy arrays (views over the receive buffer where the layout allows).
#include <cstring>
#include <utility>

#include "bindings/http.hpp"
#include "core/bytes_codec.hpp"
#include "core/errors.hpp"
#include "core/json.hpp"

namespace tritonfast {
namespace bindings TRITONFAST_BINDINGS_HIDDEN {

namespace {

std::uint64_t element_count(const OutputTensor& output) {
  std::uint64_t count = 1;
  for (auto d : output.shape) count *= static_cast<std::uint64_t>(d);
  return count;
}

py::object numpy_dtype(const std::string& datatype) {
  auto it = numpy_dtypes().find(datatype);
  if (it == numpy_dtypes().end()) {
    if (datatype == "BF16") {
      throw ProtocolError("output datatype BF16 needs the optional package ml_dtypes: pip install ml_dtypes");
    }
    throw ProtocolError("unknown output datatype '" + datatype + "'");
  }
  return py::reinterpret_borrow<py::object>(it->second);
}

// `data`: where a binary output's bytes are (unused for the other kinds).
py::object output_array(const OutputTensor& output, const std::uint8_t* data, py::handle owner) {
  if (output.kind == OutputKind::kSharedMemory) {
    // The caller owns the region: it gets what to read from it.
    return py::make_tuple(output.datatype, py::tuple(py::cast(output.shape)));
  }
  std::vector<py::ssize_t> shape(output.shape.begin(), output.shape.end());
  if (output.kind == OutputKind::kJson) {
    // `data` is the start of the body here; the output's span is its "data" text.
    JsonOutputData decoded;
    {
      MaybeReleaseGil nogil(output.size >= kReleaseGilMinBytes);  // Safe: C++ over the owned body
      decoded = decode_json_output(output, data);
    }
    if (output.datatype == "BYTES") {
      return bytes_objects(decoded.bytes.data(), decoded.bytes.size(), decoded.count)
          .attr("reshape")(py::tuple(py::cast(shape)));
    }
    py::dtype dtype = py::reinterpret_borrow<py::dtype>(numpy_dtype(decoded.datatype));
    py::array array(dtype, shape);
    if (!decoded.bytes.empty()) std::memcpy(array.mutable_data(), decoded.bytes.data(), decoded.bytes.size());
    if (decoded.datatype != output.datatype) {
      // FP16 / BF16 decoded as FP64, every value in range: numpy narrows it.
      return array.attr("astype")(numpy_dtype(output.datatype));
    }
    return std::move(array);
  }
  if (output.datatype == "BYTES") {
    const std::size_t count = bytes::count_elements(data, output.size);
    if (count != element_count(output)) {
      throw ProtocolError("output '" + output.name + "' holds " + std::to_string(count) +
                          " BYTES elements but its shape holds " +
                          std::to_string(element_count(output)));
    }
    return bytes_objects(data, output.size, count).attr("reshape")(py::tuple(py::cast(shape)));
  }
  py::dtype dtype = py::reinterpret_borrow<py::dtype>(numpy_dtype(output.datatype));
  const auto itemsize = static_cast<std::uintptr_t>(dtype.itemsize());
  if (reinterpret_cast<std::uintptr_t>(data) % itemsize != 0) {
    // Misaligned for its dtype (a BYTES output came before it): one copy.
    py::array copy(dtype, shape);
    std::memcpy(copy.mutable_data(), data, output.size);
    return copy;
  }
  return py::array(dtype, shape, {}, data, owner);
}

}  // namespace

[[noreturn]] void conversion_failed(const OutputTensor& output, const std::string& why) {
  throw ProtocolError("output '" + output.name + "' (" + output.datatype + ", shape " +
                      describe(py::cast(output.shape)) + ") cannot be converted: " + why);
}

py::object converted_output(const OutputTensor& output, const std::uint8_t* data, py::handle owner) {
  try {
    return output_array(output, data, owner);
  } catch (py::error_already_set& e) {
    conversion_failed(output, e.what());
  }
}

py::dict outputs_from(const InferResponse& response, http::Body body) {
  // A capsule is the cheapest owner numpy accepts as a view's base.
  auto* owned = new http::Body(std::move(body));
  py::capsule owner(owned, [](void* p) { delete static_cast<http::Body*>(p); });
  const http::Body& held = *owned;
  py::dict result;
  for (const auto& output : response.outputs) {
    const std::uint8_t* at = output.kind == OutputKind::kJson ? held.data() : held.data() + output.offset;
    result[py::str(output.name)] = converted_output(output, at, owner);
  }
  return result;
}

py::dict infer_result(const http::ResponseHead& head, http::Body body, const ExpectedResponse& expected) {
  InferResponse parsed;
  {
    // Safe: parsing reads only `body`, which this frame owns.
    MaybeReleaseGil nogil(body.size >= kReleaseGilMinBytes);
    check_infer_status(head, body);
    parsed = parse_infer_response(body.data(), body.size, head.inference_header_length, expected);
  }
  return outputs_from(parsed, std::move(body));
}

}  // namespace bindings
}  // namespace tritonfast
