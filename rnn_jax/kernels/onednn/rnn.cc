// oneDNN's LSTM and GRU primitives as XLA FFI handlers (the CPU's counterpart of the cuDNN
// calls in jax.experimental.rnn). Built and loaded by rnn_jax/kernels/onednn/build.py; the Python side,
// the layouts and the contract are in rnn_jax/kernels/onednn/__init__.py.
//
// One layer, one direction (left to right, or right to left with the attribute `reverse`),
// float32 or bfloat16 (the *Bf16 handlers of the LSTM and the GRU: x, h, y and the weights
// bf16; c, the bias and every gradient f32). Layouts, all as JAX hands them over:
//   x [B, T, D]   y, dy [B, T, H]   (oneDNN's "ntc": batch-major, no transpose)
//   h0, c0, h_n, c_n [B, H]         (oneDNN's "ldnc" with l = d = 1)
//   w_ih [D, 4H]  w_hh [H, 4H]      (oneDNN's "ldigo": [1, 1, D or H, 4, H], gates i, f, g, o)
//   b [4H]                          (oneDNN's "ldgo")
//   workspace [N] bytes             (opaque: what forward_training saves for the backward)
//
// Handlers:
//   RnnJaxOnednnLstmForward(x, h0, c0, w_ih, w_hh, b; reverse) -> (y, h_n, c_n, workspace)
//   RnnJaxOnednnLstmBackward(x, h0, c0, w_ih, w_hh, b, y, h_n, c_n, dy, dh_n, dc_n, workspace;
//                            reverse) -> (dx, dh0, dc0, dw_ih, dw_hh, db)
// and a plain C function, RnnJaxOnednnLstmWorkspaceBytes(T, B, D, H, reverse, ...), that the
// Python side calls at trace time to size the workspace output (and at load time as a probe).

#include <omp.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <string>
#include <utility>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

// Buffer types by rank (aliases, since a comma inside the handler macros splits arguments).
using F32R1 = ffi::Buffer<ffi::F32, 1>;
using F32R2 = ffi::Buffer<ffi::F32, 2>;
using F32R3 = ffi::Buffer<ffi::F32, 3>;
using Bytes = ffi::Buffer<ffi::U8, 1>;
using OutF32R1 = ffi::ResultBuffer<ffi::F32, 1>;
using OutF32R2 = ffi::ResultBuffer<ffi::F32, 2>;
using OutF32R3 = ffi::ResultBuffer<ffi::F32, 3>;
using OutBytes = ffi::ResultBuffer<ffi::U8, 1>;
using BF16R2 = ffi::Buffer<ffi::BF16, 2>;
using BF16R3 = ffi::Buffer<ffi::BF16, 3>;

namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// OpenMP threads for oneDNN's parallel regions (0: OpenMP's own default). OpenMP keeps the
// thread count per calling thread, and XLA calls a handler from any of its threads, so each
// handler sets it before its primitives run (ApplyThreads).
std::atomic<int> g_threads{0};

void ApplyThreads() {
  int n = g_threads.load();
  if (n > 0) omp_set_num_threads(n);
}

dnnl::engine& CpuEngine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// The user-side memory descriptors of one call: sizes T, B, D, H, and the direction.
struct Shapes {
  int64_t T, B, D, H;
  bool reverse = false;
  int64_t G = 4;   // gates: 4 (LSTM: i, f, c~, o), 3 (GRU: u, r, o)
  int64_t BG = 4;  // bias gates: G, or 4 for the linear-before-reset GRU (u, r, o, u')
  dt src = dt::f32;  // x, h, y and the weights: f32, or bf16 (the *Bf16 handlers)

  dnnl::rnn_direction direction() const {
    return reverse ? dnnl::rnn_direction::unidirectional_right2left
                   : dnnl::rnn_direction::unidirectional_left2right;
  }

  // Logical dims are always (t, n, c); the tag ntc lays them out batch-major.
  dnnl::memory::desc layer(int64_t C) const { return {{T, B, C}, src, tag::ntc}; }
  dnnl::memory::desc state() const { return {{1, 1, B, H}, src, tag::ldnc}; }
  dnnl::memory::desc weights(int64_t C) const { return {{1, 1, C, G, H}, src, tag::ldigo}; }
  dnnl::memory::desc weights_any(int64_t C) const { return {{1, 1, C, G, H}, src, tag::any}; }
  // The bias, the LSTM's cell state and every gradient are float32 whatever `src` is: oneDNN's
  // bf16 RNN keeps them so (its backward primitive takes no bf16 diff).
  dnnl::memory::desc bias() const { return {{1, 1, BG, H}, dt::f32, tag::ldgo}; }
  dnnl::memory::desc state_f32() const { return {{1, 1, B, H}, dt::f32, tag::ldnc}; }
  dnnl::memory::desc diff_layer(int64_t C) const { return {{T, B, C}, dt::f32, tag::ntc}; }
  dnnl::memory::desc diff_weights(int64_t C) const {
    return {{1, 1, C, G, H}, dt::f32, tag::ldigo};
  }
  // bf16 weights in oneDNN's own layout (`any`): only then does it pick its brgemm kernels
  // (with the user's ldigo it falls back to its reference RNN); f32 keeps ldigo, no reorder.
  dnnl::memory::desc forward_weights(int64_t C) const {
    return src == dt::bf16 ? weights_any(C) : weights(C);
  }
};

