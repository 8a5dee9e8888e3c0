// BYTES codec: BytesTensor, serialize_bytes / bytes_serialized_size /
// serialize_bytes_into / deserialize_bytes, and datatypes().
#include "bindings/codec.hpp"

#include <string>

#include "core/bytes_codec.hpp"
#include "core/dtype.hpp"
#include "core/errors.hpp"

namespace tritonfast {
namespace bindings TRITONFAST_BINDINGS_HIDDEN {

BytesTensor::BytesTensor(py::handle obj) {
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

void BytesTensor::write(std::uint8_t* out) const {
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

void BytesTensor::gather_objects() {
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

std::uint64_t BytesTensor::compute_size() {
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

namespace {

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

py::list datatypes() {
  std::size_t count = 0;
  const DataTypeInfo* table = datatype_table(&count);
  py::list out;
  for (std::size_t i = 0; i < count; ++i) {
    out.append(py::make_tuple(std::string(table[i].name), table[i].size));
  }
  return out;
}

}  // namespace

void register_codec(py::module_& m) {
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
}

void register_datatypes(py::module_& m) {
  m.def("datatypes", &datatypes, "Triton datatypes as (name, element size; 0 for BYTES).");
}

}  // namespace bindings
}  // namespace tritonfast
