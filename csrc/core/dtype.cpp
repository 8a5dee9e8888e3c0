#include "core/dtype.hpp"

#include <iterator>

namespace tritonfast {
namespace {

constexpr DataTypeInfo kDataTypes[] = {
    {DataType::kBool, "BOOL", 1},     {DataType::kUint8, "UINT8", 1},
    {DataType::kUint16, "UINT16", 2}, {DataType::kUint32, "UINT32", 4},
    {DataType::kUint64, "UINT64", 8}, {DataType::kInt8, "INT8", 1},
    {DataType::kInt16, "INT16", 2},   {DataType::kInt32, "INT32", 4},
    {DataType::kInt64, "INT64", 8},   {DataType::kFp16, "FP16", 2},
    {DataType::kFp32, "FP32", 4},     {DataType::kFp64, "FP64", 8},
    {DataType::kBf16, "BF16", 2},     {DataType::kBytes, "BYTES", 0},
};

}  // namespace

const DataTypeInfo* datatype_table(std::size_t* count) {
  *count = std::size(kDataTypes);
  return kDataTypes;
}

std::optional<DataTypeInfo> find_datatype(std::string_view name) {
  for (const auto& info : kDataTypes) {
    if (info.name == name) return info;
  }
  return std::nullopt;
}

}  // namespace tritonfast