dnnl::lstm_forward::primitive_desc ForwardDesc(const Shapes& s) {
  return dnnl::lstm_forward::primitive_desc(
      CpuEngine(), dnnl::prop_kind::forward_training, s.direction(), s.layer(s.D), s.state(),
      s.state_f32(), s.forward_weights(s.D), s.forward_weights(s.H), s.bias(), s.layer(s.H),
      s.state(), s.state_f32());
}

dnnl::lstm_backward::primitive_desc BackwardDesc(const Shapes& s,
                                                 const dnnl::lstm_forward::primitive_desc& fwd) {
  // Weights as the backward primitive prefers them (oneDNN transposes them to ldgoi for the
  // backward GEMMs); gradients in the user's ldigo.
  return dnnl::lstm_backward::primitive_desc(
      CpuEngine(), dnnl::prop_kind::backward, s.direction(), s.layer(s.D), s.state(),
      s.state_f32(), s.weights_any(s.D), s.weights_any(s.H), s.bias(), s.layer(s.H), s.state(),
      s.state_f32(), s.diff_layer(s.D), s.state_f32(), s.state_f32(), s.diff_weights(s.D),
      s.diff_weights(s.H), s.bias(), s.diff_layer(s.H), s.state_f32(), s.state_f32(), fwd);
}

dnnl::memory Wrap(const dnnl::memory::desc& md, const void* data) {
  return dnnl::memory(md, CpuEngine(), const_cast<void*>(data));
}

// InvalidArgument unless every buffer has the shape x [B, T, D] and h0 [B, H] imply (the Python
// side checks first; this keeps a wrong call from reading past a buffer).
ffi::Error CheckShape(const char* name, ffi::Span<const int64_t> got,
                      std::initializer_list<int64_t> want) {
  bool same = got.size() == want.size();
  for (size_t i = 0; same && i < want.size(); ++i) same = got[i] == want.begin()[i];
  if (same) return ffi::Error::Success();
  std::string message = std::string("oneDNN LSTM: ") + name + " has shape [";
  for (size_t i = 0; i < got.size(); ++i) message += (i ? ", " : "") + std::to_string(got[i]);
  message += "], expected [";
  for (size_t i = 0; i < want.size(); ++i) {
    message += (i ? ", " : "") + std::to_string(want.begin()[i]);
  }
  return ffi::Error::InvalidArgument(message + "]");
}

#define RETURN_IF_ERROR(expr)           \
  do {                                  \
    ffi::Error error_ = (expr);         \
    if (error_.failure()) return error_; \
  } while (0)

// `user` in the layout `md` wants: itself when it already is, else a reordered copy.
dnnl::memory AsLayout(dnnl::memory user, const dnnl::memory::desc& md, dnnl::stream& s) {
  if (user.get_desc() == md) return user;
  dnnl::memory out(md, CpuEngine());
  dnnl::reorder(user, out).execute(s, user, out);
  return out;
}

// InvalidArgument unless the workspace buffer holds exactly what the primitive `pd` wants.
template <class PrimitiveDesc>
ffi::Error CheckWorkspace(const char* what, const PrimitiveDesc& pd, size_t have) {
  size_t want = pd.workspace_desc().get_size();
  if (want == have) return ffi::Error::Success();
  return ffi::Error::InvalidArgument(std::string(what) + ": workspace of " +
                                     std::to_string(have) + " bytes, the primitive wants " +
                                     std::to_string(want));
}

// The user's weights (layout ldigo) in the layouts the primitive `pd` chose (the backward
// primitive's own; the bf16 forward's own).
template <class PrimitiveDesc, class Weights>
std::pair<dnnl::memory, dnnl::memory> PrimitiveWeights(const PrimitiveDesc& pd, const Shapes& s,
                                                       Weights w_ih, Weights w_hh,
                                                       dnnl::stream& stream) {
  return {AsLayout(Wrap(s.weights(s.D), w_ih.untyped_data()), pd.weights_layer_desc(), stream),
          AsLayout(Wrap(s.weights(s.H), w_hh.untyped_data()), pd.weights_iter_desc(), stream)};
}

// oneDNN adds the weight gradients to what the diff_weights buffers hold: zero them first.
template <class... Results>
void ZeroGradients(Results&... results) {
  (std::memset(results->untyped_data(), 0, results->size_bytes()), ...);
}

// Copies `e`'s message into `error` (at most `error_size` bytes, NUL-terminated).
void CopyError(const std::exception& e, char* error, int64_t error_size) {
  if (error == nullptr || error_size <= 0) return;
  std::strncpy(error, e.what(), error_size - 1);
  error[error_size - 1] = '\0';
}

constexpr dt SrcType(ffi::DataType X) { return X == ffi::DataType::BF16 ? dt::bf16 : dt::f32; }

