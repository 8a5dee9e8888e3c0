// The fast lane: PyInferPlan (ModelClient's native path for plain numeric
// requests), RequestIds, and InferPlan.infer as a raw METH_FASTCALL method
// (infer_plan_infer), one C++ call from Python.
#include <algorithm>
#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bindings/http.hpp"
#include "core/errors.hpp"
#include "core/fork.hpp"

namespace tritonfast {
namespace bindings TRITONFAST_BINDINGS_HIDDEN {

namespace {

// infer_sample on a batching model, PyTriton's out[0]: the first row (a numpy
// scalar for a 1-D output). An output without a row to take is the server's fault.
py::object first_row(const OutputTensor& output, const py::object& array) {
  if (output.shape.empty() || output.shape[0] < 1) {
    throw ProtocolError("output '" + output.name + "' has shape " + describe(py::cast(output.shape)) +
                        ": infer_sample on a batching model takes the first row of every output, "
                        "and this one has " + (output.shape.empty() ? "no batch axis" : "an empty batch axis"));
  }
  return array[py::int_(0)];
}

// Request ids "0", "1", ... of one client, shared by all its request paths.
class RequestIds {
 public:
  std::string next() { return std::to_string(next_.fetch_add(1, std::memory_order_relaxed)); }

 private:
  std::atomic<std::uint64_t> next_{0};
};

// The fast lane of ModelClient.infer_batch / infer_sample: positional,
// C-contiguous numeric arrays in native byte order, no parameters or extra
// headers, small enough for plain HTTP. It reads the arrays' fields directly,
// renders the request from a template kept per input layout
// (http::InferTemplate), reuses the parse of a response header seen before
// (ResponseLayoutCache) and builds the output views with the numpy C API.
// Anything else (lists, BYTES, non-contiguous or byte-swapped arrays, a batch
// over max_batch_size, requests for shared memory) returns None without
// sending: the caller takes its general path, which handles (or reports) it.
// Thread-safe.
class PyInferPlan {
 public:
  PyInferPlan(py::object client, std::string target, py::handle headers,
              std::vector<std::string> input_names, std::int64_t max_batch_size,
              std::uint64_t max_bytes, std::uint64_t fixed_output_bytes,
              std::shared_ptr<RequestIds> ids, std::optional<double> timeout_s)
      : client_object_(std::move(client)),
        client_(client_object_.cast<PyHttpClient*>()),
        target_(std::move(target)),
        headers_(to_headers(headers)),
        names_(std::move(input_names)),
        max_batch_size_(max_batch_size),
        max_bytes_(max_bytes),
        fixed_output_bytes_(fixed_output_bytes),
        ids_(std::move(ids)),
        timeout_s_(timeout_s) {
    auto& api = py::detail::npy_api::get();
    // numpy's builtin numeric type numbers (bool, the integers, half, float,
    // double); asking for the others costs a DeprecationWarning for NPY_CHAR
    // on numpy 1.x, which users would see.
    for (int num : {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 23}) {
      PyObject* descr = api.PyArray_DescrFromType_(num);
      if (descr == nullptr) {
        PyErr_Clear();
        continue;
      }
      auto dtype = py::reinterpret_steal<py::dtype>(descr);
      if (dtype.kind() == 'V') continue;  // numeric_datatype would look at its name
      std::string datatype = numeric_datatype(dtype);
      if (!datatype.empty() && is_native_order(dtype)) {
        types_[num] = NumericType{std::move(datatype), static_cast<std::uint64_t>(dtype.itemsize())};
      }
    }
  }

