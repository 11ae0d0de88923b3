// The fused decoder-layer kernels (kernels/fused_ops.cu, through src/cuda_ops.cpp) against the composite libtorch
// ops they replace, both run on the GPU on the same inputs, forward and backward (random upstream gradients),
// over fp32 / fp16 / bf16 and odd shapes. The GPU tests skip without kernels or a device.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "autotrain/cuda_ops.h"
#include "autotrain/model.h"
#include "kernel_reference.h"
#include "test_util.h"

namespace autotrain {
namespace {

using testing::describe;
using testing::forward_backward;
using testing::misaligned_randn;
using testing::mismatch;
using testing::Pass;

const std::vector<at::ScalarType> kDtypes{at::kFloat, at::kHalf, at::kBFloat16};

// Whether `out` came from the fused autograd function `name` (its node is named after the C++ type).
bool made_by(const at::Tensor& out, const std::string& name) {
  return out.grad_fn() != nullptr && out.grad_fn()->name().find(name) != std::string::npos;
}

bool fused_ops_switched_off() {
  const char* value = std::getenv("AUTOTRAIN_FUSED_OPS");
  return value != nullptr && std::string(value) == "0";
}

// ---- the tolerance itself, on the CPU: it must catch the mistakes a kernel could make -------------------------

// A generator of its own: torch::manual_seed would make torch settle on CPU only before the GPU tests after it
// load the CUDA backend, when they run in one process.
TEST(FusedOpsTolerance, CatchesAWrongSignOrFactor) {
  at::Generator generator = at::detail::createCPUGenerator(3);
  auto randn = [&](at::IntArrayRef shape) { return at::randn(shape, generator); };
  for (at::ScalarType dtype : kDtypes) {
    SCOPED_TRACE(c10::toString(dtype));
    at::Tensor x = randn({2, 7, 3, 64}).to(dtype).transpose(1, 2);
    at::Tensor angles = randn({1, 1, 7, 32});
    angles = at::cat({angles, angles}, -1);
    at::Tensor cos = angles.cos().to(dtype), sin = angles.sin().to(dtype);
    at::Tensor rotated = apply_rotary_composite(x, cos, sin);
    EXPECT_EQ(mismatch(rotated, rotated, 1, 0), "");
    // rotate_half with the other sign, i.e. (x2, -x1)
    EXPECT_NE(mismatch(apply_rotary_composite(x, cos, -sin), rotated, 1, 1e-5), "");
    at::Tensor h = randn({3, 96}).to(dtype), w = (1 + 0.1 * randn({96})).to(dtype);
    at::Tensor normed = rms_norm_composite(h, w, 1e-5);
    EXPECT_NE(mismatch(rms_norm_composite(h, at::ones_like(w), 1e-5), normed, 2, 1e-5), "");  // no weight
    EXPECT_NE(mismatch(normed * 1.02, normed, 2, 1e-5), "");
    at::Tensor g = randn({3, 96}).to(dtype), u = randn({3, 96}).to(dtype);
    EXPECT_NE(mismatch(at::sigmoid(g) * u, swiglu_composite(g, u), 1, 1e-5), "");  // sigmoid for silu
  }
}

// ---- each fused op against its composite on the GPU ---------------------------------------------------------

at::TensorOptions on_gpu(at::ScalarType dtype) { return at::TensorOptions(dtype).device(at::kCUDA); }

// RMSNorm: x and the weight round alike on both sides; r differs by the order of the fp32 sum of squares
// (~1e-7 relative), which can move round_T(h * r) by one ulp and then weight * that by another: 2 ulps of T
// plus 1e-5 of the largest value (fp32's part). Backward: dx is rounded once from fp32 values that differ
// by the order of the dot product's sum: 1 ulp of T plus 1e-5 of the largest value, which covers that
// difference where the two terms of dx cancel.
TEST(CudaFusedOps, RmsNormMatchesTheComposite) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(1);
  const double eps = 1e-5;
  const std::vector<std::vector<int64_t>> row_shapes{{1, 1}, {3, 37}};
  for (at::ScalarType dtype : kDtypes)
    for (int64_t cols : {4096, 2047, 96, 3})
      for (const auto& rows : row_shapes)
        for (bool aligned : {true, false}) {
          const std::vector<int64_t> shape{rows[0], rows[1], cols};
          SCOPED_TRACE(describe(dtype, shape) + (aligned ? "" : " misaligned"));
          at::Tensor x = aligned ? at::empty(shape, on_gpu(dtype)) : misaligned_randn(shape, on_gpu(dtype));
          x.copy_(at::randn(shape, on_gpu(at::kFloat)) * 3);
          at::Tensor weight = (1 + 0.1 * at::randn({cols}, on_gpu(at::kFloat))).to(dtype);
          at::Tensor upstream = at::randn(shape, on_gpu(dtype));
          ASSERT_TRUE(rms_norm_cuda_supports(x, weight));
          auto fused_op = [&](const std::vector<at::Tensor>& in) { return rms_norm_cuda(in[0], weight, eps); };
          auto composite_op = [&](const std::vector<at::Tensor>& in) { return rms_norm_composite(in[0], weight, eps); };
          Pass fused = forward_backward(fused_op, {x}, upstream);
          Pass reference = forward_backward(composite_op, {x}, upstream);
          EXPECT_EQ(mismatch(fused.out, reference.out, 2, 1e-5), "") << "forward";
          EXPECT_EQ(mismatch(fused.grads[0], reference.grads[0], 1, 1e-5), "") << "backward";
        }
}

// The fused op returns dx only: a weight that requires grad (not a frozen LoRA base) takes the composite.
TEST(CudaFusedOps, RmsNormWithATrainableWeightTakesTheComposite) {
  REQUIRE_CUDA_DEVICE();
  at::Tensor x = at::randn({2, 5, 64}, on_gpu(at::kBFloat16));
  at::Tensor weight = at::ones({64}, on_gpu(at::kBFloat16));
  EXPECT_TRUE(rms_norm_cuda_supports(x, weight));
  EXPECT_FALSE(rms_norm_cuda_supports(x, weight.clone().requires_grad_(true)));
  EXPECT_FALSE(rms_norm_cuda_supports(x, weight.to(at::kFloat)));  // the composite would promote to fp32
  at::Tensor trainable = weight.clone().requires_grad_(true);
  at::Tensor out = rms_norm(x.requires_grad_(true), trainable, 1e-5);
  EXPECT_FALSE(made_by(out, "FusedRmsNorm"));
  out.sum().backward();
  EXPECT_TRUE(trainable.grad().defined());
}

// SwiGLU: silu and both products round as the two libtorch ops do, with the same expf: 1 ulp of T. dgate
// comes from silu_backward's fp32 expression, where nvcc's FMA contractions may differ from ATen's build by an
// fp32 ulp before 1 + g * (1 - s) cancels (near g = -1.28): plus 1e-5 of the largest value.
TEST(CudaFusedOps, SwigluMatchesTheComposite) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(2);
  const std::vector<std::vector<int64_t>> shapes{{1, 1, 8}, {2, 7, 96}, {3, 37, 344}, {1, 5, 2047}, {2, 64, 4096}};
  for (at::ScalarType dtype : kDtypes)
    for (const auto& shape : shapes)
      for (bool aligned : {true, false}) {
        SCOPED_TRACE(describe(dtype, shape) + (aligned ? "" : " misaligned"));
        at::Tensor gate = aligned ? at::empty(shape, on_gpu(dtype)) : misaligned_randn(shape, on_gpu(dtype));
        gate.copy_(at::randn(shape, on_gpu(at::kFloat)) * 3);
        at::Tensor up = at::randn(shape, on_gpu(dtype)), upstream = at::randn(shape, on_gpu(dtype));
        ASSERT_TRUE(swiglu_cuda_supports(gate, up));
        auto fused_op = [](const std::vector<at::Tensor>& in) { return swiglu_cuda(in[0], in[1]); };
        auto composite_op = [](const std::vector<at::Tensor>& in) { return swiglu_composite(in[0], in[1]); };
        Pass fused = forward_backward(fused_op, {gate, up}, upstream);
        Pass reference = forward_backward(composite_op, {gate, up}, upstream);
        EXPECT_EQ(mismatch(fused.out, reference.out, 1, 0), "") << "forward";
        EXPECT_EQ(mismatch(fused.grads[0], reference.grads[0], 1, 1e-5), "") << "dgate";
        EXPECT_EQ(mismatch(fused.grads[1], reference.grads[1], 1, 0), "") << "dup";
      }
}

