// The module tritonfast._core: the only code that knows about Python is under
// csrc/bindings/, thin shims over csrc/core. Buffers are requested and Python
// objects are touched with the GIL held; pure C++ work (scans, memcpy) runs
// with it released. C++ error types are mapped to tritonfast.exceptions once
// (common.cpp). Each area registers its names here, in the module's order.
#include "bindings/common.hpp"

using namespace tritonfast::bindings;

PYBIND11_MODULE(_core, m) {
  m.doc() = "tritonfast's native core (private: use the tritonfast package)";
  m.attr("__version__") = TRITONFAST_VERSION;

  py::register_exception_translator(&translate_core_exception);

  register_codec(m);
  register_http_client(m);
  register_fast_lane(m);
  register_http_parser(m);
  register_datatypes(m);
  register_shm(m);
  register_cuda(m);
}
