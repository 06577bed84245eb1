// Label-smoothed cross-entropy of a chunk of logits and its gradient, per row, in place, on the
// CPU (pipeline/fast/loss.py: the output layer fused with the loss).  With smoothing e over V classes,
// a row x with target y has
//
//     loss = lse(x) - (1 - e) x_y - e mean(x),   d loss / d x_v = softmax(x)_v - e/V - (1 - e) [v = y].
//
// Why by hand: in torch ops a [256, V] chunk of bf16 logits took ~10 passes over memory (cast to
// float32, max, exp, sum, log, gather, subtract, exp, scatter, column sum, cast back), ~100 ms of
// a ~500 ms bf16 training step.  Here each row (16-32 KB at V = 8000) is read into L1 once and
// passed over three times there (max and sum; exp(x - m), kept in the row, and its sum; gradient
// written over the logits and added to this thread's column sum for the bias gradient), in
// float32 whatever the storage dtype.  One exp per entry: computing it again in the gradient pass
// made the kernel x1.4 slower in bf16 (1.26 vs 0.90 ms a [256, 8000] chunk, 2 threads).
// The output layer's bias is added here, on that first read, in float32: the caller's GEMM then
// runs without it (oneDNN's bf16 addmm first copies the broadcast bias into its [256, V] output,
// ~0.3 ms a chunk).

#include <ATen/Parallel.h>

#include <cmath>
#include <memory>
#include <vector>

#include "common.h"

namespace pipeline_kernels {
namespace {

template <typename T>
double rows_impl(at::Tensor& logits, const float* bias, const int64_t* target, float smoothing, float* d_bias,
                 bool write_grad) {
  const int64_t n = logits.size(0), V = logits.size(1), ld = logits.stride(0);
  T* L = logits.data_ptr<T>();
  const float hit = 1.f - smoothing, spread = smoothing / static_cast<float>(V);
  const int threads = at::get_num_threads();
  std::vector<double> loss(threads, 0.0);
  std::vector<std::unique_ptr<AlignedBuffer>> columns(threads);  // per thread: Σ_rows gradient (for ∂b)
  at::parallel_for(0, n, 4, [&](int64_t begin, int64_t end) {
    const int tid = at::get_thread_num();
    float* col = nullptr;
    if (write_grad && d_bias != nullptr) {
      if (!columns[tid]) {
        columns[tid] = std::make_unique<AlignedBuffer>(V);
        std::memset(columns[tid]->data, 0, V * sizeof(float));
      }
      col = columns[tid]->data;
    }
    AlignedBuffer row(V);
    for (int64_t i = begin; i < end; ++i) {
      T* xr = L + i * ld;
      const int64_t y = target[i];
      float m = load(xr, 0) + (bias != nullptr ? bias[0] : 0.f), sum = 0.f;  // (not -inf: -ffast-math)
      if (bias != nullptr) {
#pragma omp simd reduction(max : m) reduction(+ : sum)
        for (int64_t v = 0; v < V; ++v) {
          const float x = load(xr, v) + bias[v];
          row.data[v] = x;
          m = std::max(m, x);
          sum += x;
        }
      } else {
#pragma omp simd reduction(max : m) reduction(+ : sum)
        for (int64_t v = 0; v < V; ++v) {
          const float x = load(xr, v);
          row.data[v] = x;
          m = std::max(m, x);
          sum += x;
        }
      }
      const float x_y = row.data[y];
      float z = 0.f;
#pragma omp simd reduction(+ : z)
      for (int64_t v = 0; v < V; ++v) {  // the row now holds exp(x - m): softmax is row / z
        const float e = std::exp(row.data[v] - m);
        row.data[v] = e;
        z += e;
      }
      const float lse = m + std::log(z), inv_z = 1.f / z;
      loss[tid] += static_cast<double>(lse - hit * x_y - smoothing * sum / static_cast<float>(V));
      if (!write_grad) continue;
      if (col != nullptr) {
#pragma omp simd
        for (int64_t v = 0; v < V; ++v) {
          const float g = row.data[v] * inv_z - spread;
          store(xr, v, g);
          col[v] += g;
        }
        col[y] -= hit;
      } else {
#pragma omp simd
        for (int64_t v = 0; v < V; ++v) store(xr, v, row.data[v] * inv_z - spread);
      }
      store(xr, y, row.data[y] * inv_z - spread - hit);  // the target's entry: p_y - e/V - (1 - e)
    }
  });
  if (d_bias != nullptr)
    for (int t = 0; t < threads; ++t)
      if (columns[t])
        for (int64_t v = 0; v < V; ++v) d_bias[v] += columns[t]->data[v];
  double total = 0.0;
  for (double l : loss) total += l;
  return total;
}

}  // namespace

// Σ over the rows of logits [n, V] (float32 or bf16, rows contiguous) plus bias [V] (float32, when
// given) of the label-smoothed cross-entropy against target [n] (int64, each in [0, V)).  With
// write_grad the gradient of that sum overwrites the logits, and its column sums are added into
// d_bias [V] (float32) when given.
double smoothed_cross_entropy(at::Tensor logits, const at::Tensor& target, double smoothing,
                              const c10::optional<at::Tensor>& d_bias, bool write_grad,
                              const c10::optional<at::Tensor>& bias) {
  TORCH_CHECK(logits.device().is_cpu() && logits.dim() == 2 && logits.stride(1) == 1,
              "smoothed_cross_entropy: logits [n, V] with contiguous rows on the CPU");
  const auto dt = logits.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kBFloat16, "smoothed_cross_entropy: float32 or bfloat16 logits");
  const int64_t n = logits.size(0), V = logits.size(1);
  TORCH_CHECK(target.scalar_type() == at::kLong && target.dim() == 1 && target.size(0) == n && target.is_contiguous(),
              "smoothed_cross_entropy: target [n] int64, contiguous");
  const int64_t* y = target.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) TORCH_CHECK(y[i] >= 0 && y[i] < V, "smoothed_cross_entropy: target ", y[i], " not in [0, ", V, ")");
  TORCH_CHECK(smoothing >= 0.0 && smoothing < 1.0, "smoothed_cross_entropy: smoothing in [0, 1)");
  float* db = nullptr;
  if (d_bias.has_value() && d_bias->defined()) {
    TORCH_CHECK(d_bias->scalar_type() == at::kFloat && d_bias->numel() == V && d_bias->is_contiguous(),
                "smoothed_cross_entropy: d_bias [V] float32, contiguous");
    db = d_bias->data_ptr<float>();
  }
  const float* b = nullptr;
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->numel() == V && bias->is_contiguous(),
                "smoothed_cross_entropy: bias [V] float32, contiguous");
    b = bias->data_ptr<float>();
  }
  const float e = static_cast<float>(smoothing);
  if (dt == at::kBFloat16) return rows_impl<at::BFloat16>(logits, b, y, e, db, write_grad);
  return rows_impl<float>(logits, b, y, e, db, write_grad);
}

}  // namespace pipeline_kernels
