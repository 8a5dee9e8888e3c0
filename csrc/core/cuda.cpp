// The CUDA runtime through dlopen, and CUDA shared-memory regions (see cuda.hpp).
#include "core/cuda.hpp"

#include <dlfcn.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/errors.hpp"
#include "core/shm.hpp"

namespace tritonfast::cuda {

namespace {

// --- The slice of the CUDA runtime API we use, declared here so that nothing
// CUDA is needed at build time. Layouts are those of CUDA 11, 12 and 13.

using cudaError_t = int;
constexpr cudaError_t kCudaSuccess = 0;

struct cudaIpcMemHandle_t {
  char reserved[kIpcHandleBytes];
};

// cudaPointerAttributes as of CUDA 11 (type, device, devicePointer,
// hostPointer), padded in case a later runtime writes more fields.
struct cudaPointerAttributes {
  int type;
  int device;
  void* devicePointer;
  void* hostPointer;
  unsigned char reserved[256];
};

enum cudaMemcpyKind : int {
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDefault = 4,  // direction from the pointers (unified virtual addressing)
};

// Library names tried through the dynamic loader, newest API first after the
// unversioned development link.
constexpr const char* kRuntimeNames[] = {"libcudart.so", "libcudart.so.13", "libcudart.so.12",
                                         "libcudart.so.11.0"};
constexpr const char* kHelp = "CUDA shared memory needs an NVIDIA GPU and libcudart";

struct Runtime {
  std::string path;
  cudaError_t (*GetDeviceCount)(int*) = nullptr;
  cudaError_t (*SetDevice)(int) = nullptr;
  cudaError_t (*GetDevice)(int*) = nullptr;
  cudaError_t (*Malloc)(void**, std::size_t) = nullptr;
  cudaError_t (*Free)(void*) = nullptr;
  cudaError_t (*Memcpy)(void*, const void*, std::size_t, int) = nullptr;
  cudaError_t (*IpcGetMemHandle)(cudaIpcMemHandle_t*, void*) = nullptr;
  cudaError_t (*PointerGetAttributes)(cudaPointerAttributes*, const void*) = nullptr;
  cudaError_t (*StreamSynchronize)(void*) = nullptr;
  const char* (*GetErrorString)(cudaError_t) = nullptr;
  const char* (*GetErrorName)(cudaError_t) = nullptr;
  // Driver API, optional: tells whether a device's primary context is active,
  // so that restoring the caller's device never creates one (as tritonclient).
  int (*cuDeviceGet)(int*, int) = nullptr;
  int (*cuDevicePrimaryCtxGetState)(int, unsigned*, int*) = nullptr;
};

// Loaded once and never unloaded: regions freed at interpreter exit still need it.
std::atomic<const Runtime*> g_runtime{nullptr};
std::mutex g_load_mutex;

template <typename F>
bool resolve(void* lib, const char* name, F* fn) {
  *fn = reinterpret_cast<F>(::dlsym(lib, name));
  return *fn != nullptr;
}

// The runtime at `lib` with every function we need; empty `missing` on success.
Runtime* bind(void* lib, std::string path, std::string* missing) {
  auto rt = std::make_unique<Runtime>();
  rt->path = std::move(path);
  const std::pair<const char*, bool> results[] = {
      {"cudaGetDeviceCount", resolve(lib, "cudaGetDeviceCount", &rt->GetDeviceCount)},
      {"cudaSetDevice", resolve(lib, "cudaSetDevice", &rt->SetDevice)},
      {"cudaGetDevice", resolve(lib, "cudaGetDevice", &rt->GetDevice)},
      {"cudaMalloc", resolve(lib, "cudaMalloc", &rt->Malloc)},
      {"cudaFree", resolve(lib, "cudaFree", &rt->Free)},
      {"cudaMemcpy", resolve(lib, "cudaMemcpy", &rt->Memcpy)},
      {"cudaIpcGetMemHandle", resolve(lib, "cudaIpcGetMemHandle", &rt->IpcGetMemHandle)},
      {"cudaPointerGetAttributes", resolve(lib, "cudaPointerGetAttributes", &rt->PointerGetAttributes)},
      {"cudaStreamSynchronize", resolve(lib, "cudaStreamSynchronize", &rt->StreamSynchronize)},
      {"cudaGetErrorString", resolve(lib, "cudaGetErrorString", &rt->GetErrorString)},
  };
  for (const auto& [name, found] : results) {
    if (!found) *missing += (missing->empty() ? "" : ", ") + std::string(name);
  }
  if (!missing->empty()) return nullptr;
  resolve(lib, "cudaGetErrorName", &rt->GetErrorName);
  // libcudart loads the driver itself; this only finds it.
  if (void* driver = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL)) {
    resolve(driver, "cuDeviceGet", &rt->cuDeviceGet);
    resolve(driver, "cuDevicePrimaryCtxGetState", &rt->cuDevicePrimaryCtxGetState);
  }
  return rt.release();
}

const Runtime& runtime() {
  if (const Runtime* rt = g_runtime.load(std::memory_order_acquire)) return *rt;
  load_runtime();
  return *g_runtime.load(std::memory_order_acquire);
}

std::string error_text(const Runtime& rt, cudaError_t rc) {
  std::string out;
  if (rt.GetErrorName) out = std::string(rt.GetErrorName(rc)) + " ";
  out += "(" + std::to_string(rc) + "): " + rt.GetErrorString(rc);
  return out;
}

void check(const Runtime& rt, cudaError_t rc, const std::string& what) {
  if (rc != kCudaSuccess) throw SharedMemoryError(what + " returned " + error_text(rt, rc));
}

std::string hex(const void* p) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%p", p);
  return buffer;
}