// X: F32, or BF16 (x, h0, the weights, y and h_n in bfloat16; c0, c_n and b in float32).
template <ffi::DataType X>
ffi::Error LstmForwardImpl(ffi::Buffer<X, 3> x, ffi::Buffer<X, 2> h0, F32R2 c0,
                           ffi::Buffer<X, 2> w_ih, ffi::Buffer<X, 2> w_hh, F32R1 b, bool reverse,
                           ffi::ResultBuffer<X, 3> y, ffi::ResultBuffer<X, 2> h_n, OutF32R2 c_n,
                           OutBytes workspace) {
  ApplyThreads();
  try {
    auto xd = x.dimensions();
    Shapes s{xd[1], xd[0], xd[2], h0.dimensions()[1], reverse};
    s.src = SrcType(X);
    RETURN_IF_ERROR(CheckShape("h0", h0.dimensions(), {s.B, s.H}));
    RETURN_IF_ERROR(CheckShape("c0", c0.dimensions(), {s.B, s.H}));
    RETURN_IF_ERROR(CheckShape("w_ih", w_ih.dimensions(), {s.D, 4 * s.H}));
    RETURN_IF_ERROR(CheckShape("w_hh", w_hh.dimensions(), {s.H, 4 * s.H}));
    RETURN_IF_ERROR(CheckShape("b", b.dimensions(), {4 * s.H}));
    RETURN_IF_ERROR(CheckShape("y", y->dimensions(), {s.B, s.T, s.H}));
    RETURN_IF_ERROR(CheckShape("h_n", h_n->dimensions(), {s.B, s.H}));
    RETURN_IF_ERROR(CheckShape("c_n", c_n->dimensions(), {s.B, s.H}));
    auto pd = ForwardDesc(s);
    RETURN_IF_ERROR(CheckWorkspace("oneDNN LSTM forward", pd, workspace->element_count()));
    dnnl::stream stream(CpuEngine());
    auto [w_layer, w_iter] = PrimitiveWeights(pd, s, w_ih, w_hh, stream);
    dnnl::lstm_forward(pd).execute(
        stream, {{DNNL_ARG_SRC_LAYER, Wrap(s.layer(s.D), x.untyped_data())},
                 {DNNL_ARG_SRC_ITER, Wrap(s.state(), h0.untyped_data())},
                 {DNNL_ARG_SRC_ITER_C, Wrap(s.state_f32(), c0.untyped_data())},
                 {DNNL_ARG_WEIGHTS_LAYER, w_layer},
                 {DNNL_ARG_WEIGHTS_ITER, w_iter},
                 {DNNL_ARG_BIAS, Wrap(s.bias(), b.untyped_data())},
                 {DNNL_ARG_DST_LAYER, Wrap(s.layer(s.H), y->untyped_data())},
                 {DNNL_ARG_DST_ITER, Wrap(s.state(), h_n->untyped_data())},
                 {DNNL_ARG_DST_ITER_C, Wrap(s.state_f32(), c_n->untyped_data())},
                 {DNNL_ARG_WORKSPACE, Wrap(pd.workspace_desc(), workspace->untyped_data())}});
    stream.wait();
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("oneDNN LSTM forward: ") + e.what());
  }
  return ffi::Error::Success();
}

