// Triton's tensor datatypes: wire names and element sizes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tritonfast {

enum class DataType : std::uint8_t {
  kBool,
  kUint8,
  kUint16,
  kUint32,
  kUint64,
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kFp16,
  kFp32,
  kFp64,
  kBf16,
  kBytes,
};

struct DataTypeInfo {
  DataType type;
  std::string_view name;  // as on the wire: "FP32", "BYTES", ...
  std::size_t size;       // bytes per element; 0 for BYTES (variable length)
};

// Every datatype Triton's HTTP protocol knows, in a fixed order.
const DataTypeInfo* datatype_table(std::size_t* count);

// Looks a wire name up; nullopt when Triton has no such datatype.
std::optional<DataTypeInfo> find_datatype(std::string_view name);

}  // namespace tritonfast
