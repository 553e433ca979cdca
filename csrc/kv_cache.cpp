// tgan._C: key/value cache for differentiable token-by-token decoding (straight-through rollouts).
//
// Why: a cache grown with torch.cat hands attention a new [B, L, H, D] tensor at every step and
// autograd keeps each of them until the segment is back-propagated, so the memory of one segment
// grows with the square of its length. Here every layer owns one preallocated buffer for K and one
// for V, a step writes its entries in place, and attention receives a view of the valid window.
// Gradients of the views are summed into one preallocated accumulator per buffer; the write of a
// position hands its accumulated gradient to the K/V projection that produced it.
//
// benchmarks/bench_rollout.py measures the bytes a segment holds for backward with this cache and
// with torch.cat (benchmarks/RESULTS.md).
//
// Three layers, as the other ops:
//   1. ops `tgan::kv_write` and `tgan::kv_grad_take` (dispatcher-registered for CPU and CUDA,
//      ATen only, so the same source runs on either device; fake kernels in tgan/ops/kv_cache.py);
//   2. `AppendFunction`, a torch::autograd::Function: one node per append that writes K and V and
//      returns both window views;
//   3. `KVCache`, the class bound to Python (wrapped by tgan.ops.kv_cache.KVCache).
//
// Layout: buffers are head-major [B, H, C, D]. The window view handed to attention is
// buffer[:, :, start:end].transpose(1, 2), i.e. [B, L, H, D] in position order; its (B, H) dims
// merge into one batch dim of a batched matmul without a copy, so the eager attention saves the
// view itself for backward instead of a fresh [B*H, L, D] copy per step.
#include <torch/extension.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <tuple>
#include <vector>

namespace tgan {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// ---- 1. ops ------------------------------------------------------------------------------------

void check_buffers(const Tensor& kc, const Tensor& vc, const char* fn, const char* kn, const char* vn) {
  TORCH_CHECK_VALUE(kc.dim() == 4, fn, ": ", kn, " must be [B, H, capacity, D], got ", kc.sizes());
  TORCH_CHECK_VALUE(vc.sizes() == kc.sizes(), fn, ": ", vn, " must have ", kn, "'s shape ", kc.sizes(),
              ", got ", vc.sizes());
  TORCH_CHECK_TYPE(vc.scalar_type() == kc.scalar_type(), fn, ": ", vn, " has dtype ", vc.scalar_type(),
              ", ", kn, " has ", kc.scalar_type());
  TORCH_CHECK_VALUE(vc.device() == kc.device(), fn, ": ", vn, " is on ", vc.device(), ", ", kn, " is on ",
              kc.device());
}

// x: [B, n, H, D] entries for a buffer [B, H, C, D].
void check_entries(const Tensor& buf, const Tensor& x, const char* fn, const char* name) {
  TORCH_CHECK_VALUE(x.device() == buf.device(), fn, ": ", name, " is on ", x.device(),
              " but the cache is on ", buf.device());
  TORCH_CHECK_TYPE(x.scalar_type() == buf.scalar_type(), fn, ": ", name, " has dtype ", x.scalar_type(),
              " but the cache holds ", buf.scalar_type());
  TORCH_CHECK_VALUE(x.dim() == 4 && x.size(0) == buf.size(0) && x.size(2) == buf.size(1) &&
                  x.size(3) == buf.size(3),
              fn, ": ", name, " must be [B=", buf.size(0), ", n, H=", buf.size(1), ", D=", buf.size(3),
              "], got shape ", x.sizes());
}

void check_range(int64_t at, int64_t n, int64_t capacity, const char* fn, const char* what) {
  TORCH_CHECK(at >= 0 && n >= 0 && at + n <= capacity, fn, ": capacity exceeded: ", what, " ", n,
              " position(s) at ", at, " in a cache of capacity ", capacity);
}

// Writes k, v [B, n, H, D] at positions [pos, pos+n) of k_cache, v_cache [B, H, C, D].
void kv_write(const Tensor& k_cache, const Tensor& v_cache, const Tensor& k, const Tensor& v, int64_t pos) {
  check_buffers(k_cache, v_cache, "kv_write", "k_cache", "v_cache");
  check_entries(k_cache, k, "kv_write", "k");
  check_entries(k_cache, v, "kv_write", "v");
  TORCH_CHECK_VALUE(v.sizes() == k.sizes(), "kv_write: v must have k's shape ", k.sizes(), ", got ", v.sizes());
  const int64_t n = k.size(1);
  check_range(pos, n, k_cache.size(2), "kv_write", "writing");
  if (n == 0) return;
  k_cache.narrow(2, pos, n).copy_(k.transpose(1, 2));
  v_cache.narrow(2, pos, n).copy_(v.transpose(1, 2));
}

// Backward of one append: adds the gradients gk, gv [B, L, H, D] of the window [start, start+L)
// into the accumulators, then takes (copies out and zeroes) the finished gradient of the
// appended positions [pos, pos+n). Returns two [B, n, H, D] tensors.
std::tuple<Tensor, Tensor> kv_grad_take(const Tensor& gk_cache, const Tensor& gv_cache,
                                        const std::optional<Tensor>& gk, const std::optional<Tensor>& gv,
                                        int64_t start, int64_t pos, int64_t n) {
  check_buffers(gk_cache, gv_cache, "kv_grad_take", "gk_cache", "gv_cache");
  const int64_t C = gk_cache.size(2);
  const Tensor* grads[2] = {gk.has_value() ? &*gk : nullptr, gv.has_value() ? &*gv : nullptr};
  const Tensor* accs[2] = {&gk_cache, &gv_cache};
  const char* names[2] = {"gk", "gv"};
  check_range(pos, n, C, "kv_grad_take", "taking");
  Tensor out[2];
  for (int i = 0; i < 2; ++i) {
    if (grads[i] != nullptr && grads[i]->defined()) {
      check_entries(*accs[i], *grads[i], "kv_grad_take", names[i]);
      const int64_t L = grads[i]->size(1);
      check_range(start, L, C, "kv_grad_take", "accumulating");
      accs[i]->narrow(2, start, L).add_(grads[i]->transpose(1, 2));
    }
    auto slot = accs[i]->narrow(2, pos, n);
    out[i] = at::empty({gk_cache.size(0), n, gk_cache.size(1), gk_cache.size(3)}, gk_cache.options());
    out[i].copy_(slot.transpose(1, 2));
    slot.zero_();  // consumed: a second backward (retain_graph) starts from zero again
  }
  return {out[0], out[1]};
}

// ---- 2. autograd -------------------------------------------------------------------------------

// Buffers of one batch. Nodes hold it, so a graph that outlives a reset keeps its own buffers.
struct Store : torch::CustomClassHolder {
  std::vector<Tensor> k, v;    // [B, H, C, D] per layer
  std::vector<Tensor> gk, gv;  // gradient accumulators, allocated at the first backward
  std::vector<int64_t> epoch;  // per layer, bumped whenever positions are overwritten or moved
  int64_t capacity = 0;
  // Differentiable appends whose node has neither run backward nor been destroyed: while > 0 a
  // graph may still read these buffers, so they are neither moved nor reused.
  std::atomic<int64_t> pending{0};
  bool grad_dirty = false;  // an accumulator may hold non-zero entries

