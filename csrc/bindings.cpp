// The only file that knows about Python. Thin shims over csrc/core: buffers are
// requested and Python objects are touched with the GIL held; pure C++ work
// (scans, memcpy) runs with it released. C++ error types are mapped to
// tritonfast.exceptions once, here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <cstring>
#include <thread>
#include <unordered_map>
#include <string>
#include <string_view>
#include <vector>

#include "core/buffer.hpp"
#include "core/bytes_codec.hpp"
#include "core/dtype.hpp"
#include "core/errors.hpp"
#include "core/http.hpp"
#include "core/infer.hpp"
#include "core/json.hpp"
#include "core/transport.hpp"
#include "core/cuda.hpp"  // shared memory section
#include "core/shm.hpp"   // shared memory section

namespace py = pybind11;
using namespace tritonfast;

namespace {

// Below this many bytes the work takes less time than handing the GIL over.
constexpr std::uint64_t kReleaseGilMinBytes = 64 * 1024;

bool interpreter_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

// Releases the GIL for the scope when `release` is true. Used instead of
// py::gil_scoped_release for one reason: at interpreter exit, a daemon thread
// that takes the GIL back is ended by CPython with pthread_exit, whose forced
// unwind cannot pass a destructor and aborts the process. Such a thread is
// parked instead; the process is exiting anyway.
class MaybeReleaseGil {
 public:
  explicit MaybeReleaseGil(bool release = true) : state_(release ? PyEval_SaveThread() : nullptr) {}
  ~MaybeReleaseGil() {
    if (!state_) return;
    while (interpreter_finalizing()) std::this_thread::sleep_for(std::chrono::seconds(1));
    PyEval_RestoreThread(state_);
  }
  MaybeReleaseGil(const MaybeReleaseGil&) = delete;
  MaybeReleaseGil& operator=(const MaybeReleaseGil&) = delete;

 private:
  PyThreadState* state_;
};

// A contiguous byte buffer borrowed from any object with the buffer protocol.
class BorrowedBuffer {
 public:
  BorrowedBuffer(py::handle obj, bool writable) {
    const int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj.ptr(), &view_, flags) != 0) throw py::error_already_set();
  }
  ~BorrowedBuffer() { PyBuffer_Release(&view_); }
  BorrowedBuffer(const BorrowedBuffer&) = delete;
  BorrowedBuffer& operator=(const BorrowedBuffer&) = delete;

  std::uint8_t* data() const { return static_cast<std::uint8_t*>(view_.buf); }
  std::size_t size() const { return static_cast<std::size_t>(view_.len); }

 private:
  Py_buffer view_{};
};

// Strong references held for as long as C++ uses the objects' memory. A member
// of its own so that they are dropped even when a constructor throws half-way.
class References {
 public:
  References() = default;
  ~References() {
    for (PyObject* ref : refs_) Py_DECREF(ref);
  }
  References(const References&) = delete;
  References& operator=(const References&) = delete;

  void reserve(std::size_t n) { refs_.reserve(n); }
  void hold(PyObject* obj) {
    Py_INCREF(obj);
    refs_.push_back(obj);
  }

 private:
  std::vector<PyObject*> refs_;
};

// The elements of a BYTES tensor (numpy object, 'S' or 'U' array), flattened in
// C order and ready to be sized and written without the GIL.
class BytesTensor {
 public:
  explicit BytesTensor(py::handle obj) {
    array_ = py::array::ensure(obj, py::array::c_style);
    if (!array_) {
      throw py::type_error("a BYTES tensor must be a numpy array, got " +
                           std::string(Py_TYPE(obj.ptr())->tp_name));
    }
    count_ = static_cast<std::size_t>(array_.size());
    const char kind = array_.dtype().kind();
    if (kind == 'O') {
      gather_objects();
    } else if (kind == 'S' || kind == 'U') {
      if (kind == 'U' && array_.dtype().byteorder() == '>') {
        array_ = py::array::ensure(array_.attr("astype")(array_.dtype().attr("newbyteorder")("=")),
                                   py::array::c_style);
      }
      kind_ = kind;
      itemsize_ = static_cast<std::size_t>(array_.itemsize());
    } else {
      throw EncodeError("cannot serialize an array of dtype " +
                        py::str(array_.dtype()).cast<std::string>() +
                        " as BYTES: elements must be bytes or str (object, 'S' or 'U' arrays)");
    }
    size_ = compute_size();
  }

  BytesTensor(const BytesTensor&) = delete;
  BytesTensor& operator=(const BytesTensor&) = delete;

  std::uint64_t size() const { return size_; }

  // Pure C++ over memory this object keeps alive: safe without the GIL.
  void write(std::uint8_t* out) const {
    switch (kind_) {
      case 'O':
        bytes::serialize(views_.data(), views_.size(), out);
        break;
      case 'S':
        bytes::serialize_fixed(static_cast<const char*>(array_.data()), count_, itemsize_,
                               lengths_.data(), out);
        break;
      default:
        bytes::serialize_ucs4(static_cast<const std::uint32_t*>(array_.data()), count_,
                              itemsize_ / 4, lengths_.data(), out);
    }
  }

 private:
  void gather_objects() {
    auto* items = static_cast<PyObject* const*>(array_.data());
    views_.reserve(count_);
    refs_.reserve(count_);
    for (std::size_t i = 0; i < count_; ++i) {
      PyObject* item = items[i] ? items[i] : Py_None;
      if (PyBytes_Check(item)) {
        views_.emplace_back(PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item));
      } else if (PyUnicode_Check(item)) {
        Py_ssize_t len = 0;
        const char* utf8 = PyUnicode_AsUTF8AndSize(item, &len);
        if (!utf8) {
          PyErr_Clear();
          throw EncodeError("element " + std::to_string(i) +
                            ": str cannot be encoded as UTF-8 (it holds a lone surrogate)");
        }
        views_.emplace_back(utf8, len);
      } else {
        throw EncodeError("element " + std::to_string(i) + ": unsupported type " +
                          Py_TYPE(item)->tp_name + "; BYTES elements must be bytes or str");
      }
      // Another thread may replace array items while we work without the GIL:
      // our own reference keeps each element's memory alive until we are done.
      refs_.hold(item);
    }
  }

  // 'S' and 'U' items live in the array's own memory, which another thread may
  // rewrite while write() runs without the GIL: their lengths are measured once,
  // here, and write() keeps to them (views_ of 'O' arrays are pinned by refs_).
  std::uint64_t compute_size() {
    switch (kind_) {
      case 'O':
        return bytes::serialized_size(views_.data(), views_.size());
      case 'S':
        lengths_.resize(count_);
        return bytes::fixed_serialized_size(static_cast<const char*>(array_.data()), count_,
                                            itemsize_, lengths_.data());
      default:
        lengths_.resize(count_);
        return bytes::ucs4_serialized_size(static_cast<const std::uint32_t*>(array_.data()),
                                           count_, itemsize_ / 4, lengths_.data());
    }
  }

  py::array array_;
  std::size_t count_ = 0;
  char kind_ = 'O';
  std::size_t itemsize_ = 0;
  std::vector<std::string_view> views_;
  std::vector<std::uint32_t> lengths_;  // 'S' / 'U': each element's wire length
  References refs_;
  std::uint64_t size_ = 0;
};

