// JSON reader (recursive descent into a DOM) and writer helpers.
//
// Beyond RFC 8259 the reader accepts exactly one extension: the number
// literals NaN, Infinity and -Infinity. Triton writes its JSON with rapidjson's
// kWriteNanAndInfFlag, so a JSON-encoded FP32/FP64 output holding a NaN arrives
// as `[1.0,NaN]`; Python's json module and python-rapidjson read those too.
#include "core/json.hpp"

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <system_error>

#include "core/errors.hpp"

namespace tritonfast::json {

const Value* Value::find(std::string_view key) const {
  if (type_ != Type::kObject) return nullptr;
  for (const auto& member : object_) {
    if (member.first == key) return &member.second;
  }
  return nullptr;
}

Value Value::null() { return Value(); }

Value Value::boolean(bool b) {
  Value v;
  v.type_ = Type::kBool;
  v.bool_ = b;
  return v;
}

Value Value::number(double d, bool is_int, std::int64_t i) {
  Value v;
  v.type_ = Type::kNumber;
  v.number_ = d;
  v.is_int_ = is_int;
  v.int_ = is_int ? i : 0;
  return v;
}

Value Value::unsigned_number(std::uint64_t u) {
  Value v;
  v.type_ = Type::kNumber;
  v.number_ = static_cast<double>(u);
  v.is_uint_ = true;
  v.uint_ = u;
  return v;
}

Value Value::raw(std::size_t offset, std::size_t size) {
  Value v;
  v.type_ = Type::kRaw;
  v.uint_ = offset;
  v.int_ = static_cast<std::int64_t>(size);
  return v;
}

Value Value::string(std::string s) {
  Value v;
  v.type_ = Type::kString;
  v.string_ = std::move(s);
  return v;
}

Value Value::array(std::vector<Value> items) {
  Value v;
  v.type_ = Type::kArray;
  v.array_ = std::move(items);
  return v;
}

Value Value::object(std::vector<std::pair<std::string, Value>> members) {
  Value v;
  v.type_ = Type::kObject;
  v.object_ = std::move(members);
  return v;
}

namespace {

// First allocation of an object's members / an array's items: Triton's
// response objects have up to 6 members, shapes up to 4 dimensions; reserving
// up front saves the regrowth copies of a Value-sized element.
constexpr std::size_t kInitialMembers = 8;
constexpr std::size_t kInitialItems = 4;

inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

inline int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Length of the well-formed UTF-8 sequence starting at s[0] (a byte >= 0x80)
// with `left` bytes available, or 0 when it is malformed (overlong forms,
// encoded surrogates and code points past U+10FFFF included), per RFC 3629.
std::size_t utf8_sequence(const unsigned char* s, std::size_t left) {
  const unsigned char b0 = s[0];
  std::size_t len;
  unsigned char lo = 0x80, hi = 0xBF;  // bounds of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (left < len) return 0;
  if (s[1] < lo || s[1] > hi) return 0;
  for (std::size_t k = 2; k < len; ++k) {
    if (s[k] < 0x80 || s[k] > 0xBF) return 0;
  }
  return len;
}

class Parser {
 public:
  explicit Parser(std::string_view text, const ParseOptions& options = {})
      : s_(text.data()), n_(text.size()), options_(options) {}

  Value document() {
    skip_ws();
    Value v = value(0);
    skip_ws();
    if (i_ != n_) fail(i_, "unexpected data after the JSON value");
    return v;
  }

  std::size_t scalars(ScalarVisitor visit, void* context) {
    skip_ws();
    if (i_ >= n_ || s_[i_] != '[') fail_unexpected(i_, "'['");
    std::size_t count = 0;
    walk(1, visit, context, &count);
    skip_ws();
    if (i_ != n_) fail(i_, "unexpected data after the JSON value");
    return count;
  }

 private:
  [[noreturn]] void fail(std::size_t at, const std::string& what) const {
    throw DecodeError("invalid JSON at byte " + std::to_string(at) + ": " + what);
  }

  [[noreturn]] void fail_unexpected(std::size_t at, const char* expected) const {
    if (at >= n_) fail(at, std::string("unexpected end of input, expected ") + expected);
    const auto c = static_cast<unsigned char>(s_[at]);
    std::string shown;
    if (c >= 0x20 && c < 0x7F) {
      shown = std::string("'") + static_cast<char>(c) + "'";
    } else {
      char hex[8];
      static const char digits[] = "0123456789ABCDEF";
      hex[0] = '0';
      hex[1] = 'x';
      hex[2] = digits[c >> 4];
      hex[3] = digits[c & 15];
      hex[4] = 0;
      shown = hex;
    }
    fail(at, "unexpected " + shown + ", expected " + expected);
  }