  void ensure_grad() {
    if (!gk.empty()) return;
    for (const auto& t : k) {
      gk.push_back(at::zeros_like(t));
      gv.push_back(at::zeros_like(t));
    }
  }
};

// What the backward of one append needs.
struct NodeInfo : torch::CustomClassHolder {
  c10::intrusive_ptr<Store> store;
  int64_t layer = 0, start = 0, pos = 0, n = 0, epoch = 0;
  bool settled = false;
  void settle() {
    if (!settled) {
      settled = true;
      store->pending.fetch_sub(1);
    }
  }
  ~NodeInfo() override { settle(); }
};

// A view of buffer positions [start, end) as [B, L, H, D] with its own version counter: later
// in-place writes land outside the window this view covers, so autograd must not see them as
// modifications of the saved view (the store's epochs guard the cases that do overwrite it).
Tensor window_view(const Tensor& buf, int64_t start, int64_t end) {
  return buf.narrow(2, start, end - start).transpose(1, 2).variable_data();
}

// Inputs k, v [B, n, H, D] and the previous append's token; outputs the K and V window views
// [B, L, H, D] and a new empty token. The token chain makes every append an ancestor of all later
// ones, so the backward of position p runs only after every later read has added its gradient.
struct AppendFunction : public torch::autograd::Function<AppendFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& k, const Tensor& v, const Tensor& token,
                               const c10::intrusive_ptr<Store>& store, int64_t layer, int64_t start,
                               int64_t pos) {
    (void)token;
    kv_write(store->k[layer], store->v[layer], k, v, pos);
    auto info = c10::make_intrusive<NodeInfo>();
    info->store = store;
    info->layer = layer;
    info->start = start;
    info->pos = pos;
    info->n = k.size(1);
    info->epoch = store->epoch[layer];
    store->pending.fetch_add(1);
    ctx->saved_data["info"] = c10::IValue::make_capsule(info);
    ctx->set_materialize_grads(false);  // unused views (e.g. the memory write's) cost nothing
    const int64_t end = pos + info->n;
    return {window_view(store->k[layer], start, end), window_view(store->v[layer], start, end),
            at::empty({0}, k.options())};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto it = ctx->saved_data.find("info");
    TORCH_CHECK(it != ctx->saved_data.end(), "KVCache: this graph's cache bookkeeping was already freed");
    auto info = c10::static_intrusive_pointer_cast<NodeInfo>(it->second.toCapsule());
    Store& s = *info->store;
    TORCH_CHECK(info->epoch == s.epoch[info->layer],
                "KVCache: backward through keys/values that were overwritten: the cache was reset "
                "or compacted after this graph was built; back-propagate (or drop) a segment's "
                "graph before resetting its cache");
    info->settle();
    s.ensure_grad();
    s.grad_dirty = true;
    auto opt = [](const Tensor& t) { return t.defined() ? std::optional<Tensor>(t) : std::nullopt; };
    auto [gk, gv] = kv_grad_take(s.gk[info->layer], s.gv[info->layer], opt(grads[0]), opt(grads[1]),
                                 info->start, info->pos, info->n);
    // One entry per forward argument: k, v, token, then the four non-tensor ones.
    return {gk, gv, Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

// ---- 3. the cache --------------------------------------------------------------------------------

class KVCache {
 public:
  KVCache(int64_t n_layer, int64_t batch, int64_t capacity, int64_t n_head, int64_t d_head,
          at::ScalarType dtype, at::Device device, bool grow)
      : n_layer_(n_layer), n_head_(n_head), d_head_(d_head), dtype_(dtype), device_(device), grow_(grow) {
    TORCH_CHECK_VALUE(n_layer > 0, "KVCache: n_layer must be > 0, got ", n_layer);
    TORCH_CHECK_VALUE(batch > 0, "KVCache: batch must be > 0, got ", batch);
    TORCH_CHECK_VALUE(capacity > 0, "KVCache: capacity must be > 0, got ", capacity);
    TORCH_CHECK_VALUE(n_head > 0 && d_head > 0, "KVCache: n_head and d_head must be > 0, got ", n_head, ", ", d_head);
    store_ = make_store(batch, capacity);
    clear_windows();
  }

  // k, v: [B, n, H, D]. window: keep at most this many earlier positions in view. Returns the K and
  // V views [B, L, H, D] of the window (earlier positions first), L <= window + n.
  std::tuple<Tensor, Tensor> append(int64_t layer, const Tensor& k, const Tensor& v,
                                    std::optional<int64_t> window) {
    check_layer(layer, "append");
    check_entries(store_->k[layer], k, "KVCache.append", "k");
    check_entries(store_->k[layer], v, "KVCache.append", "v");
    TORCH_CHECK_VALUE(v.sizes() == k.sizes(), "KVCache.append: v must have k's shape ", k.sizes(), ", got ",
                v.sizes());
    int64_t start = start_[layer];
    if (window.has_value()) {
      TORCH_CHECK_VALUE(*window >= 0, "KVCache.append: window must be >= 0, got ", *window);
      start = std::max(start, end_[layer] - *window);
    }
    const int64_t n = k.size(1);
    make_room(layer, start, n);  // commits the window start; leaves the cache as it was if it throws
    const int64_t pos = end_[layer];
    const Tensor& token = token_[layer];
    const bool track = at::GradMode::is_enabled() &&
                       (k.requires_grad() || v.requires_grad() || (token.defined() && token.requires_grad()));
    if (track) {
      // The chain starts from an empty tensor that needs no gradient (an undefined one cannot be
      // a Function input).
      auto out = AppendFunction::apply(k, v, token.defined() ? token : at::empty({0}, k.options()),
                                       store_, layer, start_[layer], pos);
      k_last_[layer] = out[0];
      v_last_[layer] = out[1];
      token_[layer] = out[2];
    } else {
      kv_write(store_->k[layer], store_->v[layer], k, v, pos);
      k_last_[layer] = window_view(store_->k[layer], start_[layer], pos + n);
      v_last_[layer] = window_view(store_->v[layer], start_[layer], pos + n);
    }
    end_[layer] = pos + n;
    return {k_last_[layer], v_last_[layer]};
  }

  // The views returned by the last append of `layer` ([B, 0, H, D] before any).
  Tensor keys(int64_t layer) const {
    check_layer(layer, "keys");
    return k_last_[layer].defined() ? k_last_[layer] : window_view(store_->k[layer], 0, 0);
  }
  Tensor values(int64_t layer) const {
    check_layer(layer, "values");
    return v_last_[layer].defined() ? v_last_[layer] : window_view(store_->v[layer], 0, 0);
  }
  int64_t length(int64_t layer) const {
    check_layer(layer, "length");
    return end_[layer] - start_[layer];
  }
  int64_t start(int64_t layer) const {
    check_layer(layer, "start");
    return start_[layer];
  }

  // Empties every layer for a new batch. The buffers are reused in place unless a graph built on
  // them has not been back-propagated yet (or the batch size or capacity changes): then fresh ones
  // are allocated and the old ones live on with that graph.
  void reset(std::optional<int64_t> batch, std::optional<int64_t> capacity) {
    const int64_t b = batch.value_or(this->batch());
    const int64_t c = capacity.value_or(store_->capacity);
    TORCH_CHECK_VALUE(b > 0, "KVCache.reset: batch must be > 0, got ", b);
    TORCH_CHECK_VALUE(c > 0, "KVCache.reset: capacity must be > 0, got ", c);
    clear_windows();  // drops this cache's references into the old graph first
    if (store_->pending.load() > 0 || b != this->batch() || c != store_->capacity) {
      store_ = make_store(b, c);
      return;
    }
    for (auto& e : store_->epoch) ++e;
    if (store_->grad_dirty) {
      for (auto& t : store_->gk) t.zero_();
      for (auto& t : store_->gv) t.zero_();
      store_->grad_dirty = false;
    }
  }

  int64_t capacity() const { return store_->capacity; }
  int64_t batch() const { return store_->k[0].size(0); }
  int64_t n_layer() const { return n_layer_; }
  int64_t n_head() const { return n_head_; }
  int64_t d_head() const { return d_head_; }
  at::ScalarType dtype() const { return dtype_; }
  at::Device device() const { return device_; }
  bool grow() const { return grow_; }
  int64_t pending() const { return store_->pending.load(); }
  // Storage of layer 0's key buffer: lets tests see whether a reset reused the buffers.
  int64_t buffer_id() const { return reinterpret_cast<int64_t>(store_->k[0].data_ptr()); }

 private:
  c10::intrusive_ptr<Store> make_store(int64_t batch, int64_t capacity) const {
    auto s = c10::make_intrusive<Store>();
    auto opts = at::TensorOptions().dtype(dtype_).device(device_);
    for (int64_t l = 0; l < n_layer_; ++l) {
      // Uninitialised: a position is always written before a view covers it.
      s->k.push_back(at::empty({batch, n_head_, capacity, d_head_}, opts));
      s->v.push_back(at::empty({batch, n_head_, capacity, d_head_}, opts));
    }
    s->epoch.assign(n_layer_, 0);
    s->capacity = capacity;
    return s;
  }

  void clear_windows() {
    start_.assign(n_layer_, 0);
    end_.assign(n_layer_, 0);
    token_.assign(n_layer_, Tensor());
    k_last_.assign(n_layer_, Tensor());
    v_last_.assign(n_layer_, Tensor());
  }

  void check_layer(int64_t layer, const char* fn) const {
    TORCH_CHECK_INDEX(layer >= 0 && layer < n_layer_, "KVCache.", fn, ": layer must be in [0, ", n_layer_,
                "), got ", layer);
  }

  // Makes positions [end, end+n) of `layer` writable: in place when they fit; else, when no graph
  // can read the buffers, moves the window to the front (amortised: with grow=True this happens only
  // when the window fills at most half the capacity, so a sliding window of W positions costs one
  // copy of W positions every >= C/2 steps); else grows (grow=True) or raises.
  void make_room(int64_t layer, int64_t start, int64_t n) {
    Store& s = *store_;
    const int64_t end = end_[layer], C = s.capacity;
    if (end + n <= C) {
      start_[layer] = start;
      return;
    }
    const int64_t keep = end - start;
    const bool movable = s.pending.load() == 0 && start > 0;
    if (movable && keep + n <= (grow_ ? C / 2 : C)) {
      compact(layer, start);
      return;
    }
    TORCH_CHECK(grow_, "KVCache.append: capacity exceeded: layer ", layer, " holds positions [", start,
                ", ", end, ") of a cache of capacity ", C, " and ", n, " more do not fit",
                (s.pending.load() > 0 ? " (a graph not yet back-propagated still reads them, so they cannot move)" : ""),
                "; create the cache with a larger capacity, pass a window, or use grow=True");
    grow_to(std::max(2 * C, end + n));
    start_[layer] = start;
  }

  void compact(int64_t layer, int64_t start) {
    Store& s = *store_;
    const int64_t keep = end_[layer] - start;
    for (Tensor* buf : {&s.k[layer], &s.v[layer]}) {
      auto src = buf->narrow(2, start, keep);
      if (start < keep) src = src.clone();  // overlapping ranges
      buf->narrow(2, 0, keep).copy_(src);
    }
    ++s.epoch[layer];
    start_[layer] = 0;
    end_[layer] = keep;
    token_[layer] = Tensor();  // the chain restarts: old nodes of this layer are settled
  }

  // Positions keep their index, so pending nodes stay valid: their saved views point into the old
  // buffers, which they keep alive, and their gradients are taken from the grown accumulators.
  void grow_to(int64_t capacity) {
    Store& s = *store_;
    const int64_t old = s.capacity;
    auto grown = [&](const Tensor& t, bool zero) {
      auto sizes = t.sizes().vec();
      sizes[2] = capacity;
      auto out = zero ? at::zeros(sizes, t.options()) : at::empty(sizes, t.options());
      out.narrow(2, 0, old).copy_(t);
      return out;
    };
    for (int64_t l = 0; l < n_layer_; ++l) {
      s.k[l] = grown(s.k[l], false);
      s.v[l] = grown(s.v[l], false);
      if (!s.gk.empty()) {
        s.gk[l] = grown(s.gk[l], true);
        s.gv[l] = grown(s.gv[l], true);
      }
    }
    s.capacity = capacity;
  }

  int64_t n_layer_, n_head_, d_head_;
  at::ScalarType dtype_;
  at::Device device_;
  bool grow_;
  c10::intrusive_ptr<Store> store_;
  std::vector<int64_t> start_, end_;
  std::vector<Tensor> token_, k_last_, v_last_;
};

}  // namespace
}  // namespace tgan