py::bytes serialize_bytes(py::handle obj) {
  BytesTensor tensor(obj);
  py::bytes out = py::reinterpret_steal<py::bytes>(
      PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(tensor.size())));
  if (!out) throw py::error_already_set();
  auto* dst = reinterpret_cast<std::uint8_t*>(PyBytes_AS_STRING(out.ptr()));
  // Safe: `tensor` owns references to every element and `out` is not shared yet.
  MaybeReleaseGil nogil(tensor.size() >= kReleaseGilMinBytes);
  tensor.write(dst);
  return out;
}

std::uint64_t bytes_serialized_size(py::handle obj) { return BytesTensor(obj).size(); }

std::uint64_t serialize_bytes_into(py::handle obj, py::handle out, std::uint64_t offset) {
  BytesTensor tensor(obj);
  BorrowedBuffer buffer(out, /*writable=*/true);
  if (offset > buffer.size() || tensor.size() > buffer.size() - offset) {
    throw EncodeError("the serialized BYTES tensor needs " + std::to_string(tensor.size()) +
                      " bytes at offset " + std::to_string(offset) + " but the buffer holds " +
                      std::to_string(buffer.size()) + " bytes");
  }
  // Safe: the buffer export and the element references are held until we return.
  MaybeReleaseGil nogil(tensor.size() >= kReleaseGilMinBytes);
  tensor.write(buffer.data() + offset);
  return tensor.size();
}

// Object array of bytes from `count` elements that count_elements() accepted.
py::array bytes_objects(const std::uint8_t* data, std::size_t size, std::size_t count) {
  // numpy.empty fills the slots with None, which we replace one by one.
  py::array result = py::module_::import("numpy").attr("empty")(count, "object");
  auto** slots = static_cast<PyObject**>(result.mutable_data());
  bytes::Reader reader(data, size);
  std::string_view element;
  for (std::size_t i = 0; reader.next(&element); ++i) {
    PyObject* item = PyBytes_FromStringAndSize(element.data(),
                                               static_cast<Py_ssize_t>(element.size()));
    if (!item) throw py::error_already_set();
    Py_XDECREF(slots[i]);
    slots[i] = item;
  }
  return result;
}

py::array deserialize_bytes(py::handle obj) {
  BorrowedBuffer buffer(obj, /*writable=*/false);
  std::size_t count = 0;
  {
    // Safe: the scan only reads the exported buffer, which stays pinned.
    MaybeReleaseGil nogil(buffer.size() >= kReleaseGilMinBytes);
    count = bytes::count_elements(buffer.data(), buffer.size());
  }
  return bytes_objects(buffer.data(), buffer.size(), count);
}


// ---------------------------------------------------------------------------
// Inference over HTTP.
//
// Copies per request: contiguous numeric inputs 0 (their memory goes to
// sendmsg), non-contiguous or byte-swapped inputs 1 (numpy makes a contiguous
// one), BYTES inputs 1 (serialized once into a buffer of their own); numeric
// outputs 0 (views over the receive buffer; 1 only if misaligned for their
// dtype), BYTES outputs 1 (a bytes object per element).

// numpy dtypes by Triton datatype name, registered once by tritonfast._transport
// (BF16 exists only when ml_dtypes is installed). Leaked: the references must
// outlive every interpreter-exit destructor.
std::unordered_map<std::string, PyObject*>& numpy_dtypes() {
  static auto* dtypes = new std::unordered_map<std::string, PyObject*>();
  return *dtypes;
}

void set_numpy_dtypes(const py::dict& dtypes) {
  auto& table = numpy_dtypes();
  for (auto item : dtypes) {
    PyObject* dtype = item.second.ptr();
    Py_INCREF(dtype);
    auto [it, inserted] = table.emplace(item.first.cast<std::string>(), dtype);
    if (!inserted) {
      Py_DECREF(it->second);
      it->second = dtype;
    }
  }
}

std::string describe(py::handle obj) { return py::str(obj).cast<std::string>(); }

// Triton datatype of a numeric numpy dtype, or "" when Triton has none.
std::string numeric_datatype(const py::dtype& dtype) {
  const int bits = static_cast<int>(dtype.itemsize()) * 8;
  switch (dtype.kind()) {
    case 'b':
      return dtype.itemsize() == 1 ? "BOOL" : "";
    case 'i':
      return bits <= 64 ? "INT" + std::to_string(bits) : "";
    case 'u':
      return bits <= 64 ? "UINT" + std::to_string(bits) : "";
    case 'f':
      return bits >= 16 && bits <= 64 ? "FP" + std::to_string(bits) : "";
    case 'V':
      return py::str(dtype.attr("name")).cast<std::string>() == "bfloat16" ? "BF16" : "";
    default:
      return "";
  }
}

bool is_native_order(const py::dtype& dtype) {
  const char order = dtype.byteorder();
  return order == '=' || order == '|' || order == '<';  // only little-endian hosts are supported
}

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

std::vector<http::Header> to_headers(py::handle obj) {
  std::vector<http::Header> out;
  if (obj.is_none()) return out;
  for (auto item : py::reinterpret_borrow<py::iterable>(obj)) {
    auto pair = py::reinterpret_borrow<py::tuple>(item);
    http::Header header{pair[0].cast<std::string>(), pair[1].cast<std::string>()};
    http::validate_header(header);
    out.push_back(std::move(header));
  }
  return out;
}

