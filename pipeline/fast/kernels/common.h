// Shared helpers of the fused CPU kernels (see pipeline/fast/cpu_kernels.py).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <tuple>
#include <vector>

namespace pipeline_kernels {

inline float load(const float* p, int64_t i) { return p[i]; }

inline float load(const at::BFloat16* p, int64_t i) {  // bf16 is the upper half of a float32
  uint32_t bits = static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(p)[i]) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline void store(float* p, int64_t i, float x) { p[i] = x; }

// float32 -> bf16, rounded to nearest even, as a plain integer expression that vectorises
// (c10's conversion branches on NaN).  A NaN stays a NaN unless its payload fills the top of
// the mantissa, which torch's ops do not produce.
inline void store(at::BFloat16* p, int64_t i, float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  reinterpret_cast<uint16_t*>(p)[i] = static_cast<uint16_t>((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
}

// x . y, accumulated in 16 float32 lanes (a plain loop; gcc vectorises it under -ffast-math).
template <typename T>
float dot(const float* __restrict x, const T* __restrict y, int64_t n) {
  float lanes[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) lanes[l] += x[i + l] * load(y, i + l);
  float total = 0.f;
  for (; i < n; ++i) total += x[i] * load(y, i);
  for (int l = 0; l < 16; ++l) total += lanes[l];
  return total;
}

// A float scratch row aligned to the cache line, so that the vectorised loops need no scalar
// peel (scalar calls of vectorised math functions) to reach alignment.
struct AlignedBuffer {
  explicit AlignedBuffer(int64_t n)
      : data(static_cast<float*>(std::aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64))) {
    TORCH_CHECK(data != nullptr, "out of memory");
  }
  ~AlignedBuffer() { std::free(data); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  float* data;
};

// additive_attention.cpp
void additive_attention_forward(const at::Tensor& keys, const at::Tensor& q, const at::Tensor& v,
                                const at::Tensor& states, const at::Tensor& mask, at::Tensor alpha_out,
                                at::Tensor context_out);
at::Tensor additive_attention_backward(const at::Tensor& keys, const at::Tensor& q, const at::Tensor& v,
                                       const at::Tensor& states, const at::Tensor& mask, const at::Tensor& alpha,
                                       const at::Tensor& d_context, at::Tensor d_keys, at::Tensor d_v);

// gru_cell.cpp
void gru_cell_forward(const at::Tensor& gi, const at::Tensor& gh, const at::Tensor& s_prev, at::Tensor rz_out,
                      at::Tensor n_out, at::Tensor ghn_out, at::Tensor s_out);
void gru_cell_backward(const at::Tensor& ds, const at::Tensor& s_prev, const at::Tensor& rz, const at::Tensor& n,
                       const at::Tensor& ghn, at::Tensor d_gi, at::Tensor d_gh, at::Tensor ds_prev);

// smoothed_cross_entropy.cpp
double smoothed_cross_entropy(at::Tensor logits, const at::Tensor& target, double smoothing,
                              const c10::optional<at::Tensor>& d_bias, bool write_grad,
                              const c10::optional<at::Tensor>& bias);

// dropout.cpp
std::tuple<at::Tensor, at::Tensor> dropout_forward(const at::Tensor& x, int64_t dropped, int64_t seed);
at::Tensor dropout_backward(const at::Tensor& grad, const at::Tensor& keep, int64_t dropped);
std::tuple<at::Tensor, at::Tensor> maxout_dropout_forward(const at::Tensor& pre, int64_t dropped, int64_t seed);
at::Tensor maxout_dropout_backward(const at::Tensor& grad, const at::Tensor& code, int64_t dropped);

// top_log_probs.cpp
std::tuple<at::Tensor, at::Tensor> top_log_probs(const at::Tensor& logits, int64_t k, std::vector<int64_t> banned,
                                                 const c10::optional<at::Tensor>& forced, int64_t forced_token);

}  // namespace pipeline_kernels
