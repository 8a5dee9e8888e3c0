// The fast lane: PyInferPlan (ModelClient's native path for plain numeric
// requests), RequestIds, and InferPlan.infer as a raw METH_FASTCALL method
// (infer_plan_infer), one C++ call from Python.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <unordered_map>
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
#include "core/reactor.hpp"

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
    // Per thread, reused: nothing here allocates once warm. A thread is in one
    // infer() at a time (the GIL is released only around the transport).
    thread_local http::Request wire;
    std::string id;
    bool take_first_row = false;
    if (!prepare(inputs, sample, /*max_input_bytes=*/0, &wire, &id, &take_first_row)) return py::none();
    Response response;
    LaneCheck check(responses_, id);
    {
      // Safe: the caller's tuple keeps every input array alive; the rest is C++.
      MaybeReleaseGil nogil;
      response = client_->native().perform(wire, deadline(), /*idempotent=*/false, &check);
      check_infer_status(response.head, response.body);
    }
    return finish(check.parsed, std::move(response.body), take_first_row);
  }

  // The lane's first half: renders the request for `inputs` into `*wire` (its
  // segments point into the arrays), with a fresh request id. False, with
  // nothing consumed, where the lane does not take the request, or where
  // `max_input_bytes` (0: no bound) is below the inputs' size.
  bool prepare(py::handle inputs, bool sample, std::uint64_t max_input_bytes, http::Request* wire,
               std::string* id, bool* take_first_row) {
    if (!PyTuple_Check(inputs.ptr())) return false;
    const auto given = static_cast<std::size_t>(PyTuple_GET_SIZE(inputs.ptr()));
    const std::size_t count = std::min(given, names_.size());
    const bool batching = max_batch_size_ > 0;
    if (count == 0 || (!sample && !batching)) return false;
    const bool add_batch_axis = sample && batching;

    auto& api = py::detail::npy_api::get();
    // Per thread, reused (see infer()).
    thread_local std::vector<std::int64_t> key;  // per input: type number, ndim, dims
    thread_local std::vector<Segment> segments;
    key.clear();
    segments.clear();
    std::uint64_t in_bytes = 0;
    std::int64_t batch = 1;
    for (std::size_t i = 0; i < count; ++i) {
      PyObject* obj = PyTuple_GET_ITEM(inputs.ptr(), static_cast<Py_ssize_t>(i));
      if (!api.PyArray_Check_(obj)) return false;
      const auto* array = py::detail::array_proxy(obj);
      if (!(array->flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_)) return false;
      const auto* descr = py::detail::array_descriptor_proxy(array->descr);
      const int num = descr->type_num;
      if (descr->byteorder == '>' || num < 0 || num >= kTypeNumbers || types_[num].size == 0) return false;
      if (!sample && (array->nd == 0 || array->dimensions[0] > max_batch_size_)) return false;
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
      return false;  // shared memory's turn
    }
    if (max_input_bytes != 0 && in_bytes > max_input_bytes) return false;
    std::shared_ptr<const http::InferTemplate> request_template = template_for(key, count);

    *id = ids_->next();
    request_template->render_into(*id, segments.data(), segments.size(), wire);
    *take_first_row = add_batch_axis;
    sent_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  // The lane's second half: {output name: array} from a response that passed
  // a LaneCheck (the views keep `body` alive).
  py::dict finish(const ResponseLayoutCache::Parsed& parsed, http::Body body, bool take_first_row) {
    return outputs(parsed, std::move(body), take_first_row);
  }

  Deadline deadline() const { return timeout_s_ ? Deadline::after(*timeout_s_) : Deadline::never(); }
  ResponseLayoutCache& responses() { return responses_; }

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

  // Requests this lane has sent (the rest went the general way).
  std::uint64_t sent() const { return sent_.load(std::memory_order_relaxed); }

 private:
  static constexpr int kTypeNumbers = 32;  // numpy's builtin type numbers are below this

  struct NumericType {
    std::string datatype;
    std::uint64_t size = 0;  // 0: not a Triton numeric type
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

// Runs f() without the GIL. Unlike MaybeReleaseGil, the GIL is taken back
// outside any destructor: a daemon thread (the reactor) that CPython ends with
// pthread_exit at interpreter exit unwinds from here cleanly, where an unwind
// out of a destructor would call std::terminate.
template <class F>
void without_gil(F&& f) {
  PyThreadState* state = PyEval_SaveThread();
  std::exception_ptr error;
  try {
    f();
  } catch (...) {
    error = std::current_exception();
  }
  PyEval_RestoreThread(state);
  if (error) std::rethrow_exception(error);
}

// FuturesModelClient's lane: InferPlan's requests sent by the submitting
// thread itself and completed by one reactor thread (core/reactor.hpp), so a
// request costs no hand-off to a worker and no worker wake-up; the reactor
// completes a batch of concurrent.futures.Future per wake-up. At most
// `max_in_flight` requests are in flight; up to `max_queued` more (0: no
// bound) wait, rendered and holding their inputs, and go out, in order, as
// slots free. The reactor thread is the caller's: submit() says when one must
// be started (to call run()), and run() returns once nothing has been in
// flight for `idle_s`, so an unused engine holds no thread.
class PyInferEngine {
 public:
  enum Submitted : int { kNotTaken = 0, kTaken = 1, kTakenStartReactor = 2, kFull = 3 };

  PyInferEngine(py::object client, std::size_t max_in_flight, std::size_t max_queued,
                std::uint64_t max_input_bytes, py::object fail)
      : client_object_(std::move(client)),
        reactor_(reactor_for(client_object_.cast<PyHttpClient*>()->native())),
        max_in_flight_(std::max<std::size_t>(1, max_in_flight)),
        max_queued_(max_queued),
        max_input_bytes_(max_input_bytes),
        fail_(std::move(fail)),
        set_result_(py::str("set_result")),
        dict_(py::str("__dict__")),
        condition_(py::str("_condition")),
        result_(py::str("_result")),
        state_(py::str("_state")),
        finished_(py::module_::import("concurrent.futures._base").attr("FINISHED")) {}

  // Sends `plan`'s request for `inputs` (or queues it) and completes `future`
  // (already marked running) from the reactor: kTaken, or
  // kTakenStartReactor when the caller must start a thread calling run().
  // kNotTaken (the plan hands the request back, or the engine is closed) and
  // kFull (the queue is full) leave `future` alone.
  int submit(py::handle plan_object, py::handle inputs, bool sample, py::handle future) {
    auto* plan = plan_object.cast<PyInferPlan*>();
    {
      auto lock = locked();
      if (closed_) return kNotTaken;
      if (in_flight_ >= max_in_flight_ && max_queued_ != 0 && queue_.size() >= max_queued_) return kFull;
    }
    thread_local http::Request wire;
    auto item = std::make_unique<Item>();
    if (!plan->prepare(inputs, sample, max_input_bytes_, &wire, &item->id, &item->take_first_row)) {
      return kNotTaken;
    }
    item->future = py::reinterpret_borrow<py::object>(future);
    item->plan_object = py::reinterpret_borrow<py::object>(plan_object);
    item->plan = plan;
    item->check.emplace(plan->responses(), item->id);
    Item* raw = item.get();
    const auto token = reinterpret_cast<std::uint64_t>(raw);
    bool send_now = false;
    int submitted = kTaken;
    {
      auto lock = locked();
      send_now = in_flight_ < max_in_flight_;
      if (send_now) {
        ++in_flight_;
      } else {
        item->inputs = py::reinterpret_borrow<py::object>(inputs);  // their memory is the request's
        item->wire = wire;
        queue_.push_back(raw);
      }
      items_.emplace(token, std::move(item));
      if (!running_) {
        running_ = true;
        submitted = kTakenStartReactor;
      }
    }
    // Safe: the caller's tuple keeps every input array alive until start() returns.
    if (send_now) send(raw, wire);
    return submitted;
  }

  // The reactor loop (GIL held on entry; released while waiting): completes
  // futures as responses arrive, sends queued requests as slots free. Returns
  // once nothing has been in flight or queued for `idle_s`, or at once when
  // idle after close().
  void run(double idle_s) {
    using Clock = std::chrono::steady_clock;
    std::vector<Reactor::Completion> done;
    auto idle_since = Clock::now();
    for (;;) {
      int wait_ms = -1;
      {
        auto lock = locked();
        if (in_flight_ == 0 && queue_.empty()) {
          const double idle_for = std::chrono::duration<double>(Clock::now() - idle_since).count();
          if (closed_ || idle_for >= idle_s) {
            running_ = false;
            changed_.notify_all();
            return;
          }
          wait_ms = static_cast<int>((idle_s - idle_for) * 1000) + 1;
        }
      }
      done.clear();
      without_gil([&] { reactor_.wait(&done, wait_ms); });
      if (!done.empty()) {
        complete(&done);
        idle_since = Clock::now();
      }
      send_queued();
    }
  }

  // Waits (without the GIL) until the queue has room; false when `timeout_s`
  // (None: no bound) passed first. True at once after close().
  bool wait_room(std::optional<double> timeout_s) {
    bool room_now = true;
    without_gil([&] {  // the lock is let go before the GIL is taken back
      auto lock = locked();
      auto room = [this] { return closed_ || max_queued_ == 0 || queue_.size() < max_queued_; };
      if (!timeout_s) {
        changed_.wait(lock, room);
      } else {
        room_now = changed_.wait_for(lock, std::chrono::duration<double>(*timeout_s), room);
      }
    });
    return room_now;
  }

  // No more submissions; queued and in-flight requests still complete, and the
  // reactor then returns. With `wait`, waits (without the GIL) until they have.
  void close(bool wait) {
    {
      auto lock = locked();
      closed_ = true;
      changed_.notify_all();
    }
    reactor_.wake();
    if (!wait) return;
    without_gil([&] {
      auto lock = locked();
      changed_.wait(lock, [this] { return !running_ || (in_flight_ == 0 && queue_.empty()); });
      lock.unlock();
      reactor_.close_idle();
    });
  }

  // In a forked child: the parent's requests are not ours to complete; returns
  // their futures (to fail) and starts afresh (the reactor drops the parent's
  // sockets by itself).
  py::list after_fork() {
    std::unordered_map<std::uint64_t, std::unique_ptr<Item>> items;
    {
      auto lock = locked();
      items.swap(items_);
      queue_.clear();
      in_flight_ = 0;
      running_ = false;
    }
    py::list futures;
    for (auto& entry : items) futures.append(entry.second->future);
    return futures;
  }

  std::size_t in_flight() {
    auto lock = locked();
    return in_flight_;
  }
  std::size_t queued() {
    auto lock = locked();
    return queue_.size();
  }

 private:
  // A reactor on the client's server, buffer pool and limits.
  static Reactor reactor_for(const HttpClient& client) {
    return Reactor(client.endpoint(), client.buffers(), client.options().max_response_body_bytes,
                   client.options().max_idle_connections);
  }

  struct Item {
    py::object future;
    py::object plan_object;  // keeps plan alive
    PyInferPlan* plan = nullptr;
    py::object inputs;  // while queued: the request's memory
    std::string id;
    bool take_first_row = false;
    http::Request wire;  // while queued
    std::optional<PyInferPlan::LaneCheck> check;
  };

  // Locks mutex_; a forked child's first lock abandons the parent's items
  // unread if a parent thread was changing them (after_fork() takes the rest).
  std::unique_lock<fork::Mutex> locked() {
    return fork::lock(mutex_, [this](bool intact) {
      if (intact) return;
      new (&items_) std::unordered_map<std::uint64_t, std::unique_ptr<Item>>();
      new (&queue_) std::deque<Item*>();
      in_flight_ = 0;
      running_ = false;
    });
  }

  // GIL held: completes each item's future (result, or the error through
  // `fail(future, exception)`), then drops the items.
  void complete(std::vector<Reactor::Completion>* done) {
    std::vector<std::unique_ptr<Item>> items;
    items.reserve(done->size());
    {
      auto lock = locked();
      for (auto& completion : *done) {
        auto node = items_.find(completion.token);
        if (node == items_.end()) {
          items.emplace_back();  // abandoned at a fork
          continue;
        }
        items.push_back(std::move(node->second));
        items_.erase(node);
        --in_flight_;
      }
      changed_.notify_all();
    }
    for (std::size_t i = 0; i < done->size(); ++i) {
      Item* item = items[i].get();
      if (item == nullptr) continue;
      Reactor::Completion& completion = (*done)[i];
      py::object result;
      py::object error;
      try {
        if (completion.error) std::rethrow_exception(completion.error);
        check_infer_status(completion.response.head, completion.response.body);
        result = item->plan->finish(item->check->parsed, std::move(completion.response.body),
                                    item->take_first_row);
      } catch (...) {
        set_python_error();
        error = py::error_already_set().value();
      }
      if (!error && set_quietly(item->future, result)) {
        completion.response = Response{};
        continue;
      }
      PyObject* called = error ? PyObject_CallFunctionObjArgs(fail_.ptr(), item->future.ptr(), error.ptr(), nullptr)
                               : PyObject_CallMethodObjArgs(item->future.ptr(), set_result_.ptr(), result.ptr(), nullptr);
      if (called == nullptr) {
        PyErr_WriteUnraisable(item->future.ptr());
      } else {
        Py_DECREF(called);
      }
      completion.response = Response{};
    }
    // The items (their futures, plans and inputs) are released here, GIL held.
  }

  // A _LaneFuture nobody has waited on, asked about or added a callback to yet
  // has no Condition (tritonfast/futures.py): its result and state are set
  // directly, with nothing to notify; nothing can look at it in between (the
  // GIL is held throughout and no Python code runs). False: set_result() it.
  bool set_quietly(const py::object& future, const py::object& result) {
    PyObject* dict = PyObject_GetAttr(future.ptr(), dict_.ptr());
    if (dict == nullptr) {
      PyErr_Clear();
      return false;
    }
    auto held = py::reinterpret_steal<py::object>(dict);
    if (!PyDict_Check(dict) || PyDict_Contains(dict, condition_.ptr()) != 0) {
      PyErr_Clear();
      return false;
    }
    if (PyDict_SetItem(dict, result_.ptr(), result.ptr()) != 0 ||
        PyDict_SetItem(dict, state_.ptr(), finished_.ptr()) != 0) {
      throw py::error_already_set();
    }
    return true;
  }

  // Sends queued requests while slots are free (GIL held on entry).
  void send_queued() {
    for (;;) {
      Item* item = nullptr;
      {
        auto lock = locked();
        if (queue_.empty() || in_flight_ >= max_in_flight_) return;
        item = queue_.front();
        queue_.pop_front();
        ++in_flight_;
        changed_.notify_all();
      }
      send(item, item->wire);
    }
  }

  // Sends `item`'s request (GIL held on entry, released while sending); a
  // failure to send completes it at once.
  void send(Item* item, const http::Request& wire) {
    const auto token = reinterpret_cast<std::uint64_t>(item);
    std::exception_ptr error;
    without_gil([&] {
      try {
        reactor_.start(token, wire, item->plan->deadline(), &*item->check);
      } catch (...) {
        error = std::current_exception();
      }
    });
    if (error) {
      std::vector<Reactor::Completion> failed(1);
      failed[0].token = token;
      failed[0].error = error;
      complete(&failed);
    }
  }

  py::object client_object_;  // keeps the transport (endpoint, buffer pool) alive
  Reactor reactor_;
  const std::size_t max_in_flight_;
  const std::size_t max_queued_;
  const std::uint64_t max_input_bytes_;
  py::object fail_;
  py::object set_result_;
  py::object dict_, condition_, result_, state_, finished_;  // set_quietly's names

  fork::Mutex mutex_;  // guards the five below
  std::condition_variable_any changed_;
  std::unordered_map<std::uint64_t, std::unique_ptr<Item>> items_;
  std::deque<Item*> queue_;
  std::size_t in_flight_ = 0;
  bool running_ = false;
  bool closed_ = false;
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
  py::class_<PyInferEngine>(m, "InferEngine",
                            "FuturesModelClient's lane: InferPlan requests sent by the caller, "
                            "completed by one reactor thread (see csrc/core/reactor.hpp).")
      .def(py::init<py::object, std::size_t, std::size_t, std::uint64_t, py::object>(), py::arg("client"),
           py::arg("max_in_flight"), py::arg("max_queued"), py::arg("max_input_bytes"), py::arg("fail"))
      .def("submit", &PyInferEngine::submit, py::arg("plan"), py::arg("inputs"), py::arg("sample"),
           py::arg("future"),
           "0: not taken; 1: taken; 2: taken, start a thread calling run(); 3: the queue is full.")
      .def("run", &PyInferEngine::run, py::arg("idle_s"), "The reactor loop; returns once idle.")
      .def("wait_room", &PyInferEngine::wait_room, py::arg("timeout_s"),
           "Waits for room in the queue; False when the timeout passed first.")
      .def("close", &PyInferEngine::close, py::arg("wait"))
      .def("after_fork", &PyInferEngine::after_fork, "In a forked child: the parent's futures, to fail.")
      .def_property_readonly("in_flight", &PyInferEngine::in_flight)
      .def_property_readonly("queued", &PyInferEngine::queued);

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
