#include "core/errors.hpp"

#include <cstring>

namespace tritonfast {
namespace {

// strerror_r is GNU (returns the text, maybe not in the buffer) or XSI (returns
// 0 and fills the buffer); overloading on its result type serves both.
[[maybe_unused]] std::string strerror_text(const char* text, const char*, int) { return text; }
[[maybe_unused]] std::string strerror_text(int rc, const char* buffer, int error) {
  return rc == 0 ? std::string(buffer) : "error " + std::to_string(error);
}

}  // namespace

std::string errno_text(int error) {
  char buffer[256];
  buffer[0] = '\0';
  return strerror_text(strerror_r(error, buffer, sizeof buffer), buffer, error);
}

}  // namespace tritonfast
