// The CPU references the 4-bit kernels are held to, shared by tests/cuda_test.cpp (the kernels on a GPU) and
// tests/simt/kernels_emulated_test.cpp (the same kernels under the CPU emulator).
#pragma once

#include <ATen/ATen.h>

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

}  // namespace autotrain::testing