// An inference request built from Python objects, ready to go on the wire
// without the GIL: it owns (references to) every byte it points at.
class PreparedInfer {
 public:
  PreparedInfer(std::string target, std::string authority, py::handle headers,
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

  // Pure C++ over memory this object owns or references: safe without the GIL.
  const http::Request& build() {
    for (auto& pending : bytes_inputs_) {
      pending.tensor->write(pending.storage.data());
      request_.inputs[pending.input].segments.push_back(
          Segment{pending.storage.data(), pending.storage.size()});
    }
    wire_ = http::build_infer_request(target_, authority_, headers_, request_);
    return wire_;
  }

  const http::Request& wire() const { return wire_; }
  const InferRequest& request() const { return request_; }

 private:
  static SharedMemoryRef shared_memory_ref(py::handle obj) {
    auto ref = py::reinterpret_borrow<py::tuple>(obj);
    return SharedMemoryRef{ref[0].cast<std::string>(), ref[1].cast<std::uint64_t>(),
                           ref[2].cast<std::uint64_t>()};
  }

  // (name, datatype, shape, (region, byte_size, offset)): the tensor is already
  // in a registered shared-memory region.
  void add_shared_memory_input(const py::tuple& entry) {
    InputTensor input;
    input.name = entry[0].cast<std::string>();
    input.datatype = entry[1].cast<std::string>();
    input.shape = entry[2].cast<std::vector<std::int64_t>>();
    input.shared_memory = shared_memory_ref(entry[3]);
    request_.inputs.push_back(std::move(input));
  }

  void add_input(const std::string& name, py::handle value) {
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

// An error answer from the server: status and Triton's message.
struct ServerError {
  int status;
  std::string message;
};

py::object json_to_python(const json::Value& value) {
  switch (value.type()) {
    case json::Value::Type::kNull:
      return py::none();
    case json::Value::Type::kBool:
      return py::bool_(value.as_bool());
    case json::Value::Type::kNumber:
      if (value.is_integer()) return py::int_(value.as_int());
      return py::float_(value.as_double());
    case json::Value::Type::kString:
      return py::str(value.as_string());
    case json::Value::Type::kArray: {
      py::list out;
      for (const auto& item : value.as_array()) out.append(json_to_python(item));
      return out;
    }
    case json::Value::Type::kObject: {
      py::dict out;
      for (const auto& member : value.as_object()) out[py::str(member.first)] = json_to_python(member.second);
      return out;
    }
    case json::Value::Type::kRaw:
      break;  // only outputs' "data" arrays are kept raw
  }
  return py::none();
}

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

// output_array, with numpy's refusal of what the server sent (JSON data that
// does not fit the shape or datatype, a shape numpy cannot hold) reported as the
// server's fault, naming the output.
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

// infer_sample on a batching model, PyTriton's out[0]: the first row (a numpy
// scalar for a 1-D output). An output without a row to take is the server's fault.
py::object first_row(const OutputTensor& output, const py::object& array) {
  if (output.shape.empty() || output.shape[0] < 1) {
    throw ProtocolError("output '" + output.name + "' has shape " + describe(py::cast(output.shape)) +
                        ": infer_sample on a batching model takes the first row of every output, "
                        "and this one has " + (output.shape.empty() ? "no batch axis" : "an empty batch axis"));
  }
  return array[py::int_(0)];
}

// Dict of output name -> numpy array (None for shared-memory outputs), in the
// order of the response.
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

// Throws ServerError (Triton's message, else the status and the body's start)
// unless the status is 200.
void check_infer_status(const http::ResponseHead& head, const http::Body& body) {
  if (head.status != 200) {
    throw ServerError{head.status, error_answer_message(head.status, head.reason, body.data(), body.size)};
  }
}

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

// The native transport bound for Python; every network wait runs without the GIL.
class PyHttpClient {
 public:
  PyHttpClient(std::string host, std::uint16_t port, std::size_t max_idle_connections,
               std::size_t max_idle_buffer_bytes, std::uint64_t max_response_body_bytes)
      : client_(Endpoint{std::move(host), port},
                ClientOptions{max_idle_connections, max_idle_buffer_bytes, max_response_body_bytes}) {}

  py::tuple request(const std::string& method, const std::string& target, py::handle headers,
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

  py::dict infer(const std::string& target, py::handle headers, const std::string& request_id,
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

  void close() {
    MaybeReleaseGil nogil;  // Safe: C++ only; may wait for the pool's mutex.
    client_.close();
  }

  std::size_t idle_buffer_bytes() const { return client_.buffers()->idle_bytes(); }
  std::string authority() const { return client_.endpoint().authority(); }
  HttpClient& native() { return client_; }

 private:
  static Deadline deadline(std::optional<double> timeout_s) {
    return timeout_s ? Deadline::after(*timeout_s) : Deadline::never();
  }

  HttpClient client_;
};

// Request ids "0", "1", ... of one client, shared by all its request paths.
class RequestIds {
 public:
  std::string next() { return std::to_string(next_.fetch_add(1, std::memory_order_relaxed)); }

 private:
  std::atomic<std::uint64_t> next_{0};
};

// The fast lane of ModelClient.infer_batch / infer_sample: positional,
// C-contiguous numeric arrays in native byte order, no parameters or extra
// headers, small enough for plain HTTP. It reads the arrays' fields directly,
// renders the request from a template kept per input layout
// (http::InferTemplate), reuses the parse of a response header seen before
// (ResponseLayoutCache) and builds the output views with the numpy C API.
// Anything else (lists, BYTES, non-contiguous or byte-swapped arrays, a batch
// over max_batch_size, requests for shared memory) returns None without
// sending: the caller takes its general path, which handles (or reports) it.
// Thread-safe.
class PyInferPlan {
 public:
  PyInferPlan(py::object client, std::string target, py::handle headers,
              std::vector<std::string> input_names, std::int64_t max_batch_size,
              std::uint64_t max_bytes, std::uint64_t fixed_output_bytes,
              std::shared_ptr<RequestIds> ids, std::optional<double> timeout_s)
      : client_object_(std::move(client)),
        client_(client_object_.cast<PyHttpClient*>()),
        target_(std::move(target)),
        headers_(to_headers(headers)),
        names_(std::move(input_names)),
        max_batch_size_(max_batch_size),
        max_bytes_(max_bytes),
        fixed_output_bytes_(fixed_output_bytes),
        ids_(std::move(ids)),
        timeout_s_(timeout_s) {
    auto& api = py::detail::npy_api::get();
    // numpy's builtin numeric type numbers (bool, the integers, half, float,
    // double); asking for the others costs a DeprecationWarning for NPY_CHAR
    // on numpy 1.x, which users would see.
    for (int num : {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 23}) {
      PyObject* descr = api.PyArray_DescrFromType_(num);
      if (descr == nullptr) {
        PyErr_Clear();
        continue;
      }
      auto dtype = py::reinterpret_steal<py::dtype>(descr);
      if (dtype.kind() == 'V') continue;  // numeric_datatype would look at its name
      std::string datatype = numeric_datatype(dtype);
      if (!datatype.empty() && is_native_order(dtype)) {
        types_[num] = NumericType{std::move(datatype), static_cast<std::uint64_t>(dtype.itemsize())};
      }
    }
  }

  // {output name: array} (infer_sample: each output's first row), or None.
  py::object infer(py::handle inputs, bool sample) {
    if (!PyTuple_Check(inputs.ptr())) return py::none();
    const auto given = static_cast<std::size_t>(PyTuple_GET_SIZE(inputs.ptr()));
    const std::size_t count = std::min(given, names_.size());
    const bool batching = max_batch_size_ > 0;
    if (count == 0 || (!sample && !batching)) return py::none();
    const bool add_batch_axis = sample && batching;

    auto& api = py::detail::npy_api::get();
    // Per thread, reused: nothing here allocates once warm. A thread is in one
    // infer() at a time (the GIL is released only around the transport).
    thread_local std::vector<std::int64_t> key;  // per input: type number, ndim, dims
    thread_local std::vector<Segment> segments;
    thread_local http::Request wire;
    key.clear();
    segments.clear();
    std::uint64_t in_bytes = 0;
    std::int64_t batch = 1;
    for (std::size_t i = 0; i < count; ++i) {
      PyObject* obj = PyTuple_GET_ITEM(inputs.ptr(), static_cast<Py_ssize_t>(i));
      if (!api.PyArray_Check_(obj)) return py::none();
      const auto* array = py::detail::array_proxy(obj);
      if (!(array->flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_)) return py::none();
      const auto* descr = py::detail::array_descriptor_proxy(array->descr);
      const int num = descr->type_num;
      if (descr->byteorder == '>' || num < 0 || num >= kTypeNumbers || types_[num].size == 0) return py::none();
      if (!sample && (array->nd == 0 || array->dimensions[0] > max_batch_size_)) return py::none();
      std::uint64_t elements = 1;
      key.push_back(num);
      key.push_back(array->nd + (add_batch_axis ? 1 : 0));
      if (add_batch_axis) key.push_back(1);
      for (int k = 0; k < array->nd; ++k) {
        key.push_back(array->dimensions[k]);
        elements *= static_cast<std::uint64_t>(array->dimensions[k]);
      }
      if (!sample && i == 0) batch = array->dimensions[0];
      const std::uint64_t nbytes = elements * types_[num].size;  // numpy keeps it below 2^63
      in_bytes += nbytes;
      segments.push_back(Segment{reinterpret_cast<const std::uint8_t*>(array->data),
                                 static_cast<std::size_t>(nbytes)});
    }
    if (max_bytes_ != 0 &&
        (in_bytes >= max_bytes_ || fixed_output_bytes_ * static_cast<std::uint64_t>(batch) >= max_bytes_)) {
      return py::none();  // shared memory's turn
    }
    std::shared_ptr<const http::InferTemplate> request_template = template_for(key, count);

    const std::string id = ids_->next();
    request_template->render_into(id, segments.data(), segments.size(), &wire);
    sent_.fetch_add(1, std::memory_order_relaxed);
    Response response;
    LaneCheck check(responses_, id);
    {
      // Safe: the caller's tuple keeps every input array alive; the rest is C++.
      MaybeReleaseGil nogil;
      response = client_->native().perform(
          wire, timeout_s_ ? Deadline::after(*timeout_s_) : Deadline::never(), /*idempotent=*/false,
          &check);
      check_infer_status(response.head, response.body);
    }
    const ResponseLayoutCache::Parsed& parsed = check.parsed;
    return outputs(parsed, std::move(response.body), /*take_first_row=*/add_batch_axis);
  }

  // Requests this lane has sent (the rest went the general way).
  std::uint64_t sent() const { return sent_.load(std::memory_order_relaxed); }

 private:
  static constexpr int kTypeNumbers = 32;  // numpy's builtin type numbers are below this

  struct NumericType {
    std::string datatype;
    std::uint64_t size = 0;  // 0: not a Triton numeric type
  };

  // InferCheck for the lane: the response-header cache's parse, in the transport.
  struct LaneCheck final : ResponseCheck {
    LaneCheck(ResponseLayoutCache& cache, std::string_view id) : cache(cache), id(id) {}
    void check(const Response& response) override {
      if (response.head.status != 200) return;
      parsed = cache.parse(response.body.data(), response.body.size,
                           response.head.inference_header_length, id);
    }
    ResponseLayoutCache& cache;
    std::string_view id;
    ResponseLayoutCache::Parsed parsed;
  };

  // Python objects of one response layout: output names and dtypes.
  struct PyLayout {
    std::shared_ptr<const ResponseLayoutCache::Layout> layout;
    std::vector<py::object> names;
    std::vector<py::object> dtypes;  // None for BYTES and non-binary outputs
  };

  std::shared_ptr<const http::InferTemplate> template_for(const std::vector<std::int64_t>& key,
                                                          std::size_t count) {
    auto lock = locked();
    if (template_ && template_key_ == key) return template_;
    InferRequest layout;
    std::size_t at = 0;
    for (std::size_t i = 0; i < count; ++i) {
      InputTensor input;
      input.name = names_[i];
      const auto num = key[at++];
      input.datatype = types_[num].datatype;
      const auto ndim = key[at++];
      std::uint64_t elements = 1;
      for (std::int64_t k = 0; k < ndim; ++k) {
        input.shape.push_back(key[at]);
        elements *= static_cast<std::uint64_t>(key[at++]);
      }
      // Sizes only: render() is given the memory.
      input.segments.push_back(Segment{nullptr, static_cast<std::size_t>(elements * types_[num].size)});
      layout.inputs.push_back(std::move(input));
    }
    template_ = std::make_shared<const http::InferTemplate>(target_, client_->native().endpoint().authority(),
                                                            headers_, layout);
    template_key_ = key;
    return template_;
  }

  // The caller keeps its own reference: converting outputs may run Python code
  // (a __del__, numpy), so another thread may swap py_layout_ meanwhile.
  std::shared_ptr<const PyLayout> py_layout(
      const std::shared_ptr<const ResponseLayoutCache::Layout>& layout) {
    // Only touched with the GIL held; nothing between the check and the swap lets it go.
    if (!py_layout_ || py_layout_->layout != layout) {
      auto fresh = std::make_shared<PyLayout>();
      fresh->layout = layout;
      for (const auto& output : layout->response.outputs) {
        fresh->names.push_back(py::str(output.name));
        py::object dtype = py::none();
        if (output.kind == OutputKind::kBinary && output.datatype != "BYTES") {
          auto it = numpy_dtypes().find(output.datatype);
          if (it != numpy_dtypes().end()) dtype = py::reinterpret_borrow<py::object>(it->second);
        }
        fresh->dtypes.push_back(std::move(dtype));
      }
      py_layout_ = std::move(fresh);
    }
    return py_layout_;
  }

  py::dict outputs(const ResponseLayoutCache::Parsed& parsed, http::Body body, bool take_first_row) {
    auto* owned = new http::Body(std::move(body));
    py::capsule owner(owned, [](void* p) { delete static_cast<http::Body*>(p); });
    const std::uint8_t* binary = owned->data() + parsed.base;
    const std::shared_ptr<const PyLayout> held = py_layout(parsed.layout);
    const PyLayout& objects = *held;
    auto& api = py::detail::npy_api::get();
    py::dict result;
    const auto& outputs = parsed.layout->response.outputs;
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      const OutputTensor& output = outputs[i];
      // JSON outputs' spans count from the start of the body, binary ones from `binary`.
      const std::uint8_t* data = output.kind == OutputKind::kJson ? owned->data() : binary + output.offset;
      py::object array;
      PyObject* descr = objects.dtypes[i].ptr();
      const auto itemsize = descr == Py_None ? 0 : py::reinterpret_borrow<py::dtype>(descr).itemsize();
      if (itemsize > 0 && reinterpret_cast<std::uintptr_t>(data) % static_cast<std::uintptr_t>(itemsize) == 0) {
        static_assert(sizeof(Py_intptr_t) == sizeof(std::int64_t), "64-bit platforms only");
        Py_INCREF(descr);  // stolen by PyArray_NewFromDescr
        array = py::reinterpret_steal<py::object>(api.PyArray_NewFromDescr_(
            api.PyArray_Type_, descr, static_cast<int>(output.shape.size()),
            reinterpret_cast<Py_intptr_t*>(const_cast<std::int64_t*>(output.shape.data())), nullptr,
            const_cast<std::uint8_t*>(data), py::detail::npy_api::NPY_ARRAY_WRITEABLE_, nullptr));
        if (!array) conversion_failed(output, py::error_already_set().what());  // numpy 1's 32 dimensions
        if (api.PyArray_SetBaseObject_(array.ptr(), owner.inc_ref().ptr()) != 0) throw py::error_already_set();
      } else {
        array = converted_output(output, data, owner);
      }
      if (take_first_row) array = first_row(output, array);
      result[objects.names[i]] = std::move(array);
    }
    return result;
  }

  py::object client_object_;  // keeps client_ alive
  PyHttpClient* client_;
  std::string target_;
  std::vector<http::Header> headers_;
  std::vector<std::string> names_;
  std::int64_t max_batch_size_;
  std::uint64_t max_bytes_;
  std::uint64_t fixed_output_bytes_;
  std::shared_ptr<RequestIds> ids_;
  std::optional<double> timeout_s_;
  std::array<NumericType, kTypeNumbers> types_{};
  ResponseLayoutCache responses_;
  std::atomic<std::uint64_t> sent_{0};

  // Locks mutex_; in a forked child whose parent thread held it at the fork,
  // the state it guards is abandoned unread.
  std::unique_lock<fork::Mutex> locked() {
    return fork::lock(mutex_, [this](bool intact) {
      if (intact) return;
      new (&template_) std::shared_ptr<const http::InferTemplate>();
      new (&template_key_) std::vector<std::int64_t>();
    });
  }

  fork::Mutex mutex_;  // guards the two below
  std::shared_ptr<const http::InferTemplate> template_;
  std::vector<std::int64_t> template_key_;

  std::shared_ptr<const PyLayout> py_layout_;  // GIL-guarded
};

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
    return ::infer_result(parser_.head(), std::move(body_), expected);
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

py::list datatypes() {
  std::size_t count = 0;
  const DataTypeInfo* table = datatype_table(&count);
  py::list out;
  for (std::size_t i = 0; i < count; ++i) {
    out.append(py::make_tuple(std::string(table[i].name), table[i].size));
  }
  return out;
}

// ---------------------------------------------------------------------------
// --- shared memory
//
// System regions (core/shm.hpp) for tritonfast.shm and CUDA regions
// (core/cuda.hpp) for tritonfast.cuda_shm. The Python modules route each array
// to one of these shims.
//
// Copies: numeric array -> region 1 (memcpy or cudaMemcpy, GIL released;
// non-contiguous arrays are copied once by numpy.copyto into a view, in
// Python); BYTES -> system region 1 (serialized straight into the mapping),
// -> CUDA region 2 (serialized on the host, then one cudaMemcpy); device array
// -> CUDA region 1 (device to device); system region -> numeric array 0 (a
// view whose base owns the mapping); CUDA region -> numeric array 1 (device
// to host, into the caller's array); BYTES out 1 (a bytes object per element).

// numpy.empty(count, object) filled with `count` elements read from memory that
// another process may be writing (single pass, every length checked once).
py::array bytes_from_span(const std::uint8_t* data, std::size_t size, std::uint64_t base_offset,
                          std::size_t count, const std::string& what) {
  // Every element takes at least its 4-byte prefix: refuse before allocating.
  if (count > size / bytes::kPrefixBytes) {
    throw DecodeError(std::to_string(count) + " BYTES elements need at least " +
                      std::to_string(count) + " x 4 bytes but " + what + " holds " +
                      std::to_string(size) + " bytes from offset " + std::to_string(base_offset));
  }
  py::array result = py::module_::import("numpy").attr("empty")(count, "object");
  auto** slots = static_cast<PyObject**>(result.mutable_data());
  shm::ElementReader reader(data, size, base_offset, what);
  for (std::size_t i = 0; i < count; ++i) {
    const std::string_view element = reader.next(i);
    PyObject* item = PyBytes_FromStringAndSize(element.data(), static_cast<Py_ssize_t>(element.size()));
    if (!item) throw py::error_already_set();
    Py_XDECREF(slots[i]);
    slots[i] = item;
  }
  return result;
}

// Bytes of an array of `dtype` and `shape`, overflow-checked.
std::uint64_t array_nbytes(const py::dtype& dtype, const std::vector<py::ssize_t>& shape) {
  std::uint64_t n = static_cast<std::uint64_t>(dtype.itemsize());
  for (py::ssize_t d : shape) {
    if (d < 0) throw py::value_error("negative dimension " + std::to_string(d) + " in shape " + describe(py::cast(shape)));
    const auto dim = static_cast<std::uint64_t>(d);
    if (dim != 0 && n > UINT64_MAX / dim) {
      throw SharedMemoryError("shape " + describe(py::cast(shape)) + " of " + describe(dtype) +
                              " holds more than 2**64 bytes");
    }
    n *= dim;
  }
  return n;
}

// Contiguous numeric numpy array: its bytes may be copied without the GIL while
// the caller's reference keeps it alive.
const py::array& contiguous_numeric(const py::array& array) {
  if (array.dtype().kind() == 'O') {
    throw py::type_error("object arrays hold Python references, not tensor bytes: write BYTES "
                         "tensors with write_bytes");
  }
  if (!(array.flags() & py::array::c_style)) {
    throw py::type_error("the array must be C-contiguous (numpy.ascontiguousarray, or copy it "
                         "into a view of the region)");
  }
  return array;
}

std::uint64_t system_write(shm::SystemRegion& region, std::uint64_t offset, const py::array& array) {
  const std::uint64_t n = static_cast<std::uint64_t>(contiguous_numeric(array).nbytes());
  std::uint8_t* dst = region.span(offset, n);
  // Safe: `array` is referenced by the caller's frame and the mapping by `region`.
  MaybeReleaseGil nogil(n >= kReleaseGilMinBytes);
  if (n) std::memcpy(dst, array.data(), n);
  return n;
}

std::uint64_t system_write_bytes(shm::SystemRegion& region, std::uint64_t offset, py::handle array) {
  BytesTensor tensor(array);
  std::uint8_t* dst = region.span(offset, tensor.size());
  // Safe: `tensor` references every element; the mapping is held by `region`.
  MaybeReleaseGil nogil(tensor.size() >= kReleaseGilMinBytes);
  tensor.write(dst);
  return tensor.size();
}

// Zero-copy view of `shape` x `dtype` at `offset`; its base is the region
// object, so the mapping lives as long as the view.
py::array system_ndarray(py::object self, py::object dtype, std::vector<py::ssize_t> shape,
                         std::uint64_t offset) {
  auto& region = self.cast<shm::SystemRegion&>();
  py::dtype dt = py::dtype::from_args(dtype);
  if (dt.kind() == 'O' || dt.attr("hasobject").cast<bool>()) {
    throw py::type_error("cannot view shared memory as " + describe(dt) +
                         ": BYTES tensors are read with read_bytes");
  }
  std::uint8_t* data = region.span(offset, array_nbytes(dt, shape));
  return py::array(dt, shape, {}, data, self);
}

std::uint64_t span_size(std::uint64_t region_size, std::uint64_t offset, std::optional<std::uint64_t> size) {
  if (size) return *size;
  return offset <= region_size ? region_size - offset : 0;  // past the end: the range check says so
}

py::array system_read_bytes(shm::SystemRegion& region, std::size_t count, std::uint64_t offset,
                            std::optional<std::uint64_t> size) {
  const std::uint64_t n = span_size(region.size(), offset, size);
  const std::uint8_t* data = region.span(offset, n);
  return bytes_from_span(data, n, offset, count, "shared memory region '" + region.key() + "'");
}

// --- CUDA

// DLPack's ABI (dlpack.h, v0.8 and v1.x), as far as reading a tensor goes.
struct DLDevice {
  std::int32_t device_type;
  std::int32_t device_id;
};
struct DLDataType {
  std::uint8_t code;
  std::uint8_t bits;
  std::uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  std::int32_t ndim;
  DLDataType dtype;
  std::int64_t* shape;
  std::int64_t* strides;
  std::uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor*);
};
struct DLManagedTensorVersioned {
  std::uint32_t major;
  std::uint32_t minor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensorVersioned*);
  std::uint64_t flags;
  DLTensor dl_tensor;
};
enum : std::int32_t { kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLCUDAManaged = 13 };

// Takes a "dltensor" / "dltensor_versioned" capsule over, as the DLPack
// protocol asks of a consumer: renames it "used_..." and calls the producer's
// deleter when done (with the GIL held: some deleters touch Python objects).
class ConsumedDLPack {
 public:
  explicit ConsumedDLPack(py::handle capsule) {
    PyObject* cap = capsule.ptr();
    const char* name = PyCapsule_CheckExact(cap) ? PyCapsule_GetName(cap) : nullptr;
    if (name && std::strcmp(name, "dltensor") == 0) {
      legacy_ = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, name));
      tensor_ = &legacy_->dl_tensor;
      PyCapsule_SetName(cap, "used_dltensor");
    } else if (name && std::strcmp(name, "dltensor_versioned") == 0) {
      versioned_ = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(cap, name));
      tensor_ = &versioned_->dl_tensor;
      PyCapsule_SetName(cap, "used_dltensor_versioned");
    } else {
      throw py::type_error(std::string("expected a DLPack capsule from __dlpack__(), got ") +
                           (name ? "a capsule named '" + std::string(name) + "' (already consumed?)"
                                 : std::string(Py_TYPE(cap)->tp_name)));
    }
  }
  ~ConsumedDLPack() {
    if (legacy_ && legacy_->deleter) legacy_->deleter(legacy_);
    if (versioned_ && versioned_->deleter) versioned_->deleter(versioned_);
  }
  ConsumedDLPack(const ConsumedDLPack&) = delete;
  ConsumedDLPack& operator=(const ConsumedDLPack&) = delete;

  const DLTensor& tensor() const { return *tensor_; }

 private:
  DLManagedTensor* legacy_ = nullptr;
  DLManagedTensorVersioned* versioned_ = nullptr;
  const DLTensor* tensor_ = nullptr;
};

