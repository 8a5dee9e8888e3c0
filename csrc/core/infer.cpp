// Triton's inference header (JSON) and response body layout.
//
// Copies: write_infer_header writes the JSON once into the returned string;
// tensor bytes are never touched. parse_infer_response copies only the JSON
// DOM (names, shapes, JSON "data"); binary outputs are reported as (offset,
// size) spans of the caller's body.
#include "core/infer.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/bytes_codec.hpp"

#include "core/dtype.hpp"
#include "core/errors.hpp"

namespace tritonfast {

std::uint64_t InputTensor::byte_size() const {
  std::uint64_t total = 0;
  for (const auto& segment : segments) total += segment.size;
  return total;
}

namespace {

// ---------------------------------------------------------------- writing

void write_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// `"key":`
void write_key(std::string& out, std::string_view key) {
  json::write_string(out, key);
  out.push_back(':');
}

void write_value(std::string& out, const ParameterValue& value, const char* what,
                 std::string_view key) {
  if (const auto* b = std::get_if<bool>(&value)) {
    out += *b ? "true" : "false";
  } else if (const auto* i = std::get_if<std::int64_t>(&value)) {
    json::write_int(out, *i);
  } else if (const auto* d = std::get_if<double>(&value)) {
    try {
      json::write_double(out, *d);
    } catch (const EncodeError& e) {
      throw EncodeError(std::string(what) + " '" + std::string(key) + "': " + e.what());
    }
  } else {
    json::write_string(out, std::get<std::string>(value));
  }
}

// Appends `,"key":value` for each parameter (the caller wrote the opening
// brace and any members the framing sets, listed in `reserved`).
void write_parameters(std::string& out, const std::vector<Parameter>& parameters, bool first,
                      const char* what, std::initializer_list<std::string_view> reserved,
                      const std::string& owner) {
  for (const auto& p : parameters) {
    for (const auto r : reserved) {
      if (p.key == r) {
        throw EncodeError(owner + ": parameter '" + p.key +
                          "' is set by tritonfast itself and cannot be given");
      }
    }
    if (!first) out.push_back(',');
    first = false;
    write_key(out, p.key);
    write_value(out, p.value, what, p.key);
  }
}

void write_shared_memory(std::string& out, const SharedMemoryRef& shm) {
  write_key(out, "shared_memory_region");
  json::write_string(out, shm.region);
  out.push_back(',');
  write_key(out, "shared_memory_byte_size");
  write_uint(out, shm.byte_size);
  // tritonclient leaves the offset out when it is 0 (the server's default).
  if (shm.offset != 0) {
    out.push_back(',');
    write_key(out, "shared_memory_offset");
    write_uint(out, shm.offset);
  }
}

void write_input(std::string& out, const InputTensor& input) {
  out += "{\"name\":";
  json::write_string(out, input.name);
  out += ",\"shape\":[";
  for (std::size_t k = 0; k < input.shape.size(); ++k) {
    if (k) out.push_back(',');
    json::write_int(out, input.shape[k]);
  }
  out += "],\"datatype\":";
  json::write_string(out, input.datatype);
  out += ",\"parameters\":{";
  const std::string owner = "input '" + input.name + "'";
  if (input.shared_memory) {
    if (!input.segments.empty()) {
      throw EncodeError(owner + " has both data segments and a shared-memory region");
    }
    write_shared_memory(out, *input.shared_memory);
  } else {
    write_key(out, "binary_data_size");
    write_uint(out, input.byte_size());
  }
  write_parameters(out, input.parameters, false, "input parameter",
                   {"binary_data_size", "shared_memory_region", "shared_memory_byte_size",
                    "shared_memory_offset"},
                   owner);
  out += "}}";
}

void write_output(std::string& out, const RequestedOutput& output) {
  out += "{\"name\":";
  json::write_string(out, output.name);
  out += ",\"parameters\":{";
  // Member order follows tritonclient's InferRequestedOutput.
  if (output.class_count > 0) {
    if (output.shared_memory) {
      throw EncodeError("output '" + output.name +
                        "': classification cannot be combined with shared memory");
    }
    write_key(out, "classification");
    write_uint(out, output.class_count);
    out.push_back(',');
  }
  write_key(out, "binary_data");
  out += output.binary && !output.shared_memory ? "true" : "false";
  if (output.shared_memory) {
    out.push_back(',');
    write_shared_memory(out, *output.shared_memory);
  }
  out += "}}";
}

bool is_framing_request_parameter(std::string_view key) {
  return key == "sequence_id" || key == "sequence_start" || key == "sequence_end" ||
         key == "priority" || key == "timeout";
}

}  // namespace

std::string write_infer_header(const InferRequest& request) {
  std::string out;
  out.reserve(128 + 96 * (request.inputs.size() + request.outputs.size()) +
              32 * request.parameters.size());
  out.push_back('{');
  if (!request.id.empty()) {
    out += "\"id\":";
    json::write_string(out, request.id);
    out.push_back(',');
  }
  out += "\"inputs\":[";
  for (std::size_t k = 0; k < request.inputs.size(); ++k) {
    if (k) out.push_back(',');
    write_input(out, request.inputs[k]);
  }
  out.push_back(']');
  if (!request.outputs.empty()) {
    out += ",\"outputs\":[";
    for (std::size_t k = 0; k < request.outputs.size(); ++k) {
      if (k) out.push_back(',');
      write_output(out, request.outputs[k]);
    }
    out.push_back(']');
  }

  // With no outputs listed, every output comes back binary. tritonclient puts
  // binary_data_output after the sequence/priority/timeout parameters and
  // before custom ones; doing the same keeps the bytes identical to its.
  bool add_binary_output = request.outputs.empty();
  for (const auto& p : request.parameters) {
    if (p.key == "binary_data_output") add_binary_output = false;
  }
  std::size_t insert_at = 0;
  if (add_binary_output) {
    for (std::size_t k = 0; k < request.parameters.size(); ++k) {
      if (is_framing_request_parameter(request.parameters[k].key)) insert_at = k + 1;
    }
  }
  if (!request.parameters.empty() || add_binary_output) {
    out += ",\"parameters\":{";
    bool first = true;
    for (std::size_t k = 0; k <= request.parameters.size(); ++k) {
      if (add_binary_output && k == insert_at) {
        if (!first) out.push_back(',');
        first = false;
        out += "\"binary_data_output\":true";
      }
      if (k == request.parameters.size()) break;
      const auto& p = request.parameters[k];
      if (!first) out.push_back(',');
      first = false;
      write_key(out, p.key);
      write_value(out, p.value, "request parameter", p.key);
    }
    out.push_back('}');
  }
  out.push_back('}');
  return out;
}

// ---------------------------------------------------------------- parsing

namespace {

// An error body is parsed only for its "error" member: bounded like the header.
constexpr std::size_t kMaxErrorBodyValues = 4096;
// How much of a body that is not a Triton error a message quotes.
constexpr std::size_t kErrorBodyExcerptBytes = 200;

[[noreturn]] void protocol_error(const std::string& message) { throw ProtocolError(message); }

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t k = 0; k < shape.size(); ++k) {
    if (k) s.push_back(',');
    s += std::to_string(shape[k]);
  }
  s.push_back(']');
  return s;
}