TORCH_LIBRARY_FRAGMENT(tgan, m) {
  m.set_python_module("tgan.ops.kv_cache");  // holds the fake (meta) kernels
  m.def("kv_write(Tensor(a!) k_cache, Tensor(b!) v_cache, Tensor k, Tensor v, int pos) -> ()");
  m.def("kv_grad_take(Tensor(a!) gk_cache, Tensor(b!) gv_cache, Tensor? gk, Tensor? gv, int start, "
        "int pos, int n) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(tgan, CPU, m) {
  m.impl("kv_write", &tgan::kv_write);
  m.impl("kv_grad_take", &tgan::kv_grad_take);
}

// ATen ops only: the same kernels serve CUDA tensors (the extension itself needs no CUDA sources).
TORCH_LIBRARY_IMPL(tgan, CUDA, m) {
  m.impl("kv_write", &tgan::kv_write);
  m.impl("kv_grad_take", &tgan::kv_grad_take);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace py = pybind11;
  using tgan::KVCache;
  m.doc() = "tgan C++ extension: the key/value cache of differentiable token-by-token decoding";
  py::class_<KVCache, std::shared_ptr<KVCache>>(m, "KVCache")
      .def(py::init<int64_t, int64_t, int64_t, int64_t, int64_t, at::ScalarType, at::Device, bool>(),
           py::arg("n_layer"), py::arg("batch"), py::arg("capacity"), py::arg("n_head"), py::arg("d_head"),
           py::arg("dtype"), py::arg("device"), py::arg("grow") = false)
      .def("append", &KVCache::append, py::arg("layer"), py::arg("k"), py::arg("v"),
           py::arg("window") = py::none())
      .def("keys", &KVCache::keys, py::arg("layer"))
      .def("values", &KVCache::values, py::arg("layer"))
      .def("length", &KVCache::length, py::arg("layer"))
      .def("start", &KVCache::start, py::arg("layer"))
      .def("reset", &KVCache::reset, py::arg("batch") = py::none(), py::arg("capacity") = py::none())
      .def_property_readonly("capacity", &KVCache::capacity)
      .def_property_readonly("batch", &KVCache::batch)
      .def_property_readonly("n_layer", &KVCache::n_layer)
      .def_property_readonly("n_head", &KVCache::n_head)
      .def_property_readonly("d_head", &KVCache::d_head)
      .def_property_readonly("dtype", &KVCache::dtype)
      .def_property_readonly("device", &KVCache::device)
      .def_property_readonly("grow", &KVCache::grow)
      .def_property_readonly("pending", &KVCache::pending)
      .def_property_readonly("buffer_id", &KVCache::buffer_id);
}
