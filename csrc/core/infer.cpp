// Triton's inference header (JSON) and response body layout.
//
// Copies: write_infer_header writes the JSON once into the returned string;
// tensor bytes are never touched. parse_infer_response copies only the JSON
// DOM (names, shapes, JSON "data"); binary outputs are reported as (offset,
// size) spans of the caller's body.
#include "core/infer.hpp"

#include <charconv>
#include <cstring>

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
                                   std::optional<std::uint64_t> header_length) {
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
    root = json::parse(std::string_view(reinterpret_cast<const char*>(body),
                                        static_cast<std::size_t>(json_size)));
  } catch (const DecodeError& e) {
    protocol_error(std::string("response header: ") + e.what());
  }
  if (!root.is_object()) protocol_error("response header is not a JSON object");

  InferResponse response;
  response.model_name = optional_string(root, "model_name", "response");
  response.model_version = optional_string(root, "model_version", "response");
  response.id = optional_string(root, "id", "response");
  response.parameters = take_optional_object(root, "parameters", "response");

  const json::Value* outputs = root.find("outputs");
  if (outputs == nullptr || !outputs->is_array()) {
    protocol_error("response has no 'outputs' array");
  }

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

    const json::Value* datatype = o.find("datatype");
    if (datatype == nullptr || !datatype->is_string()) {
      protocol_error(owner + " has no 'datatype' string");
    }
    out.datatype = datatype->as_string();
    const auto info = find_datatype(out.datatype);
    if (!info) protocol_error(owner + " has unknown datatype '" + out.datatype + "'");

    const json::Value* shape = o.find("shape");
    if (shape == nullptr || !shape->is_array()) protocol_error(owner + " has no 'shape' array");
    std::uint64_t elements = 1;
    bool overflow = false;
    out.shape.reserve(shape->as_array().size());
    for (const json::Value& d : shape->as_array()) {
      if (!d.is_number() || !d.is_integer()) {
        protocol_error(owner + ": shape holds a dimension that is not an integer");
      }
      out.shape.push_back(d.as_int());
    }
    for (const std::int64_t d : out.shape) {
      if (d < 0) {
        protocol_error(owner + ": shape " + shape_text(out.shape) + " has a negative dimension");
      }
      if (__builtin_mul_overflow(elements, static_cast<std::uint64_t>(d), &elements)) {
        overflow = true;
      }
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
      out.kind = OutputKind::kJson;
      out.data = std::move(*const_cast<json::Value*>(data));  // root is ours; see above
    } else {
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
  return response;
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
      std::lock_guard<std::mutex> lock(mutex_);
      last = last_;
    }
    if (last && last->id_stripped == stripped && last->key == json &&
        size - *header_length == last->binary_bytes) {
      return Parsed{std::move(last), *header_length};
    }
    InferResponse response = parse_infer_response(body, size, header_length);
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
      std::lock_guard<std::mutex> lock(mutex_);
      last_ = published;
    }
    return Parsed{std::move(published), *header_length};
  }
  // Not the binary extension (or a header length past the body: parse reports it).
  auto layout = std::make_shared<Layout>();
  layout->response = parse_infer_response(body, size, header_length);
  return Parsed{std::move(layout), 0};
}

std::optional<std::string> parse_error_body(const std::uint8_t* body, std::size_t size) {
  if (size == 0) return std::nullopt;
  try {
    const json::Value root =
        json::parse(std::string_view(reinterpret_cast<const char*>(body), size));
    const json::Value* error = root.find("error");
    if (error == nullptr || !error->is_string()) return std::nullopt;
    return error->as_string();
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace tritonfast
