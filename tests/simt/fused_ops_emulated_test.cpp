// The fused decoder-layer kernels of kernels/fused_ops.cu (RMSNorm, SwiGLU, rotary; forward and backward) under
// the CPU emulator of tests/simt, against the libtorch composites they replace (src/layer_composites.cpp) run on
// the CPU with autograd, with tests/fused_ops_test.cpp's tolerances (which hold them to the composites on a GPU).
// Here the launchers are called directly on host memory; the autograd wrappers of src/cuda_ops.cpp need CUDA
// tensors and are tested on a GPU only. Each case runs with the emulator's threads in ascending and descending
// order (simt.h).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <limits>
#include <string>
#include <vector>

#include "autotrain/cuda_kernels.h"
#include "autotrain/layer_composites.h"
#include "kernel_reference.h"
#include "simt.h"

namespace autotrain {
namespace {

using testing::describe;
using testing::forward_backward;
using testing::kernel_dtype_of;
using testing::misaligned_randn;
using testing::mismatch;
using testing::Pass;

const std::vector<at::ScalarType> kDtypes{at::kFloat, at::kHalf, at::kBFloat16};
const std::vector<simt::ThreadOrder> kOrders{simt::ThreadOrder::ascending, simt::ThreadOrder::descending};

// A kernel's output: NaN everywhere, so that an element it does not write fails the comparison; misaligned (one
// element past a 16-byte boundary) where asked, as the inputs may be.
at::Tensor nan_like(const at::Tensor& t, bool misaligned) {
  at::Tensor out = misaligned ? misaligned_randn(t.sizes(), t.options()) : at::empty_like(t);
  return out.fill_(std::numeric_limits<double>::quiet_NaN());
}

void expect_ok(const char* problem) { ASSERT_EQ(problem, nullptr) << problem; }

class EmulatedFusedOps : public ::testing::TestWithParam<simt::ThreadOrder> {
 protected:
  void SetUp() override {
    simt::Options options;
    options.order = GetParam();
    simt::set_options(options);
  }
  void TearDown() override { simt::set_options(simt::Options{}); }
};

// Tolerances as tests/fused_ops_test.cpp states them: forward 2 ulps of T + 1e-5 of the largest value, backward
// 1 ulp + 1e-5 (the order of the fp32 sums differs).
TEST_P(EmulatedFusedOps, RmsNormMatchesTheComposite) {
  at::manual_seed(1);
  const double eps = 1e-5;
  for (at::ScalarType dtype : kDtypes)
    for (int64_t cols : {4096, 2047, 96, 3})
      for (int64_t rows : {1, 37})
        for (bool aligned : {true, false}) {
          const std::vector<int64_t> shape{rows, cols};
          SCOPED_TRACE(describe(dtype, shape) + (aligned ? "" : " misaligned"));
          at::Tensor x = aligned ? at::empty(shape, dtype) : misaligned_randn(shape, at::TensorOptions(dtype));
          x.copy_(at::randn(shape) * 3);
          at::Tensor weight = (1 + 0.1 * at::randn({cols})).to(dtype);
          at::Tensor upstream = at::randn(shape).to(dtype);
          Pass reference = forward_backward(
              [&](const std::vector<at::Tensor>& in) { return rms_norm_composite(in[0], weight, eps); }, {x}, upstream);
          at::Tensor out = nan_like(x, !aligned), rstd = at::empty({rows}, at::kFloat);
          expect_ok(cuda::rms_norm_forward(x.data_ptr(), weight.data_ptr(), rows, cols, static_cast<float>(eps),
                                           out.data_ptr(), rstd.data_ptr<float>(), kernel_dtype_of(dtype), nullptr));
          at::Tensor dx = nan_like(x, !aligned);
          expect_ok(cuda::rms_norm_backward(upstream.data_ptr(), x.data_ptr(), weight.data_ptr(),
                                            rstd.data_ptr<float>(), rows, cols, dx.data_ptr(), kernel_dtype_of(dtype),
                                            nullptr));
          EXPECT_EQ(mismatch(out, reference.out, 2, 1e-5), "") << "forward";
          EXPECT_EQ(mismatch(dx, reference.grads[0], 1, 1e-5), "") << "backward";
        }
}

// Forward and dup 1 ulp of T; dgate 1 ulp + 1e-5 of the largest value (silu_backward's fp32 expression may be
// compiled with other contractions than ATen's). In fp32, forward and dup 3 ulps: on the CPU the composite's silu
// takes ATen's vectorised exp (SLEEF, within 1 ulp) and the emulated kernel glibc's expf, where on a GPU both take
// CUDA's expf; that ulp of exp(-g) moves g / (1 + exp(-g)) by up to ~1.5 ulps before its rounding, and the product
// with up rounds once more. In fp16 / bf16 the final rounding to T absorbs it.
TEST_P(EmulatedFusedOps, SwigluMatchesTheComposite) {
  at::manual_seed(2);
  for (at::ScalarType dtype : kDtypes)
    for (const std::vector<int64_t>& shape : std::vector<std::vector<int64_t>>{{1, 8}, {7, 96}, {37, 344}, {5, 2047}})
      for (bool aligned : {true, false}) {
        SCOPED_TRACE(describe(dtype, shape) + (aligned ? "" : " misaligned"));
        at::Tensor gate = aligned ? at::empty(shape, dtype) : misaligned_randn(shape, at::TensorOptions(dtype));
        gate.copy_(at::randn(shape) * 3);
        at::Tensor up = at::randn(shape).to(dtype), upstream = at::randn(shape).to(dtype);
        Pass reference = forward_backward(
            [](const std::vector<at::Tensor>& in) { return swiglu_composite(in[0], in[1]); }, {gate, up}, upstream);
        at::Tensor out = nan_like(gate, !aligned), dgate = nan_like(gate, !aligned), dup = nan_like(gate, !aligned);
        const int64_t n = gate.numel();
        expect_ok(
            cuda::swiglu_forward(gate.data_ptr(), up.data_ptr(), n, out.data_ptr(), kernel_dtype_of(dtype), nullptr));
        expect_ok(cuda::swiglu_backward(upstream.data_ptr(), gate.data_ptr(), up.data_ptr(), n, dgate.data_ptr(),
                                        dup.data_ptr(), kernel_dtype_of(dtype), nullptr));
        const double ulps = dtype == at::kFloat ? 3 : 1;
        EXPECT_EQ(mismatch(out, reference.out, ulps, 0), "") << "forward";
        EXPECT_EQ(mismatch(dgate, reference.grads[0], 1, 1e-5), "") << "dgate";
        EXPECT_EQ(mismatch(dup, reference.grads[1], ulps, 0), "") << "dup";
      }
}

cuda::HeadStrides strides_of(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2)}; }