bool primary_context_active(const Runtime& rt, int ordinal) {
  if (!rt.cuDeviceGet || !rt.cuDevicePrimaryCtxGetState) return true;  // cannot tell: restore
  int device = 0;
  unsigned flags = 0;
  int active = 0;
  if (rt.cuDeviceGet(&device, ordinal) != 0) return true;
  if (rt.cuDevicePrimaryCtxGetState(device, &flags, &active) != 0) return true;
  return active != 0;
}

// Makes `device` current for the scope, then gives the caller its device back
// unless that has no context yet (setting it would create one, ~300 MiB).
class DeviceGuard {
 public:
  DeviceGuard(const Runtime& rt, int device) : rt_(rt) {
    int current = 0;
    check(rt, rt.GetDevice(&current), "cudaGetDevice");
    if (current != device) {
      check(rt, rt.SetDevice(device), "cudaSetDevice(" + std::to_string(device) + ")");
      previous_ = current;
    }
  }
  ~DeviceGuard() {
    if (previous_ >= 0 && primary_context_active(rt_, previous_)) rt_.SetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  const Runtime& rt_;
  int previous_ = -1;
};

std::string region_text(std::size_t size, int device) {
  return "CUDA shared memory region of " + std::to_string(size) + " bytes on device " +
         std::to_string(device);
}

}  // namespace

std::string load_runtime(const std::vector<std::string>& extra_dirs, bool search_system) {
  std::lock_guard<std::mutex> lock(g_load_mutex);
  if (const Runtime* rt = g_runtime.load(std::memory_order_acquire)) return rt->path;

  std::vector<std::string> candidates;
  if (search_system) {
    for (const char* name : kRuntimeNames) candidates.emplace_back(name);
  }
  for (const auto& dir : extra_dirs) {
    for (const char* name : kRuntimeNames) candidates.push_back(dir + "/" + name);
  }
  // A runtime the process already has (PyTorch's, CuPy's) is used first, so one
  // process does not end up with two.
  std::vector<std::pair<std::string, int>> passes;
  for (const auto& c : candidates) passes.emplace_back(c, RTLD_NOW | RTLD_NOLOAD);
  for (const auto& c : candidates) passes.emplace_back(c, RTLD_NOW | RTLD_LOCAL);

  std::string problems;  // failures other than "not found", worth showing
  for (const auto& [name, flags] : passes) {
    void* lib = ::dlopen(name.c_str(), flags);
    if (!lib) {
      const char* err = ::dlerror();
      if (!(flags & RTLD_NOLOAD) && err && !std::strstr(err, "No such file")) {
        problems += std::string("; ") + err;
      }
      continue;
    }
    std::string missing;
    if (Runtime* rt = bind(lib, name, &missing)) {
      g_runtime.store(rt, std::memory_order_release);
      return rt->path;
    }
    problems += "; " + name + " lacks " + missing;
  }
  std::string tried;
  for (const auto& c : candidates) tried += (tried.empty() ? "" : ", ") + c;
  throw SharedMemoryError("CUDA runtime library not found (tried: " + tried + ")" + problems +
                          "; " + kHelp);
}

int device_count() {
  const Runtime& rt = runtime();
  int count = 0;
  const cudaError_t rc = rt.GetDeviceCount(&count);
  if (rc != kCudaSuccess) {
    // 35 cudaErrorInsufficientDriver: what a machine without the NVIDIA driver reports.
    const char* hint = rc == 35 ? ", i.e. no NVIDIA driver or one older than the runtime" : "";
    throw SharedMemoryError("no CUDA device: cudaGetDeviceCount returned " + error_text(rt, rc) +
                            hint + " (runtime " + rt.path + "); " + kHelp);
  }
  if (count <= 0) {
    throw SharedMemoryError("no CUDA device: cudaGetDeviceCount found 0 devices (runtime " +
                            rt.path + "); " + kHelp);
  }
  return count;
}

