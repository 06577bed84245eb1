// The element-wise part of one GRU step and of its backward pass, fused per row, on the CPU
// (the gates of Bahdanau et al. 2015, eq. 4 / appendix A.2.2, in torch.nn.GRUCell's order):
//
//     r, z = sigmoid(gi_rz + gh_rz),   n = tanh(gi_n + r * gh_n),   s = n + z * (s_prev - n)
//
// gi = the input's pre-activations [B, 3H], gh = W_hh s_prev + b_hh [B, 3H] (the first 3H
// columns of a wider row: the decoder stacks W_a s_prev after them).  Why by hand: in torch ops
// a step is ~6 element-wise calls forward and ~12 backward on [B, H] tensors of 50-200 KB,
// each paying dispatch and a pass over memory; the recurrences of a training step make ~170
// such steps (encoder: 4 directions x S, decoder: T).  Here one call per step does them all,
// in float32 whatever the storage dtype (bf16 under autocast: rounded once, on store).

#include <ATen/Parallel.h>

#include <cmath>

#include "common.h"

namespace pipeline_kernels {
namespace {

inline float sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }

void check_rows(const at::Tensor& t, int64_t rows, int64_t cols, at::ScalarType dtype, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.dim() == 2 && t.size(0) == rows && t.size(1) >= cols && t.stride(1) == 1 &&
                  t.scalar_type() == dtype,
              name, ": rows of at least ", cols, " contiguous elements, ", rows, " rows, dtype ", dtype);
}

template <typename T>
void forward_impl(const at::Tensor& gi, const at::Tensor& gh, const at::Tensor& s_prev, at::Tensor& rz_out,
                  at::Tensor& n_out, at::Tensor& ghn_out, at::Tensor& s_out) {
  const int64_t B = s_prev.size(0), H = s_prev.size(1);
  const T *GI = gi.data_ptr<T>(), *GH = gh.data_ptr<T>(), *S = s_prev.data_ptr<T>();
  T *RZ = rz_out.data_ptr<T>(), *N = n_out.data_ptr<T>(), *GHN = ghn_out.data_ptr<T>(), *SO = s_out.data_ptr<T>();
  const int64_t gi_row = gi.stride(0), gh_row = gh.stride(0), s_row = s_prev.stride(0);
  const int64_t rz_row = rz_out.stride(0), n_row = n_out.stride(0), ghn_row = ghn_out.stride(0), so_row = s_out.stride(0);
  at::parallel_for(0, B, 8, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const T *gib = GI + b * gi_row, *ghb = GH + b * gh_row, *sb = S + b * s_row;
      T *rzb = RZ + b * rz_row, *nb = N + b * n_row, *ghnb = GHN + b * ghn_row, *sob = SO + b * so_row;
#pragma omp simd
      for (int64_t k = 0; k < H; ++k) {
        const float r = sigmoid(load(gib, k) + load(ghb, k));
        const float z = sigmoid(load(gib, H + k) + load(ghb, H + k));
        const float gh_n = load(ghb, 2 * H + k);
        const float n = std::tanh(load(gib, 2 * H + k) + r * gh_n);
        const float s = load(sb, k);
        store(rzb, k, r);
        store(rzb, H + k, z);
        store(nb, k, n);
        store(ghnb, k, gh_n);
        store(sob, k, n + z * (s - n));
      }
    }
  });
}