template <ffi::DataType X>
ffi::Error LstmBackwardImpl(ffi::Buffer<X, 3> x, ffi::Buffer<X, 2> h0, F32R2 c0,
                            ffi::Buffer<X, 2> w_ih, ffi::Buffer<X, 2> w_hh, F32R1 b,
                            ffi::Buffer<X, 3> y, ffi::Buffer<X, 2> h_n, F32R2 c_n, F32R3 dy,
                            F32R2 dh_n, F32R2 dc_n, Bytes workspace, bool reverse, OutF32R3 dx,
                            OutF32R2 dh0, OutF32R2 dc0, OutF32R2 dw_ih, OutF32R2 dw_hh,
                            OutF32R1 db) {
  ApplyThreads();
  try {
    auto xd = x.dimensions();
    Shapes s{xd[1], xd[0], xd[2], h0.dimensions()[1], reverse};
    s.src = SrcType(X);
    for (auto [name, dims] : {std::pair{"h0", h0.dimensions()}, {"c0", c0.dimensions()},
                              {"h_n", h_n.dimensions()}, {"c_n", c_n.dimensions()},
                              {"dh_n", dh_n.dimensions()}, {"dc_n", dc_n.dimensions()},
                              {"dh0", dh0->dimensions()}, {"dc0", dc0->dimensions()}}) {
      RETURN_IF_ERROR(CheckShape(name, dims, {s.B, s.H}));
    }
    for (auto [name, dims] : {std::pair{"y", y.dimensions()}, {"dy", dy.dimensions()}}) {
      RETURN_IF_ERROR(CheckShape(name, dims, {s.B, s.T, s.H}));
    }
    RETURN_IF_ERROR(CheckShape("dx", dx->dimensions(), {s.B, s.T, s.D}));
    RETURN_IF_ERROR(CheckShape("w_ih", w_ih.dimensions(), {s.D, 4 * s.H}));
    RETURN_IF_ERROR(CheckShape("dw_ih", dw_ih->dimensions(), {s.D, 4 * s.H}));
    RETURN_IF_ERROR(CheckShape("w_hh", w_hh.dimensions(), {s.H, 4 * s.H}));
    RETURN_IF_ERROR(CheckShape("dw_hh", dw_hh->dimensions(), {s.H, 4 * s.H}));
    RETURN_IF_ERROR(CheckShape("b", b.dimensions(), {4 * s.H}));
    RETURN_IF_ERROR(CheckShape("db", db->dimensions(), {4 * s.H}));
    auto fwd = ForwardDesc(s);
    auto pd = BackwardDesc(s, fwd);
    RETURN_IF_ERROR(CheckWorkspace("oneDNN LSTM backward", pd, workspace.element_count()));
    dnnl::stream stream(CpuEngine());
    auto [w_layer, w_iter] = PrimitiveWeights(pd, s, w_ih, w_hh, stream);
    ZeroGradients(dw_ih, dw_hh, db);
    dnnl::lstm_backward(pd).execute(
        stream, {{DNNL_ARG_SRC_LAYER, Wrap(s.layer(s.D), x.untyped_data())},
                 {DNNL_ARG_SRC_ITER, Wrap(s.state(), h0.untyped_data())},
                 {DNNL_ARG_SRC_ITER_C, Wrap(s.state_f32(), c0.untyped_data())},
                 {DNNL_ARG_WEIGHTS_LAYER, w_layer},
                 {DNNL_ARG_WEIGHTS_ITER, w_iter},
                 {DNNL_ARG_BIAS, Wrap(s.bias(), b.untyped_data())},
                 {DNNL_ARG_DST_LAYER, Wrap(s.layer(s.H), y.untyped_data())},
                 {DNNL_ARG_DST_ITER, Wrap(s.state(), h_n.untyped_data())},
                 {DNNL_ARG_DST_ITER_C, Wrap(s.state_f32(), c_n.untyped_data())},
                 {DNNL_ARG_DIFF_DST_LAYER, Wrap(s.diff_layer(s.H), dy.untyped_data())},
                 {DNNL_ARG_DIFF_DST_ITER, Wrap(s.state_f32(), dh_n.untyped_data())},
                 {DNNL_ARG_DIFF_DST_ITER_C, Wrap(s.state_f32(), dc_n.untyped_data())},
                 {DNNL_ARG_WORKSPACE, Wrap(pd.workspace_desc(), workspace.untyped_data())},
                 {DNNL_ARG_DIFF_SRC_LAYER, Wrap(s.diff_layer(s.D), dx->untyped_data())},
                 {DNNL_ARG_DIFF_SRC_ITER, Wrap(s.state_f32(), dh0->untyped_data())},
                 {DNNL_ARG_DIFF_SRC_ITER_C, Wrap(s.state_f32(), dc0->untyped_data())},
                 {DNNL_ARG_DIFF_WEIGHTS_LAYER, Wrap(s.diff_weights(s.D), dw_ih->untyped_data())},
                 {DNNL_ARG_DIFF_WEIGHTS_ITER, Wrap(s.diff_weights(s.H), dw_hh->untyped_data())},
                 {DNNL_ARG_DIFF_BIAS, Wrap(s.bias(), db->untyped_data())}});
    stream.wait();
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("oneDNN LSTM backward: ") + e.what());
  }
  return ffi::Error::Success();
}


// ------------------------------------------------------------------------------------ GRU
//
// Cho et al.'s GRU (oneDNN's vanilla_gru: r scales h before the recurrent matmul) or the
// linear-before-reset form (oneDNN's lbr_gru, cuDNN's and PyTorch's: r scales U h + b_u').
// Gate order u, r, o (the Python side permutes cells.gru's r, z, n into it); the lbr bias has
// a fourth gate, u' (cells.gru's b_hn). Layouts as the LSTM's, without the cell state:
//   x [B, T, D]  y, dy [B, T, H]  h0, h_n [B, H]  w_ih [D, 3H]  w_hh [H, 3H]  b [3H] or [4H]
// Handlers:
//   RnnJaxOnednnGruForward(x, h0, w_ih, w_hh, b; reverse, linear_before_reset)
//       -> (y, h_n, workspace)
//   RnnJaxOnednnGruBackward(x, h0, w_ih, w_hh, b, y, h_n, dy, dh_n, workspace; reverse,
//                           linear_before_reset) -> (dx, dh0, dw_ih, dw_hh, db)

Shapes GruShapes(int64_t T, int64_t B, int64_t D, int64_t H, bool reverse, bool lbr) {
  return Shapes{T, B, D, H, reverse, 3, lbr ? 4 : 3};
}

template <class Fwd>
typename Fwd::primitive_desc GruForwardDesc(const Shapes& s) {
  return typename Fwd::primitive_desc(
      CpuEngine(), dnnl::prop_kind::forward_training, s.direction(), s.layer(s.D), s.state(),
      s.forward_weights(s.D), s.forward_weights(s.H), s.bias(), s.layer(s.H), s.state());
}

template <class Fwd, class Bwd>
typename Bwd::primitive_desc GruBackwardDesc(const Shapes& s,
                                             const typename Fwd::primitive_desc& fwd) {
  return typename Bwd::primitive_desc(
      CpuEngine(), dnnl::prop_kind::backward, s.direction(), s.layer(s.D), s.state(),
      s.weights_any(s.D), s.weights_any(s.H), s.bias(), s.layer(s.H), s.state(),
      s.diff_layer(s.D), s.state_f32(), s.diff_weights(s.D), s.diff_weights(s.H), s.bias(),
      s.diff_layer(s.H), s.state_f32(), fwd);
}

