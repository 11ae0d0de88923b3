// The references and tolerances the CUDA kernels are held to, shared by the GPU tests (tests/cuda_test.cpp,
// tests/fused_ops_test.cpp) and the same kernels' tests under the CPU emulator (tests/simt/kernels_emulated_test.cpp).
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <vector>

#include "autotrain/cuda_kernels.h"
#include "autotrain/quant.h"

namespace autotrain::testing {

// |got - expected| against the fp64 product a . b_t of the same (rounded) operands. The kernels accumulate in fp32
// in another order than fp64 (a relative error ~ sqrt(K) * 2^-24 of sum |a||b|, bounded here by 1e-5 of it) and
// round the result to the dtype (half an ulp: 2^-9 relative for bf16, 2^-12 for fp16, 0 for fp32; twice that
// allowed, as cuBLAS may round an fp32 intermediate once more).
void expect_close_to_fp64(const at::Tensor& got, const at::Tensor& a, const at::Tensor& b_t, at::ScalarType dtype);

// The weight a GEMV kernel multiplies: each code value rounded to `code_dtype` (the tensor cores' fp16 / bf16
// operand; fp32 on the CUDA cores), times its block's scale (applied in fp32 to a sum, exactly here in fp64).
at::Tensor scaled_code_weight(const Quantized4bit& q, at::ScalarType code_dtype);

// The gemv_tiles layout of a weight's packed bytes (cuda_kernels.h), with torch ops, on the CPU: rows padded with
// zeros to whole tiles of 16, each tile's row r = 8 h + g and packed byte 32 c + 8 t + b of its row reordered to
// [tile][chunk c][g][t][h][b].
at::Tensor gemv_tiles_of(const Quantized4bit& q);

// "" when every element of `actual` lies within ulps * unit * |expected| + spread * max|expected| of `expected`
// (the dtype's roundings, and fp32 differences before the last rounding, which can be large next to a result
// that cancelled), else how many do not and the worst of them. NaN never matches. One ulp of a value v of the
// dtype is at most unit * |v| (7, 10 and 23 stored mantissa bits); below the dtype's smallest subnormal the
// relative bound stops.
std::string mismatch(const at::Tensor& actual, const at::Tensor& expected, double ulps, double spread);

struct Pass {
  at::Tensor out;
  std::vector<at::Tensor> grads;  // one per input
};

// op on fresh leaves of `inputs` (same values and strides, requiring grad), then the backward of `upstream`.
Pass forward_backward(const std::function<at::Tensor(const std::vector<at::Tensor>&)>& op,
                      const std::vector<at::Tensor>& inputs, const at::Tensor& upstream);

// A contiguous tensor of `shape` whose data starts one element past a 16-byte boundary: the kernels' scalar path.
at::Tensor misaligned_randn(at::IntArrayRef shape, const at::TensorOptions& options);

// The kernels' element type of a tensor dtype (fp32, fp16, bf16), for tests that call the launchers directly.
cuda::DType kernel_dtype_of(at::ScalarType dtype);

// "bf16 2 7 96": a dtype and a shape, for SCOPED_TRACE.
std::string describe(at::ScalarType dtype, at::IntArrayRef shape);

}  // namespace autotrain::testing
