// fork() awareness for the core's shared state.
//
// A child made by fork() has one thread, a copy of every object, and the
// parent's sockets. Reusing a pooled keep-alive connection there would have
// parent and child read each other's responses; a mutex that another parent
// thread held at the moment of the fork stays locked forever in the child.
// The core therefore counts forks (a pthread_atfork child handler bumps a
// generation number) and its objects compare the number they were made in
// with the current one: one relaxed atomic load, a few nanoseconds.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

namespace tritonfast::fork {

// How many forks separate this process from the one that loaded the core
// (0 there, 1 in its children, ...).
std::uint64_t generation() noexcept;

// A std::mutex that a forked child can use although the parent's copy of it
// was locked by a thread the child does not have: the first lock() in a new
// generation replaces the mutex with a fresh, unlocked one. BasicLockable, so
// std::lock_guard works. What the mutex guards may have been half-updated by
// that thread: owners with such state lock through fork::lock(), which lets
// them reset it.
class Mutex {
 public:
  Mutex() noexcept;
  ~Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() {
    if (generation_.load(std::memory_order_acquire) != generation()) renew();
    mutex_.lock();
  }
  void unlock() { mutex_.unlock(); }

  // Under the lock: true once, on the first lock in a forked child; *intact
  // is false when a parent thread held the mutex at the fork (the state it
  // guards may be inconsistent: abandon it rather than walk it).
  bool first_in_child(bool* intact) {
    if (!renewed_) return false;
    renewed_ = false;
    *intact = intact_;
    return true;
  }

 private:
  void renew();

  std::mutex mutex_;
  std::atomic<std::uint64_t> generation_;
  bool renewed_ = false;
  bool intact_ = true;
};

// Locks `mutex`; in a forked child's first use of it, calls reset(intact)
// under the lock before anything else sees the guarded state.
template <class Reset>
std::unique_lock<Mutex> lock(Mutex& mutex, Reset&& reset) {
  std::unique_lock<Mutex> guard(mutex);
  bool intact = true;
  if (mutex.first_in_child(&intact)) reset(intact);
  return guard;
}

}  // namespace tritonfast::fork
