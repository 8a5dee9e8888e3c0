// Typed errors thrown by the core. bindings.cpp maps each to one Python class of
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