// Bytes of a C-contiguous DLPack tensor; TypeError for strided ones.
std::uint64_t dlpack_nbytes(const DLTensor& t) {
  const std::uint64_t bits = static_cast<std::uint64_t>(t.dtype.bits) * t.dtype.lanes;
  if (bits == 0 || bits % 8 != 0) {
    throw py::type_error("DLPack dtype of " + std::to_string(t.dtype.bits) + " bits x " +
                         std::to_string(t.dtype.lanes) + " lanes is not a whole number of bytes");
  }
  std::uint64_t count = 1;
  std::int64_t expected_stride = 1;
  for (std::int32_t i = t.ndim - 1; i >= 0; --i) {
    const std::int64_t dim = t.shape[i];
    if (dim < 0) throw py::value_error("DLPack tensor has a negative dimension");
    if (t.strides && dim > 1 && t.strides[i] != expected_stride) {
      throw py::type_error("DLPack tensor is not C-contiguous (dimension " + std::to_string(i) +
                           " has stride " + std::to_string(t.strides[i]) + ", expected " +
                           std::to_string(expected_stride) + "): make it contiguous first");
    }
    expected_stride *= dim;
    count *= static_cast<std::uint64_t>(dim);
  }
  return count * (bits / 8);
}

std::uint64_t cuda_copy_from_host(cuda::CudaRegion& region, std::uint64_t offset, const py::array& array) {
  const std::uint64_t n = static_cast<std::uint64_t>(contiguous_numeric(array).nbytes());
  // Safe: `array` is referenced by the caller's frame; CUDA calls only.
  MaybeReleaseGil nogil;
  region.copy_from_host(offset, array.data(), n);
  return n;
}