int64_t GruWorkspaceSize(const Shapes& s, bool lbr) {
  return static_cast<int64_t>(
      lbr ? GruForwardDesc<dnnl::lbr_gru_forward>(s).workspace_desc().get_size()
          : GruForwardDesc<dnnl::gru_forward>(s).workspace_desc().get_size());
}

ffi::Error CheckGruShapes(const Shapes& s, ffi::Span<const int64_t> h0,
                          ffi::Span<const int64_t> w_ih, ffi::Span<const int64_t> w_hh,
                          ffi::Span<const int64_t> b) {
  RETURN_IF_ERROR(CheckShape("h0", h0, {s.B, s.H}));
  RETURN_IF_ERROR(CheckShape("w_ih", w_ih, {s.D, 3 * s.H}));
  RETURN_IF_ERROR(CheckShape("w_hh", w_hh, {s.H, 3 * s.H}));
  return CheckShape("b", b, {s.BG * s.H});
}

template <class Fwd, ffi::DataType X>
ffi::Error GruForwardRun(const Shapes& s, ffi::Buffer<X, 3> x, ffi::Buffer<X, 2> h0,
                         ffi::Buffer<X, 2> w_ih, ffi::Buffer<X, 2> w_hh, F32R1 b,
                         ffi::ResultBuffer<X, 3> y, ffi::ResultBuffer<X, 2> h_n,
                         OutBytes workspace) {
  auto pd = GruForwardDesc<Fwd>(s);
  RETURN_IF_ERROR(CheckWorkspace("oneDNN GRU forward", pd, workspace->element_count()));
  dnnl::stream stream(CpuEngine());
  auto [w_layer, w_iter] = PrimitiveWeights(pd, s, w_ih, w_hh, stream);
  Fwd(pd).execute(stream,
                  {{DNNL_ARG_SRC_LAYER, Wrap(s.layer(s.D), x.untyped_data())},
                   {DNNL_ARG_SRC_ITER, Wrap(s.state(), h0.untyped_data())},
                   {DNNL_ARG_WEIGHTS_LAYER, w_layer},
                   {DNNL_ARG_WEIGHTS_ITER, w_iter},
                   {DNNL_ARG_BIAS, Wrap(s.bias(), b.untyped_data())},
                   {DNNL_ARG_DST_LAYER, Wrap(s.layer(s.H), y->untyped_data())},
                   {DNNL_ARG_DST_ITER, Wrap(s.state(), h_n->untyped_data())},
                   {DNNL_ARG_WORKSPACE, Wrap(pd.workspace_desc(), workspace->untyped_data())}});
  stream.wait();
  return ffi::Error::Success();
}

template <ffi::DataType X>
ffi::Error GruForwardImpl(ffi::Buffer<X, 3> x, ffi::Buffer<X, 2> h0, ffi::Buffer<X, 2> w_ih,
                          ffi::Buffer<X, 2> w_hh, F32R1 b, bool reverse, bool linear_before_reset,
                          ffi::ResultBuffer<X, 3> y, ffi::ResultBuffer<X, 2> h_n,
                          OutBytes workspace) {
  ApplyThreads();
  try {
    auto xd = x.dimensions();
    Shapes s = GruShapes(xd[1], xd[0], xd[2], h0.dimensions()[1], reverse, linear_before_reset);
    s.src = SrcType(X);
    RETURN_IF_ERROR(CheckGruShapes(s, h0.dimensions(), w_ih.dimensions(), w_hh.dimensions(),
                                   b.dimensions()));
    RETURN_IF_ERROR(CheckShape("y", y->dimensions(), {s.B, s.T, s.H}));
    RETURN_IF_ERROR(CheckShape("h_n", h_n->dimensions(), {s.B, s.H}));
    return linear_before_reset
               ? GruForwardRun<dnnl::lbr_gru_forward>(s, x, h0, w_ih, w_hh, b, y, h_n, workspace)
               : GruForwardRun<dnnl::gru_forward>(s, x, h0, w_ih, w_hh, b, y, h_n, workspace);
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("oneDNN GRU forward: ") + e.what());
  }
  return ffi::Error::Success();
}

