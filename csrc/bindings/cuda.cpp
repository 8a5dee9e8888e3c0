// CUDA shared memory: CudaRegion (core/cuda.hpp) for tritonfast.cuda_shm, the
// DLPack structs a consumer reads, and the CUDA runtime loader.
#include <cstring>
#include <string>
#include <vector>

#include "bindings/codec.hpp"
#include "bindings/shm.hpp"
#include "core/cuda.hpp"
#include "core/shm.hpp"

namespace tritonfast {
namespace bindings TRITONFAST_BINDINGS_HIDDEN {

namespace {

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

}  // namespace

void register_cuda(py::module_& m) {
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
}

}  // namespace bindings
}  // namespace tritonfast
