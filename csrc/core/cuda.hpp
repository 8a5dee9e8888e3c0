// CUDA shared memory for Triton's cuda-shared-memory extension: device memory
// from cudaMalloc whose IPC handle the server opens.
//
// Nothing CUDA is needed to build or import tritonfast: the runtime (libcudart)
// is loaded with dlopen the first time a CUDA region is used, and the few types
// and prototypes used are declared in cuda.cpp. Without a loadable runtime or
// without a device, every entry point throws SharedMemoryError saying which.
//
// Copies: numpy -> region is one host-to-device copy (cudaMemcpy straight from
// the array); a device array (CUDA array interface, DLPack) -> region is one
// device-to-device copy with no host round trip; region -> numpy is one
// device-to-host copy of only the requested bytes, into the caller's array.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tritonfast::cuda {

// sizeof(cudaIpcMemHandle_t), CUDA_IPC_HANDLE_SIZE: what the server expects.
constexpr std::size_t kIpcHandleBytes = 64;

using IpcHandle = std::array<std::uint8_t, kIpcHandleBytes>;

// Loads libcudart once per process and returns what was loaded (a later call
// returns the same library; one that failed is tried again). Tried in order:
// the system names (libcudart.so, .so.13, .so.12, .so.11.0) through the
// dynamic loader's search path when `search_system`, then those names in each
// of `extra_dirs` (e.g. the lib directory of the nvidia-cuda-runtime-cu12
// wheel). SharedMemoryError lists everything tried.
std::string load_runtime(const std::vector<std::string>& extra_dirs = {},
                         bool search_system = true);

// Number of visible CUDA devices; SharedMemoryError when there is none (or no
// runtime), with cudaGetDeviceCount's error.
int device_count();

// What cudaPointerGetAttributes says about a pointer.
enum class MemoryType : int { kUnregistered = 0, kHost = 1, kDevice = 2, kManaged = 3 };
struct PointerInfo {
  MemoryType type;
  int device;  // -1 for host memory
};
PointerInfo pointer_info(const void* ptr);

class CudaRegion {
 public:
  // cudaMalloc(byte_size) on `device_id` and its IPC handle; the caller's
  // current device is left as it was (and no context is created on it).
  static std::shared_ptr<CudaRegion> create(std::size_t byte_size, int device_id);

  ~CudaRegion();  // cudaFree; errors are ignored (the runtime may be unloading at exit)
  CudaRegion(const CudaRegion&) = delete;
  CudaRegion& operator=(const CudaRegion&) = delete;

  std::size_t size() const { return size_; }
  int device_id() const { return device_id_; }
  std::uintptr_t device_pointer() const { return reinterpret_cast<std::uintptr_t>(ptr_); }
  // The raw cudaIpcMemHandle_t of the allocation (what register sends, base64-encoded).
  const IpcHandle& ipc_handle() const { return handle_; }

  // Every copy is bounds-checked against the region (SharedMemoryError naming
  // the offset, size and region size) and complete when it returns (synchronised).
  void copy_from_host(std::uint64_t offset, const void* src, std::uint64_t n);
  void copy_to_host(std::uint64_t offset, void* dst, std::uint64_t n) const;
  // From device memory (any device, via unified addressing) or host memory the
  // driver knows. `stream`, when not null, is synchronised first: the producer's
  // stream from the CUDA array interface (v3), so its pending writes land first.
  void copy_from_device(std::uint64_t offset, const void* src, std::uint64_t n,
                        void* stream = nullptr);

 private:
  CudaRegion(void* ptr, std::size_t size, int device_id, const IpcHandle& handle)
      : ptr_(ptr), size_(size), device_id_(device_id), handle_(handle) {}

  void* ptr_;
  std::size_t size_;
  int device_id_;
  IpcHandle handle_;
};

}  // namespace tritonfast::cuda
