// The BYTES codec's Python side, shared by the HTTP and shared-memory areas:
// BytesTensor (a BYTES tensor gathered for writing without the GIL) and object
// arrays of bytes read back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "bindings/common.hpp"

namespace tritonfast {
namespace bindings TRITONFAST_BINDINGS_HIDDEN {

// The elements of a BYTES tensor (numpy object, 'S' or 'U' array), flattened in
// C order and ready to be sized and written without the GIL.
class BytesTensor {
 public:
  explicit BytesTensor(py::handle obj);

  BytesTensor(const BytesTensor&) = delete;
  BytesTensor& operator=(const BytesTensor&) = delete;

  std::uint64_t size() const { return size_; }

  // Pure C++ over memory this object keeps alive: safe without the GIL.
  void write(std::uint8_t* out) const;

 private:
  void gather_objects();

  // 'S' and 'U' items live in the array's own memory, which another thread may
  // rewrite while write() runs without the GIL: their lengths are measured once,
  // here, and write() keeps to them (views_ of 'O' arrays are pinned by refs_).
  std::uint64_t compute_size();

  py::array array_;
  std::size_t count_ = 0;
  char kind_ = 'O';
  std::size_t itemsize_ = 0;
  std::vector<std::string_view> views_;
  std::vector<std::uint32_t> lengths_;  // 'S' / 'U': each element's wire length
  References refs_;
  std::uint64_t size_ = 0;
};

// Object array of bytes from `count` elements that count_elements() accepted.
py::array bytes_objects(const std::uint8_t* data, std::size_t size, std::size_t count);

}  // namespace bindings
}  // namespace tritonfast
