// The frozen base weight of a linear layer, stored dense (fp32 / fp16 / bf16), 4-bit (NF4 / FP4, as
// bitsandbytes) or 8-bit (int8 with one absmax scale per output row), and its matmul with autograd:
// the gradient flows to the input, never to the weight. A quantized weight is dequantized in the forward
// and again in the backward, so no dequantized copy outlives one matmul (what bitsandbytes' MatMul4Bit
// does). This CPU path is the reference the CUDA kernels are held to.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "autotrain/quant.h"

namespace autotrain {

enum class BaseQuantization { none, int4, int8 };

// "int4" / "int8" / "none" (AutoTrain's quantization key; null means none).
BaseQuantization parse_base_quantization(const std::optional<std::string>& name);

struct Int8Weight {
  at::Tensor codes;  // int8 (out, in): round(W / scale), in [-127, 127]
  at::Tensor scale;  // float32 (out,): absmax of the row / 127
};
Int8Weight quantize_int8_rowwise(const at::Tensor& weight);
at::Tensor dequantize_int8_rowwise(const Int8Weight& quantized, at::ScalarType dtype);

struct FourBitOptions {
  QuantType type = QuantType::nf4;
  int64_t blocksize = 64;
  bool double_quantize = false;
};

class FrozenLinear {
 public:
  // weight (out, in); bias (out,) or undefined. `dtype` is the dtype of a dense weight and of the
  // dequantized weight in the matmul (the compute dtype). A 4-bit weight is quantized on the device the
  // weight is on (the same bytes on any); the storage stays there.
  FrozenLinear(const at::Tensor& weight, const at::Tensor& bias, BaseQuantization quantization,
               at::ScalarType dtype, FourBitOptions four_bit = {});

  // x (..., in) -> (..., out), computed in x's dtype.
  at::Tensor forward(const at::Tensor& x) const;
  // forward(x) of each of `layers` (the projections of one input: q, k and v; gate and up). 4-bit weights on x's GPU
  // take one grouped GEMV launch for a few rows of x without gradient (generation) where gemv_grouping() is on
  // (src/cuda_ops.h); otherwise each layer's forward.
  static std::vector<at::Tensor> forward_all(const std::vector<const FrozenLinear*>& layers, const at::Tensor& x);
  // The dense weight in `dtype` (dequantized when stored quantized), on the storage's device.
  at::Tensor weight(at::ScalarType dtype) const;
  // Moves the storage (weight, bias, quantization statistics) to `device`, unchanged.
  void to(at::Device device);
  // A 4-bit weight on a GPU: its packed bytes reordered for the tensor-core GEMV at `dtype` (gemv_tiles,
  // src/cuda_ops.h) where that kernel takes it; true when they are in that layout now. Every forward gives the same
  // values either way.
  bool tile_for_gemv(at::ScalarType dtype);
  bool gemv_tiled() const { return quantization_ == BaseQuantization::int4 && four_bit_.gemv_tiles; }
  const at::Tensor& bias() const { return bias_; }

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  BaseQuantization quantization() const { return quantization_; }
  int64_t storage_bytes() const;

 private:
  BaseQuantization quantization_;
  int64_t in_features_, out_features_;
  at::Tensor dense_, bias_;
  Quantized4bit four_bit_;
  Int8Weight eight_bit_;
};

}  // namespace autotrain
