// One step of Bahdanau attention (Bahdanau et al. 2015, eqs. 5-6) fused per sentence, on the CPU.
//
//     e_j = v_a . tanh(k_j + q)        k_j = U_a h_j (precomputed), q = W_a s_{i-1}      eq. 6
//     alpha = softmax_j(e) over the real positions (mask),  c = sum_j alpha_j h_j       eq. 5
//
// Why by hand: with torch ops each step writes the [B, S, A] tensor k + q, its tanh, and in
// the backward pass four more such tensors, each a pass over memory (8 MB at B=180, S=22,
// A=512); here each sentence's keys and annotations are read once per step and stay in
// L1/L2 while its energies, softmax, context and gradients are computed.  Nothing of size
// [B, S, A] is stored for the backward pass: it recomputes tanh(k_j + q).
//
// keys/states are float32 or bfloat16 (the autocast dtype); all arithmetic is float32.
// tanh is a rational approximation (rational_tanh below), not glibc's vectorised tanhf: tanh
// is about half of this kernel's work, and the inline rational made a step's forward x1.11-1.17
// and its backward x1.13-1.15 faster (B = 186, S = 22, A = 512, C = 1024, 2 threads); alpha,
// the context and the gradients moved by at most 1.6e-6 of their largest entries.

#include <ATen/Parallel.h>

#include <cmath>
#include <limits>
#include <vector>

#include "common.h"