std::uint64_t cuda_copy_from_device(cuda::CudaRegion& region, std::uint64_t offset,
                                    std::uintptr_t pointer, std::uint64_t nbytes,
                                    std::optional<std::uintptr_t> stream) {
  // Safe: CUDA calls only; the caller keeps the source array alive.
  MaybeReleaseGil nogil;
  region.copy_from_device(offset, reinterpret_cast<const void*>(pointer), nbytes,
                          stream ? reinterpret_cast<void*>(*stream) : nullptr);
  return nbytes;
}

std::uint64_t cuda_copy_from_dlpack(cuda::CudaRegion& region, std::uint64_t offset, py::handle capsule) {
  ConsumedDLPack consumed(capsule);  // its deleter runs after the GIL is back
  const DLTensor& t = consumed.tensor();
  const std::uint64_t n = dlpack_nbytes(t);
  const void* src = static_cast<const std::uint8_t*>(t.data) + t.byte_offset;
  const std::int32_t type = t.device.device_type;
  if (type != kDLCPU && type != kDLCUDA && type != kDLCUDAHost && type != kDLCUDAManaged) {
    throw py::type_error("DLPack device type " + std::to_string(type) +
                         " is not supported: CPU, CUDA, CUDA host and CUDA managed memory are");
  }
  // Safe: the producer keeps the memory until the deleter runs; CUDA calls only.
  MaybeReleaseGil nogil;
  if (type == kDLCPU) {
    region.copy_from_host(offset, src, n);
  } else {
    region.copy_from_device(offset, src, n);
  }
  return n;
}