// Rotary: every product and sum rounds as the composite's ops do, with no transcendental and no reduction:
// 1 ulp of T (bit-identical is expected). The upstream gradient comes in attention's layout and contiguous.
TEST(CudaFusedOps, RotaryMatchesTheComposite) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(4);
  for (at::ScalarType dtype : kDtypes)
    for (int64_t dim : {128, 64, 6})
      for (int64_t tokens : {1, 7, 300})
        for (int64_t heads : {1, 3}) {
          const int64_t batch = 2;
          SCOPED_TRACE(describe(dtype, {batch, heads, tokens, dim}));
          at::Tensor x = at::randn({batch, tokens, heads, dim}, on_gpu(dtype)).transpose(1, 2);
          at::Tensor angles = at::randn({1, 1, tokens, dim / 2}, on_gpu(at::kFloat)) * 4;
          angles = at::cat({angles, angles}, -1);
          at::Tensor cos = angles.cos().to(dtype), sin = angles.sin().to(dtype);
          ASSERT_TRUE(rotary_cuda_supports(x, cos, sin));
          auto fused_op = [&](const std::vector<at::Tensor>& in) { return rotary_cuda(in[0], cos, sin); };
          auto composite_op = [&](const std::vector<at::Tensor>& in) {
            return apply_rotary_composite(in[0], cos, sin);
          };
          for (bool upstream_contiguous : {false, true}) {
            at::Tensor upstream = upstream_contiguous
                                      ? at::randn({batch, heads, tokens, dim}, on_gpu(dtype))
                                      : at::randn({batch, tokens, heads, dim}, on_gpu(dtype)).transpose(1, 2);
            Pass fused = forward_backward(fused_op, {x}, upstream);
            Pass reference = forward_backward(composite_op, {x}, upstream);
            EXPECT_TRUE(fused.out.transpose(1, 2).is_contiguous()) << "the output keeps attention's layout";
            EXPECT_EQ(mismatch(fused.out, reference.out, 1, 0), "") << "forward";
            EXPECT_EQ(mismatch(fused.grads[0], reference.grads[0], 1, 0), "") << "backward";
          }
        }
}