  // {output name: array} (infer_sample: each output's first row), or None.
  py::object infer(py::handle inputs, bool sample) {
    if (!PyTuple_Check(inputs.ptr())) return py::none();
    const auto given = static_cast<std::size_t>(PyTuple_GET_SIZE(inputs.ptr()));
    const std::size_t count = std::min(given, names_.size());
    const bool batching = max_batch_size_ > 0;
    if (count == 0 || (!sample && !batching)) return py::none();
    const bool add_batch_axis = sample && batching;

    auto& api = py::detail::npy_api::get();
    // Per thread, reused: nothing here allocates once warm. A thread is in one
    // infer() at a time (the GIL is released only around the transport).
    thread_local std::vector<std::int64_t> key;  // per input: type number, ndim, dims
    thread_local std::vector<Segment> segments;
    thread_local http::Request wire;
    key.clear();
    segments.clear();
    std::uint64_t in_bytes = 0;
    std::int64_t batch = 1;
    for (std::size_t i = 0; i < count; ++i) {
      PyObject* obj = PyTuple_GET_ITEM(inputs.ptr(), static_cast<Py_ssize_t>(i));
      if (!api.PyArray_Check_(obj)) return py::none();
      const auto* array = py::detail::array_proxy(obj);
      if (!(array->flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_)) return py::none();
      const auto* descr = py::detail::array_descriptor_proxy(array->descr);
      const int num = descr->type_num;
      if (descr->byteorder == '>' || num < 0 || num >= kTypeNumbers || types_[num].size == 0) return py::none();
      if (!sample && (array->nd == 0 || array->dimensions[0] > max_batch_size_)) return py::none();
      std::uint64_t elements = 1;
      key.push_back(num);
      key.push_back(array->nd + (add_batch_axis ? 1 : 0));
      if (add_batch_axis) key.push_back(1);
      for (int k = 0; k < array->nd; ++k) {
        key.push_back(array->dimensions[k]);
        elements *= static_cast<std::uint64_t>(array->dimensions[k]);
      }
      if (!sample && i == 0) batch = array->dimensions[0];
      const std::uint64_t nbytes = elements * types_[num].size;  // numpy keeps it below 2^63
      in_bytes += nbytes;
      segments.push_back(Segment{reinterpret_cast<const std::uint8_t*>(array->data),
                                 static_cast<std::size_t>(nbytes)});
    }
    if (max_bytes_ != 0 &&
        (in_bytes >= max_bytes_ || fixed_output_bytes_ * static_cast<std::uint64_t>(batch) >= max_bytes_)) {
      return py::none();  // shared memory's turn
    }
    std::shared_ptr<const http::InferTemplate> request_template = template_for(key, count);

    const std::string id = ids_->next();
    request_template->render_into(id, segments.data(), segments.size(), &wire);
    sent_.fetch_add(1, std::memory_order_relaxed);
    Response response;
    LaneCheck check(responses_, id);
    {
      // Safe: the caller's tuple keeps every input array alive; the rest is C++.
      MaybeReleaseGil nogil;
      response = client_->native().perform(
          wire, timeout_s_ ? Deadline::after(*timeout_s_) : Deadline::never(), /*idempotent=*/false,
          &check);
      check_infer_status(response.head, response.body);
    }
    const ResponseLayoutCache::Parsed& parsed = check.parsed;
    return outputs(parsed, std::move(response.body), /*take_first_row=*/add_batch_axis);
  }

  // Requests this lane has sent (the rest went the general way).
  std::uint64_t sent() const { return sent_.load(std::memory_order_relaxed); }

 private:
  static constexpr int kTypeNumbers = 32;  // numpy's builtin type numbers are below this

  struct NumericType {
    std::string datatype;
    std::uint64_t size = 0;  // 0: not a Triton numeric type
  };

  // InferCheck for the lane: the response-header cache's parse, in the transport.
  struct LaneCheck final : ResponseCheck {
    LaneCheck(ResponseLayoutCache& cache, std::string_view id) : cache(cache), id(id) {}
    void check(const Response& response) override {
      if (response.head.status != 200) return;
      parsed = cache.parse(response.body.data(), response.body.size,
                           response.head.inference_header_length, id);
    }
    ResponseLayoutCache& cache;
    std::string_view id;
    ResponseLayoutCache::Parsed parsed;
  };

  // Python objects of one response layout: output names and dtypes.
  struct PyLayout {
    std::shared_ptr<const ResponseLayoutCache::Layout> layout;
    std::vector<py::object> names;
    std::vector<py::object> dtypes;  // None for BYTES and non-binary outputs
  };