std::uint64_t cuda_write_bytes(cuda::CudaRegion& region, std::uint64_t offset, py::handle array) {
  BytesTensor tensor(array);
  // Safe: `tensor` references every element; the staging vector is ours.
  MaybeReleaseGil nogil;
  shm::check_range("CUDA shared memory region of " + std::to_string(region.size()) +
                       " bytes on device " + std::to_string(region.device_id()),
                   offset, tensor.size(), region.size());
  std::vector<std::uint8_t> staging(tensor.size());
  tensor.write(staging.data());
  region.copy_from_host(offset, staging.data(), staging.size());
  return tensor.size();
}

std::uint64_t cuda_copy_to_host(const cuda::CudaRegion& region, std::uint64_t offset, py::array out) {
  if (!(out.flags() & py::array::c_style) || !out.writeable()) {
    throw py::type_error("copy_to_host needs a writable C-contiguous array");
  }
  const std::uint64_t n = static_cast<std::uint64_t>(contiguous_numeric(out).nbytes());
  // Safe: `out` is referenced by this frame; CUDA calls only.
  MaybeReleaseGil nogil;
  region.copy_to_host(offset, out.mutable_data(), n);
  return n;
}

py::array cuda_read_bytes(const cuda::CudaRegion& region, std::size_t count, std::uint64_t offset,
                          std::optional<std::uint64_t> size) {
  const std::uint64_t n = span_size(region.size(), offset, size);
  std::vector<std::uint8_t> host;
  {
    // Safe: CUDA calls into a vector this frame owns.
    MaybeReleaseGil nogil;
    shm::check_range("CUDA shared memory region of " + std::to_string(region.size()) +
                         " bytes on device " + std::to_string(region.device_id()),
                     offset, n, region.size());
    host.resize(n);
    region.copy_to_host(offset, host.data(), n);
  }
  return bytes_from_span(host.data(), host.size(), offset, count,
                         "CUDA shared memory region on device " + std::to_string(region.device_id()));
}