// ---- the dispatch: rms_norm, swiglu and apply_rotary take the fused op where it applies, else the composite ----

TEST(CudaFusedOps, LayerPiecesTakeTheFusedOpsOnTheGpu) {
  REQUIRE_CUDA_DEVICE();
  if (fused_ops_switched_off()) GTEST_SKIP() << "AUTOTRAIN_FUSED_OPS=0";
  at::Tensor x = at::randn({2, 5, 64}, on_gpu(at::kBFloat16)).requires_grad_(true);
  EXPECT_TRUE(made_by(rms_norm(x, at::ones({64}, on_gpu(at::kBFloat16)), 1e-5), "FusedRmsNorm"));
  EXPECT_TRUE(made_by(swiglu(x, x * 2), "FusedSwiglu"));
  at::Tensor q = at::randn({2, 5, 3, 64}, on_gpu(at::kBFloat16)).transpose(1, 2).requires_grad_(true);
  at::Tensor angles = at::zeros({1, 1, 5, 64}, on_gpu(at::kBFloat16));
  EXPECT_TRUE(made_by(apply_rotary(q, angles.cos(), angles.sin()), "FusedRotary"));
  // the CPU always takes the composite
  at::Tensor cpu = x.detach().cpu().requires_grad_(true);
  EXPECT_FALSE(made_by(rms_norm(cpu, at::ones({64}, at::kBFloat16), 1e-5), "FusedRmsNorm"));
}

// q in a layout the rotary kernel does not take (a contiguous (B, H, T, D) tensor) or cos in another dtype:
// the composite, with its results exactly.
TEST(CudaFusedOps, RotaryOnOtherLayoutsTakesTheComposite) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(5);
  at::Tensor angles = at::randn({1, 1, 7, 32}, on_gpu(at::kFloat));
  angles = at::cat({angles, angles}, -1);
  at::Tensor cos = angles.cos().to(at::kBFloat16), sin = angles.sin().to(at::kBFloat16);
  at::Tensor contiguous = at::randn({2, 3, 7, 64}, on_gpu(at::kBFloat16)).requires_grad_(true);
  EXPECT_FALSE(rotary_cuda_supports(contiguous, cos, sin));
  at::Tensor out = apply_rotary(contiguous, cos, sin);
  EXPECT_FALSE(made_by(out, "FusedRotary"));
  EXPECT_TRUE(at::equal(out, apply_rotary_composite(contiguous, cos, sin)));
  at::Tensor q = at::randn({2, 7, 3, 64}, on_gpu(at::kBFloat16)).transpose(1, 2);
  EXPECT_TRUE(rotary_cuda_supports(q, cos, sin));
  EXPECT_FALSE(rotary_cuda_supports(q, cos.to(at::kFloat), sin.to(at::kFloat)));
  EXPECT_FALSE(rotary_cuda_supports(q.narrow(-1, 0, 62), cos.narrow(-1, 0, 62).contiguous(),
                                    sin.narrow(-1, 0, 62).contiguous()));  // not a view of a contiguous buffer
}

}  // namespace
}  // namespace autotrain
