// Inverted dropout (Srivastava et al. 2014), alone and fused with the maxout of the deep output
// (Bahdanau et al. 2015, appendix A.2.2: t_i = max over pairs of t~_i), forward and backward.
//
// Why by hand: in torch ops a dropout is a draw from torch's generator (single-threaded), a
// compare, a where and a multiply forward, a multiply backward: 4-9 ms per [4000, 256-512]
// activation here, and the maxout's where/stack another 10 ms, ~30 ms of a 450-500 ms bf16
// training step.  Here each is one pass over memory on all threads.
//
// The random numbers are counter-based: word w of the stream is SplitMix64's output for the
// counter seed + (w + 1) * golden (Steele et al. 2014), and element i is kept when the 16-bit
// piece i % 4 of word i / 4 is >= `dropped` (so the drop probability is dropped / 2^16, as in
// pipeline/fast/dropout.py's torch path).  Any element's draw depends only on the seed and
// its index: the mask is the same for any number of threads.  The caller draws the seed from
// torch's generator, so torch.manual_seed and saved RNG states govern the masks.

#include <ATen/Parallel.h>

#include <algorithm>

#include "common.h"

namespace pipeline_kernels {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
constexpr int64_t kBlock = 1024;  // elements whose random pieces are drawn together (256 words)

inline uint64_t splitmix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Calls f(begin, len, pieces) for blocks of up to kBlock elements of [0, n), in parallel;
// pieces[k] is element begin + k's 16-bit random piece (unused when `draw` is false).
template <typename F>
void for_each_block(int64_t n, uint64_t seed, bool draw, const F& f) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  at::parallel_for(0, blocks, 16, [&](int64_t b0, int64_t b1) {
    alignas(64) uint16_t pieces[kBlock] = {};
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t begin = b * kBlock, len = std::min(kBlock, n - begin);
      if (draw) {
        const uint64_t w0 = static_cast<uint64_t>(begin / 4);
#pragma omp simd
        for (int64_t j = 0; j < kBlock / 4; ++j) {
          const uint64_t word = splitmix64(seed + (w0 + j + 1) * kGolden);
          for (int l = 0; l < 4; ++l) pieces[4 * j + l] = static_cast<uint16_t>(word >> (16 * l));
        }
      }
      f(begin, len, pieces);
    }
  });
}

void check_input(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() &&
                  (t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16),
              name, ": a contiguous float32 or bfloat16 CPU tensor");
}

void check_code(const at::Tensor& code, int64_t numel, const char* name) {
  TORCH_CHECK(code.device().is_cpu() && code.is_contiguous() && code.scalar_type() == at::kByte &&
                  code.numel() == numel,
              name, ": a contiguous uint8 tensor of ", numel, " elements");
}

float scale_of(int64_t dropped) {
  TORCH_CHECK(dropped >= 0 && dropped < 65536, "dropped: pieces in [0, 65536)");
  return 65536.f / static_cast<float>(65536 - dropped);
}

// The loops below take their pointers as __restrict arguments and select a factor rather than
// a load, so that gcc vectorises them (a byte store through a captured pointer, or a
// conditional bf16 load, keeps it scalar: ~10x slower).
template <typename T>
void dropout_block(const T* __restrict x, const uint16_t* __restrict pieces, uint16_t dropped, float scale,
                   T* __restrict y, uint8_t* __restrict keep, int64_t len) {
#pragma omp simd
  for (int64_t k = 0; k < len; ++k) {
    const bool kept = pieces[k] >= dropped;
    keep[k] = kept;
    store(y, k, load(x, k) * (kept ? scale : 0.f));
  }
}

template <typename T>
void dropout_backward_block(const T* __restrict g, const uint8_t* __restrict keep, float scale, T* __restrict d,
                            int64_t len) {
#pragma omp simd
  for (int64_t k = 0; k < len; ++k) store(d, k, load(g, k) * (keep[k] ? scale : 0.f));
}

// code: 0 dropped, 1 the first of the pair won, 2 the second (ties go to the first).
template <typename T>
void maxout_block(const T* __restrict pre, const uint16_t* __restrict pieces, uint16_t dropped, float scale,
                  T* __restrict t, uint8_t* __restrict code, int64_t len) {
#pragma omp simd
  for (int64_t k = 0; k < len; ++k) {
    const float a = load(pre, 2 * k), b = load(pre, 2 * k + 1);
    const uint8_t second = !(a >= b), kept = pieces[k] >= dropped;
    code[k] = static_cast<uint8_t>(kept * (1 + second));
    store(t, k, (second ? b : a) * (kept ? scale : 0.f));
  }
}

template <typename T>
void maxout_backward_block(const T* __restrict g, const uint8_t* __restrict code, float scale, T* __restrict d,
                           int64_t len) {
#pragma omp simd
  for (int64_t k = 0; k < len; ++k) {
    const float gk = load(g, k) * scale;
    store(d, 2 * k, gk * (code[k] == 1 ? 1.f : 0.f));
    store(d, 2 * k + 1, gk * (code[k] == 2 ? 1.f : 0.f));
  }
}