// --- end of shared memory

// Raises the tritonfast.exceptions class `name` with `message`.
void raise_tritonfast(const char* name, const char* message) {
  py::object cls = py::module_::import("tritonfast.exceptions").attr(name);
  PyErr_SetObject(cls.ptr(), py::str(message).ptr());
}

// The module's exception translator: core errors to tritonfast.exceptions.
// Anything else propagates (pybind11 then tries its own translations).
void translate_core_exception(std::exception_ptr p) {
  try {
    if (p) std::rethrow_exception(p);
  } catch (const EncodeError& e) {
    raise_tritonfast("EncodeError", e.what());
  } catch (const ProtocolError& e) {
    raise_tritonfast("ProtocolError", e.what());
  } catch (const DecodeError& e) {
    raise_tritonfast("DecodeError", e.what());
  } catch (const ConnectionError& e) {
    raise_tritonfast("PyTritonClientConnectionError", e.what());
  } catch (const TimeoutError& e) {
    raise_tritonfast("PyTritonClientTimeoutError", e.what());
  } catch (const SharedMemoryError& e) {
    raise_tritonfast("SharedMemoryError", e.what());
  } catch (const ServerError& e) {
    py::object cls = py::module_::import("tritonfast.exceptions").attr("_ServerError");
    // A proxy's error page need not be UTF-8: never fail on the message itself.
    py::object message = py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(
        e.message.data(), static_cast<Py_ssize_t>(e.message.size()), "replace"));
    PyErr_SetObject(cls.ptr(), cls(e.status, message).ptr());
  }
}

