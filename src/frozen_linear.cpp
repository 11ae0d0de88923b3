#include "autotrain/frozen_linear.h"

#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>

#include "autotrain/cpu_linear.h"
#include "autotrain/cuda_ops.h"
#include "autotrain/error.h"

namespace autotrain {

BaseQuantization parse_base_quantization(const std::optional<std::string>& name) {
  if (!name || *name == "none") return BaseQuantization::none;
  if (*name == "int4") return BaseQuantization::int4;
  if (*name == "int8") return BaseQuantization::int8;
  throw config_error("quantization \"" + *name + "\": expected int4, int8 or none");
}

Int8Weight quantize_int8_rowwise(const at::Tensor& weight) {
  at::Tensor w = weight.to(at::kFloat);
  at::Tensor scale = w.abs().amax(1) / 127.0f;
  at::Tensor safe = at::where(scale > 0, scale, at::ones_like(scale));
  at::Tensor codes = at::round(w / safe.unsqueeze(1)).clamp(-127, 127).to(at::kChar);
  return {codes, scale};
}

at::Tensor dequantize_int8_rowwise(const Int8Weight& q, at::ScalarType dtype) {
  return (q.codes.to(at::kFloat) * q.scale.unsqueeze(1)).to(dtype);
}

namespace {

// y = x W^T + b with W produced by `layer` on demand; the backward gives dx = dy W only.
struct DequantizeMatmul : public torch::autograd::Function<DequantizeMatmul> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const FrozenLinear* layer) {
    ctx->saved_data["layer"] = reinterpret_cast<int64_t>(layer);
    at::Tensor w = layer->weight(x.scalar_type());
    at::Tensor b = layer->bias().defined() ? layer->bias().to(x.scalar_type()) : at::Tensor();
    return cpu_linear(x, w, b);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto* layer = reinterpret_cast<const FrozenLinear*>(ctx->saved_data["layer"].toInt());
    const at::Tensor& dy = grad_outputs[0];
    return {cpu_linear(dy, layer->weight(dy.scalar_type()).t()), at::Tensor()};
  }
};

}  // namespace

FrozenLinear::FrozenLinear(const at::Tensor& weight, const at::Tensor& bias, BaseQuantization quantization,
                           at::ScalarType dtype, FourBitOptions four_bit)
    : quantization_(quantization), in_features_(weight.size(1)), out_features_(weight.size(0)) {
  if (weight.dim() != 2) throw Error("FrozenLinear: the weight must be 2-D (out, in)");
  at::NoGradGuard no_grad;
  if (bias.defined()) bias_ = bias.detach().to(dtype);
  switch (quantization) {
    case BaseQuantization::none:
      dense_ = weight.detach().to(dtype).contiguous();
      break;
    case BaseQuantization::int4: {
      // A weight already on a GPU is quantized there, by torch ops that give the CPU loop's bytes.
      const auto quantize = weight.is_cpu() ? quantize_4bit : quantize_4bit_torch;
      four_bit_ = quantize(weight.detach(), four_bit.type, four_bit.blocksize, four_bit.double_quantize);
      break;
    }
    case BaseQuantization::int8:
      eight_bit_ = quantize_int8_rowwise(weight.detach());
      break;
  }
}

at::Tensor FrozenLinear::weight(at::ScalarType dtype) const {
  at::NoGradGuard no_grad;
  switch (quantization_) {
    case BaseQuantization::none:
      return dense_.scalar_type() == dtype ? dense_ : dense_.to(dtype);
    case BaseQuantization::int4:
      // The byte loop reads host memory; a weight on a GPU is dequantized with torch ops, to the same values.
      return four_bit_.packed.is_cpu() ? dequantize_4bit(four_bit_, dtype) : dequantize_4bit_torch(four_bit_, dtype);
    case BaseQuantization::int8:
      return dequantize_int8_rowwise(eight_bit_, dtype);
  }
  return {};
}

void FrozenLinear::to(at::Device device) {
  at::NoGradGuard no_grad;
  auto move = [device](at::Tensor& tensor) {
    if (tensor.defined()) tensor = tensor.to(device);
  };
  move(dense_);
  move(bias_);
  if (quantization_ == BaseQuantization::int4) four_bit_ = four_bit_.to(device);
  move(eight_bit_.codes);
  move(eight_bit_.scale);
}

bool FrozenLinear::tile_for_gemv(at::ScalarType dtype) {
  if (quantization_ != BaseQuantization::int4 || !four_bit_.packed.is_cuda()) return false;
  return tile_4bit_for_gemv_cuda(four_bit_, dtype);
}

at::Tensor FrozenLinear::forward(const at::Tensor& x) const {
  if (quantization_ == BaseQuantization::none) {
    at::Tensor b = bias_.defined() ? bias_.to(x.scalar_type()) : at::Tensor();
    return frozen_dense_linear(x, weight(x.scalar_type()), b);
  }
  // On a GPU: the 4-bit kernels (kernels/four_bit.cu); shapes and dtypes they do not take fall through.
  if (quantization_ == BaseQuantization::int4 && linear_4bit_cuda_supports(x, four_bit_))
    return linear_4bit_cuda(x, four_bit_, bias_);
  return DequantizeMatmul::apply(x, this);
}

std::vector<at::Tensor> FrozenLinear::forward_all(const std::vector<const FrozenLinear*>& layers, const at::Tensor& x) {
  const int64_t in = x.size(-1), rows = x.numel() / std::max<int64_t>(in, 1);
  bool grouped = gemv_grouping() && layers.size() >= 2 && layers.size() <= static_cast<size_t>(cuda::kMaxGemvGroup) &&
                 rows >= 1 && rows <= cuda::kMaxGemvRows && !(at::GradMode::is_enabled() && x.requires_grad());
  for (const FrozenLinear* layer : layers)  // in one layout, all tiled or none (cuda::gemv_4bit_group)
    grouped = grouped && layer->quantization_ == BaseQuantization::int4 &&
              layer->four_bit_.gemv_tiles == layers.front()->four_bit_.gemv_tiles &&
              linear_4bit_cuda_supports(x, layer->four_bit_);
  std::vector<at::Tensor> out;
  if (!grouped) {
    for (const FrozenLinear* layer : layers) out.push_back(layer->forward(x));
    return out;
  }
  std::vector<const Quantized4bit*> weights;
  for (const FrozenLinear* layer : layers) weights.push_back(&layer->four_bit_);
  std::vector<at::Tensor> ys = gemv_4bit_group_cuda(x.reshape({rows, in}), weights);
  for (size_t i = 0; i < layers.size(); ++i) {
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = layers[i]->out_features_;
    at::Tensor y = ys[i].view(shape);
    const at::Tensor& bias = layers[i]->bias_;
    out.push_back(bias.defined() ? y + bias.to(y.scalar_type()) : y);  // as linear_4bit_cuda adds it
  }
  return out;
}

int64_t FrozenLinear::storage_bytes() const {
  int64_t bias_bytes = bias_.defined() ? static_cast<int64_t>(bias_.nbytes()) : 0;
  switch (quantization_) {
    case BaseQuantization::none:
      return static_cast<int64_t>(dense_.nbytes()) + bias_bytes;
    case BaseQuantization::int4:
      return four_bit_.bytes() + bias_bytes;
    case BaseQuantization::int8:
      return static_cast<int64_t>(eight_bit_.codes.nbytes() + eight_bit_.scale.nbytes()) + bias_bytes;
  }
  return 0;
}

}  // namespace autotrain
