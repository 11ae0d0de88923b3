#include "autotrain/lm_loss.h"

#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "autotrain/cpu_linear.h"
#include "autotrain/error.h"
#include "autotrain/text_util.h"

namespace autotrain {

namespace {

constexpr int64_t kIgnoreIndex = -100;

// One chunk's log-probabilities (rows, V) fp32: the compute dtype's logits, exactly as FrozenDenseLinear's
// forward makes them (cpu_linear), cast to fp32, then log-softmax as cross_entropy_loss does. The compute-dtype
// and fp32 logits are temporaries of this expression: only the log-probabilities outlive it.
at::Tensor chunk_log_probs(const at::Tensor& hidden_rows, const at::Tensor& lm_head) {
  return at::_log_softmax(cpu_linear(hidden_rows, lm_head).to(at::kFloat), 1, /*half_to_float=*/false);
}

// hidden (N,C), lm_head (V,C), labels (N): the loss summed chunk by chunk, d hidden recomputed chunk by chunk.
// The ops and their order are autograd's for the composite lm_head_loss_sum_composite:
//   forward   log_probs = _log_softmax(linear(h, W).to(fp32));  loss = nll_loss(log_probs, labels, sum)
//   backward  g = nll_loss_backward(grad, log_probs, labels)     (-grad at each valid label, 0 elsewhere)
//             g = _log_softmax_backward_data(g, log_probs)      (g - softmax * sum(g): grad * (p - onehot))
//             g.to(compute dtype)                               (ToCopyBackward)
//             dh = linear(g, W^T)                                (FrozenDenseLinear's backward)
// so every row of d hidden goes through the same kernels as in the composite; only how many rows a GEMM
// sees changes, which may change a GEMM's blocking (and so fp32 summation order) but not what is summed.
struct LmHeadLossSum : public torch::autograd::Function<LmHeadLossSum> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& lm_head,
                            const at::Tensor& labels, int64_t chunk_rows) {
    const at::Tensor rows = hidden.reshape({-1, hidden.size(-1)});
    at::Tensor total;
    for (int64_t start = 0; start < rows.size(0); start += chunk_rows) {
      const int64_t n = std::min(chunk_rows, rows.size(0) - start);
      at::Tensor loss = at::nll_loss(chunk_log_probs(rows.narrow(0, start, n), lm_head), labels.narrow(0, start, n),
                                     /*weight=*/{}, at::Reduction::Sum, kIgnoreIndex);
      total = total.defined() ? total + loss : loss;
    }
    ctx->save_for_backward({hidden, lm_head, labels});  // references: no copy of the hidden states
    ctx->saved_data["chunk_rows"] = chunk_rows;
    return total;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    const at::Tensor &hidden = saved[0], &lm_head = saved[1], &labels = saved[2];
    const int64_t chunk_rows = ctx->saved_data["chunk_rows"].toInt();
    const at::Tensor& grad_loss = grad_outputs[0];
    const at::Tensor rows = hidden.reshape({-1, hidden.size(-1)});
    at::Tensor grad_rows = at::empty_like(rows);
    for (int64_t start = 0; start < rows.size(0); start += chunk_rows) {
      const int64_t n = std::min(chunk_rows, rows.size(0) - start);
      const at::Tensor targets = labels.narrow(0, start, n);
      at::Tensor grad_logits;
      {  // the chunk's fp32 buffers: log-probabilities, their gradient, the logits' gradient; freed at the brace
        const at::Tensor log_probs = chunk_log_probs(rows.narrow(0, start, n), lm_head);
        const at::Tensor total_weight = std::get<1>(
            at::nll_loss_forward(log_probs, targets, /*weight=*/{}, at::Reduction::Sum, kIgnoreIndex));
        const at::Tensor grad_log_probs = at::nll_loss_backward(grad_loss, log_probs, targets, /*weight=*/{},
                                                                at::Reduction::Sum, kIgnoreIndex, total_weight);
        grad_logits = at::_log_softmax_backward_data(grad_log_probs, log_probs, 1, at::kFloat);
      }
      grad_logits = grad_logits.to(hidden.scalar_type());
      grad_rows.narrow(0, start, n).copy_(cpu_linear(grad_logits, lm_head.t()));
    }
    return {grad_rows.view(hidden.sizes()), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

void check_loss_inputs(const at::Tensor& hidden, const at::Tensor& lm_head, const at::Tensor& shifted_labels) {
  const bool shapes_match = hidden.dim() >= 2 && lm_head.dim() == 2 && lm_head.size(1) == hidden.size(-1) &&
                            shifted_labels.dim() == 1 && shifted_labels.numel() * hidden.size(-1) == hidden.numel();
  if (!shapes_match)
    throw Error("lm_head_loss_sum: hidden (..., C) " + shape_text(hidden.sizes()) + ", lm_head (V, C) " +
                shape_text(lm_head.sizes()) + " and labels (tokens,) " + shape_text(shifted_labels.sizes()) +
                " do not match");
  if (shifted_labels.scalar_type() != at::kLong || hidden.scalar_type() != lm_head.scalar_type())
    throw Error("lm_head_loss_sum: labels must be int64 and hidden and lm_head of one dtype, got " +
                std::string(c10::toString(shifted_labels.scalar_type())) + ", " +
                std::string(c10::toString(hidden.scalar_type())) + " and " +
                std::string(c10::toString(lm_head.scalar_type())));
}

}  // namespace

int64_t lm_loss_chunk_bytes() {
  // A static initialised by a lambda that throws is initialised again at the next call: each call says it.
  static const int64_t bytes = [] {
    const char* value = std::getenv("AUTOTRAIN_LOSS_CHUNK_MB");
    if (value == nullptr || *value == '\0') return kDefaultLossChunkBytes;
    char* end = nullptr;
    const double mib = std::strtod(value, &end);
    if (end == value || *end != '\0' || !(mib > 0) || mib > 1e9)
      throw Error(std::string("AUTOTRAIN_LOSS_CHUNK_MB=") + value + " is not a positive number of MiB");
    return std::max<int64_t>(1, static_cast<int64_t>(mib * (1 << 20)));
  }();
  return bytes;
}

int64_t lm_loss_chunk_rows(int64_t vocab, int64_t budget_bytes) {
  return std::max<int64_t>(1, budget_bytes / (std::max<int64_t>(1, vocab) * 4));
}

at::Tensor lm_head_loss_sum(const at::Tensor& hidden, const at::Tensor& lm_head, const at::Tensor& shifted_labels,
                            int64_t chunk_rows) {
  check_loss_inputs(hidden, lm_head, shifted_labels);
  return LmHeadLossSum::apply(hidden, lm_head, shifted_labels, std::max<int64_t>(1, chunk_rows));
}

at::Tensor lm_head_loss_sum_composite(const at::Tensor& hidden, const at::Tensor& lm_head,
                                      const at::Tensor& shifted_labels) {
  check_loss_inputs(hidden, lm_head, shifted_labels);
  at::Tensor logits = frozen_dense_linear(hidden, lm_head).to(at::kFloat);
  return at::cross_entropy_loss(logits.reshape({-1, lm_head.size(0)}), shifted_labels, /*weight=*/{},
                                at::Reduction::Sum, kIgnoreIndex);
}

}  // namespace autotrain