template <class Fwd, class Bwd, ffi::DataType X>
ffi::Error GruBackwardRun(const Shapes& s, ffi::Buffer<X, 3> x, ffi::Buffer<X, 2> h0,
                          ffi::Buffer<X, 2> w_ih, ffi::Buffer<X, 2> w_hh, F32R1 b,
                          ffi::Buffer<X, 3> y, ffi::Buffer<X, 2> h_n, F32R3 dy, F32R2 dh_n,
                          Bytes workspace,
                          OutF32R3 dx, OutF32R2 dh0, OutF32R2 dw_ih, OutF32R2 dw_hh,
                          OutF32R1 db) {
  auto fwd = GruForwardDesc<Fwd>(s);
  auto pd = GruBackwardDesc<Fwd, Bwd>(s, fwd);
  RETURN_IF_ERROR(CheckWorkspace("oneDNN GRU backward", pd, workspace.element_count()));
  dnnl::stream stream(CpuEngine());
  auto [w_layer, w_iter] = PrimitiveWeights(pd, s, w_ih, w_hh, stream);
  ZeroGradients(dw_ih, dw_hh, db);
  Bwd(pd).execute(
      stream, {{DNNL_ARG_SRC_LAYER, Wrap(s.layer(s.D), x.untyped_data())},
               {DNNL_ARG_SRC_ITER, Wrap(s.state(), h0.untyped_data())},
               {DNNL_ARG_WEIGHTS_LAYER, w_layer},
               {DNNL_ARG_WEIGHTS_ITER, w_iter},
               {DNNL_ARG_BIAS, Wrap(s.bias(), b.untyped_data())},
               {DNNL_ARG_DST_LAYER, Wrap(s.layer(s.H), y.untyped_data())},
               {DNNL_ARG_DST_ITER, Wrap(s.state(), h_n.untyped_data())},
               {DNNL_ARG_DIFF_DST_LAYER, Wrap(s.diff_layer(s.H), dy.untyped_data())},
               {DNNL_ARG_DIFF_DST_ITER, Wrap(s.state_f32(), dh_n.untyped_data())},
               {DNNL_ARG_WORKSPACE, Wrap(pd.workspace_desc(), workspace.untyped_data())},
               {DNNL_ARG_DIFF_SRC_LAYER, Wrap(s.diff_layer(s.D), dx->untyped_data())},
               {DNNL_ARG_DIFF_SRC_ITER, Wrap(s.state_f32(), dh0->untyped_data())},
               {DNNL_ARG_DIFF_WEIGHTS_LAYER, Wrap(s.diff_weights(s.D), dw_ih->untyped_data())},
               {DNNL_ARG_DIFF_WEIGHTS_ITER, Wrap(s.diff_weights(s.H), dw_hh->untyped_data())},
               {DNNL_ARG_DIFF_BIAS, Wrap(s.bias(), db->untyped_data())}});
  stream.wait();
  return ffi::Error::Success();
}

