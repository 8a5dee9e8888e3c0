// Shared helpers of the bindings (common.hpp): the numpy dtype table, Triton
// datatypes of numpy dtypes, header lists, and C++ errors mapped to
// tritonfast.exceptions once, here.
#include "bindings/common.hpp"

#include <new>
#include <stdexcept>

#include "core/errors.hpp"

namespace tritonfast {
namespace bindings TRITONFAST_BINDINGS_HIDDEN {

std::unordered_map<std::string, PyObject*>& numpy_dtypes() {
  static auto* dtypes = new std::unordered_map<std::string, PyObject*>();
  return *dtypes;
}

void set_numpy_dtypes(const py::dict& dtypes) {
  auto& table = numpy_dtypes();
  for (auto item : dtypes) {
    PyObject* dtype = item.second.ptr();
    Py_INCREF(dtype);
    auto [it, inserted] = table.emplace(item.first.cast<std::string>(), dtype);
    if (!inserted) {
      Py_DECREF(it->second);
      it->second = dtype;
    }
  }
}

std::string numeric_datatype(const py::dtype& dtype) {
  const int bits = static_cast<int>(dtype.itemsize()) * 8;
  switch (dtype.kind()) {
    case 'b':
      return dtype.itemsize() == 1 ? "BOOL" : "";
    case 'i':
      return bits <= 64 ? "INT" + std::to_string(bits) : "";
    case 'u':
      return bits <= 64 ? "UINT" + std::to_string(bits) : "";
    case 'f':
      return bits >= 16 && bits <= 64 ? "FP" + std::to_string(bits) : "";
    case 'V':
      return py::str(dtype.attr("name")).cast<std::string>() == "bfloat16" ? "BF16" : "";
    default:
      return "";
  }
}

bool is_native_order(const py::dtype& dtype) {
  const char order = dtype.byteorder();
  return order == '=' || order == '|' || order == '<';  // only little-endian hosts are supported
}

std::vector<http::Header> to_headers(py::handle obj) {
  std::vector<http::Header> out;
  if (obj.is_none()) return out;
  for (auto item : py::reinterpret_borrow<py::iterable>(obj)) {
    auto pair = py::reinterpret_borrow<py::tuple>(item);
    http::Header header{pair[0].cast<std::string>(), pair[1].cast<std::string>()};
    http::validate_header(header);
    out.push_back(std::move(header));
  }
  return out;
}

namespace {

// Raises the tritonfast.exceptions class `name` with `message`.
void raise_tritonfast(const char* name, const char* message) {
  py::object cls = py::module_::import("tritonfast.exceptions").attr(name);
  PyErr_SetObject(cls.ptr(), py::str(message).ptr());
}

}  // namespace

void translate_core_exception(std::exception_ptr p) {
  try {
    if (p) std::rethrow_exception(p);
  } catch (const EncodeError& e) {
    raise_tritonfast("EncodeError", e.what());
  } catch (const ProtocolError& e) {
    raise_tritonfast("ProtocolError", e.what());
  } catch (const DecodeError& e) {
    raise_tritonfast("DecodeError", e.what());
  } catch (const ConnectionError& e) {
    raise_tritonfast("PyTritonClientConnectionError", e.what());
  } catch (const TimeoutError& e) {
    raise_tritonfast("PyTritonClientTimeoutError", e.what());
  } catch (const SharedMemoryError& e) {
    raise_tritonfast("SharedMemoryError", e.what());
  } catch (const ServerError& e) {
    py::object cls = py::module_::import("tritonfast.exceptions").attr("_ServerError");
    // A proxy's error page need not be UTF-8: never fail on the message itself.
    py::object message = py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(
        e.message.data(), static_cast<Py_ssize_t>(e.message.size()), "replace"));
    PyErr_SetObject(cls.ptr(), cls(e.status, message).ptr());
  }
}

void set_python_error() {
  try {
    throw;
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const py::builtin_exception& e) {
    e.set_error();
  } catch (...) {
    try {
      translate_core_exception(std::current_exception());
    } catch (const std::bad_alloc&) {
      PyErr_SetString(PyExc_MemoryError, "std::bad_alloc");
    } catch (const std::exception& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (...) {
      PyErr_SetString(PyExc_RuntimeError, "unknown C++ exception");
    }
  }
}

}  // namespace bindings
}  // namespace tritonfast