  void skip_ws() {
    while (i_ < n_) {
      const char c = s_[i_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++i_;
    }
  }

  bool consume_literal(std::string_view word) {
    if (n_ - i_ >= word.size() && std::memcmp(s_ + i_, word.data(), word.size()) == 0) {
      i_ += word.size();
      return true;
    }
    return false;
  }

  void count_value() {
    if (options_.max_values != 0 && ++values_ > options_.max_values) {
      fail(i_, "more than " + std::to_string(options_.max_values) +
                   " values (the limit for this document)");
    }
  }

  Value value(std::size_t depth) {
    if (i_ >= n_) fail_unexpected(i_, "a value");
    count_value();
    switch (s_[i_]) {
      case '{':
        return object(depth + 1);
      case '[':
        return array(depth + 1);
      case '"':
        return Value::string(string());
      case 't':
        if (consume_literal("true")) return Value::boolean(true);
        break;
      case 'f':
        if (consume_literal("false")) return Value::boolean(false);
        break;
      case 'n':
        if (consume_literal("null")) return Value::null();
        break;
      case 'N':
        if (consume_literal("NaN")) {
          return Value::number(std::numeric_limits<double>::quiet_NaN(), false, 0);
        }
        break;
      case 'I':
        if (consume_literal("Infinity")) {
          return Value::number(std::numeric_limits<double>::infinity(), false, 0);
        }
        break;
      default:
        if (s_[i_] == '-' || is_digit(s_[i_])) return number();
        break;
    }
    fail_unexpected(i_, "a value");
  }

  void enter(std::size_t depth) const {
    if (depth > kMaxDepth) {
      fail(i_, "nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    }
  }

  Value object(std::size_t depth) {
    enter(depth);
    ++i_;  // '{'
    std::vector<std::pair<std::string, Value>> members;
    skip_ws();
    if (i_ < n_ && s_[i_] == '}') {
      ++i_;
      return Value::object(std::move(members));
    }
    members.reserve(kInitialMembers);
    for (;;) {
      skip_ws();
      if (i_ >= n_ || s_[i_] != '"') fail_unexpected(i_, "a string key");
      std::string key = string();
      skip_ws();
      if (i_ >= n_ || s_[i_] != ':') fail_unexpected(i_, "':'");
      ++i_;
      skip_ws();
      if (depth == options_.raw_depth && !options_.raw_key.empty() && key == options_.raw_key &&
          i_ < n_ && s_[i_] == '[') {
        const std::size_t start = i_;
        skip_array(depth + 1);
        members.emplace_back(std::move(key), Value::raw(start, i_ - start));
      } else {
        Value v = value(depth);
        members.emplace_back(std::move(key), std::move(v));
      }
      skip_ws();
      if (i_ < n_ && s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (i_ < n_ && s_[i_] == '}') {
        ++i_;
        return Value::object(std::move(members));
      }
      fail_unexpected(i_, "',' or '}'");
    }
  }

  Value array(std::size_t depth) {
    enter(depth);
    ++i_;  // '['
    std::vector<Value> items;
    skip_ws();
    if (i_ < n_ && s_[i_] == ']') {
      ++i_;
      return Value::array(std::move(items));
    }
    items.reserve(kInitialItems);
    for (;;) {
      skip_ws();
      items.push_back(value(depth));
      skip_ws();
      if (i_ < n_ && s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (i_ < n_ && s_[i_] == ']') {
        ++i_;
        return Value::array(std::move(items));
      }
      fail_unexpected(i_, "',' or ']'");
    }
  }

  // Calls item() with i_ at each element of the array at s_[i_], then leaves
  // i_ past its ']': the walk shared by skip_array() and walk().
  template <class Item>
  void each_item(std::size_t depth, Item&& item) {
    enter(depth);
    ++i_;  // '['
    skip_ws();
    if (i_ < n_ && s_[i_] == ']') {
      ++i_;
      return;
    }
    for (;;) {
      skip_ws();
      item();
      skip_ws();
      if (i_ < n_ && s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (i_ < n_ && s_[i_] == ']') {
        ++i_;
        return;
      }
      fail_unexpected(i_, "',' or ']'");
    }
  }

  // Validates the value at s_[i_] as value() would, building nothing.
  void skip_value(std::size_t depth) {
    if (i_ < n_ && s_[i_] == '[') {
      skip_array(depth + 1);
    } else if (i_ < n_ && s_[i_] == '{') {
      skip_object(depth + 1);
    } else {
      scalar();
    }
  }

  void skip_array(std::size_t depth) {
    each_item(depth, [&] { skip_value(depth); });
  }

  void skip_object(std::size_t depth) {
    enter(depth);
    ++i_;  // '{'
    skip_ws();
    if (i_ < n_ && s_[i_] == '}') {
      ++i_;
      return;
    }
    for (;;) {
      skip_ws();
      if (i_ >= n_ || s_[i_] != '"') fail_unexpected(i_, "a string key");
      string();
      skip_ws();
      if (i_ >= n_ || s_[i_] != ':') fail_unexpected(i_, "':'");
      ++i_;
      skip_ws();
      skip_value(depth);
      skip_ws();
      if (i_ < n_ && s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (i_ < n_ && s_[i_] == '}') {
        ++i_;
        return;
      }
      fail_unexpected(i_, "',' or '}'");
    }
  }

  // A value that is neither an array nor an object (not counted against max_values).
  Value scalar() {
    if (i_ < n_ && (s_[i_] == '[' || s_[i_] == '{')) fail_unexpected(i_, "a scalar");
    const std::size_t saved = options_.max_values;
    options_.max_values = 0;
    Value v = value(0);
    options_.max_values = saved;
    return v;
  }

  // for_each_scalar's walk over the array at s_[i_].
  void walk(std::size_t depth, ScalarVisitor visit, void* context, std::size_t* count) {
    each_item(depth, [&] {
      if (i_ < n_ && s_[i_] == '[') {
        walk(depth + 1, visit, context, count);
      } else if (i_ < n_ && s_[i_] == '{') {
        fail(i_, "element " + std::to_string(*count) + " is an object, not a scalar");
      } else {
        const Value v = scalar();
        visit(context, (*count)++, v);
      }
    });
  }

  // Four hex digits at s_[at..at+4), or fails.
  std::uint32_t hex4(std::size_t at) const {
    if (n_ - at < 4) fail(at, "truncated \\u escape");
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      const int h = hex_value(s_[at + k]);
      if (h < 0) fail(at + k, "invalid hex digit in \\u escape");
      v = (v << 4) | static_cast<std::uint32_t>(h);
    }
    return v;
  }

  std::string string() {
    const std::size_t open = i_;
    ++i_;  // '"'
    std::string out;
    const auto* u = reinterpret_cast<const unsigned char*>(s_);
    for (;;) {
      // Copy the run of bytes that need no attention in one go.
      std::size_t run = i_;
      while (run < n_ && u[run] >= 0x20 && u[run] < 0x80 && u[run] != '"' && u[run] != '\\') {
        ++run;
      }
      out.append(s_ + i_, run - i_);
      i_ = run;
      if (i_ >= n_) fail(open, "unterminated string");
      const unsigned char c = u[i_];
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c < 0x20) fail(i_, "unescaped control character in string");
      if (c >= 0x80) {
        const std::size_t len = utf8_sequence(u + i_, n_ - i_);
        if (len == 0) fail(i_, "invalid UTF-8 in string");
        out.append(s_ + i_, len);
        i_ += len;
        continue;
      }
      // c == '\\'
      if (n_ - i_ < 2) fail(i_, "truncated escape");
      const char e = s_[i_ + 1];
      switch (e) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          const std::size_t at = i_;
          std::uint32_t cp = hex4(i_ + 2);
          i_ += 6;
          if (cp >= 0xDC00 && cp <= 0xDFFF) fail(at, "lone low surrogate in \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (n_ - i_ < 2 || s_[i_] != '\\' || s_[i_ + 1] != 'u') {
              fail(at, "high surrogate not followed by a low surrogate escape");
            }
            const std::uint32_t lo = hex4(i_ + 2);
            if (lo < 0xDC00 || lo > 0xDFFF) {
              fail(at, "high surrogate not followed by a low surrogate escape");
            }
            i_ += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          continue;
        }
        default:
          fail(i_, "invalid escape");
      }
      i_ += 2;
    }
  }

  // Decimal exponent of the leading digit of the number in [b, e): used only
  // to tell overflow from underflow when from_chars reports out of range.
  static long long magnitude(const char* b, const char* e) {
    const char* p = b;
    if (*p == '-') ++p;
    long long lead = 0;  // exponent of the first nonzero digit
    bool found = false;
    long long int_digits = 0;
    const char* q = p;
    while (q < e && is_digit(*q)) {
      if (!found && *q != '0') {
        found = true;
        lead = -int_digits;  // fixed up below once the integer length is known
      }
      ++int_digits;
      ++q;
    }
    if (found) {
      lead += int_digits - 1;
    }
    if (q < e && *q == '.') {
      ++q;
      long long pos = 0;
      while (q < e && is_digit(*q)) {
        ++pos;
        if (!found && *q != '0') {
          found = true;
          lead = -pos;
        }
        ++q;
      }
    }
    long long exp = 0;
    if (q < e && (*q == 'e' || *q == 'E')) {
      ++q;
      bool neg = false;
      if (q < e && (*q == '+' || *q == '-')) neg = *q++ == '-';
      while (q < e && is_digit(*q)) {
        if (exp < 1000000000LL) exp = exp * 10 + (*q - '0');
        ++q;
      }
      if (neg) exp = -exp;
    }
    return lead + exp;
  }

  Value number() {
    const std::size_t start = i_;
    if (s_[i_] == '-') {
      ++i_;
      if (consume_literal("Infinity")) {
        return Value::number(-std::numeric_limits<double>::infinity(), false, 0);
      }
    }
    if (i_ >= n_ || !is_digit(s_[i_])) fail_unexpected(i_, "a digit");
    if (s_[i_] == '0') {
      ++i_;
    } else {
      while (i_ < n_ && is_digit(s_[i_])) ++i_;
    }
    bool integral = true;
    if (i_ < n_ && s_[i_] == '.') {
      integral = false;
      ++i_;
      if (i_ >= n_ || !is_digit(s_[i_])) fail_unexpected(i_, "a digit after '.'");
      while (i_ < n_ && is_digit(s_[i_])) ++i_;
    }
    if (i_ < n_ && (s_[i_] == 'e' || s_[i_] == 'E')) {
      integral = false;
      ++i_;
      if (i_ < n_ && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (i_ >= n_ || !is_digit(s_[i_])) fail_unexpected(i_, "a digit in the exponent");
      while (i_ < n_ && is_digit(s_[i_])) ++i_;
    }
    const char* b = s_ + start;
    const char* e = s_ + i_;
    if (integral) {
      std::int64_t iv = 0;
      const auto r = std::from_chars(b, e, iv);
      if (r.ec == std::errc() && r.ptr == e) {
        return Value::number(static_cast<double>(iv), true, iv);
      }
      if (*b != '-') {
        std::uint64_t uv = 0;
        const auto u = std::from_chars(b, e, uv);
        if (u.ec == std::errc() && u.ptr == e) return Value::unsigned_number(uv);
      }
      // Out of int64 and uint64 range: falls through to a double.
    }
    // std::from_chars is locale-independent (strtod would read the decimal
    // separator of the process locale).
    double dv = 0;
    const auto r = std::from_chars(b, e, dv, std::chars_format::general);
    if (r.ec == std::errc::result_out_of_range) {
      const bool negative = *b == '-';
      dv = magnitude(b, e) > 0 ? std::numeric_limits<double>::infinity() : 0.0;
      if (negative) dv = -dv;
    } else if (r.ec != std::errc() || r.ptr != e) {
      fail(start, "malformed number");
    }
    return Value::number(dv, false, 0);
  }

  const char* s_;
  std::size_t n_;
  std::size_t i_ = 0;
  ParseOptions options_;
  std::size_t values_ = 0;
};

}  // namespace

Value parse(std::string_view text, const ParseOptions& options) {
  return Parser(text, options).document();
}

std::size_t for_each_scalar(std::string_view array_text, ScalarVisitor visit, void* context) {
  return Parser(array_text).scalars(visit, context);
}

void write_string(std::string& out, std::string_view s) {
  static const char digits[] = "0123456789abcdef";
  out.push_back('"');
  std::size_t run = 0;
  for (std::size_t k = 0; k < s.size(); ++k) {
    const auto c = static_cast<unsigned char>(s[k]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, k - run);
    run = k + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default: {
        const char esc[6] = {'\\', 'u', '0', '0', digits[c >> 4], digits[c & 15]};
        out.append(esc, sizeof esc);
      }
    }
  }
  out.append(s.data() + run, s.size() - run);
  out.push_back('"');
}

void write_int(std::string& out, std::int64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void write_double(std::string& out, double v) {
  if (std::isnan(v)) throw EncodeError("NaN cannot be written as JSON");
  if (std::isinf(v)) {
    throw EncodeError(std::string(v > 0 ? "Infinity" : "-Infinity") +
                      " cannot be written as JSON");
  }
  // Shortest representation that reads back to the same double.
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  const std::size_t len = static_cast<std::size_t>(r.ptr - buf);
  out.append(buf, len);
  // Keep it a float for the reader: "1" would come back as an integer (Triton
  // would then see an int parameter), so write "1.0" as Python does.
  if (std::memchr(buf, '.', len) == nullptr && std::memchr(buf, 'e', len) == nullptr) {
    out += ".0";
  }
}

}  // namespace tritonfast::json