// A member that must be a string when present; "" when absent or null.
std::string optional_string(const json::Value& root, std::string_view key, const char* where) {
  const json::Value* v = root.find(key);
  if (v == nullptr || v->is_null()) return std::string();
  if (v->is_string()) return v->as_string();
  if (v->is_number() && v->is_integer()) return std::to_string(v->as_int());
  protocol_error(std::string(where) + " '" + std::string(key) + "' is not a string");
}

// A member that must be an object when present; null when absent. Moved out of
// `root`, which the caller owns and no longer needs (copying costs allocations).
json::Value take_optional_object(const json::Value& root, std::string_view key,
                                 const std::string& where) {
  const json::Value* v = root.find(key);
  if (v == nullptr || v->is_null()) return json::Value::null();
  if (!v->is_object()) protocol_error(where + ": '" + std::string(key) + "' is not an object");
  return std::move(*const_cast<json::Value*>(v));
}

// A parameter that, when present, must be a non-negative integer.
bool size_parameter(const json::Value& parameters, std::string_view key, const std::string& owner,
                    std::uint64_t* out) {
  const json::Value* v = parameters.find(key);
  if (v == nullptr) return false;
  if (!v->is_number() || !v->is_integer() || v->as_int() < 0) {
    protocol_error(owner + ": " + std::string(key) + " is not a non-negative integer");
  }
  *out = static_cast<std::uint64_t>(v->as_int());
  return true;
}

}  // namespace