PointerInfo pointer_info(const void* ptr) {
  const Runtime& rt = runtime();
  cudaPointerAttributes attributes{};
  check(rt, rt.PointerGetAttributes(&attributes, ptr), "cudaPointerGetAttributes(" + hex(ptr) + ")");
  const auto type = static_cast<MemoryType>(attributes.type);
  return PointerInfo{type, type == MemoryType::kDevice || type == MemoryType::kManaged
                               ? attributes.device
                               : -1};
}

std::shared_ptr<CudaRegion> CudaRegion::create(std::size_t byte_size, int device_id) {
  const Runtime& rt = runtime();
  const int count = device_count();
  if (device_id < 0 || device_id >= count) {
    throw SharedMemoryError("CUDA device " + std::to_string(device_id) + " does not exist: " +
                            std::to_string(count) + " device(s) visible, numbered from 0" +
                            " (CUDA_VISIBLE_DEVICES renumbers them)");
  }
  if (byte_size == 0) {
    throw SharedMemoryError("cannot create a CUDA shared memory region of 0 bytes: byte_size "
                            "must be positive");
  }
  DeviceGuard guard(rt, device_id);
  void* ptr = nullptr;
  check(rt, rt.Malloc(&ptr, byte_size),
        "allocating " + region_text(byte_size, device_id) + ": cudaMalloc");
  cudaIpcMemHandle_t raw{};
  const cudaError_t rc = rt.IpcGetMemHandle(&raw, ptr);
  if (rc != kCudaSuccess) {
    rt.Free(ptr);
    throw SharedMemoryError("creating " + region_text(byte_size, device_id) +
                            ": cudaIpcGetMemHandle returned " + error_text(rt, rc));
  }
  IpcHandle handle{};
  std::memcpy(handle.data(), raw.reserved, kIpcHandleBytes);
  return std::shared_ptr<CudaRegion>(new CudaRegion(ptr, byte_size, device_id, handle));
}

CudaRegion::~CudaRegion() {
  const Runtime* rt = g_runtime.load(std::memory_order_acquire);
  if (!rt || !ptr_) return;
  try {
    DeviceGuard guard(*rt, device_id_);
    rt->Free(ptr_);
  } catch (const SharedMemoryError&) {
    // cudaGetDevice/cudaSetDevice failed: the runtime is shutting down and
    // frees everything itself.
  }
}

void CudaRegion::copy_from_host(std::uint64_t offset, const void* src, std::uint64_t n) {
  shm::check_range(region_text(size_, device_id_), offset, n, size_);
  if (n == 0) return;
  const Runtime& rt = runtime();
  DeviceGuard guard(rt, device_id_);
  check(rt, rt.Memcpy(static_cast<std::uint8_t*>(ptr_) + offset, src, n, cudaMemcpyHostToDevice),
        "copying " + std::to_string(n) + " bytes to offset " + std::to_string(offset) + " of " +
            region_text(size_, device_id_) + ": cudaMemcpy");
  // From pageable memory cudaMemcpy may return before the DMA has finished;
  // the server reads the region as soon as it has our request.
  check(rt, rt.StreamSynchronize(nullptr), "cudaStreamSynchronize");
}

void CudaRegion::copy_to_host(std::uint64_t offset, void* dst, std::uint64_t n) const {
  shm::check_range(region_text(size_, device_id_), offset, n, size_);
  if (n == 0) return;
  const Runtime& rt = runtime();
  DeviceGuard guard(rt, device_id_);
  // Device to pageable host memory: cudaMemcpy returns when the copy is done.
  check(rt, rt.Memcpy(dst, static_cast<const std::uint8_t*>(ptr_) + offset, n, cudaMemcpyDeviceToHost),
        "copying " + std::to_string(n) + " bytes from offset " + std::to_string(offset) + " of " +
            region_text(size_, device_id_) + ": cudaMemcpy");
}

void CudaRegion::copy_from_device(std::uint64_t offset, const void* src, std::uint64_t n,
                                  void* stream) {
  shm::check_range(region_text(size_, device_id_), offset, n, size_);
  if (n == 0) return;
  const Runtime& rt = runtime();
  if (pointer_info(src).type == MemoryType::kUnregistered) {
    throw SharedMemoryError("pointer " + hex(src) +
                            " is not memory CUDA knows (not device, managed or pinned host "
                            "memory): pass host data as a numpy array");
  }
  DeviceGuard guard(rt, device_id_);
  if (stream) check(rt, rt.StreamSynchronize(stream), "cudaStreamSynchronize(producer stream)");
  check(rt, rt.Memcpy(static_cast<std::uint8_t*>(ptr_) + offset, src, n, cudaMemcpyDefault),
        "copying " + std::to_string(n) + " bytes from device pointer " + hex(src) + " to offset " +
            std::to_string(offset) + " of " + region_text(size_, device_id_) + ": cudaMemcpy");
  // A device-to-device cudaMemcpy returns before the copy is done.
  check(rt, rt.StreamSynchronize(nullptr), "cudaStreamSynchronize");
}

}  // namespace tritonfast::cuda
