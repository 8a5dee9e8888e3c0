// The request side of the general path: PreparedInfer turns Python inputs,
// outputs and parameters into an InferRequest that goes on the wire without
// the GIL.
#include <memory>
#include <utility>

#include "bindings/http.hpp"
#include "core/errors.hpp"

namespace tritonfast {
namespace bindings TRITONFAST_BINDINGS_HIDDEN {

namespace {

ParameterValue to_parameter(const std::string& where, const std::string& key, py::handle value) {
  if (PyBool_Check(value.ptr())) return value.cast<bool>();
  if (PyLong_Check(value.ptr())) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
    if (overflow) {
      throw EncodeError(where + " parameter '" + key + "': " + describe(value) +
                        " does not fit a 64-bit integer");
    }
    return static_cast<std::int64_t>(v);
  }
  if (PyFloat_Check(value.ptr())) return value.cast<double>();
  if (PyUnicode_Check(value.ptr())) return value.cast<std::string>();
  throw EncodeError(where + " parameter '" + key + "': unsupported type " +
                    std::string(Py_TYPE(value.ptr())->tp_name) +
                    "; parameters must be str, int, float or bool");
}

std::vector<Parameter> to_parameters(const std::string& where, py::handle obj) {
  std::vector<Parameter> out;
  if (obj.is_none()) return out;
  for (auto item : py::reinterpret_borrow<py::dict>(obj)) {
    if (!PyUnicode_Check(item.first.ptr())) {
      throw EncodeError(where + " parameter key " + describe(item.first) + " is not a str");
    }
    std::string key = item.first.cast<std::string>();
    out.push_back(Parameter{key, to_parameter(where, key, item.second)});
  }
  return out;
}

}  // namespace

PreparedInfer::PreparedInfer(std::string target, std::string authority, py::handle headers,
                             const std::string& request_id, py::handle inputs, py::handle outputs,
                             py::handle parameters)
    : target_(std::move(target)), authority_(std::move(authority)) {
  headers_ = to_headers(headers);
  request_.id = request_id;
  request_.parameters = to_parameters("request", parameters);
  for (auto item : py::reinterpret_borrow<py::iterable>(inputs)) {
    auto entry = py::reinterpret_borrow<py::tuple>(item);
    if (entry.size() == 4) {
      add_shared_memory_input(entry);
    } else {
      add_input(entry[0].cast<std::string>(), entry[1]);
    }
  }
  if (!outputs.is_none()) {
    for (auto item : py::reinterpret_borrow<py::iterable>(outputs)) {
      if (PyTuple_Check(item.ptr())) {
        // (name, (region, byte_size, offset)): the server writes it into shared memory.
        auto entry = py::reinterpret_borrow<py::tuple>(item);
        RequestedOutput output{entry[0].cast<std::string>()};
        output.binary = false;
        output.shared_memory = shared_memory_ref(entry[1]);
        request_.outputs.push_back(std::move(output));
      } else {
        request_.outputs.push_back(RequestedOutput{item.cast<std::string>()});
      }
    }
  }
}

const http::Request& PreparedInfer::build() {
  for (auto& pending : bytes_inputs_) {
    pending.tensor->write(pending.storage.data());
    request_.inputs[pending.input].segments.push_back(
        Segment{pending.storage.data(), pending.storage.size()});
  }
  wire_ = http::build_infer_request(target_, authority_, headers_, request_);
  return wire_;
}

SharedMemoryRef PreparedInfer::shared_memory_ref(py::handle obj) {
  auto ref = py::reinterpret_borrow<py::tuple>(obj);
  return SharedMemoryRef{ref[0].cast<std::string>(), ref[1].cast<std::uint64_t>(),
                         ref[2].cast<std::uint64_t>()};
}

void PreparedInfer::add_shared_memory_input(const py::tuple& entry) {
  InputTensor input;
  input.name = entry[0].cast<std::string>();
  input.datatype = entry[1].cast<std::string>();
  input.shape = entry[2].cast<std::vector<std::int64_t>>();
  input.shared_memory = shared_memory_ref(entry[3]);
  request_.inputs.push_back(std::move(input));
}

void PreparedInfer::add_input(const std::string& name, py::handle value) {
  if (!py::isinstance<py::array>(value)) {
    throw py::type_error("input '" + name + "' must be a numpy array, got " +
                         std::string(Py_TYPE(value.ptr())->tp_name));
  }
  auto array = py::reinterpret_borrow<py::array>(value);
  InputTensor input;
  input.name = name;
  input.shape.assign(array.shape(), array.shape() + array.ndim());
  const char kind = array.dtype().kind();
  if (kind == 'O' || kind == 'S' || kind == 'U') {
    input.datatype = "BYTES";
    auto tensor = std::make_unique<BytesTensor>(array);
    std::vector<std::uint8_t> storage(tensor->size());
    bytes_inputs_.push_back(PendingBytes{request_.inputs.size(), std::move(tensor),
                                         std::move(storage)});
  } else {
    input.datatype = numeric_datatype(array.dtype());
    if (input.datatype.empty()) {
      throw EncodeError("input '" + name + "': numpy dtype " + describe(array.dtype()) +
                        " has no Triton datatype");
    }
    if (!is_native_order(array.dtype())) {
      array = array.attr("astype")(array.dtype().attr("newbyteorder")("="));
    }
    // One copy, only for arrays that are not C-contiguous already.
    array = py::array::ensure(array, py::array::c_style);
    if (array.nbytes() > 0) {
      input.segments.push_back(
          Segment{static_cast<const std::uint8_t*>(array.data()),
                  static_cast<std::size_t>(array.nbytes())});
    }
    keep_.push_back(array);
  }
  request_.inputs.push_back(std::move(input));
}

}  // namespace bindings
}  // namespace tritonfast