// q / k in attention's layout (the transpose of a contiguous (B, T, H, D) buffer), the upstream gradient in that
// layout and contiguous; head dimensions that take the 16-byte path and one that does not (6). 1 ulp of T.
TEST_P(EmulatedFusedOps, RotaryMatchesTheComposite) {
  at::manual_seed(4);
  for (at::ScalarType dtype : kDtypes)
    for (int64_t dim : {128, 64, 6})
      for (int64_t tokens : {1, 7, 30})
        for (int64_t heads : {1, 3}) {
          const int64_t batch = 2;
          SCOPED_TRACE(describe(dtype, {batch, heads, tokens, dim}));
          at::Tensor x = at::randn({batch, tokens, heads, dim}).to(dtype).transpose(1, 2);
          at::Tensor angles = at::randn({1, 1, tokens, dim / 2}) * 4;
          angles = at::cat({angles, angles}, -1);
          at::Tensor cos = angles.cos().to(dtype), sin = angles.sin().to(dtype);
          const cuda::RotaryShape shape{batch, heads, tokens, dim};
          for (bool upstream_contiguous : {false, true}) {
            at::Tensor upstream = upstream_contiguous
                                      ? at::randn({batch, heads, tokens, dim}).to(dtype)
                                      : at::randn({batch, tokens, heads, dim}).to(dtype).transpose(1, 2);
            Pass reference = forward_backward(
                [&](const std::vector<at::Tensor>& in) { return apply_rotary_composite(in[0], cos, sin); }, {x},
                upstream);
            at::Tensor out = at::full({batch, tokens, heads, dim}, NAN, dtype).transpose(1, 2);
            at::Tensor dx = at::full({batch, tokens, heads, dim}, NAN, dtype).transpose(1, 2);
            expect_ok(cuda::rotary_forward(x.data_ptr(), strides_of(x), cos.data_ptr(), sin.data_ptr(), shape,
                                           out.data_ptr(), strides_of(out), kernel_dtype_of(dtype), nullptr));
            expect_ok(cuda::rotary_backward(upstream.data_ptr(), strides_of(upstream), cos.data_ptr(), sin.data_ptr(),
                                            shape, dx.data_ptr(), strides_of(dx), kernel_dtype_of(dtype), nullptr));
            EXPECT_EQ(mismatch(out, reference.out, 1, 0), "") << "forward";
            EXPECT_EQ(mismatch(dx, reference.grads[0], 1, 0), "") << "backward";
          }
        }
}

INSTANTIATE_TEST_SUITE_P(ThreadOrders, EmulatedFusedOps, ::testing::ValuesIn(kOrders),
                         [](const ::testing::TestParamInfo<simt::ThreadOrder>& info) {
                           return info.param == simt::ThreadOrder::ascending ? "Ascending" : "Descending";
                         });

}  // namespace
}  // namespace autotrain
