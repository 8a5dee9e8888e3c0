#include "core/bytes_codec.hpp"

#include <cstdio>
#include <cstring>
#include <string>

#include "core/errors.hpp"

namespace tritonfast::bytes {
namespace {

inline std::uint8_t* store_le32(std::uint8_t* out, std::uint32_t v) {
  out[0] = static_cast<std::uint8_t>(v);
  out[1] = static_cast<std::uint8_t>(v >> 8);
  out[2] = static_cast<std::uint8_t>(v >> 16);
  out[3] = static_cast<std::uint8_t>(v >> 24);
  return out + kPrefixBytes;
}

inline std::uint32_t load_le32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}

[[noreturn]] void element_too_long(std::size_t index, std::uint64_t size) {
  throw EncodeError("element " + std::to_string(index) + ": " + std::to_string(size) +
                    " bytes exceeds the " + std::to_string(kMaxElementBytes) +
                    "-byte limit of a BYTES element (its length prefix is 4 bytes)");
}

[[noreturn]] void changed_while_writing(std::size_t index) {
  throw EncodeError("element " + std::to_string(index) +
                    " changed while the tensor was being serialized (another thread wrote to "
                    "the array): its UTF-8 length differs from the one measured");
}

inline std::size_t check_length(std::size_t index, std::uint64_t size) {
  if (size > kMaxElementBytes) element_too_long(index, size);
  return static_cast<std::size_t>(size);
}

// numpy 'S' items end at their last non-NUL byte.
inline std::size_t fixed_length(const char* item, std::size_t itemsize) {
  while (itemsize > 0 && item[itemsize - 1] == '\0') --itemsize;
  return itemsize;
}

inline std::size_t ucs4_chars(const std::uint32_t* item, std::size_t chars) {
  while (chars > 0 && item[chars - 1] == 0) --chars;
  return chars;
}

inline std::size_t utf8_width(std::size_t index, std::size_t position, std::uint32_t cp) {
  if (cp < 0x80) return 1;
  if (cp < 0x800) return 2;
  if (cp >= 0xD800 && cp <= 0xDFFF) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "%04X", static_cast<unsigned>(cp));
    throw EncodeError("element " + std::to_string(index) + ": code point " +
                      std::to_string(position) + " is a lone surrogate (U+" + hex +
                      "), which UTF-8 cannot encode");
  }
  if (cp < 0x10000) return 3;
  if (cp <= 0x10FFFF) return 4;
  throw EncodeError("element " + std::to_string(index) + ": code point " +
                    std::to_string(position) + " has value " + std::to_string(cp) +
                    ", past the Unicode range U+10FFFF");
}

inline std::uint8_t* put_utf8(std::uint8_t* out, std::uint32_t cp) {
  if (cp < 0x80) {
    *out++ = static_cast<std::uint8_t>(cp);
  } else if (cp < 0x800) {
    *out++ = static_cast<std::uint8_t>(0xC0 | (cp >> 6));
    *out++ = static_cast<std::uint8_t>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *out++ = static_cast<std::uint8_t>(0xE0 | (cp >> 12));
    *out++ = static_cast<std::uint8_t>(0x80 | ((cp >> 6) & 0x3F));
    *out++ = static_cast<std::uint8_t>(0x80 | (cp & 0x3F));
  } else {
    *out++ = static_cast<std::uint8_t>(0xF0 | (cp >> 18));
    *out++ = static_cast<std::uint8_t>(0x80 | ((cp >> 12) & 0x3F));
    *out++ = static_cast<std::uint8_t>(0x80 | ((cp >> 6) & 0x3F));
    *out++ = static_cast<std::uint8_t>(0x80 | (cp & 0x3F));
  }
  return out;
}

std::uint64_t utf8_length(std::size_t index, const std::uint32_t* item, std::size_t chars) {
  std::uint64_t total = 0;
  for (std::size_t c = 0; c < chars; ++c) total += utf8_width(index, c, item[c]);
  return total;
}

}  // namespace

