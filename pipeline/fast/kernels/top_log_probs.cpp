// The k most probable next tokens of each row of logits, with their log-probabilities, on the
// CPU (pipeline/fast/search.py, for pipeline/decoding/search.py: one call per decoding step, for greedy k = 1, for beam search k = 2K).
// For a row x over V tokens:
//
//     log p_v = (x_v - m) - log Σ_u exp(x_u - m),   m = max_u x_u,
//
// as torch's log_softmax computes it.  The normaliser runs over every token; banned tokens
// (PAD, BOS) are never picked, and a "forced" row may only pick the forced token (EOS at the
// length limit).  Results are sorted by log-probability, descending; ties go to the lower id.
//
// Why by hand: in torch ops a beam step made a float32 copy of the [R, V] logits, a log_softmax
// into another [R, V] tensor, masked it in place and ran topk over it (~20% of beam-5 decoding,
// as much as the rest of the step outside the output layer).  Here each row (16-32 KB at V = 8000)
// is read from memory once and passed over three times in L1: copy to float32 and max; Σ exp;
// the top-k scan, which compares each value with the current k-th best and rarely does more.
// A value of -inf (a model's own mask) is never picked; under -ffast-math the vector max and exp
// still map it to -inf and 0, as the tests check.

#include <ATen/Parallel.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <tuple>
#include <vector>

#include "common.h"

namespace pipeline_kernels {
namespace {

// -inf written from its bit pattern: -ffast-math lets the compiler assume no infinities occur,
// so no arithmetic produces it here.
inline float minus_infinity() {
  const uint32_t bits = 0xFF800000u;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Insert (x, id) into the best-first list of k (values, ids) if it beats the k-th.  Candidates
// arrive in ascending id, so a tie never displaces the earlier (lower) id.
inline void offer(float* val, int64_t* ids, int64_t k, float x, int64_t id) {
  if (!(x > val[k - 1])) return;
  int64_t j = k - 1;
  for (; j > 0 && x > val[j - 1]; --j) {
    val[j] = val[j - 1];
    ids[j] = ids[j - 1];
  }
  val[j] = x;
  ids[j] = id;
}

// Offer every allowed token of a row in ascending id.  Blocks of 16 with none above the current
// k-th best (almost all, once the list has filled) cost one vector compare.
void scan(const float* __restrict x, int64_t V, const char* allowed, float* val, int64_t* id, int64_t k) {
  constexpr int64_t W = 16;
  int64_t v = 0;
  for (; v + W <= V; v += W) {
    const float kth = val[k - 1];
    int above = 0;
#pragma omp simd reduction(| : above)
    for (int64_t l = 0; l < W; ++l) above |= x[v + l] > kth;
    if (!above) continue;
    for (int64_t l = v; l < v + W; ++l)
      if (allowed[l]) offer(val, id, k, x[l], l);
  }
  for (; v < V; ++v)
    if (allowed[v]) offer(val, id, k, x[v], v);
}

template <typename T>
void rows_impl(const at::Tensor& logits, int64_t k, const std::vector<int64_t>& banned, const bool* forced,
               int64_t forced_token, float* values, int64_t* ids) {
  const int64_t n = logits.size(0), V = logits.size(1), ld = logits.stride(0);
  const T* L = logits.data_ptr<T>();
  const float lowest = std::numeric_limits<float>::lowest(), neg_inf = minus_infinity();
  at::parallel_for(0, n, 4, [&](int64_t begin, int64_t end) {
    AlignedBuffer row(V);
    std::vector<char> allowed(V, 1);
    for (int64_t b : banned) allowed[b] = 0;
    for (int64_t i = begin; i < end; ++i) {
      const T* xr = L + i * ld;
      float m = load(xr, 0);
#pragma omp simd reduction(max : m)
      for (int64_t v = 0; v < V; ++v) {
        const float x = load(xr, v);
        row.data[v] = x;
        m = std::max(m, x);
      }
      float z = 0.f;
#pragma omp simd reduction(+ : z)
      for (int64_t v = 0; v < V; ++v) z += std::exp(row.data[v] - m);
      const float log_z = std::log(z);

      // Scan raw logits (log p is x - const): "lowest" marks a free slot, id -1.
      float* val = values + i * k;
      int64_t* id = ids + i * k;
      for (int64_t j = 0; j < k; ++j) val[j] = lowest, id[j] = -1;
      if (forced != nullptr && forced[i]) {
        offer(val, id, k, row.data[forced_token], forced_token);
      } else {
        scan(row.data, V, allowed.data(), val, id, k);
      }
      // Free slots (fewer than k tokens allowed): -inf, with the lowest ids not listed.
      int64_t next = 0;
      for (int64_t j = 0; j < k; ++j) {
        if (id[j] >= 0) {
          val[j] = (val[j] - m) - log_z;
          continue;
        }
        for (bool taken = true; taken; ++next) {
          taken = false;
          for (int64_t u = 0; u < j; ++u) taken = taken || id[u] == next;
          if (!taken) id[j] = next;
        }
        val[j] = neg_inf;
      }
    }
  });
}

}  // namespace

// (values [n, k] float32, ids [n, k] int64): the k best tokens of each row of logits [n, V]
// (float32 or bf16, rows contiguous) by log-softmax, never a banned id; rows where forced [n]
// (bool, optional) is true may only take forced_token.
std::tuple<at::Tensor, at::Tensor> top_log_probs(const at::Tensor& logits, int64_t k, std::vector<int64_t> banned,
                                                 const c10::optional<at::Tensor>& forced, int64_t forced_token) {
  TORCH_CHECK(logits.device().is_cpu() && logits.dim() == 2 && logits.stride(1) == 1 && logits.size(1) > 0,
              "top_log_probs: logits [n, V] with contiguous rows on the CPU");
  const auto dt = logits.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kBFloat16, "top_log_probs: float32 or bfloat16 logits");
  const int64_t n = logits.size(0), V = logits.size(1);
  TORCH_CHECK(k >= 1 && k <= V, "top_log_probs: k=", k, " not in [1, ", V, "]");
  for (int64_t b : banned) TORCH_CHECK(b >= 0 && b < V, "top_log_probs: banned id ", b, " not in [0, ", V, ")");
  const bool* fp = nullptr;
  if (forced.has_value() && forced->defined()) {
    TORCH_CHECK(forced->scalar_type() == at::kBool && forced->numel() == n && forced->is_contiguous(),
                "top_log_probs: forced [n] bool, contiguous");
    TORCH_CHECK(forced_token >= 0 && forced_token < V, "top_log_probs: forced_token not in [0, ", V, ")");
    fp = forced->data_ptr<bool>();
  }
  auto values = at::empty({n, k}, logits.options().dtype(at::kFloat));
  auto ids = at::empty({n, k}, logits.options().dtype(at::kLong));
  if (dt == at::kBFloat16)
    rows_impl<at::BFloat16>(logits, k, banned, fp, forced_token, values.data_ptr<float>(), ids.data_ptr<int64_t>());
  else
    rows_impl<float>(logits, k, banned, fp, forced_token, values.data_ptr<float>(), ids.data_ptr<int64_t>());
  return {values, ids};
}

}  // namespace pipeline_kernels
