// What every area of the bindings shares: the pybind11 headers (included here
// only, so that every file sees the same type casters), GIL and buffer helpers,
// the numpy dtype table, header lists, and the mapping of C++ errors to
// tritonfast.exceptions. Everything in tritonfast::bindings has hidden
// visibility: like the anonymous namespace of the single file it came from, it
// is not exported from the module and may be inlined within a file.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/http.hpp"

#define TRITONFAST_BINDINGS_HIDDEN __attribute__((visibility("hidden")))

namespace tritonfast {
namespace bindings TRITONFAST_BINDINGS_HIDDEN {

namespace py = pybind11;

// Below this many bytes the work takes less time than handing the GIL over.
constexpr std::uint64_t kReleaseGilMinBytes = 64 * 1024;

inline bool interpreter_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

// Releases the GIL for the scope when `release` is true. Used instead of
// py::gil_scoped_release for one reason: at interpreter exit, a daemon thread
// that takes the GIL back is ended by CPython with pthread_exit, whose forced
// unwind cannot pass a destructor and aborts the process. Such a thread is
// parked instead; the process is exiting anyway.
class MaybeReleaseGil {
 public:
  explicit MaybeReleaseGil(bool release = true) : state_(release ? PyEval_SaveThread() : nullptr) {}
  ~MaybeReleaseGil() {
    if (!state_) return;
    while (interpreter_finalizing()) std::this_thread::sleep_for(std::chrono::seconds(1));
    PyEval_RestoreThread(state_);
  }
  MaybeReleaseGil(const MaybeReleaseGil&) = delete;
  MaybeReleaseGil& operator=(const MaybeReleaseGil&) = delete;

 private:
  PyThreadState* state_;
};

// A contiguous byte buffer borrowed from any object with the buffer protocol.
class BorrowedBuffer {
 public:
  BorrowedBuffer(py::handle obj, bool writable) {
    const int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj.ptr(), &view_, flags) != 0) throw py::error_already_set();
  }
  ~BorrowedBuffer() { PyBuffer_Release(&view_); }
  BorrowedBuffer(const BorrowedBuffer&) = delete;
  BorrowedBuffer& operator=(const BorrowedBuffer&) = delete;

  std::uint8_t* data() const { return static_cast<std::uint8_t*>(view_.buf); }
  std::size_t size() const { return static_cast<std::size_t>(view_.len); }

 private:
  Py_buffer view_{};
};

// Strong references held for as long as C++ uses the objects' memory. A member
// of its own so that they are dropped even when a constructor throws half-way.
class References {
 public:
  References() = default;
  ~References() {
    for (PyObject* ref : refs_) Py_DECREF(ref);
  }
  References(const References&) = delete;
  References& operator=(const References&) = delete;

  void reserve(std::size_t n) { refs_.reserve(n); }
  void hold(PyObject* obj) {
    Py_INCREF(obj);
    refs_.push_back(obj);
  }

 private:
  std::vector<PyObject*> refs_;
};

inline std::string describe(py::handle obj) { return py::str(obj).cast<std::string>(); }

// An error answer from the server: status and Triton's message.
struct ServerError {
  int status;
  std::string message;
};

// numpy dtypes by Triton datatype name, registered once by tritonfast._transport
// (BF16 exists only when ml_dtypes is installed). Leaked: the references must
// outlive every interpreter-exit destructor.
std::unordered_map<std::string, PyObject*>& numpy_dtypes();

void set_numpy_dtypes(const py::dict& dtypes);

// Triton datatype of a numeric numpy dtype, or "" when Triton has none.
std::string numeric_datatype(const py::dtype& dtype);

bool is_native_order(const py::dtype& dtype);

std::vector<http::Header> to_headers(py::handle obj);

// The module's exception translator: core errors to tritonfast.exceptions.
// Anything else propagates (pybind11 then tries its own translations).
void translate_core_exception(std::exception_ptr p);

// For a raw CPython entry point (no pybind11 dispatcher): sets the Python error
// for the C++ exception in flight, as the dispatcher would.
void set_python_error();

// One per area, called by module.cpp in this order: the order in which the
// module has always defined its names (a type is registered before anything
// whose signature names it).
void register_codec(py::module_& m);        // codec.cpp
void register_http_client(py::module_& m);  // http.cpp
void register_fast_lane(py::module_& m);    // fast_lane.cpp
void register_http_parser(py::module_& m);  // http.cpp
void register_datatypes(py::module_& m);    // codec.cpp
void register_shm(py::module_& m);          // shm.cpp
void register_cuda(py::module_& m);         // cuda.cpp

}  // namespace bindings
}  // namespace tritonfast