template <typename T>
void dropout_forward_impl(const at::Tensor& x, uint16_t dropped, float scale, uint64_t seed, at::Tensor& y,
                          at::Tensor& keep) {
  const T* X = x.data_ptr<T>();
  T* Y = y.data_ptr<T>();
  uint8_t* K = keep.data_ptr<uint8_t>();
  for_each_block(x.numel(), seed, true, [=](int64_t begin, int64_t len, const uint16_t* pieces) {
    dropout_block(X + begin, pieces, dropped, scale, Y + begin, K + begin, len);
  });
}

template <typename T>
void dropout_backward_impl(const at::Tensor& grad, const at::Tensor& keep, float scale, at::Tensor& d_x) {
  const T* G = grad.data_ptr<T>();
  const uint8_t* K = keep.data_ptr<uint8_t>();
  T* D = d_x.data_ptr<T>();
  at::parallel_for(0, grad.numel(), 16 * kBlock, [=](int64_t begin, int64_t end) {
    dropout_backward_block(G + begin, K + begin, scale, D + begin, end - begin);
  });
}

template <typename T>
void maxout_forward_impl(const at::Tensor& pre, uint16_t dropped, float scale, uint64_t seed, at::Tensor& t,
                         at::Tensor& code) {
  const T* P = pre.data_ptr<T>();
  T* O = t.data_ptr<T>();
  uint8_t* C = code.data_ptr<uint8_t>();
  for_each_block(t.numel(), seed, dropped > 0, [=](int64_t begin, int64_t len, const uint16_t* pieces) {
    maxout_block(P + 2 * begin, pieces, dropped, scale, O + begin, C + begin, len);
  });
}

template <typename T>
void maxout_backward_impl(const at::Tensor& grad, const at::Tensor& code, float scale, at::Tensor& d_pre) {
  const T* G = grad.data_ptr<T>();
  const uint8_t* C = code.data_ptr<uint8_t>();
  T* D = d_pre.data_ptr<T>();
  at::parallel_for(0, grad.numel(), 16 * kBlock, [=](int64_t begin, int64_t end) {
    maxout_backward_block(G + begin, C + begin, scale, D + 2 * begin, end - begin);
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> dropout_forward(const at::Tensor& x, int64_t dropped, int64_t seed) {
  check_input(x, "x");
  const float scale = scale_of(dropped);
  at::Tensor y = at::empty_like(x), keep = at::empty(x.sizes(), x.options().dtype(at::kByte));
  if (x.scalar_type() == at::kBFloat16)
    dropout_forward_impl<at::BFloat16>(x, dropped, scale, static_cast<uint64_t>(seed), y, keep);
  else
    dropout_forward_impl<float>(x, dropped, scale, static_cast<uint64_t>(seed), y, keep);
  return {y, keep};
}

at::Tensor dropout_backward(const at::Tensor& grad, const at::Tensor& keep, int64_t dropped) {
  check_input(grad, "grad");
  check_code(keep, grad.numel(), "keep");
  at::Tensor d_x = at::empty_like(grad);
  if (grad.scalar_type() == at::kBFloat16)
    dropout_backward_impl<at::BFloat16>(grad, keep, scale_of(dropped), d_x);
  else
    dropout_backward_impl<float>(grad, keep, scale_of(dropped), d_x);
  return d_x;
}

std::tuple<at::Tensor, at::Tensor> maxout_dropout_forward(const at::Tensor& pre, int64_t dropped, int64_t seed) {
  check_input(pre, "pre");
  TORCH_CHECK(pre.dim() >= 1 && pre.size(-1) % 2 == 0, "pre: an even last dimension (pairs)");
  const float scale = scale_of(dropped);
  std::vector<int64_t> shape(pre.sizes().begin(), pre.sizes().end());
  shape.back() /= 2;
  at::Tensor t = at::empty(shape, pre.options()), code = at::empty(shape, pre.options().dtype(at::kByte));
  if (pre.scalar_type() == at::kBFloat16)
    maxout_forward_impl<at::BFloat16>(pre, dropped, scale, static_cast<uint64_t>(seed), t, code);
  else
    maxout_forward_impl<float>(pre, dropped, scale, static_cast<uint64_t>(seed), t, code);
  return {t, code};
}

at::Tensor maxout_dropout_backward(const at::Tensor& grad, const at::Tensor& code, int64_t dropped) {
  check_input(grad, "grad");
  check_code(code, grad.numel(), "code");
  std::vector<int64_t> shape(grad.sizes().begin(), grad.sizes().end());
  shape.back() *= 2;
  at::Tensor d_pre = at::empty(shape, grad.options());
  if (grad.scalar_type() == at::kBFloat16)
    maxout_backward_impl<at::BFloat16>(grad, code, scale_of(dropped), d_pre);
  else
    maxout_backward_impl<float>(grad, code, scale_of(dropped), d_pre);
  return d_pre;
}

}  // namespace pipeline_kernels
