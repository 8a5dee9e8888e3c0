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
  // kRaw: a value kept as its text (see ParseOptions::raw_key): raw_offset()
  // and raw_size() locate it in the parsed text; it was checked to be valid JSON.
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject, kRaw };

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_number() const { return type_ == Type::kNumber; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }
  bool is_raw() const { return type_ == Type::kRaw; }

  bool as_bool() const { return bool_; }
  double as_double() const { return number_; }
  // True when the number was written without fraction or exponent and fits int64.
  bool is_integer() const { return is_int_; }
  std::int64_t as_int() const { return int_; }
  // An integer literal above INT64_MAX that fits uint64 (is_integer() is false
  // for it; as_double() is its nearest double).
  bool is_uint64() const { return is_uint_; }
  std::uint64_t as_uint64() const { return uint_; }
  std::size_t raw_offset() const { return static_cast<std::size_t>(uint_); }
  std::size_t raw_size() const { return static_cast<std::size_t>(int_); }
  const std::string& as_string() const { return string_; }
  const std::vector<Value>& as_array() const { return array_; }
  const std::vector<std::pair<std::string, Value>>& as_object() const { return object_; }

  // Member of an object by key (first match), or nullptr (also for non-objects).
  const Value* find(std::string_view key) const;

  static Value null();
  static Value boolean(bool b);
  static Value number(double d, bool is_int, std::int64_t i);
  static Value unsigned_number(std::uint64_t u);
  static Value raw(std::size_t offset, std::size_t size);
  static Value string(std::string s);
  static Value array(std::vector<Value> items);
  static Value object(std::vector<std::pair<std::string, Value>> members);

 private:
  Type type_ = Type::kNull;
  bool bool_ = false;
  bool is_int_ = false;
  bool is_uint_ = false;
  double number_ = 0;
  std::int64_t int_ = 0;
  std::uint64_t uint_ = 0;
  std::string string_;
  std::vector<Value> array_;
  std::vector<std::pair<std::string, Value>> object_;
};

struct ParseOptions {
  // At most this many values go into the DOM (a hostile document of small
  // values would otherwise cost ~100 bytes of DOM per byte of text); more is a
  // DecodeError. 0: no limit.
  std::size_t max_values = 0;
  // Members named `raw_key` of the objects at nesting level `raw_depth` (1:
  // the top-level object) whose value is an array are validated but not built:
  // they come back as Value::raw spans of the text, for for_each_scalar().
  std::string_view raw_key;
  std::size_t raw_depth = 0;
};

// Parses exactly one JSON document (surrounding whitespace allowed). Throws
// DecodeError "invalid JSON at byte N: <what>" on any error, including
// trailing non-whitespace, bad escapes, invalid UTF-8 in strings, depth, and
// more values than options.max_values.
Value parse(std::string_view text, const ParseOptions& options = {});

// Walks a JSON array (nested arrays flattened, in order) and calls
// visit(context, index, scalar) for each element that is not an array; an
// object element is a DecodeError naming its index. The text must be one
// array, as a Value::raw span holds; DecodeError as parse() otherwise.
using ScalarVisitor = void (*)(void* context, std::size_t index, const Value& scalar);
std::size_t for_each_scalar(std::string_view array_text, ScalarVisitor visit, void* context);

// Appends `s` as a JSON string literal (quotes, escapes; UTF-8 passed through).
void write_string(std::string& out, std::string_view s);
// Appends a number the way Python's json module would read it back exactly.
void write_int(std::string& out, std::int64_t v);
void write_double(std::string& out, double v);

}  // namespace tritonfast::json