std::uint64_t serialized_size(const std::string_view* elements, std::size_t n) {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    total += kPrefixBytes + check_length(i, elements[i].size());
  }
  return total;
}

std::uint8_t* serialize(const std::string_view* elements, std::size_t n, std::uint8_t* out) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::string_view e = elements[i];
    out = store_le32(out, static_cast<std::uint32_t>(check_length(i, e.size())));
    if (!e.empty()) std::memcpy(out, e.data(), e.size());
    out += e.size();
  }
  return out;
}

std::uint64_t fixed_serialized_size(const char* data, std::size_t n, std::size_t itemsize,
                                    std::uint32_t* lengths) {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t len = check_length(i, fixed_length(data + i * itemsize, itemsize));
    lengths[i] = static_cast<std::uint32_t>(len);
    total += kPrefixBytes + len;
  }
  return total;
}

std::uint8_t* serialize_fixed(const char* data, std::size_t n, std::size_t itemsize,
                              const std::uint32_t* lengths, std::uint8_t* out) {
  for (std::size_t i = 0; i < n; ++i) {
    // The recorded length, never more than itemsize: in bounds on both sides.
    const std::size_t len = lengths[i] <= itemsize ? lengths[i] : itemsize;
    out = store_le32(out, lengths[i]);
    if (len) std::memcpy(out, data + i * itemsize, len);
    if (len < lengths[i]) std::memset(out + len, 0, lengths[i] - len);
    out += lengths[i];
  }
  return out;
}

std::uint64_t ucs4_serialized_size(const std::uint32_t* data, std::size_t n, std::size_t chars,
                                   std::uint32_t* lengths) {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t* item = data + i * chars;
    const std::size_t len = check_length(i, utf8_length(i, item, ucs4_chars(item, chars)));
    lengths[i] = static_cast<std::uint32_t>(len);
    total += kPrefixBytes + len;
  }
  return total;
}

std::uint8_t* serialize_ucs4(const std::uint32_t* data, std::size_t n, std::size_t chars,
                             const std::uint32_t* lengths, std::uint8_t* out) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t* item = data + i * chars;
    const std::size_t len = ucs4_chars(item, chars);
    out = store_le32(out, lengths[i]);
    std::uint8_t* const end = out + lengths[i];
    for (std::size_t c = 0; c < len; ++c) {
      const std::uint32_t cp = item[c];
      if (utf8_width(i, c, cp) > static_cast<std::size_t>(end - out)) changed_while_writing(i);
      out = put_utf8(out, cp);
    }
    if (out != end) changed_while_writing(i);
  }
  return out;
}

std::size_t count_elements(const std::uint8_t* data, std::size_t size) {
  std::size_t offset = 0;
  std::size_t index = 0;
  while (offset < size) {
    const std::size_t left = size - offset;
    if (left < kPrefixBytes) {
      throw DecodeError("element " + std::to_string(index) + " at byte " +
                        std::to_string(offset) + ": truncated length prefix (" +
                        std::to_string(left) + " of 4 bytes left)");
    }
    const std::uint32_t len = load_le32(data + offset);
    if (len > left - kPrefixBytes) {
      throw DecodeError("element " + std::to_string(index) + " at byte " +
                        std::to_string(offset) + ": length prefix " + std::to_string(len) +
                        " exceeds the " + std::to_string(left - kPrefixBytes) +
                        " bytes left");
    }
    offset += kPrefixBytes + len;
    ++index;
  }
  return index;
}

bool Reader::next(std::string_view* element) {
  if (offset_ >= size_) return false;
  const std::uint32_t len = load_le32(data_ + offset_);
  *element = std::string_view(reinterpret_cast<const char*>(data_) + offset_ + kPrefixBytes, len);
  offset_ += kPrefixBytes + len;
  return true;
}

}  // namespace tritonfast::bytes