InferResponse parse_infer_response(const std::uint8_t* body, std::size_t size,
                                   std::optional<std::uint64_t> header_length,
                                   const ExpectedResponse& expected) {
  std::uint64_t json_size = size;
  if (header_length) {
    if (*header_length > size) {
      protocol_error("response header length " + std::to_string(*header_length) +
                     " exceeds the " + std::to_string(size) + "-byte body");
    }
    json_size = *header_length;
  }

  json::Value root;
  try {
    json::ParseOptions options;
    options.max_values = kMaxInferenceHeaderValues;
    options.raw_key = "data";
    options.raw_depth = 3;  // {"outputs": [{"data": [...]}]}
    root = json::parse(std::string_view(reinterpret_cast<const char*>(body),
                                        static_cast<std::size_t>(json_size)),
                       options);
  } catch (const DecodeError& e) {
    protocol_error(std::string("response header: ") + e.what());
  }
  if (!root.is_object()) protocol_error("response header is not a JSON object");

  InferResponse response;
  response.model_name = optional_string(root, "model_name", "response");
  response.model_version = optional_string(root, "model_version", "response");
  response.id = optional_string(root, "id", "response");
  if (!expected.id.empty() && response.id != expected.id) {
    if (root.find("id") == nullptr) {
      protocol_error("response carries no id, but it should answer request id '" +
                     std::string(expected.id) + "'");
    }
    protocol_error("response id '" + response.id + "' does not match the request id '" +
                   std::string(expected.id) + "': it answers another request");
  }
  response.parameters = take_optional_object(root, "parameters", "response");

  const json::Value* outputs = root.find("outputs");
  if (outputs == nullptr || !outputs->is_array()) {
    protocol_error("response has no 'outputs' array");
  }
  const std::vector<RequestedOutput>* requested =
      expected.outputs != nullptr && !expected.outputs->empty() ? expected.outputs : nullptr;
  auto find_requested = [&](const std::string& name) -> const RequestedOutput* {
    if (requested == nullptr) return nullptr;
    for (const auto& r : *requested) {
      if (r.name == name) return &r;
    }
    return nullptr;
  };

  std::uint64_t offset = json_size;  // where the next binary segment starts
  response.outputs.reserve(outputs->as_array().size());
  std::size_t index = 0;
  for (const json::Value& o : outputs->as_array()) {
    OutputTensor out;
    if (!o.is_object()) protocol_error("response output " + std::to_string(index) +
                                       " is not an object");
    const json::Value* name = o.find("name");
    if (name == nullptr || !name->is_string()) {
      protocol_error("response output " + std::to_string(index) + " has no 'name' string");
    }
    out.name = name->as_string();
    const std::string owner = "output '" + out.name + "'";
    for (const auto& earlier : response.outputs) {
      if (earlier.name == out.name) {
        protocol_error(owner + " appears twice in the response (outputs " +
                       std::to_string(&earlier - response.outputs.data()) + " and " +
                       std::to_string(index) + ")");
      }
    }
    const RequestedOutput* asked = find_requested(out.name);
    if (requested != nullptr && asked == nullptr) {
      protocol_error(owner + " is in the response but the request did not ask for it");
    }

    const json::Value* datatype = o.find("datatype");
    if (datatype == nullptr || !datatype->is_string()) {
      protocol_error(owner + " has no 'datatype' string");
    }
    out.datatype = datatype->as_string();
    const auto info = find_datatype(out.datatype);
    if (!info) protocol_error(owner + " has unknown datatype '" + out.datatype + "'");

    const json::Value* shape = o.find("shape");
    if (shape == nullptr || !shape->is_array()) protocol_error(owner + " has no 'shape' array");
    if (shape->as_array().size() > kMaxOutputDims) {
      protocol_error(owner + ": shape has " + std::to_string(shape->as_array().size()) +
                     " dimensions, more than the " + std::to_string(kMaxOutputDims) +
                     " an array can have");
    }
    std::uint64_t elements = 1;
    bool overflow = false;
    out.shape.reserve(shape->as_array().size());
    for (const json::Value& d : shape->as_array()) {
      if (!d.is_number() || !d.is_integer()) {
        protocol_error(owner + ": shape holds a dimension that is not an integer");
      }
      out.shape.push_back(d.as_int());
    }
    // Bytes spanned by the non-zero dimensions (an array's strides): numpy
    // keeps them in int64 even when a zero dimension leaves the array empty.
    std::uint64_t span = info->size > 0 ? info->size : sizeof(void*);
    bool too_wide = false;
    for (const std::int64_t d : out.shape) {
      if (d < 0) {
        protocol_error(owner + ": shape " + shape_text(out.shape) + " has a negative dimension");
      }
      if (__builtin_mul_overflow(elements, static_cast<std::uint64_t>(d), &elements)) {
        overflow = true;
      }
      if (d != 0 && __builtin_mul_overflow(span, static_cast<std::uint64_t>(d), &span)) {
        too_wide = true;
      }
    }
    if (too_wide || span > static_cast<std::uint64_t>(INT64_MAX)) {
      protocol_error(owner + ": shape " + shape_text(out.shape) + " " + out.datatype +
                     " is too large for an array (its non-zero dimensions span 2^63 bytes or more)");
    }
    for (const std::int64_t d : out.shape) {
      if (d == 0) overflow = false;  // an empty tensor, whatever the other dimensions
    }
    std::uint64_t needed = 0;
    if (overflow || (info->size > 0 && __builtin_mul_overflow(elements, info->size, &needed))) {
      protocol_error(owner + ": shape " + shape_text(out.shape) + " " + out.datatype +
                     " overflows a 64-bit byte count");
    }

    out.parameters = take_optional_object(o, "parameters", owner);
    std::uint64_t n = 0;
    if (size_parameter(out.parameters, "binary_data_size", owner, &n)) {
      out.kind = OutputKind::kBinary;
      if (n > size - offset) {
        protocol_error(owner + ": binary_data_size " + std::to_string(n) + " at byte " +
                       std::to_string(offset) + " runs past the end of the " +
                       std::to_string(size) + "-byte body");
      }
      if (info->size > 0 && needed != n) {
        protocol_error(owner + " of shape " + shape_text(out.shape) + " " + out.datatype +
                       " needs " + std::to_string(needed) + " bytes but binary_data_size is " +
                       std::to_string(n));
      }
      out.offset = offset;
      out.size = n;
      offset += n;
    } else if (const json::Value* data = o.find("data")) {
      if (!data->is_raw()) protocol_error(owner + ": JSON 'data' is not an array");
      out.kind = OutputKind::kJson;
      out.offset = data->raw_offset();
      out.size = data->raw_size();
    } else {
      if (asked == nullptr || !asked->shared_memory) {
        protocol_error(owner + " has neither binary_data_size nor data, and the request did "
                       "not ask for it in shared memory");
      }
      out.kind = OutputKind::kSharedMemory;
      std::uint64_t shm_size = 0;
      if (size_parameter(out.parameters, "shared_memory_byte_size", owner, &shm_size)) {
        out.size = shm_size;
      }
    }
    response.outputs.push_back(std::move(out));
    ++index;
  }
  if (offset != size) {
    protocol_error("response body has " + std::to_string(size - offset) +
                   " bytes after the last output (outputs end at byte " + std::to_string(offset) +
                   " of " + std::to_string(size) + ")");
  }
  if (requested != nullptr) {
    for (const auto& r : *requested) {
      bool found = false;
      for (const auto& out : response.outputs) found = found || out.name == r.name;
      if (!found) protocol_error("output '" + r.name + "' was requested but is not in the response");
    }
  }
  return response;
}

