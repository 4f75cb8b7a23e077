// oneDNN's LSTM primitive: one call of a 2-layer stack or of both directions, against two
// one-layer calls (forward_training then backward; float32; D = H). Run by
// `python -m benchmarks.onednn_calls`, which compiles it against the oneDNN that
// rnn_jax.kernels.onednn uses; usage: onednn_calls T B H reps [T B H reps ...].
// Prints one JSON object per size: median ms of 5 timed rounds of `reps` passes each.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <unordered_map>
#include <vector>
#include "oneapi/dnnl/dnnl.hpp"
using namespace dnnl;
using dt = memory::data_type; using tag = memory::format_tag;
engine eng(engine::kind::cpu, 0);

memory make(const memory::desc& md) {
  memory m(md, eng);
  size_t n = md.get_size() / 4; float* p = (float*)m.get_data_handle();
  for (size_t i = 0; i < n; ++i) p[i] = 0.01f * (static_cast<int>((i * 2654435761u) % 200) - 100) / 100.f;
  return m;
}

struct Run {
  lstm_forward::primitive_desc fpd; lstm_backward::primitive_desc bpd;
  std::vector<std::pair<int, memory>> fargs, bargs;
};

// L layers, dir (0: l2r, 1: r2l, 2: bidirectional_concat), input channels C.
Run build(int L, int dir, int T, int B, int C, int H) {
  int D = dir == 2 ? 2 : 1;
  auto rd = dir == 0 ? rnn_direction::unidirectional_left2right
          : dir == 1 ? rnn_direction::unidirectional_right2left : rnn_direction::bidirectional_concat;
  memory::desc src({T, B, C}, dt::f32, tag::tnc), dst({T, B, D * H}, dt::f32, tag::tnc);
  memory::desc st({L, D, B, H}, dt::f32, tag::ldnc);
  memory::desc wl({L, D, C, 4, H}, dt::f32, tag::any), wi({L, D, H, 4, H}, dt::f32, tag::any);
  memory::desc bias({L, D, 4, H}, dt::f32, tag::ldgo);
  lstm_forward::primitive_desc fpd(eng, prop_kind::forward_training, rd, src, st, st, wl, wi, bias, dst, st, st);
  lstm_backward::primitive_desc bpd(eng, prop_kind::backward, rd, src, st, st, wl, wi, bias, dst, st, st,
      src, st, st, memory::desc({L, D, C, 4, H}, dt::f32, tag::any), memory::desc({L, D, H, 4, H}, dt::f32, tag::any),
      bias, dst, st, st, fpd);
  Run r{fpd, bpd, {}, {}};
  auto x = make(src), h0 = make(st), c0 = make(st), w1 = make(fpd.weights_layer_desc()), w2 = make(fpd.weights_iter_desc()),
       b = make(bias), y = make(dst), hn = make(st), cn = make(st), ws = make(fpd.workspace_desc());
  auto bw1 = make(bpd.weights_layer_desc()), bw2 = make(bpd.weights_iter_desc());
  r.fargs = {{DNNL_ARG_SRC_LAYER, x}, {DNNL_ARG_SRC_ITER, h0}, {DNNL_ARG_SRC_ITER_C, c0}, {DNNL_ARG_WEIGHTS_LAYER, w1},
             {DNNL_ARG_WEIGHTS_ITER, w2}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST_LAYER, y}, {DNNL_ARG_DST_ITER, hn},
             {DNNL_ARG_DST_ITER_C, cn}, {DNNL_ARG_WORKSPACE, ws}};
  r.bargs = {{DNNL_ARG_SRC_LAYER, x}, {DNNL_ARG_SRC_ITER, h0}, {DNNL_ARG_SRC_ITER_C, c0}, {DNNL_ARG_WEIGHTS_LAYER, bw1},
             {DNNL_ARG_WEIGHTS_ITER, bw2}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST_LAYER, y}, {DNNL_ARG_DST_ITER, hn},
             {DNNL_ARG_DST_ITER_C, cn}, {DNNL_ARG_WORKSPACE, ws},
             {DNNL_ARG_DIFF_DST_LAYER, make(dst)}, {DNNL_ARG_DIFF_DST_ITER, make(st)}, {DNNL_ARG_DIFF_DST_ITER_C, make(st)},
             {DNNL_ARG_DIFF_SRC_LAYER, make(src)}, {DNNL_ARG_DIFF_SRC_ITER, make(st)}, {DNNL_ARG_DIFF_SRC_ITER_C, make(st)},
             {DNNL_ARG_DIFF_WEIGHTS_LAYER, make(bpd.diff_weights_layer_desc())},
             {DNNL_ARG_DIFF_WEIGHTS_ITER, make(bpd.diff_weights_iter_desc())}, {DNNL_ARG_DIFF_BIAS, make(bias)}};
  return r;
}

double time_runs(std::vector<Run>& runs, int reps) {
  stream s(eng);
  std::vector<lstm_forward> f; std::vector<lstm_backward> b;
  for (auto& r : runs) { f.emplace_back(r.fpd); b.emplace_back(r.bpd); }
  auto once = [&] {
    for (size_t i = 0; i < runs.size(); ++i) {
      std::unordered_map<int, memory> fa(runs[i].fargs.begin(), runs[i].fargs.end());
      f[i].execute(s, fa);
    }
    for (size_t i = runs.size(); i-- > 0;) {
      std::unordered_map<int, memory> ba(runs[i].bargs.begin(), runs[i].bargs.end());
      b[i].execute(s, ba);
    }
    s.wait();
  };
  once(); once();
  std::vector<double> t;
  for (int k = 0; k < 5; ++k) {
    auto a = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) once();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count() / reps);
  }
  std::sort(t.begin(), t.end());
  return t[2];
}

int main(int argc, char** argv) {
  if (argc < 5 || (argc - 1) % 4) {
    fprintf(stderr, "usage: %s T B H reps [T B H reps ...]\n", argv[0]);
    return 2;
  }
  for (int i = 1; i + 3 < argc; i += 4) {
    int T = atoi(argv[i]), B = atoi(argv[i + 1]), H = atoi(argv[i + 2]), reps = atoi(argv[i + 3]);
    std::vector<Run> stack = {build(2, 0, T, B, H, H)};
    std::vector<Run> layers = {build(1, 0, T, B, H, H), build(1, 0, T, B, H, H)};
    std::vector<Run> both = {build(1, 2, T, B, H, H)};
    std::vector<Run> directions = {build(1, 0, T, B, H, H), build(1, 1, T, B, H, H)};
    printf("{\"T\": %d, \"B\": %d, \"H\": %d, \"stack_one_call_ms\": %.3f, "
           "\"stack_two_calls_ms\": %.3f, \"bidirectional_one_call_ms\": %.3f, "
           "\"bidirectional_two_calls_ms\": %.3f}\n",
           T, B, H, time_runs(stack, reps), time_runs(layers, reps), time_runs(both, reps),
           time_runs(directions, reps));
    fflush(stdout);
  }
  return 0;
}
