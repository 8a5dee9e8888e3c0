// POSIX shared memory for Triton's system-shared-memory extension: a region is
// a named object in /dev/shm (shm_open), mapped once into this process.
//
// Copies: write() is the one memcpy from the caller's tensor into the region;
// the bindings hand out numpy views over data() (0 copies) whose base object
// owns a shared_ptr to the region, so the mapping outlives every view (munmap
// runs in the destructor, after the last one is gone). BYTES elements are
// copied once, from the region into Python bytes objects.
//
// Keys follow shm_open(3): one leading '/', then a name without '/'. glibc
// strips any number of leading slashes (tritonclient's "/k" reaches shm_open as
// "//k" and names /dev/shm/k), so every key is normalised to a single one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace tritonfast::shm {

// Longest name after the leading '/': the NAME_MAX of the /dev/shm file name.
constexpr std::size_t kMaxKeyNameBytes = 255;

// "/name" for "name", "/name" or "//name"; SharedMemoryError when the name is
// empty, holds another '/' or a NUL, or is longer than kMaxKeyNameBytes.
std::string normalize_key(std::string_view key);

class SystemRegion {
 public:
  // Creates the object `key` with `byte_size` bytes (mode 0600) and maps it.
  // If it exists already: SharedMemoryError when `create_only`, else it is
  // attached like tritonclient does, whole (size() is its full size), and
  // SharedMemoryError when it is smaller than `byte_size`. The bytes are
  // reserved up front (posix_fallocate), so a full /dev/shm is an error here
  // rather than a SIGBUS on first write.
  static std::shared_ptr<SystemRegion> create(std::string key, std::size_t byte_size,
                                              bool create_only);
  // Maps the whole of an existing object; its size comes from fstat.
  static std::shared_ptr<SystemRegion> open(std::string key);

  ~SystemRegion();  // munmap
  SystemRegion(const SystemRegion&) = delete;
  SystemRegion& operator=(const SystemRegion&) = delete;

  std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& key() const { return key_; }
  // True when this process created the object (not attached to an existing one).
  bool owner() const { return owner_; }

  // Removes the name from /dev/shm (shm_unlink). The mapping stays valid until
  // the region is destroyed. Idempotent; a name already gone is not an error.
  void unlink();
  bool unlinked() const { return unlinked_; }

  // Pointer to [offset, offset + n); SharedMemoryError naming the offset, the
  // size and the region's size when that range is not inside the region.
  std::uint8_t* span(std::uint64_t offset, std::uint64_t n) const;
  // Copies n bytes from src to offset, bounds-checked as span().
  void write(std::uint64_t offset, const void* src, std::uint64_t n);

 private:
  SystemRegion(std::string key, std::uint8_t* data, std::size_t size, bool owner)
      : key_(std::move(key)), data_(data), size_(size), owner_(owner) {}

  std::string key_;
  std::uint8_t* data_;
  std::size_t size_;
  bool owner_;
  bool unlinked_ = false;
};

// Checks that [offset, offset + n) lies inside a region of `region_size` bytes
// (overflow-safe); SharedMemoryError naming `what`, the range and the size.
void check_range(const std::string& what, std::uint64_t offset, std::uint64_t n,
                 std::uint64_t region_size);

// Reads a known number of BYTES elements (4-byte little-endian length, then the
// bytes) from memory another process may be writing at the same time: each
// length prefix is read once and checked against the bytes left before it is
// trusted, so a torn or hostile buffer can give wrong bytes but never a read
// past the end. DecodeError names the element, its byte offset (counted from
// `base_offset`, the span's offset in its region) and `what`.
class ElementReader {
 public:
  ElementReader(const std::uint8_t* data, std::size_t size, std::uint64_t base_offset,
                std::string what)
      : data_(data), size_(size), base_offset_(base_offset), what_(std::move(what)) {}
  // Element `index` (callers count from 0 and call once per element).
  std::string_view next(std::size_t index);

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::uint64_t base_offset_;
  std::string what_;
  std::size_t offset_ = 0;
};

}  // namespace tritonfast::shm