namespace pipeline_kernels {
namespace {

// tanh(x) by Eigen's rational approximation (generic_fast_tanh_float: odd degree-13 over even
// degree-6 polynomial, the input clamped to ±7.9053111 as Eigen does); largest error 3.3e-7 on
// [-10, 10] against 6e-8 for glibc's tanhf.  No call, so gcc vectorises it inside the loops below.
inline float rational_tanh(float x) {
  x = std::fmin(std::fmax(x, -7.90531110763549805f), 7.90531110763549805f);
  const float x2 = x * x;
  float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
  p = x2 * p - 8.60467152213735e-11f;
  p = x2 * p + 5.12229709037114e-08f;
  p = x2 * p + 1.48572235717979e-05f;
  p = x2 * p + 6.37261928875436e-04f;
  p = x2 * p + 4.89352455891786e-03f;
  float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
  q = x2 * q + 2.26843463243900e-03f;
  q = x2 * q + 4.89352518554385e-03f;
  return x * p / q;
}

void check(const at::Tensor& keys, const at::Tensor& q, const at::Tensor& v,
           const at::Tensor& states, const at::Tensor& mask) {
  TORCH_CHECK(keys.device().is_cpu() && keys.dim() == 3 && keys.is_contiguous(), "keys: contiguous [B, S, A] on the CPU");
  TORCH_CHECK(states.dim() == 3 && states.is_contiguous() && states.scalar_type() == keys.scalar_type(),
              "states: contiguous [B, S, C] of the keys' dtype");
  TORCH_CHECK(keys.scalar_type() == at::kFloat || keys.scalar_type() == at::kBFloat16, "keys: float32 or bfloat16");
  int64_t b = keys.size(0), s = keys.size(1), a = keys.size(2);
  TORCH_CHECK(q.scalar_type() == at::kFloat && q.is_contiguous() && q.size(0) == b && q.size(1) == a, "q: float32 [B, A]");
  TORCH_CHECK(v.scalar_type() == at::kFloat && v.is_contiguous() && v.numel() == a, "v: float32 [A]");
  TORCH_CHECK(states.size(0) == b && states.size(1) == s, "states: [B, S, C]");
  TORCH_CHECK(mask.scalar_type() == at::kBool && mask.is_contiguous() && mask.size(0) == b && mask.size(1) == s,
              "mask: bool [B, S]");
}

// alpha_b = masked softmax of e_b (float32; 0 on padding).
void softmax_row(const float* e, const bool* m, int64_t s, float* alpha) {
  float top = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < s; ++j) if (m[j] && e[j] > top) top = e[j];
  float total = 0.f;
  for (int64_t j = 0; j < s; ++j) {
    alpha[j] = m[j] ? std::exp(e[j] - top) : 0.f;
    total += alpha[j];
  }
  float inv = 1.f / total;
  for (int64_t j = 0; j < s; ++j) alpha[j] *= inv;
}

// The step's inputs as raw pointers and sizes: keys K [B, S, A], annotations H [B, S, C],
// queries Q [B, A], v_a V [A], mask M [B, S].
template <typename T>
struct Step {
  Step(const at::Tensor& keys, const at::Tensor& q, const at::Tensor& v, const at::Tensor& states,
       const at::Tensor& mask)
      : B(keys.size(0)), S(keys.size(1)), A(keys.size(2)), C(states.size(2)),
        K(keys.data_ptr<T>()), H(states.data_ptr<T>()), Q(q.data_ptr<float>()), V(v.data_ptr<float>()),
        M(mask.data_ptr<bool>()) {}
  const int64_t B, S, A, C;
  const T* K;
  const T* H;
  const float* Q;
  const float* V;
  const bool* M;
};

template <typename T>
void forward_impl(const Step<T>& in, at::Tensor& alpha_out, at::Tensor& context_out) {
  const int64_t B = in.B, S = in.S, A = in.A, C = in.C;
  const T *K = in.K, *H = in.H;
  const float *Q = in.Q, *V = in.V;
  const bool* M = in.M;
  float* alpha = alpha_out.data_ptr<float>();
  T* ctx = context_out.data_ptr<T>();
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> e(S), c(C);
    AlignedBuffer t_buf(A);
    float* t = t_buf.data;
    for (int64_t b = begin; b < end; ++b) {
      const T* kb = K + b * S * A;
      const float* qb = Q + b * A;
      const bool* mb = M + b * S;
      for (int64_t j = 0; j < S; ++j) {
        if (!mb[j]) continue;
        const T* kj = kb + j * A;
#pragma omp simd aligned(t : 64)
        for (int64_t a = 0; a < A; ++a) t[a] = rational_tanh(load(kj, a) + qb[a]);  // (inside the dot's
        e[j] = dot(V, t, A);                                                       //  reduction: 4x slower)
      }
      float* ab = alpha + b * S;
      softmax_row(e.data(), mb, S, ab);
      std::fill(c.begin(), c.end(), 0.f);
      const T* hb = H + b * S * C;
      for (int64_t j = 0; j < S; ++j) {
        if (!mb[j]) continue;
        const float w = ab[j];
        const T* hj = hb + j * C;
#pragma omp simd
        for (int64_t k = 0; k < C; ++k) c[k] += w * load(hj, k);
      }
      T* cb = ctx + b * C;
#pragma omp simd
      for (int64_t k = 0; k < C; ++k) store(cb, k, c[k]);
    }
  });
}

template <typename T>
void backward_impl(const Step<T>& in, const at::Tensor& alpha, const at::Tensor& d_context,
                   at::Tensor& d_keys, at::Tensor& d_q, at::Tensor& d_v_parts) {
  const int64_t B = in.B, S = in.S, A = in.A, C = in.C;
  const T *K = in.K, *H = in.H;
  const float *Q = in.Q, *V = in.V;
  const bool* M = in.M;
  const float* AL = alpha.data_ptr<float>();
  const float* DC = d_context.data_ptr<float>();
  float* DK = d_keys.data_ptr<float>();
  float* DQ = d_q.data_ptr<float>();
  float* DVP = d_v_parts.data_ptr<float>();
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    float* dv = DVP + at::get_thread_num() * A;  // this thread's share of d v_a
    std::vector<float> d_alpha(S);
    for (int64_t b = begin; b < end; ++b) {
      const float* ab = AL + b * S;
      const bool* mb = M + b * S;
      const float* dcb = DC + b * C;
      const T* hb = H + b * S * C;
      float expected = 0.f;  // sum_j alpha_j d alpha_j
      for (int64_t j = 0; j < S; ++j) {
        if (!mb[j]) continue;
        const T* hj = hb + j * C;
        const float acc = dot(dcb, hj, C);  // d alpha_j = h_j . dc
        d_alpha[j] = acc;
        expected += ab[j] * acc;
      }
      const T* kb = K + b * S * A;
      const float* qb = Q + b * A;
      float* dkb = DK + b * S * A;
      float* dqb = DQ + b * A;
      std::fill(dqb, dqb + A, 0.f);
      for (int64_t j = 0; j < S; ++j) {
        if (!mb[j]) continue;
        const float de = ab[j] * (d_alpha[j] - expected);  // softmax backward
        const T* kj = kb + j * A;
        float* dkj = dkb + j * A;
#pragma omp simd
        for (int64_t a = 0; a < A; ++a) {
          const float t = rational_tanh(load(kj, a) + qb[a]);
          dv[a] += de * t;
          const float d_pre = de * V[a] * (1.f - t * t);  // tanh'
          dkj[a] += d_pre;
          dqb[a] += d_pre;
        }
      }
    }
  });
}

}  // namespace