namespace {

// decode_json_output's element checks, one datatype at a time.
struct JsonDecoder {
  const OutputTensor& output;
  const std::string owner;
  char kind;  // 'b' bool, 'i' signed, 'u' unsigned, 'f' float, 'S' bytes
  std::uint64_t width;  // bytes per element written (FP16/BF16: 8, as FP64)
  double limit;  // 'f': finite values must stay below this in magnitude (0: any)
  std::int64_t min = 0;
  std::uint64_t max = 0;
  std::uint64_t expected = 0;
  std::vector<std::uint8_t>* out;

  [[noreturn]] void bad(std::size_t index, const std::string& what) const {
    protocol_error(owner + " (" + output.datatype + "): JSON element " + std::to_string(index) +
                   " " + what);
  }

  template <typename T>
  void put(T v) {
    const std::size_t at = out->size();
    out->resize(at + sizeof(T));
    std::memcpy(out->data() + at, &v, sizeof(T));  // little-endian hosts only
  }

  void element(std::size_t index, const json::Value& v) {
    if (index >= expected) {
      bad(index, "is past the " + std::to_string(expected) + " elements of shape " +
                     shape_text(output.shape));
    }
    switch (kind) {
      case 'b':
        if (!v.is_bool()) bad(index, "is not true or false");
        put<std::uint8_t>(v.as_bool() ? 1 : 0);
        return;
      case 'S': {
        if (!v.is_string()) bad(index, "is not a string");
        const std::string& text = v.as_string();
        if (text.size() > bytes::kMaxElementBytes) bad(index, "is longer than a BYTES element can be");
        put<std::uint32_t>(static_cast<std::uint32_t>(text.size()));
        out->insert(out->end(), text.begin(), text.end());
        return;
      }
      case 'f': {
        if (!v.is_number()) bad(index, "is not a number");
        const double d = v.as_double();
        if (limit != 0 && std::isfinite(d) && std::fabs(d) >= limit) {
          bad(index, "(" + number_text(d) + ") is out of the datatype's range");
        }
        if (width == 4) {
          put<float>(static_cast<float>(d));
        } else {
          put<double>(d);
        }
        return;
      }
      default: {
        const bool integral = v.is_number() && (v.is_integer() || v.is_uint64());
        if (!integral) bad(index, "is not an integer");
        bool ok;
        if (v.is_uint64()) {
          ok = kind == 'u' && v.as_uint64() <= max;
        } else if (kind == 'u') {
          ok = v.as_int() >= 0 && static_cast<std::uint64_t>(v.as_int()) <= max;
        } else {
          ok = v.as_int() >= min && (v.as_int() < 0 || static_cast<std::uint64_t>(v.as_int()) <= max);
        }
        if (!ok) {
          bad(index, "(" + (v.is_uint64() ? std::to_string(v.as_uint64()) : std::to_string(v.as_int())) +
                         ") is out of the datatype's range");
        }
        const std::uint64_t bits = v.is_uint64() ? v.as_uint64() : static_cast<std::uint64_t>(v.as_int());
        switch (width) {
          case 1: put<std::uint8_t>(static_cast<std::uint8_t>(bits)); break;
          case 2: put<std::uint16_t>(static_cast<std::uint16_t>(bits)); break;
          case 4: put<std::uint32_t>(static_cast<std::uint32_t>(bits)); break;
          default: put<std::uint64_t>(bits); break;
        }
      }
    }
  }

