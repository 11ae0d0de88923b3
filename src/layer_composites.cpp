// Apart from the dispatch in decoder_layer.cpp, so that the kernels' emulated tests (tests/simt) can link these
// on their own.
#include "autotrain/layer_composites.h"

namespace autotrain {

// x (..., C), weight (C,). Variance in float32 whatever x's dtype; the weight multiplies after the cast
// back, as LlamaRMSNorm (weight * hidden_states.to(input_dtype)).
at::Tensor rms_norm_composite(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor h = x.to(at::kFloat);
  at::Tensor variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * at::rsqrt(variance + eps);
  return weight * h.to(x.scalar_type());
}

at::Tensor swiglu_composite(const at::Tensor& gate, const at::Tensor& up) { return at::silu(gate) * up; }

at::Tensor apply_rotary_composite(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

}  // namespace autotrain
