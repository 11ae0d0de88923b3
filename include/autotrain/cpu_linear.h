// The GEMM of a frozen linear layer on the CPU: x W^T + b through oneDNN (libtorch's mkldnn::_linear_pointwise)
// where it applies, else at::linear (libtorch's BLAS, MKL in the PyPI wheel). MKL keeps to its AVX2 code on
// AMD CPUs, where oneDNN uses AVX-512: 2.2x the fp32 throughput of MKL on the bench machine (AMD EPYC, 2 cores,
// block 256 x batch 4 shapes). Results equal at::linear's up to fp32 summation order.
#pragma once

#include <torch/torch.h>

namespace autotrain {

// x (..., in), weight (out, in) (any strides: weight.t() of an (in, out) matrix gives x . M), bias (out,) or
// undefined -> (..., out). No autograd: callers wrap it (FrozenLinear, the LM head).
at::Tensor cpu_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias = {});

// Whether cpu_linear takes oneDNN for this x: a CPU fp32 tensor of at least 64 rows (oneDNN's set-up costs more
// than a GEMV saves), libtorch built with oneDNN, and AUTOTRAIN_ONEDNN_LINEAR not "0".
bool cpu_linear_uses_onednn(const at::Tensor& x, const at::Tensor& weight);

// y = x W^T + b for a frozen W with autograd (the gradient flows to x only; dx = dy W through cpu_linear too).
// W is kept for the backward (no copy: the caller's tensor).
at::Tensor frozen_dense_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias = {});

}  // namespace autotrain