// For a raw CPython entry point (no pybind11 dispatcher): sets the Python error
// for the C++ exception in flight, as the dispatcher would.
void set_python_error() {
  try {
    throw;
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const py::builtin_exception& e) {
    e.set_error();
  } catch (...) {
    try {
      translate_core_exception(std::current_exception());
    } catch (const std::bad_alloc&) {
      PyErr_SetString(PyExc_MemoryError, "std::bad_alloc");
    } catch (const std::exception& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (...) {
      PyErr_SetString(PyExc_RuntimeError, "unknown C++ exception");
    }
  }
}

// InferPlan.infer(inputs, sample, /) as a METH_FASTCALL method: the hot call
// skips pybind11's dispatcher (argument vectors, overload loop), ~1,000
// instructions of the ~12,000 a request costs.
PyObject* infer_plan_infer(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  try {
    if (nargs != 2) {
      PyErr_Format(PyExc_TypeError, "InferPlan.infer() takes 2 arguments (%zd given)", nargs);
      return nullptr;
    }
    const int sample = PyObject_IsTrue(args[1]);
    if (sample < 0) return nullptr;
    auto* plan = py::handle(self).cast<PyInferPlan*>();
    return plan->infer(py::handle(args[0]), sample != 0).release().ptr();
  } catch (...) {
    set_python_error();
    return nullptr;
  }
}

PyMethodDef kInferPlanInfer = {
    "infer", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&infer_plan_infer)),
    METH_FASTCALL,
    "infer($self, inputs, sample, /)\n--\n\n"
    "{output: array} for a tuple of positional inputs, or None."};

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "tritonfast's native core (private: use the tritonfast package)";
  m.attr("__version__") = TRITONFAST_VERSION;

  py::register_exception_translator(&translate_core_exception);

  m.def("serialize_bytes", &serialize_bytes, py::arg("array"),
        "Wire bytes of a BYTES tensor (numpy object, 'S' or 'U' array), C order.");
  m.def("bytes_serialized_size", &bytes_serialized_size, py::arg("array"),
        "Wire size of a BYTES tensor, 4-byte length prefixes included.");
  m.def("serialize_bytes_into", &serialize_bytes_into, py::arg("array"), py::arg("out"),
        py::arg("offset") = 0,
        "Writes a BYTES tensor's wire bytes into a writable buffer at offset; returns the "
        "number of bytes written.");
  m.def("deserialize_bytes", &deserialize_bytes, py::arg("buffer"),
        "1-D object array of bytes from a serialized BYTES tensor.");
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

  py::class_<RequestIds, std::shared_ptr<RequestIds>>(
      m, "RequestIds", "A client's request ids \"0\", \"1\", ... (thread-safe).")
      .def(py::init<>())
      .def("next", &RequestIds::next);

  py::class_<PyInferPlan>(m, "InferPlan",
                          "ModelClient's native fast lane for plain numeric requests; infer() "
                          "returns None where the general path must take the request.")
      .def(py::init<py::object, std::string, py::handle, std::vector<std::string>, std::int64_t,
                    std::uint64_t, std::uint64_t, std::shared_ptr<RequestIds>, std::optional<double>>(),
           py::arg("client"), py::arg("target"), py::arg("headers"), py::arg("input_names"),
           py::arg("max_batch_size"), py::arg("max_bytes"), py::arg("fixed_output_bytes"),
           py::arg("ids"), py::arg("timeout_s"))
      .def_property_readonly("sent", &PyInferPlan::sent, "Requests this lane has sent.");
  {
    // infer: a raw FASTCALL method (see infer_plan_infer).
    py::object plan_type = m.attr("InferPlan");
    py::object method = py::reinterpret_steal<py::object>(
        PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(plan_type.ptr()), &kInferPlanInfer));
    if (!method) throw py::error_already_set();
    plan_type.attr("infer") = method;
  }

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

  m.def("datatypes", &datatypes, "Triton datatypes as (name, element size; 0 for BYTES).");

  // --- shared memory
  py::class_<shm::SystemRegion, std::shared_ptr<shm::SystemRegion>>(
      m, "SystemRegion", "A POSIX shared-memory object mapped into this process (munmap when the "
                         "last reference, views included, is gone).")
      .def_static("create", &shm::SystemRegion::create, py::arg("key"), py::arg("byte_size"),
                  py::arg("create_only") = false,
                  "Creates (or, unless create_only, attaches to) the object `key`.")
      .def_static("open", &shm::SystemRegion::open, py::arg("key"),
                  "Attaches to the existing object `key`, whole.")
      .def_property_readonly("key", &shm::SystemRegion::key)
      .def_property_readonly("size", &shm::SystemRegion::size)
      .def_property_readonly("owner", &shm::SystemRegion::owner)
      .def_property_readonly("unlinked", &shm::SystemRegion::unlinked)
      .def("unlink", &shm::SystemRegion::unlink, "shm_unlink the key (idempotent).")
      .def("write", &system_write, py::arg("offset"), py::arg("array"),
           "Copies a C-contiguous numeric array to offset; returns its byte size.")
      .def("write_bytes", &system_write_bytes, py::arg("offset"), py::arg("array"),
           "Serializes a BYTES tensor to offset; returns the bytes written.")
      .def("ndarray", &system_ndarray, py::arg("dtype"), py::arg("shape"), py::arg("offset") = 0,
           "Writable zero-copy view; keeps the mapping alive.")
      .def("read_bytes", &system_read_bytes, py::arg("count"), py::arg("offset") = 0,
           py::arg("size") = py::none(),
           "1-D object array of `count` BYTES elements read from [offset, offset + size).");

  py::class_<cuda::CudaRegion, std::shared_ptr<cuda::CudaRegion>>(
      m, "CudaRegion", "Device memory from cudaMalloc with its IPC handle (cudaFree when the last "
                       "reference is gone).")
      .def(py::init(&cuda::CudaRegion::create), py::arg("byte_size"), py::arg("device_id"))
      .def_property_readonly("size", &cuda::CudaRegion::size)
      .def_property_readonly("device_id", &cuda::CudaRegion::device_id)
      .def_property_readonly("device_pointer", &cuda::CudaRegion::device_pointer)
      .def_property_readonly("ipc_handle", [](const cuda::CudaRegion& r) {
        return py::bytes(reinterpret_cast<const char*>(r.ipc_handle().data()), r.ipc_handle().size());
      })
      .def("copy_from_host", &cuda_copy_from_host, py::arg("offset"), py::arg("array"))
      .def("copy_from_device", &cuda_copy_from_device, py::arg("offset"), py::arg("pointer"),
           py::arg("nbytes"), py::arg("stream") = py::none())
      .def("copy_from_dlpack", &cuda_copy_from_dlpack, py::arg("offset"), py::arg("capsule"))
      .def("write_bytes", &cuda_write_bytes, py::arg("offset"), py::arg("array"))
      .def("copy_to_host", &cuda_copy_to_host, py::arg("offset"), py::arg("out"))
      .def("read_bytes", &cuda_read_bytes, py::arg("count"), py::arg("offset") = 0,
           py::arg("size") = py::none());

  m.def("cuda_load_runtime", &cuda::load_runtime, py::arg("extra_dirs") = std::vector<std::string>{},
        py::arg("search_system") = true,
        "Loads libcudart (once); returns the name or path loaded.");
  m.def("cuda_device_count", &cuda::device_count, "Visible CUDA devices (SharedMemoryError if none).");
  // --- end of shared memory
}
