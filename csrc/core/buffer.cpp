#include "core/buffer.hpp"

#include <cstdlib>
#include <new>
#include <utility>

namespace tritonfast {
namespace {

std::uint8_t* allocate(std::size_t capacity) {
  void* p = nullptr;
  if (posix_memalign(&p, BufferPool::kAlignment, capacity ? capacity : 1) != 0) {
    throw std::bad_alloc();
  }
  return static_cast<std::uint8_t*>(p);
}

}  // namespace

Buffer::~Buffer() { reset(); }

Buffer::Buffer(Buffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      capacity_(std::exchange(other.capacity_, 0)),
      pool_(std::move(other.pool_)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    reset();
    data_ = std::exchange(other.data_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
    pool_ = std::move(other.pool_);
  }
  return *this;
}

void Buffer::reset() {
  if (!data_) return;
  if (pool_) {
    pool_->give_back(data_, capacity_);
  } else {
    std::free(data_);
  }
  data_ = nullptr;
  capacity_ = 0;
  pool_.reset();
}

std::unique_lock<fork::Mutex> BufferPool::locked() const {
  return fork::lock(mutex_, [this](bool intact) {
    if (intact) return;  // the idle buffers are this child's copies: reused as they are
    // A parent thread was changing the maps at the fork: abandon them unread.
    new (&idle_) std::multimap<std::size_t, std::uint8_t*>();
    new (&idle_small_) std::multimap<std::size_t, std::uint8_t*>();
    idle_bytes_ = 0;
  });
}

std::shared_ptr<BufferPool> BufferPool::create(std::size_t max_idle_bytes) {
  return std::shared_ptr<BufferPool>(new BufferPool(max_idle_bytes));
}

Buffer BufferPool::acquire(std::size_t min_capacity) {
  const bool small = min_capacity <= kSmallBytes;
  {
    auto lock = locked();
    auto& idle = small ? idle_small_ : idle_;
    auto it = idle.lower_bound(min_capacity);
    if (it != idle.end() && (small || it->first / 2 <= min_capacity)) {
      Buffer found(it->second, it->first, shared_from_this());
      if (!small) idle_bytes_ -= it->first;
      idle.erase(it);
      return found;
    }
  }
  const std::size_t capacity =
      small ? (min_capacity + kSmallStep - 1) / kSmallStep * kSmallStep : min_capacity;
  return Buffer(allocate(capacity), capacity, shared_from_this());
}

void BufferPool::give_back(std::uint8_t* data, std::size_t capacity) {
  {
    auto lock = locked();
    if (capacity <= kSmallBytes) {
      if (idle_small_.size() < kMaxIdleSmall) {
        idle_small_.emplace(capacity, data);
        return;
      }
    } else if (idle_bytes_ + capacity <= max_idle_bytes_) {
      idle_.emplace(capacity, data);
      idle_bytes_ += capacity;
      return;
    }
  }
  std::free(data);
}

void BufferPool::trim() {
  std::multimap<std::size_t, std::uint8_t*> idle, idle_small;
  {
    auto lock = locked();
    idle.swap(idle_);
    idle_small.swap(idle_small_);
    idle_bytes_ = 0;
  }
  for (auto& entry : idle) std::free(entry.second);
  for (auto& entry : idle_small) std::free(entry.second);
}

std::size_t BufferPool::idle_bytes() const {
  auto lock = locked();
  return idle_bytes_;
}

}  // namespace tritonfast