  std::shared_ptr<const http::InferTemplate> template_for(const std::vector<std::int64_t>& key,
                                                          std::size_t count) {
    auto lock = locked();
    if (template_ && template_key_ == key) return template_;
    InferRequest layout;
    std::size_t at = 0;
    for (std::size_t i = 0; i < count; ++i) {
      InputTensor input;
      input.name = names_[i];
      const auto num = key[at++];
      input.datatype = types_[num].datatype;
      const auto ndim = key[at++];
      std::uint64_t elements = 1;
      for (std::int64_t k = 0; k < ndim; ++k) {
        input.shape.push_back(key[at]);
        elements *= static_cast<std::uint64_t>(key[at++]);
      }
      // Sizes only: render() is given the memory.
      input.segments.push_back(Segment{nullptr, static_cast<std::size_t>(elements * types_[num].size)});
      layout.inputs.push_back(std::move(input));
    }
    template_ = std::make_shared<const http::InferTemplate>(target_, client_->native().endpoint().authority(),
                                                            headers_, layout);
    template_key_ = key;
    return template_;
  }

  // The caller keeps its own reference: converting outputs may run Python code
  // (a __del__, numpy), so another thread may swap py_layout_ meanwhile.
  std::shared_ptr<const PyLayout> py_layout(
      const std::shared_ptr<const ResponseLayoutCache::Layout>& layout) {
    // Only touched with the GIL held; nothing between the check and the swap lets it go.
    if (!py_layout_ || py_layout_->layout != layout) {
      auto fresh = std::make_shared<PyLayout>();
      fresh->layout = layout;
      for (const auto& output : layout->response.outputs) {
        fresh->names.push_back(py::str(output.name));
        py::object dtype = py::none();
        if (output.kind == OutputKind::kBinary && output.datatype != "BYTES") {
          auto it = numpy_dtypes().find(output.datatype);
          if (it != numpy_dtypes().end()) dtype = py::reinterpret_borrow<py::object>(it->second);
        }
        fresh->dtypes.push_back(std::move(dtype));
      }
      py_layout_ = std::move(fresh);
    }
    return py_layout_;
  }

  py::dict outputs(const ResponseLayoutCache::Parsed& parsed, http::Body body, bool take_first_row) {
    auto* owned = new http::Body(std::move(body));
    py::capsule owner(owned, [](void* p) { delete static_cast<http::Body*>(p); });
    const std::uint8_t* binary = owned->data() + parsed.base;
    const std::shared_ptr<const PyLayout> held = py_layout(parsed.layout);
    const PyLayout& objects = *held;
    auto& api = py::detail::npy_api::get();
    py::dict result;
    const auto& outputs = parsed.layout->response.outputs;
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      const OutputTensor& output = outputs[i];
      // JSON outputs' spans count from the start of the body, binary ones from `binary`.
      const std::uint8_t* data = output.kind == OutputKind::kJson ? owned->data() : binary + output.offset;
      py::object array;
      PyObject* descr = objects.dtypes[i].ptr();
      const auto itemsize = descr == Py_None ? 0 : py::reinterpret_borrow<py::dtype>(descr).itemsize();
      if (itemsize > 0 && reinterpret_cast<std::uintptr_t>(data) % static_cast<std::uintptr_t>(itemsize) == 0) {
        static_assert(sizeof(Py_intptr_t) == sizeof(std::int64_t), "64-bit platforms only");
        Py_INCREF(descr);  // stolen by PyArray_NewFromDescr
        array = py::reinterpret_steal<py::object>(api.PyArray_NewFromDescr_(
            api.PyArray_Type_, descr, static_cast<int>(output.shape.size()),
            reinterpret_cast<Py_intptr_t*>(const_cast<std::int64_t*>(output.shape.data())), nullptr,
            const_cast<std::uint8_t*>(data), py::detail::npy_api::NPY_ARRAY_WRITEABLE_, nullptr));
        if (!array) conversion_failed(output, py::error_already_set().what());  // numpy 1's 32 dimensions
        if (api.PyArray_SetBaseObject_(array.ptr(), owner.inc_ref().ptr()) != 0) throw py::error_already_set();
      } else {
        array = converted_output(output, data, owner);
      }
      if (take_first_row) array = first_row(output, array);
      result[objects.names[i]] = std::move(array);
    }
    return result;
  }

