// llama.cpp's tensor storage types for GGUF files: the float types and the block quantizations that
// llama-quantize writes (ggml-common.h for the block layouts, ggml-quants.c quantize_row_*_ref for the
// quantizers, quantize_iq4_nl / quantize_iq4_xs for those two, as llama-quantize calls them). Our quantizers give llama.cpp's reference bytes for the same float32 input: the oracle is
// tests/data/ggml_quants/, the output of ggml's own functions (its SOURCES.md says how it was made).
//
//   type  values/block  bytes/block  stored per block
//   q4_0       32           18       fp16 d; 4-bit codes, value = d * (q - 8)
//   q4_1       32           20       fp16 d, m; 4-bit codes, value = d * q + m
//   q5_0       32           22       fp16 d; 5-bit codes (high bits apart), value = d * (q - 16)
//   q5_1       32           24       fp16 d, m; 5-bit codes, value = d * q + m
//   q8_0       32           34       fp16 d; int8 codes, value = d * q
//   q2_K      256           84       16 sub-blocks of 16 with 4-bit scale and min; fp16 d, dmin last; 2-bit codes
//   q3_K      256          110       16 sub-blocks of 16 with 6-bit signed scales, fp16 d last; 3-bit codes
//                                    (high bits in a mask apart), value = d * scale * (q - 4)
//   q4_K      256          144       fp16 d, dmin; 8 sub-blocks of 32 with 6-bit scale and min; 4-bit codes
//   q5_K      256          176       as q4_K with 5-bit codes
//   q6_K      256          210       16 sub-blocks of 16 with int8 scales, fp16 d last; 6-bit codes
//   iq4_nl     32           18       fp16 d; 4-bit indices into a 16-value non-linear table, value = d * table[q]
//   iq4_xs    256          136       fp16 d, 8 sub-blocks of 32 with 6-bit signed scales; iq4_nl's table
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace autotrain {

// ggml's type ids (ggml.h enum ggml_type), as written in a GGUF tensor info.
enum class GgmlType : uint32_t {
  f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13,
  q6_K = 14, iq4_nl = 20, iq4_xs = 23, bf16 = 30
};

struct GgmlTypeInfo {
  const char* name;      // ggml_type_name: "q4_K", "bf16", ...
  int64_t block_values;  // values per block along a row (1 for the float types)
  int64_t block_bytes;
};
const GgmlTypeInfo& ggml_type_info(GgmlType type);

// Bytes of `values` values (a whole number of blocks) in this type.
uint64_t ggml_bytes(GgmlType type, int64_t values);

// x (any float dtype) whose last dimension is a multiple of the type's block -> its bytes (uint8, 1-D), each
// row quantized as llama.cpp's reference quantizer does (the float types: rounded to nearest even). With
// `importance` (one value a column: an importance matrix's entry for this weight, the mean square of its input
// activations), as llama-quantize quantizes with it (ggml's quantize_row_*_impl; q8_0 and the float types
// ignore it). Throws Error for rows that are not whole blocks or an importance of another length.
at::Tensor ggml_quantize(const at::Tensor& x, GgmlType type, const at::Tensor& importance = {});

// The inverse: bytes -> float32 of `shape`, as ggml's dequantize_row_* computes them.
at::Tensor ggml_dequantize(const at::Tensor& bytes, GgmlType type, at::IntArrayRef shape);

}  // namespace autotrain
