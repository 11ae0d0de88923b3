// The CUDA kernels of kernels/ as libtorch operations on 4-bit weights stored on a CUDA device, and the
// autograd function that training uses for a quantized frozen layer on the GPU. In a build without CUDA
// kernels (AUTOTRAIN_WITH_CUDA unset) cuda_kernels_built() is false and the others throw Error.
#pragma once

#include <cstdint>

#include "autotrain/cuda_kernels.h"
#include "autotrain/quant.h"

namespace autotrain {

bool cuda_kernels_built();

// Whether linear_4bit_cuda takes x: a CUDA tensor in fp32 / fp16 / bf16 with a 2-D 4-bit weight on the
// same device, in a build with the kernels. Otherwise callers fall back to dequantize-then-matmul in libtorch.
bool linear_4bit_cuda_supports(const at::Tensor& x, const Quantized4bit& weight);

// Rows [row_begin, row_end) x columns [col_begin, col_end) of the 2-D weight, dense in `dtype`
// (bit-identical to dequantize_4bit); -1 ends: the last row / column.
at::Tensor dequantize_4bit_cuda(const Quantized4bit& weight, at::ScalarType dtype, int64_t row_begin = 0,
                                int64_t row_end = -1, int64_t col_begin = 0, int64_t col_end = -1);

// x (m, in) -> (m, out) for m <= 8: a GEMV kernel (see cuda::gemv_4bit), each packed byte read once.
at::Tensor gemv_4bit_cuda(const at::Tensor& x, const Quantized4bit& weight,
                          cuda::GemvKernel kernel = cuda::GemvKernel::automatic);

// The kernels' view of a 2-D 4-bit weight on a CUDA device (pointers into its tensors; also makes that device
// current) and bitsandbytes' dynamic map behind double-quantized statistics: what the launchers of
// cuda_kernels.h take, for callers that launch them directly (tools/bench_gpu).
cuda::FourBitWeight four_bit_kernel_view(const Quantized4bit& weight);
const cuda::DynamicMap* kernel_dynamic_map();

// The largest slice of the dequantized weight a matmul holds at a time, in bytes: 64 MiB, or
// AUTOTRAIN_DEQUANT_CHUNK_MB. Larger weights are dequantized and multiplied in slices of rows.
int64_t dequantize_chunk_bytes();

// x (..., in) . W^T -> (..., out) and dy (..., out) . W -> (..., in), dequantizing at most `chunk_bytes`
// of W at a time into a scratch slice that cuBLAS (through libtorch) multiplies: slices of rows (output
// features) forward, of columns (input features) backward, so that every output element is one GEMM's
// sum, rounded once.
at::Tensor matmul_4bit_cuda(const at::Tensor& x, const Quantized4bit& weight, int64_t chunk_bytes);
at::Tensor matmul_4bit_transposed_cuda(const at::Tensor& dy, const Quantized4bit& weight, int64_t chunk_bytes);

// y = x W^T + bias with autograd (the gradient flows to x only): GEMV for m <= 8 rows of x, else the
// sliced matmul; the backward is the sliced dy . W. `weight` must outlive the graph.
at::Tensor linear_4bit_cuda(const at::Tensor& x, const Quantized4bit& weight, const at::Tensor& bias);

}  // namespace autotrain