// T: the dtype of the saved activations and of d_gi / d_gh; D: that of ds and ds_prev (T, or
// float32 when the caller carries the state's gradient through the steps in float32).
template <typename T, typename D>
void backward_impl(const at::Tensor& ds, const at::Tensor& s_prev, const at::Tensor& rz, const at::Tensor& n,
                   const at::Tensor& ghn, at::Tensor& d_gi, at::Tensor& d_gh, at::Tensor& ds_prev) {
  const int64_t B = s_prev.size(0), H = s_prev.size(1);
  const D* DS = ds.data_ptr<D>();
  const T *S = s_prev.data_ptr<T>(), *RZ = rz.data_ptr<T>(), *N = n.data_ptr<T>(), *GHN = ghn.data_ptr<T>();
  T *DGI = d_gi.data_ptr<T>(), *DGH = d_gh.data_ptr<T>();
  D* DSP = ds_prev.data_ptr<D>();
  const int64_t ds_row = ds.stride(0), s_row = s_prev.stride(0), rz_row = rz.stride(0), n_row = n.stride(0),
                ghn_row = ghn.stride(0), dgi_row = d_gi.stride(0), dgh_row = d_gh.stride(0), dsp_row = ds_prev.stride(0);
  at::parallel_for(0, B, 8, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const D* dsb = DS + b * ds_row;
      const T *sb = S + b * s_row, *rzb = RZ + b * rz_row, *nb = N + b * n_row, *ghnb = GHN + b * ghn_row;
      T *dgib = DGI + b * dgi_row, *dghb = DGH + b * dgh_row;
      D* dspb = DSP + b * dsp_row;
#pragma omp simd
      for (int64_t k = 0; k < H; ++k) {
        const float d = load(dsb, k), r = load(rzb, k), z = load(rzb, H + k), nk = load(nb, k);
        const float d_pre_n = d * (1.f - z) * (1.f - nk * nk);  // through n = tanh(.)
        const float d_r = d_pre_n * load(ghnb, k) * r * (1.f - r);
        const float d_z = d * (load(sb, k) - nk) * z * (1.f - z);
        store(dgib, k, d_r);
        store(dgib, H + k, d_z);
        store(dgib, 2 * H + k, d_pre_n);
        store(dghb, k, d_r);
        store(dghb, H + k, d_z);
        store(dghb, 2 * H + k, d_pre_n * r);
        store(dspb, k, d * z);  // the part of d s_prev through the update gate
      }
    }
  });
}

}  // namespace

// Fills rz_out [B, 2H], n_out, ghn_out (= gh_n, kept for the backward) and s_out [B, H].
void gru_cell_forward(const at::Tensor& gi, const at::Tensor& gh, const at::Tensor& s_prev, at::Tensor rz_out,
                      at::Tensor n_out, at::Tensor ghn_out, at::Tensor s_out) {
  const int64_t B = s_prev.size(0), H = s_prev.size(1);
  const auto dt = s_prev.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kBFloat16, "gru_cell_forward: float32 or bfloat16");
  check_rows(s_prev, B, H, dt, "s_prev");
  check_rows(gi, B, 3 * H, dt, "gi");
  check_rows(gh, B, 3 * H, dt, "gh");
  check_rows(rz_out, B, 2 * H, dt, "rz_out");
  check_rows(n_out, B, H, dt, "n_out");
  check_rows(ghn_out, B, H, dt, "ghn_out");
  check_rows(s_out, B, H, dt, "s_out");
  if (dt == at::kBFloat16)
    forward_impl<at::BFloat16>(gi, gh, s_prev, rz_out, n_out, ghn_out, s_out);
  else
    forward_impl<float>(gi, gh, s_prev, rz_out, n_out, ghn_out, s_out);
}

// Given d s [B, H]: fills d_gi [B, 3H], the first 3H columns of d_gh, and ds_prev [B, H] with the
// part of d s_prev that flows through the update gate (z * d s; the part through W_hh is the
// caller's GEMM).  ds and ds_prev may be float32 while the rest is bf16: the recurrence then
// carries the state's gradient through the steps without rounding it to bf16 at each one.
void gru_cell_backward(const at::Tensor& ds, const at::Tensor& s_prev, const at::Tensor& rz, const at::Tensor& n,
                       const at::Tensor& ghn, at::Tensor d_gi, at::Tensor d_gh, at::Tensor ds_prev) {
  const int64_t B = s_prev.size(0), H = s_prev.size(1);
  const auto dt = s_prev.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kBFloat16, "gru_cell_backward: float32 or bfloat16");
  const auto dsdt = ds.scalar_type() == at::kFloat ? at::kFloat : dt;
  check_rows(ds, B, H, dsdt, "ds");
  check_rows(s_prev, B, H, dt, "s_prev");
  check_rows(rz, B, 2 * H, dt, "rz");
  check_rows(n, B, H, dt, "n");
  check_rows(ghn, B, H, dt, "ghn");
  check_rows(d_gi, B, 3 * H, dt, "d_gi");
  check_rows(d_gh, B, 3 * H, dt, "d_gh");
  check_rows(ds_prev, B, H, dsdt, "ds_prev");
  if (dt == at::kFloat)
    backward_impl<float, float>(ds, s_prev, rz, n, ghn, d_gi, d_gh, ds_prev);
  else if (dsdt == at::kFloat)
    backward_impl<at::BFloat16, float>(ds, s_prev, rz, n, ghn, d_gi, d_gh, ds_prev);
  else
    backward_impl<at::BFloat16, at::BFloat16>(ds, s_prev, rz, n, ghn, d_gi, d_gh, ds_prev);
}

}  // namespace pipeline_kernels
