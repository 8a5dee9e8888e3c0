// Receive buffers: 64-byte aligned, recycled through a pool. A large response
// lands in memory that earlier responses already faulted in, instead of fresh
// pages from the kernel (page faults, not memcpy, dominate large payloads:
// ~14 ms per 16 MiB of fresh pages vs ~1 ms to copy).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

#include "core/fork.hpp"

namespace tritonfast {

class BufferPool;

// A move-only block of memory. Destroying it hands the block back to the pool it
// came from (which may keep it for reuse) or frees it.
class Buffer {
 public:
  Buffer() = default;
  Buffer(std::uint8_t* data, std::size_t capacity, std::shared_ptr<BufferPool> pool)
      : data_(data), capacity_(capacity), pool_(std::move(pool)) {}
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  std::uint8_t* data() const { return data_; }
  std::size_t capacity() const { return capacity_; }

 private:
  void reset();

  std::uint8_t* data_ = nullptr;
  std::size_t capacity_ = 0;
  std::shared_ptr<BufferPool> pool_;
};

class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  // Small buffers are sized in steps of this, so that one idle buffer serves
  // every small response (an aligned malloc + free per request costs more
  // than the rest of the response handling).
  static constexpr std::size_t kSmallStep = 4096;
  // Idle buffers up to this size are kept regardless of max_idle_bytes, at most
  // kMaxIdleSmall of them (one per request in flight is what a client needs).
  static constexpr std::size_t kSmallBytes = 64 * 1024;
  static constexpr std::size_t kMaxIdleSmall = 64;
  // Alignment of every buffer: enough for any dtype and for AVX-512 loads.
  static constexpr std::size_t kAlignment = 64;

  // Keeps at most `max_idle_bytes` of idle large buffers for reuse (0: none),
  // plus up to kMaxIdleSmall small ones.
  static std::shared_ptr<BufferPool> create(std::size_t max_idle_bytes);
  ~BufferPool() { trim(); }
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // A buffer of at least `min_capacity` bytes: the smallest idle one that fits
  // without wasting more than half of it (any idle small one for a small
  // request), or a new one. Thread-safe.
  Buffer acquire(std::size_t min_capacity);

  // Frees every idle buffer.
  void trim();

  std::size_t idle_bytes() const;

 private:
  explicit BufferPool(std::size_t max_idle_bytes) : max_idle_bytes_(max_idle_bytes) {}
  friend class Buffer;
  void give_back(std::uint8_t* data, std::size_t capacity);

  std::unique_lock<fork::Mutex> locked() const;

  const std::size_t max_idle_bytes_;
  mutable fork::Mutex mutex_;
  // Guarded by mutex_ (mutable: a forked child's first lock may reset them).
  mutable std::multimap<std::size_t, std::uint8_t*> idle_;  // large: capacity -> block
  mutable std::size_t idle_bytes_ = 0;                      // of the large ones
  mutable std::multimap<std::size_t, std::uint8_t*> idle_small_;
};

}  // namespace tritonfast
