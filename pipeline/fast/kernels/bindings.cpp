// Python bindings of the fused CPU kernels, built by pipeline/fast/cpu_kernels.py.
#include <torch/extension.h>

#include "common.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace pipeline_kernels;
  m.def("attention_forward", &additive_attention_forward, "additive attention step: fills alpha and context");
  m.def("attention_backward", &additive_attention_backward,
        "its backward: returns d_q; adds into d_keys and d_v");
  m.def("gru_cell_forward", &gru_cell_forward, "GRU gates and update of one step");
  m.def("gru_cell_backward", &gru_cell_backward, "their backward: fills d_gi, d_gh[:, :3H] and ds_prev");
  m.def("smoothed_cross_entropy", &smoothed_cross_entropy,
        "label-smoothed cross-entropy of logits rows (+ bias); optionally its gradient over the logits, column sums into "
        "d_bias");
  m.def("dropout_forward", &dropout_forward,
        "inverted dropout with counter-based 16-bit draws: (output, keep mask as uint8)");
  m.def("dropout_backward", &dropout_backward, "its backward: the gradient where kept, times the scale");
  m.def("maxout_dropout_forward", &maxout_dropout_forward,
        "max over adjacent pairs, then inverted dropout (dropped = 0: none): (output, code: 0 dropped, 1/2 winner)");
  m.def("maxout_dropout_backward", &maxout_dropout_backward, "its backward: the gradient routed to each winner");
  m.def("top_log_probs", &top_log_probs,
        "the k best tokens of each row by log-softmax, sorted, ties to the lower id: (values, ids)");
}
