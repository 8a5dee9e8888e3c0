// System shared memory: SystemRegion (core/shm.hpp) for tritonfast.shm, and the
// helpers the CUDA shims share (shm.hpp).
#include <cstring>
#include <string_view>
#include <vector>

#include "bindings/codec.hpp"
#include "bindings/shm.hpp"
#include "core/bytes_codec.hpp"
#include "core/errors.hpp"
#include "core/shm.hpp"

namespace tritonfast {
namespace bindings TRITONFAST_BINDINGS_HIDDEN {

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

std::uint64_t span_size(std::uint64_t region_size, std::uint64_t offset, std::optional<std::uint64_t> size) {
  if (size) return *size;
  return offset <= region_size ? region_size - offset : 0;  // past the end: the range check says so
}

namespace {

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

py::array system_read_bytes(shm::SystemRegion& region, std::size_t count, std::uint64_t offset,
                            std::optional<std::uint64_t> size) {
  const std::uint64_t n = span_size(region.size(), offset, size);
  const std::uint8_t* data = region.span(offset, n);
  return bytes_from_span(data, n, offset, count, "shared memory region '" + region.key() + "'");
}

}  // namespace

void register_shm(py::module_& m) {
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
}

}  // namespace bindings
}  // namespace tritonfast
