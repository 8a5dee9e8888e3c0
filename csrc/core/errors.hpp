// Typed errors thrown by the core. csrc/bindings/ maps each to one Python class of
// tritonfast.exceptions, once, at the edge; nothing here knows about Python.
#pragma once

#include <stdexcept>
#include <string>

namespace tritonfast {

// The caller handed us something we cannot encode (a local fault).
class EncodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bytes we were given to decode are malformed (a remote fault, or corrupted data).
class DecodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace tritonfast

namespace tritonfast {

// The response bytes do not follow HTTP/1.1 or Triton's protocol (remote fault).
class ProtocolError : public DecodeError {
 public:
  using DecodeError::DecodeError;
};

// The connection could not be made, or broke (refused, reset, closed early).
class ConnectionError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A connect, send or receive deadline passed.
class TimeoutError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace tritonfast

namespace tritonfast {

// A shared-memory region (system or CUDA) cannot be created, opened, mapped or
// accessed, or an offset/size falls outside it; the message names the key or
// device, the sizes involved and the OS or CUDA error.
class SharedMemoryError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace tritonfast

namespace tritonfast {

// Thread-safe strerror(): the text of an errno value.
std::string errno_text(int error);

}  // namespace tritonfast