template <ffi::DataType X>
ffi::Error GruBackwardImpl(ffi::Buffer<X, 3> x, ffi::Buffer<X, 2> h0, ffi::Buffer<X, 2> w_ih,
                           ffi::Buffer<X, 2> w_hh, F32R1 b, ffi::Buffer<X, 3> y,
                           ffi::Buffer<X, 2> h_n, F32R3 dy, F32R2 dh_n, Bytes workspace,
                           bool reverse, bool linear_before_reset, OutF32R3 dx, OutF32R2 dh0,
                           OutF32R2 dw_ih, OutF32R2 dw_hh, OutF32R1 db) {
  ApplyThreads();
  try {
    auto xd = x.dimensions();
    Shapes s = GruShapes(xd[1], xd[0], xd[2], h0.dimensions()[1], reverse, linear_before_reset);
    s.src = SrcType(X);
    RETURN_IF_ERROR(CheckGruShapes(s, h0.dimensions(), w_ih.dimensions(), w_hh.dimensions(),
                                   b.dimensions()));
    for (auto [name, dims] : {std::pair{"h_n", h_n.dimensions()}, {"dh_n", dh_n.dimensions()},
                              {"dh0", dh0->dimensions()}}) {
      RETURN_IF_ERROR(CheckShape(name, dims, {s.B, s.H}));
    }
    for (auto [name, dims] : {std::pair{"y", y.dimensions()}, {"dy", dy.dimensions()}}) {
      RETURN_IF_ERROR(CheckShape(name, dims, {s.B, s.T, s.H}));
    }
    RETURN_IF_ERROR(CheckShape("dx", dx->dimensions(), {s.B, s.T, s.D}));
    RETURN_IF_ERROR(CheckShape("dw_ih", dw_ih->dimensions(), {s.D, 3 * s.H}));
    RETURN_IF_ERROR(CheckShape("dw_hh", dw_hh->dimensions(), {s.H, 3 * s.H}));
    RETURN_IF_ERROR(CheckShape("db", db->dimensions(), {s.BG * s.H}));
    return linear_before_reset
               ? GruBackwardRun<dnnl::lbr_gru_forward, dnnl::lbr_gru_backward>(
                     s, x, h0, w_ih, w_hh, b, y, h_n, dy, dh_n, workspace, dx, dh0, dw_ih,
                     dw_hh, db)
               : GruBackwardRun<dnnl::gru_forward, dnnl::gru_backward>(
                     s, x, h0, w_ih, w_hh, b, y, h_n, dy, dh_n, workspace, dx, dh0, dw_ih,
                     dw_hh, db);
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("oneDNN GRU backward: ") + e.what());
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(RnnJaxOnednnLstmForward, LstmForwardImpl<ffi::F32>,
                              ffi::Ffi::Bind()
                                  .Arg<F32R3>()  // x [B, T, D]
                                  .Arg<F32R2>()  // h0 [B, H]
                                  .Arg<F32R2>()  // c0 [B, H]
                                  .Arg<F32R2>()  // w_ih [D, 4H]
                                  .Arg<F32R2>()  // w_hh [H, 4H]
                                  .Arg<F32R1>()  // b [4H]
                                  .Attr<bool>("reverse")
                                  .Ret<F32R3>()  // y [B, T, H]
                                  .Ret<F32R2>()  // h_n [B, H]
                                  .Ret<F32R2>()  // c_n [B, H]
                                  .Ret<Bytes>());  // workspace

XLA_FFI_DEFINE_HANDLER_SYMBOL(RnnJaxOnednnLstmBackward, LstmBackwardImpl<ffi::F32>,
                              ffi::Ffi::Bind()
                                  .Arg<F32R3>()  // x [B, T, D]
                                  .Arg<F32R2>()  // h0 [B, H]
                                  .Arg<F32R2>()  // c0 [B, H]
                                  .Arg<F32R2>()  // w_ih [D, 4H]
                                  .Arg<F32R2>()  // w_hh [H, 4H]
                                  .Arg<F32R1>()  // b [4H]
                                  .Arg<F32R3>()  // y [B, T, H]
                                  .Arg<F32R2>()  // h_n [B, H]
                                  .Arg<F32R2>()  // c_n [B, H]
                                  .Arg<F32R3>()  // dy [B, T, H]
                                  .Arg<F32R2>()  // dh_n [B, H]
                                  .Arg<F32R2>()  // dc_n [B, H]
                                  .Arg<Bytes>()   // workspace
                                  .Attr<bool>("reverse")
                                  .Ret<F32R3>()  // dx [B, T, D]
                                  .Ret<F32R2>()  // dh0 [B, H]
                                  .Ret<F32R2>()  // dc0 [B, H]
                                  .Ret<F32R2>()  // dw_ih [D, 4H]
                                  .Ret<F32R2>()  // dw_hh [H, 4H]
                                  .Ret<F32R1>());  // db [4H]

// The same in bfloat16: x, h0, the weights, y and h_n bf16; c, the bias and the gradients f32.
XLA_FFI_DEFINE_HANDLER_SYMBOL(RnnJaxOnednnLstmForwardBf16, LstmForwardImpl<ffi::BF16>,
                              ffi::Ffi::Bind()
                                  .Arg<BF16R3>()  // x [B, T, D]
                                  .Arg<BF16R2>()  // h0 [B, H]
                                  .Arg<F32R2>()   // c0 [B, H]
                                  .Arg<BF16R2>()  // w_ih [D, 4H]
                                  .Arg<BF16R2>()  // w_hh [H, 4H]
                                  .Arg<F32R1>()   // b [4H]
                                  .Attr<bool>("reverse")
                                  .Ret<BF16R3>()  // y [B, T, H]
                                  .Ret<BF16R2>()  // h_n [B, H]
                                  .Ret<F32R2>()   // c_n [B, H]
                                  .Ret<Bytes>());  // workspace

XLA_FFI_DEFINE_HANDLER_SYMBOL(RnnJaxOnednnLstmBackwardBf16, LstmBackwardImpl<ffi::BF16>,
                              ffi::Ffi::Bind()
                                  .Arg<BF16R3>()  // x [B, T, D]
                                  .Arg<BF16R2>()  // h0 [B, H]
                                  .Arg<F32R2>()   // c0 [B, H]
                                  .Arg<BF16R2>()  // w_ih [D, 4H]
                                  .Arg<BF16R2>()  // w_hh [H, 4H]
                                  .Arg<F32R1>()   // b [4H]
                                  .Arg<BF16R3>()  // y [B, T, H]
                                  .Arg<BF16R2>()  // h_n [B, H]
                                  .Arg<F32R2>()   // c_n [B, H]
                                  .Arg<F32R3>()   // dy [B, T, H]
                                  .Arg<F32R2>()   // dh_n [B, H]
                                  .Arg<F32R2>()   // dc_n [B, H]
                                  .Arg<Bytes>()   // workspace
                                  .Attr<bool>("reverse")
                                  .Ret<F32R3>()  // dx [B, T, D]
                                  .Ret<F32R2>()  // dh0 [B, H]
                                  .Ret<F32R2>()  // dc0 [B, H]
                                  .Ret<F32R2>()  // dw_ih [D, 4H]
                                  .Ret<F32R2>()  // dw_hh [H, 4H]
                                  .Ret<F32R1>());  // db [4H]

// The workspace forward_training writes, in bytes; or -1, with oneDNN's message copied into
// `error` (at most `error_size` bytes, NUL-terminated).
extern "C" int64_t RnnJaxOnednnLstmWorkspaceBytes(int64_t T, int64_t B, int64_t D, int64_t H,
                                                  int64_t reverse, char* error,
                                                  int64_t error_size) {
  try {
    Shapes s{T, B, D, H, reverse != 0};
    return static_cast<int64_t>(ForwardDesc(s).workspace_desc().get_size());
  } catch (const std::exception& e) {
    CopyError(e, error, error_size);
    return -1;
  }
}

// The same for the bfloat16 handlers.
extern "C" int64_t RnnJaxOnednnLstmWorkspaceBytesBf16(int64_t T, int64_t B, int64_t D,
                                                      int64_t H, int64_t reverse, char* error,
                                                      int64_t error_size) {
  try {
    Shapes s{T, B, D, H, reverse != 0};
    s.src = dt::bf16;
    return static_cast<int64_t>(ForwardDesc(s).workspace_desc().get_size());
  } catch (const std::exception& e) {
    CopyError(e, error, error_size);
    return -1;
  }
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(RnnJaxOnednnGruForward, GruForwardImpl<ffi::F32>,
                              ffi::Ffi::Bind()
                                  .Arg<F32R3>()  // x [B, T, D]
                                  .Arg<F32R2>()  // h0 [B, H]
                                  .Arg<F32R2>()  // w_ih [D, 3H]
                                  .Arg<F32R2>()  // w_hh [H, 3H]
                                  .Arg<F32R1>()  // b [3H] or [4H]
                                  .Attr<bool>("reverse")
                                  .Attr<bool>("linear_before_reset")
                                  .Ret<F32R3>()  // y [B, T, H]
                                  .Ret<F32R2>()  // h_n [B, H]
                                  .Ret<Bytes>());  // workspace

XLA_FFI_DEFINE_HANDLER_SYMBOL(RnnJaxOnednnGruBackward, GruBackwardImpl<ffi::F32>,
                              ffi::Ffi::Bind()
                                  .Arg<F32R3>()  // x [B, T, D]
                                  .Arg<F32R2>()  // h0 [B, H]
                                  .Arg<F32R2>()  // w_ih [D, 3H]
                                  .Arg<F32R2>()  // w_hh [H, 3H]
                                  .Arg<F32R1>()  // b [3H] or [4H]
                                  .Arg<F32R3>()  // y [B, T, H]
                                  .Arg<F32R2>()  // h_n [B, H]
                                  .Arg<F32R3>()  // dy [B, T, H]
                                  .Arg<F32R2>()  // dh_n [B, H]
                                  .Arg<Bytes>()   // workspace
                                  .Attr<bool>("reverse")
                                  .Attr<bool>("linear_before_reset")
                                  .Ret<F32R3>()  // dx [B, T, D]
                                  .Ret<F32R2>()  // dh0 [B, H]
                                  .Ret<F32R2>()  // dw_ih [D, 3H]
                                  .Ret<F32R2>()  // dw_hh [H, 3H]
                                  .Ret<F32R1>());  // db [3H] or [4H]

// The GRU in bfloat16 (x, h0, the weights, y and h_n bf16; the bias and the gradients f32).
XLA_FFI_DEFINE_HANDLER_SYMBOL(RnnJaxOnednnGruForwardBf16, GruForwardImpl<ffi::BF16>,
                              ffi::Ffi::Bind()
                                  .Arg<BF16R3>()  // x [B, T, D]
                                  .Arg<BF16R2>()  // h0 [B, H]
                                  .Arg<BF16R2>()  // w_ih [D, 3H]
                                  .Arg<BF16R2>()  // w_hh [H, 3H]
                                  .Arg<F32R1>()   // b [3H] or [4H]
                                  .Attr<bool>("reverse")
                                  .Attr<bool>("linear_before_reset")
                                  .Ret<BF16R3>()  // y [B, T, H]
                                  .Ret<BF16R2>()  // h_n [B, H]
                                  .Ret<Bytes>());  // workspace

XLA_FFI_DEFINE_HANDLER_SYMBOL(RnnJaxOnednnGruBackwardBf16, GruBackwardImpl<ffi::BF16>,
                              ffi::Ffi::Bind()
                                  .Arg<BF16R3>()  // x [B, T, D]
                                  .Arg<BF16R2>()  // h0 [B, H]
                                  .Arg<BF16R2>()  // w_ih [D, 3H]
                                  .Arg<BF16R2>()  // w_hh [H, 3H]
                                  .Arg<F32R1>()   // b [3H] or [4H]
                                  .Arg<BF16R3>()  // y [B, T, H]
                                  .Arg<BF16R2>()  // h_n [B, H]
                                  .Arg<F32R3>()   // dy [B, T, H]
                                  .Arg<F32R2>()   // dh_n [B, H]
                                  .Arg<Bytes>()   // workspace
                                  .Attr<bool>("reverse")
                                  .Attr<bool>("linear_before_reset")
                                  .Ret<F32R3>()  // dx [B, T, D]
                                  .Ret<F32R2>()  // dh0 [B, H]
                                  .Ret<F32R2>()  // dw_ih [D, 3H]
                                  .Ret<F32R2>()  // dw_hh [H, 3H]
                                  .Ret<F32R1>());  // db [3H] or [4H]

// The GRU's workspace in bytes, or -1 with oneDNN's message (as the LSTM's).
extern "C" int64_t RnnJaxOnednnGruWorkspaceBytes(int64_t T, int64_t B, int64_t D, int64_t H,
                                                 int64_t reverse, int64_t linear_before_reset,
                                                 int64_t bf16, char* error, int64_t error_size) {
  try {
    Shapes s = GruShapes(T, B, D, H, reverse != 0, linear_before_reset != 0);
    if (bf16) s.src = dt::bf16;
    return GruWorkspaceSize(s, linear_before_reset != 0);
  } catch (const std::exception& e) {
    CopyError(e, error, error_size);
    return -1;
  }
}

// Sets the OpenMP threads the handlers give oneDNN (n <= 0: OpenMP's default again).
extern "C" void RnnJaxOnednnSetThreads(int64_t n) {
  g_threads.store(n > 0 ? static_cast<int>(n) : 0);
}

// oneDNN's version, major * 10000 + minor * 100 + patch, of the library loaded.
extern "C" int64_t RnnJaxOnednnVersion() {
  const dnnl_version_t* v = dnnl_version();
  return v->major * 10000 + v->minor * 100 + v->patch;
}
