#include "core/fork.hpp"

#include <pthread.h>

#include <new>

namespace tritonfast::fork {
namespace {

std::atomic<std::uint64_t> g_generation{0};

// Serialises renew() between a child's threads. Itself renewed by the child
// handler, which runs while the child has its one thread.
alignas(std::mutex) unsigned char g_renew_storage[sizeof(std::mutex)];
std::mutex& renew_mutex() { return *std::launder(reinterpret_cast<std::mutex*>(g_renew_storage)); }

void in_child() noexcept {
  new (g_renew_storage) std::mutex();
  g_generation.fetch_add(1, std::memory_order_acq_rel);
}

struct Registration {
  Registration() noexcept {
    new (g_renew_storage) std::mutex();
    ::pthread_atfork(nullptr, nullptr, &in_child);
  }
};

// Registered when the library loads, before any Mutex exists.
const Registration g_registration;

}  // namespace

std::uint64_t generation() noexcept { return g_generation.load(std::memory_order_acquire); }

Mutex::Mutex() noexcept : generation_(generation()) {}

void Mutex::renew() {
  std::lock_guard<std::mutex> guard(renew_mutex());
  const std::uint64_t now = generation();
  if (generation_.load(std::memory_order_acquire) == now) return;  // another thread did it
  // In a forked child, on first use: the parent's mutex may be locked for good
  // by a thread that does not exist here. No thread of this process holds it.
  const bool was_free = mutex_.try_lock();
  if (was_free) mutex_.unlock();
  mutex_.~mutex();
  new (&mutex_) std::mutex();
  renewed_ = true;
  intact_ = was_free;
  generation_.store(now, std::memory_order_release);
}

}  // namespace tritonfast::fork