  py::object client_object_;  // keeps client_ alive
  PyHttpClient* client_;
  std::string target_;
  std::vector<http::Header> headers_;
  std::vector<std::string> names_;
  std::int64_t max_batch_size_;
  std::uint64_t max_bytes_;
  std::uint64_t fixed_output_bytes_;
  std::shared_ptr<RequestIds> ids_;
  std::optional<double> timeout_s_;
  std::array<NumericType, kTypeNumbers> types_{};
  ResponseLayoutCache responses_;
  std::atomic<std::uint64_t> sent_{0};

  // Locks mutex_; in a forked child whose parent thread held it at the fork,
  // the state it guards is abandoned unread.
  std::unique_lock<fork::Mutex> locked() {
    return fork::lock(mutex_, [this](bool intact) {
      if (intact) return;
      new (&template_) std::shared_ptr<const http::InferTemplate>();
      new (&template_key_) std::vector<std::int64_t>();
    });
  }

  fork::Mutex mutex_;  // guards the two below
  std::shared_ptr<const http::InferTemplate> template_;
  std::vector<std::int64_t> template_key_;

  std::shared_ptr<const PyLayout> py_layout_;  // GIL-guarded
};

// InferPlan.infer(inputs, sample, /) as a METH_FASTCALL method: the hot call
// skips pybind11's dispatcher (argument vectors, overload loop), ~1,000
// instructions of the ~12,000 a request costs.
PyObject* infer_plan_infer(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  try {
    if (nargs != 2) {
      PyErr_Format(PyExc_TypeError, "InferPlan.infer() takes 2 arguments (%zd given)", nargs);
      return nullptr;
    }
    const int sample = PyObject_IsTrue(args[1]);
    if (sample < 0) return nullptr;
    auto* plan = py::handle(self).cast<PyInferPlan*>();
    return plan->infer(py::handle(args[0]), sample != 0).release().ptr();
  } catch (...) {
    set_python_error();
    return nullptr;
  }
}

PyMethodDef kInferPlanInfer = {
    "infer", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&infer_plan_infer)),
    METH_FASTCALL,
    "infer($self, inputs, sample, /)\n--\n\n"
    "{output: array} for a tuple of positional inputs, or None."};

}  // namespace

void register_fast_lane(py::module_& m) {
  py::class_<RequestIds, std::shared_ptr<RequestIds>>(
      m, "RequestIds", "A client's request ids \"0\", \"1\", ... (thread-safe).")
      .def(py::init<>())
      .def("next", &RequestIds::next);

  py::class_<PyInferPlan>(m, "InferPlan",
                          "ModelClient's native fast lane for plain numeric requests; infer() "
                          "returns None where the general path must take the request.")
      .def(py::init<py::object, std::string, py::handle, std::vector<std::string>, std::int64_t,
                    std::uint64_t, std::uint64_t, std::shared_ptr<RequestIds>, std::optional<double>>(),
           py::arg("client"), py::arg("target"), py::arg("headers"), py::arg("input_names"),
           py::arg("max_batch_size"), py::arg("max_bytes"), py::arg("fixed_output_bytes"),
           py::arg("ids"), py::arg("timeout_s"))
      .def_property_readonly("sent", &PyInferPlan::sent, "Requests this lane has sent.");
  {
    // infer: a raw FASTCALL method (see infer_plan_infer).
    py::object plan_type = m.attr("InferPlan");
    py::object method = py::reinterpret_steal<py::object>(
        PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(plan_type.ptr()), &kInferPlanInfer));
    if (!method) throw py::error_already_set();
    plan_type.attr("infer") = method;
  }
}

}  // namespace bindings
}  // namespace tritonfast
