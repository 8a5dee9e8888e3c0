// Triton's BYTES tensor wire format: every element is a 4-byte little-endian
// length followed by that many raw bytes, elements concatenated in row-major
// order, with no terminator, padding or alignment.
//
// Copies: serialize*() write each element once, straight into the caller's
// buffer (the only copy on the request path). Decoding is two passes over the
// caller's buffer, neither of which copies: count_elements() validates every
// length before anything is allocated, then Reader hands out views that the
// bindings turn into Python bytes objects (the one unavoidable copy).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tritonfast::bytes {

// Size of the little-endian length prefix in front of every element.
constexpr std::size_t kPrefixBytes = 4;
// Largest element the 4-byte length prefix can describe.
constexpr std::uint64_t kMaxElementBytes = 0xFFFFFFFFull;

// --- Elements given as views (Python bytes / str objects gathered by the bindings).

// Total wire size of `n` elements; EncodeError if one exceeds kMaxElementBytes.
std::uint64_t serialized_size(const std::string_view* elements, std::size_t n);
// Writes the wire bytes of `n` elements to `out`, which must hold
// serialized_size() bytes; returns one past the last byte written.
std::uint8_t* serialize(const std::string_view* elements, std::size_t n, std::uint8_t* out);

// --- numpy 'S' arrays: `n` contiguous items of `itemsize` bytes. Like numpy's
// own item access, trailing NUL bytes of each item are not part of the element.

//
// Sizing stores each element's byte length in `lengths` (n entries); writing
// uses those lengths, not the array's bytes as they are then. The array may be
// a Python object that another thread changes while the GIL is released: the
// write stays inside the serialized_size() bytes it was given whatever happens
// to the items meanwhile.

std::uint64_t fixed_serialized_size(const char* data, std::size_t n, std::size_t itemsize,
                                    std::uint32_t* lengths);
std::uint8_t* serialize_fixed(const char* data, std::size_t n, std::size_t itemsize,
                              const std::uint32_t* lengths, std::uint8_t* out);

// --- numpy 'U' arrays: `n` contiguous items of `chars` UCS-4 code points,
// encoded as UTF-8; trailing NUL code points are dropped as numpy does.
// EncodeError (naming the element) for surrogates and values past U+10FFFF.
// `lengths` as for 'S' arrays (UTF-8 bytes per element); an element whose
// encoding no longer has the recorded length when it is written (another
// thread changed it) is an EncodeError naming it, never a write out of bounds.

std::uint64_t ucs4_serialized_size(const std::uint32_t* data, std::size_t n, std::size_t chars,
                                   std::uint32_t* lengths);
std::uint8_t* serialize_ucs4(const std::uint32_t* data, std::size_t n, std::size_t chars,
                             const std::uint32_t* lengths, std::uint8_t* out);

// --- Decoding.

// Validates a whole serialized tensor and returns its element count. Every
// length prefix is checked against the bytes actually left before it is
// trusted; DecodeError names the element index and byte offset at fault.
// Trailing bytes after the last whole element are an incomplete element.
std::size_t count_elements(const std::uint8_t* data, std::size_t size);

// Walks a buffer that count_elements() accepted, one element view at a time.
class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  // Stores the next element in *element; false at the end of the buffer.
  bool next(std::string_view* element);

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t offset_ = 0;
};

}  // namespace tritonfast::bytes
