// Helpers shared by the system (shm.cpp) and CUDA (cuda.cpp) shared-memory shims.
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
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "bindings/common.hpp"

namespace tritonfast {
namespace bindings TRITONFAST_BINDINGS_HIDDEN {

// numpy.empty(count, object) filled with `count` elements read from memory that
// another process may be writing (single pass, every length checked once).
py::array bytes_from_span(const std::uint8_t* data, std::size_t size, std::uint64_t base_offset,
                          std::size_t count, const std::string& what);

// Contiguous numeric numpy array: its bytes may be copied without the GIL while
// the caller's reference keeps it alive.
const py::array& contiguous_numeric(const py::array& array);

// Bytes from `offset` to `offset + size`, or to the region's end without `size`.
std::uint64_t span_size(std::uint64_t region_size, std::uint64_t offset, std::optional<std::uint64_t> size);

}  // namespace bindings
}  // namespace tritonfast
