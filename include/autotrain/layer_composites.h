// The elementwise pieces of a decoder layer as chains of libtorch ops (src/layer_composites.cpp): the CPU path, and
// the reference the fused CUDA kernels (kernels/fused_ops.cu) are held to. model.h's rms_norm, swiglu and
// apply_rotary take these, or the fused kernels for CUDA tensors.
#pragma once

#include <ATen/ATen.h>

namespace autotrain {

// transformers' LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) in float32, cast back to x's dtype, times weight.
at::Tensor rms_norm_composite(const at::Tensor& x, const at::Tensor& weight, double eps);
// The MLP's silu(gate) * up; gate, up (B, T, intermediate).
at::Tensor swiglu_composite(const at::Tensor& gate, const at::Tensor& up);
// q, k (B, heads, T, head_dim) rotated by cos/sin (1, 1, T, head_dim): x * cos + rotate_half(x) * sin.
at::Tensor apply_rotary_composite(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace autotrain