  static std::string number_text(double d) {
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, d);
    return std::string(buf, r.ptr);
  }

  static void visit(void* context, std::size_t index, const json::Value& v) {
    static_cast<JsonDecoder*>(context)->element(index, v);
  }
};

}  // namespace

JsonOutputData decode_json_output(const OutputTensor& output, const std::uint8_t* body) {
  JsonOutputData result;
  result.datatype = output.datatype;
  const std::string& t = output.datatype;
  JsonDecoder decoder{output, "output '" + output.name + "'", 'f', 8, 0, 0, 0, 0, &result.bytes};
  if (t == "BOOL") {
    decoder.kind = 'b';
    decoder.width = 1;
  } else if (t == "BYTES") {
    decoder.kind = 'S';
  } else if (t == "FP64") {
  } else if (t == "FP32") {
    decoder.width = 4;
    decoder.limit = 3.4028235677973366e38;  // 2^128 - 2^103: rounds to infinity from here
  } else if (t == "FP16") {
    decoder.limit = 65520.0;
    result.datatype = "FP64";
  } else if (t == "BF16") {
    decoder.limit = 3.3961775292304e38;  // 2^128 - 2^119
    result.datatype = "FP64";
  } else if (t.size() >= 4 && (t.compare(0, 3, "INT") == 0 || t.compare(0, 4, "UINT") == 0)) {
    const bool is_unsigned = t[0] == 'U';
    const int bits = std::atoi(t.c_str() + (is_unsigned ? 4 : 3));
    decoder.kind = is_unsigned ? 'u' : 'i';
    decoder.width = static_cast<std::uint64_t>(bits / 8);
    decoder.max = is_unsigned ? (bits == 64 ? UINT64_MAX : (std::uint64_t{1} << bits) - 1)
                              : (std::uint64_t{1} << (bits - 1)) - 1;
    decoder.min = is_unsigned ? 0 : (bits == 64 ? INT64_MIN : -(std::int64_t{1} << (bits - 1)));
  } else {
    protocol_error(decoder.owner + ": datatype " + t + " cannot be JSON-encoded");
  }
  std::uint64_t expected = 1;
  for (const std::int64_t d : output.shape) expected *= static_cast<std::uint64_t>(d);  // checked by the parser
  decoder.expected = expected;
  if (decoder.kind != 'S' && expected <= (std::uint64_t{1} << 40) / decoder.width) {
    result.bytes.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(expected, output.size) * decoder.width));
  }
  std::size_t count = 0;
  try {
    count = json::for_each_scalar(
        std::string_view(reinterpret_cast<const char*>(body) + output.offset,
                         static_cast<std::size_t>(output.size)),
        &JsonDecoder::visit, &decoder);
  } catch (const DecodeError& e) {
    protocol_error(decoder.owner + ": JSON data: " + e.what());
  }
  if (count != expected) {
    protocol_error(decoder.owner + ": JSON data holds " + std::to_string(count) +
                   " elements but shape " + shape_text(output.shape) + " holds " +
                   std::to_string(expected));
  }
  result.count = count;
  return result;
}

