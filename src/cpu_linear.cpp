#include "autotrain/cpu_linear.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdlib>
#include <cstring>
#include <optional>

namespace autotrain {

namespace {

// mkldnn::_linear_pointwise(Tensor X, Tensor W, Tensor? B, str attr, Scalar?[] scalars, str? algorithm), the op
// torch.compile's CPU backend emits for a linear layer; absent from a libtorch built without oneDNN.
const std::optional<c10::OperatorHandle>& onednn_linear_op() {
  static const std::optional<c10::OperatorHandle> op = [] {
    const bool disabled = [] {
      const char* value = std::getenv("AUTOTRAIN_ONEDNN_LINEAR");
      return value != nullptr && std::strcmp(value, "0") == 0;
    }();
    if (disabled || !at::hasMKLDNN()) return std::optional<c10::OperatorHandle>();
    return c10::Dispatcher::singleton().findOp({"mkldnn::_linear_pointwise", ""});
  }();
  return op;
}

constexpr int64_t kMinimumRows = 64;

// The bias comes by pointer: an undefined tensor cannot be an input of a custom autograd function.
struct FrozenDenseLinear : public torch::autograd::Function<FrozenDenseLinear> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor* bias) {
    ctx->saved_data["weight"] = weight;
    return cpu_linear(x, weight, *bias);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const at::Tensor weight = ctx->saved_data["weight"].toTensor();
    return {cpu_linear(grad_outputs[0], weight.t()), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

bool cpu_linear_uses_onednn(const at::Tensor& x, const at::Tensor& weight) {
  return x.is_cpu() && weight.is_cpu() && x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat &&
         x.dim() >= 2 && x.numel() / std::max<int64_t>(1, x.size(-1)) >= kMinimumRows && onednn_linear_op();
}

at::Tensor cpu_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (!cpu_linear_uses_onednn(x, weight)) return at::linear(x, weight, bias);
  at::NoGradGuard no_grad;
  torch::jit::Stack stack{x.contiguous(),
                          weight,
                          bias.defined() ? c10::IValue(bias.to(x.scalar_type())) : c10::IValue(),
                          c10::IValue("none"),
                          c10::IValue(c10::List<std::optional<at::Scalar>>()),
                          c10::IValue()};
  onednn_linear_op()->callBoxed(&stack);
  return stack.at(0).toTensor();
}

at::Tensor frozen_dense_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return FrozenDenseLinear::apply(x, weight, &bias);
}

}  // namespace autotrain
