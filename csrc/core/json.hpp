// A small JSON reader and writer for Triton's inference headers and error
// bodies. Parsing builds a DOM; every limit is named, and errors carry the byte
// offset at fault.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tritonfast::json {

// Nesting deeper than this is refused (Triton's headers are 4 levels deep;
// the bound keeps recursion off a hostile input's terms).
constexpr std::size_t kMaxDepth = 64;

class Value {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_number() const { return type_ == Type::kNumber; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }

  bool as_bool() const { return bool_; }
  double as_double() const { return number_; }
  // True when the number was written without fraction or exponent and fits int64.
  bool is_integer() const { return is_int_; }
  std::int64_t as_int() const { return int_; }
  const std::string& as_string() const { return string_; }
  const std::vector<Value>& as_array() const { return array_; }
  const std::vector<std::pair<std::string, Value>>& as_object() const { return object_; }

  // Member of an object by key (first match), or nullptr (also for non-objects).
  const Value* find(std::string_view key) const;

  static Value null();
  static Value boolean(bool b);
  static Value number(double d, bool is_int, std::int64_t i);
  static Value string(std::string s);
  static Value array(std::vector<Value> items);
  static Value object(std::vector<std::pair<std::string, Value>> members);

 private:
  Type type_ = Type::kNull;
  bool bool_ = false;
  bool is_int_ = false;
  double number_ = 0;
  std::int64_t int_ = 0;
  std::string string_;
  std::vector<Value> array_;
  std::vector<std::pair<std::string, Value>> object_;
};

// Parses exactly one JSON document (surrounding whitespace allowed). Throws
// DecodeError "invalid JSON at byte N: <what>" on any error, including
// trailing non-whitespace, bad escapes, invalid UTF-8 in strings, depth.
Value parse(std::string_view text);

// Appends `s` as a JSON string literal (quotes, escapes; UTF-8 passed through).
void write_string(std::string& out, std::string_view s);
// Appends a number the way Python's json module would read it back exactly.
void write_int(std::string& out, std::int64_t v);
void write_double(std::string& out, double v);

}  // namespace tritonfast::json
