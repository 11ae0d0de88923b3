// Frozen-weight quantization, byte for byte as bitsandbytes stores it (the oracle is
// bitsandbytes.functional.quantize_4bit / quantize_blockwise on the CPU):
//  - 4-bit NF4 / FP4: the weight flattened, cut into blocks of `blocksize`, each block divided by its
//    absmax (fp32) and mapped to the nearest code; two codes per byte, the first element in the high nibble.
//  - double quantization (bitsandbytes' compress_statistics): the absmax vector minus its mean is itself
//    quantized to 8 bits with bitsandbytes' dynamic map in blocks of 256.
// These CPU functions are the reference the CUDA kernels in kernels/ are held to.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace autotrain {

enum class QuantType { nf4, fp4 };

QuantType parse_quant_type(const std::string& name);  // "nf4" or "fp4"
const std::array<float, 16>& code_4bit(QuantType type);

// bitsandbytes' signed dynamic 8-bit map (create_dynamic_map(signed=True)): 256 sorted values in [-1, 1].
const std::array<float, 256>& dynamic_map_8bit();

struct Quantized8bit {
  at::Tensor codes;   // uint8 (n,)
  at::Tensor absmax;  // float32 (ceil(n / blocksize),)
  int64_t blocksize = 256;
};

// Blockwise 8-bit quantization with the dynamic map (bitsandbytes quantize_blockwise on the CPU).
Quantized8bit quantize_blockwise_8bit(const at::Tensor& values, int64_t blocksize);
at::Tensor dequantize_blockwise_8bit(const Quantized8bit& quantized);  // float32 (n,)
// The same values from torch ops, on the codes' device (CPU or CUDA).
at::Tensor dequantize_blockwise_8bit_torch(const Quantized8bit& quantized);

struct Quantized4bit {
  QuantType type = QuantType::nf4;
  int64_t blocksize = 64;
  std::vector<int64_t> shape;  // the original weight's shape
  at::Tensor packed;           // uint8 (ceil(n / 2),): two 4-bit codes per byte, first in the high nibble
  at::Tensor absmax;           // float32 (blocks,) without double quantization
  // With double quantization: absmax = dequantize_blockwise_8bit(nested) + offset.
  bool double_quantized = false;
  Quantized8bit nested;
  float offset = 0;
  // `packed` holds the bytes in the tensor-core GEMV's gemv_tiles order (cuda_kernels.h; rows padded with zeros to
  // whole tiles of 16, 2-D weights with columns a multiple of 64) instead of the flat weight's: what generation on
  // a GPU converts an int4 model to unless AUTOTRAIN_GEMV_TILES=0 (src/cuda_ops.h). The statistics do not change.
  bool gemv_tiles = false;

  int64_t numel() const;
  int64_t bytes() const;  // storage of packed + absmax (+ nested statistics)
  Quantized4bit to(at::Device device) const;  // the same storage on `device`
};

// weight: any float dtype, any shape. blocksize: 32, 64, ..., 4096 (bitsandbytes' choices).
Quantized4bit quantize_4bit(const at::Tensor& weight, QuantType type = QuantType::nf4, int64_t blocksize = 64,
                            bool double_quantize = false);
// The same storage, byte for byte, from ATen ops on the weight's device (CPU or CUDA): what a weight bound
// for a GPU is quantized with there. Double quantization's small nested part runs on the CPU, then moves.
Quantized4bit quantize_4bit_torch(const at::Tensor& weight, QuantType type = QuantType::nf4, int64_t blocksize = 64,
                                  bool double_quantize = false);
// The packed bytes of `quantized` in the flat weight's order (rows layout), with torch ops on their device: the
// bytes themselves when they are in it, else a reordered copy of gemv_tiles ones.
at::Tensor packed_rows(const Quantized4bit& quantized);
// The absmax of every block in float32, undoing double quantization when present; on the storage's device.
at::Tensor block_absmax(const Quantized4bit& quantized);
// Back to a dense tensor of `dtype` and the original shape (values computed in fp32, then cast, as
// bitsandbytes does). CPU storage only: a loop over the bytes.
at::Tensor dequantize_4bit(const Quantized4bit& quantized, at::ScalarType dtype = at::kFloat);
// The same result, bit for bit, from torch ops on the storage's device (CPU or CUDA): what a CUDA weight
// uses until the CUDA kernels take over.
at::Tensor dequantize_4bit_torch(const Quantized4bit& quantized, at::ScalarType dtype = at::kFloat);

}  // namespace autotrain