std::unique_lock<fork::Mutex> ResponseLayoutCache::locked() {
  return fork::lock(mutex_, [this](bool intact) {
    // A parent thread was replacing last_ at the fork: abandon it unread.
    if (!intact) new (&last_) std::shared_ptr<const Layout>();
  });
}

ResponseLayoutCache::Parsed ResponseLayoutCache::parse(const std::uint8_t* body,
                                                        std::size_t size,
                                                        std::optional<std::uint64_t> header_length,
                                                        std::string_view id) {
  if (header_length && *header_length <= size) {
    // The key: the header without the id member Triton puts first.
    std::string_view json(reinterpret_cast<const char*>(body), static_cast<std::size_t>(*header_length));
    bool stripped = false;
    if (!id.empty()) {
      // `{"id":"<id>",`, the id written as JSON (plain ids need no escapes).
      thread_local std::string prefix;
      prefix.assign("{\"id\":");
      json::write_string(prefix, id);
      prefix.push_back(',');
      if (json.size() > prefix.size() && json.compare(0, prefix.size(), prefix) == 0) {
        json.remove_prefix(prefix.size());
        stripped = true;
      }
    }
    std::shared_ptr<const Layout> last;
    {
      auto lock = locked();
      last = last_;
    }
    // A header that does not start with this request's id is parsed in full,
    // which checks the id wherever it is.
    if (last && last->id_stripped == stripped && (stripped || id.empty()) && last->key == json &&
        size - *header_length == last->binary_bytes) {
      return Parsed{std::move(last), *header_length};
    }
    ExpectedResponse expected;
    expected.id = id;
    InferResponse response = parse_infer_response(body, size, header_length, expected);
    auto layout = std::make_shared<Layout>();
    bool all_binary = true;
    for (auto& output : response.outputs) {
      if (output.kind == OutputKind::kBinary) {
        output.offset -= *header_length;
      } else {
        all_binary = false;
      }
    }
    layout->response = std::move(response);
    layout->key.assign(json.data(), json.size());
    layout->id_stripped = stripped;
    layout->binary_bytes = size - *header_length;
    std::shared_ptr<const Layout> published = std::move(layout);
    if (all_binary) {
      auto lock = locked();
      last_ = published;
    }
    return Parsed{std::move(published), *header_length};
  }
  // Not the binary extension (or a header length past the body: parse reports it).
  auto layout = std::make_shared<Layout>();
  ExpectedResponse expected;
  expected.id = id;
  layout->response = parse_infer_response(body, size, header_length, expected);
  return Parsed{std::move(layout), 0};
}

std::optional<std::string> parse_error_body(const std::uint8_t* body, std::size_t size) {
  if (size == 0) return std::nullopt;
  try {
    json::ParseOptions options;
    options.max_values = kMaxErrorBodyValues;
    const json::Value root =
        json::parse(std::string_view(reinterpret_cast<const char*>(body), size), options);
    const json::Value* error = root.find("error");
    if (error == nullptr || !error->is_string()) return std::nullopt;
    return error->as_string();
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string error_answer_message(int status, const std::string& reason, const std::uint8_t* body,
                                 std::size_t size) {
  if (auto message = parse_error_body(body, size)) return *message;
  std::string text = "the server answered HTTP " + std::to_string(status);
  if (!reason.empty()) text += " " + reason;
  if (size == 0) return text + " with an empty body";
  text += " with a body that is not a Triton error (" + std::to_string(size) + " bytes): ";
  const std::size_t shown = std::min<std::size_t>(size, kErrorBodyExcerptBytes);
  for (std::size_t k = 0; k < shown; ++k) {
    const unsigned char c = body[k];
    if (c >= 0x20 && c < 0x7F) {
      text.push_back(static_cast<char>(c));
    } else if (c == '\n' || c == '\r' || c == '\t') {
      text.push_back(' ');
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      text += hex;
    }
  }
  if (shown < size) text += "...";
  return text;
}

}  // namespace tritonfast
