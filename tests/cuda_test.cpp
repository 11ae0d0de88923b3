// GPU tests: they run where the build has CUDA kernels and the machine a device, and skip otherwise.
#include <gtest/gtest.h>

#include <dlfcn.h>

#include <cmath>
#include <string>
#include <vector>

#include "autotrain/cuda_backend.h"
#include "autotrain/cuda_kernels.h"
#include "autotrain/cuda_ops.h"
#include "autotrain/quant.h"
#include "autotrain/error.h"
#include "autotrain/frozen_linear.h"

namespace autotrain {
namespace {

bool is_loaded(const char* library) { return ::dlopen(library, RTLD_NOW | RTLD_NOLOAD) != nullptr; }

// ensure_cuda_backend(), false where an earlier test of this process already made torch settle on CPU only.
// ctest runs every test in a process of its own, where that cannot happen; a plain run of all tests can.
bool load_cuda_backend() {
  try {
    ensure_cuda_backend();
    return true;
  } catch (const Error& e) {
    if (std::string(e.what()).find("settled on CPU only") == std::string::npos) throw;
    return false;
  }
}

// libtorch_cuda is not linked (it costs every process ~370 MB at start-up); it is loaded when asked for.
TEST(CudaBackend, LoadsOnlyWhenAskedFor) {
  EXPECT_FALSE(is_loaded("libtorch_cuda.so")) << "linked at start-up: autotrain should link torch_cpu and c10 only";
  if (!load_cuda_backend()) GTEST_SKIP() << "torch settled on CPU only in an earlier test; run this test alone";
  EXPECT_TRUE(is_loaded("libtorch_cuda.so"));
  EXPECT_NO_THROW(ensure_cuda_backend());  // a second call is free
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  at::Tensor x = at::arange(6, at::kFloat);
  EXPECT_TRUE(at::equal((x.to(at::kCUDA) * 2).cpu(), x * 2));
}

TEST(CudaKernels, SelfTestRunsOnTheDevice) {
#ifndef AUTOTRAIN_WITH_CUDA
  GTEST_SKIP() << "built without CUDA kernels";
#else
  EXPECT_FALSE(cuda::compiled_architectures().empty());
  if (!load_cuda_backend()) GTEST_SKIP() << "torch settled on CPU only in an earlier test; run this test alone";
  if (!torch::cuda::is_available() || torch::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  EXPECT_EQ(cuda::self_test(), "");
#endif
}

// ---- the 4-bit kernels against their CPU reference (src/quant.cpp) ---------------------------------------

// Skips the calling test unless this build has the kernels and the machine a GPU.
#define REQUIRE_CUDA_DEVICE()                                                                            \
  do {                                                                                                    \
    if (!cuda_kernels_built()) GTEST_SKIP() << "built without CUDA kernels";                             \
    if (!load_cuda_backend()) GTEST_SKIP() << "torch settled on CPU only in an earlier test; run alone"; \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";                                 \
  } while (0)

Quantized4bit on_gpu(Quantized4bit q) {
  q.packed = q.packed.to(at::kCUDA);
  if (q.absmax.defined()) q.absmax = q.absmax.to(at::kCUDA);
  if (q.double_quantized) {
    q.nested.codes = q.nested.codes.to(at::kCUDA);
    q.nested.absmax = q.nested.absmax.to(at::kCUDA);
  }
  return q;
}

struct Shape {
  int64_t rows, cols;
};
// Odd shapes (odd element counts, rows that start mid-byte, columns not a multiple of 8 or 32), a partial
// last block, and aligned shapes that take the vectorised paths.
const std::vector<Shape> kShapes{{1, 1}, {3, 7}, {37, 53}, {129, 200}, {5, 96}, {64, 256}, {130, 1024}};
const std::vector<at::ScalarType> kDtypes{at::kFloat, at::kHalf, at::kBFloat16};

std::string describe(QuantType type, bool dq, int64_t blocksize, Shape s, at::ScalarType dtype) {
  return std::string(type == QuantType::nf4 ? "nf4" : "fp4") + (dq ? " double-quantized" : "") + " blocksize " +
         std::to_string(blocksize) + " " + std::to_string(s.rows) + "x" + std::to_string(s.cols) + " " +
         c10::toString(dtype);
}

// Bit for bit: the kernel rounds each value exactly as the CPU does (see kernels/four_bit.cu).
TEST(CudaKernels, DequantizeEqualsTheCpuBitForBit) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(1);
  for (QuantType type : {QuantType::nf4, QuantType::fp4})
    for (bool dq : {false, true})
      for (int64_t blocksize : {64, 256})
        for (Shape s : kShapes) {
          Quantized4bit q = quantize_4bit(at::randn({s.rows, s.cols}), type, blocksize, dq);
          Quantized4bit g = on_gpu(q);
          for (at::ScalarType dtype : kDtypes) {
            SCOPED_TRACE(describe(type, dq, blocksize, s, dtype));
            at::Tensor expected = dequantize_4bit(q, dtype);
            EXPECT_TRUE(at::equal(dequantize_4bit_cuda(g, dtype).cpu(), expected));
            const int64_t first = s.rows / 3, last = s.rows - s.rows / 4;  // a slice of rows
            EXPECT_TRUE(at::equal(dequantize_4bit_cuda(g, dtype, first, last).cpu(), expected.slice(0, first, last)));
          }
        }
}

// |got - expected| against the fp64 product of the same (rounded) operands. The kernels accumulate in fp32
// in another order than fp64 (a relative error ~ sqrt(K) * 2^-24 of sum |x||w|, bounded here by 1e-5 of it)
// and round the result to the dtype (half an ulp: 2^-9 relative for bf16, 2^-12 for fp16, 0 for fp32;
// twice that allowed, as cuBLAS may round an fp32 intermediate once more).
void expect_close_to_fp64(const at::Tensor& got, const at::Tensor& a, const at::Tensor& b_t, at::ScalarType dtype) {
  at::Tensor a64 = a.cpu().to(at::kDouble), b64 = b_t.cpu().to(at::kDouble);
  at::Tensor expected = at::mm(a64, b64);
  at::Tensor magnitude = at::mm(a64.abs(), b64.abs());
  const double unit = dtype == at::kBFloat16 ? std::ldexp(1.0, -8) : dtype == at::kHalf ? std::ldexp(1.0, -11) : 0.0;
  at::Tensor bound = expected.abs() * unit + magnitude * 1e-5 + 1e-30;
  at::Tensor excess = (got.cpu().to(at::kDouble) - expected).abs() / bound;
  EXPECT_LE(excess.max().item<double>(), 1.0) << "worst element exceeds its bound";
}

TEST(CudaKernels, GemvMatchesTheCpuReference) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(2);
  for (bool dq : {false, true})
    for (Shape s : kShapes)
      for (at::ScalarType dtype : kDtypes)
        for (int64_t m : {1, 3, 8}) {
          SCOPED_TRACE(describe(QuantType::nf4, dq, 64, s, dtype) + " m " + std::to_string(m));
          Quantized4bit q = quantize_4bit(at::randn({s.rows, s.cols}), QuantType::nf4, 64, dq);
          at::Tensor x = at::randn({m, s.cols}).to(dtype);
          at::Tensor y = gemv_4bit_cuda(x.to(at::kCUDA), on_gpu(q));
          ASSERT_EQ(y.sizes(), (std::vector<int64_t>{m, s.rows}));
          expect_close_to_fp64(y, x, dequantize_4bit(q, dtype).t(), dtype);
        }
}

// The sliced matmul (forward x W^T, backward dy W) with slices of 128 rows, so that a 300-row weight takes
// three (128, 128, 44): every slice boundary and the last short slice are covered.
TEST(CudaKernels, SlicedMatmulMatchesTheCpuReference) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(3);
  for (Shape s : std::vector<Shape>{{300, 200}, {129, 96}, {37, 53}})
    for (at::ScalarType dtype : kDtypes)
      for (int64_t m : {9, 257}) {
        SCOPED_TRACE(describe(QuantType::nf4, true, 64, s, dtype) + " m " + std::to_string(m));
        Quantized4bit q = quantize_4bit(at::randn({s.rows, s.cols}), QuantType::nf4, 64, true);
        Quantized4bit g = on_gpu(q);
        const int64_t slice = 128 * s.cols * at::elementSize(dtype);
        at::Tensor w = dequantize_4bit(q, dtype);
        at::Tensor x = at::randn({m, s.cols}).to(dtype);
        expect_close_to_fp64(matmul_4bit_cuda(x.to(at::kCUDA), g, slice), x, w.t(), dtype);
        at::Tensor dy = at::randn({m, s.rows}).to(dtype);
        expect_close_to_fp64(matmul_4bit_transposed_cuda(dy.to(at::kCUDA), g, slice), dy, w, dtype);
      }
}

// The autograd function training uses: GEMV for a few rows, the matmul beyond, dx in the backward, bias,
// a 3-D input; against the CPU layer (src/frozen_linear.cpp) in fp32.
TEST(CudaKernels, Linear4bitAutogradMatchesTheCpuLayer) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(4);
  at::Tensor weight = at::randn({72, 160}), bias = at::randn({72});
  FrozenLinear cpu_layer(weight, bias, BaseQuantization::int4, at::kFloat, FourBitOptions{QuantType::nf4, 64, true});
  Quantized4bit q = on_gpu(quantize_4bit(weight, QuantType::nf4, 64, true));
  for (int64_t tokens : {1, 2, 4, 33}) {  // 2 x 1, 2 x 2 and 2 x 4 rows: GEMV; 2 x 33: the matmul
    SCOPED_TRACE("tokens " + std::to_string(tokens));
    at::Tensor x = at::randn({2, tokens, 160});
    at::Tensor upstream = at::randn({2, tokens, 72});
    at::Tensor x_cpu = x.clone().requires_grad_(true), x_gpu = x.to(at::kCUDA).requires_grad_(true);
    at::Tensor y_cpu = cpu_layer.forward(x_cpu);
    at::Tensor y_gpu = linear_4bit_cuda(x_gpu, q, bias.to(at::kCUDA));
    (y_cpu * upstream).sum().backward();
    (y_gpu * upstream.to(at::kCUDA)).sum().backward();
    // fp32, K = 160 and 72: sums of ~100 products of size ~1 in another order; 1e-4 absolute is ~10 ulps of
    // values ~10, while a wrong term is off by O(1).
    EXPECT_LE((y_gpu.cpu() - y_cpu.detach()).abs().max().item<double>(), 1e-4);
    EXPECT_LE((x_gpu.grad().cpu() - x_cpu.grad()).abs().max().item<double>(), 1e-4);
  }
}

}  // namespace
}  // namespace autotrain