// Fills alpha_out [B, S] float32 and context_out [B, C] (the keys' dtype).
void additive_attention_forward(const at::Tensor& keys, const at::Tensor& q, const at::Tensor& v,
                                const at::Tensor& states, const at::Tensor& mask, at::Tensor alpha_out,
                                at::Tensor context_out) {
  check(keys, q, v, states, mask);
  TORCH_CHECK(alpha_out.scalar_type() == at::kFloat && alpha_out.is_contiguous() &&
                  alpha_out.numel() == keys.size(0) * keys.size(1), "alpha_out: float32 [B, S]");
  TORCH_CHECK(context_out.scalar_type() == keys.scalar_type() && context_out.is_contiguous() &&
                  context_out.numel() == keys.size(0) * states.size(2), "context_out: [B, C] of the keys' dtype");
  if (keys.scalar_type() == at::kBFloat16)
    forward_impl(Step<at::BFloat16>(keys, q, v, states, mask), alpha_out, context_out);
  else
    forward_impl(Step<float>(keys, q, v, states, mask), alpha_out, context_out);
}

// Given alpha (from the forward) and dL/dc [B, C] float32: adds dL/dk into d_keys [B, S, A]
// float32 and dL/dv_a into d_v [A] float32 (accumulators over steps); returns dL/dq [B, A].
at::Tensor additive_attention_backward(const at::Tensor& keys, const at::Tensor& q, const at::Tensor& v,
                                          const at::Tensor& states, const at::Tensor& mask,
                                          const at::Tensor& alpha, const at::Tensor& d_context,
                                          at::Tensor d_keys, at::Tensor d_v) {
  check(keys, q, v, states, mask);
  TORCH_CHECK(alpha.scalar_type() == at::kFloat && alpha.is_contiguous() && alpha.numel() == keys.size(0) * keys.size(1),
              "alpha: float32 [B, S]");
  TORCH_CHECK(d_context.scalar_type() == at::kFloat && d_context.is_contiguous() &&
                  d_context.numel() == keys.size(0) * states.size(2), "d_context: float32 [B, C]");
  TORCH_CHECK(d_keys.scalar_type() == at::kFloat && d_keys.is_contiguous() && d_keys.sizes() == keys.sizes(),
              "d_keys: float32 [B, S, A]");
  TORCH_CHECK(d_v.scalar_type() == at::kFloat && d_v.numel() == keys.size(2), "d_v: float32 [A]");
  auto d_q = at::empty({keys.size(0), keys.size(2)}, q.options());
  auto d_v_parts = at::zeros({at::get_num_threads(), keys.size(2)}, q.options());
  if (keys.scalar_type() == at::kBFloat16)
    backward_impl(Step<at::BFloat16>(keys, q, v, states, mask), alpha, d_context, d_keys, d_q, d_v_parts);
  else
    backward_impl(Step<float>(keys, q, v, states, mask), alpha, d_context, d_keys, d_q, d_v_parts);
  d_v.add_(d_v_parts.sum(0));
  return d_q;
}

}  // namespace pipeline_kernels
