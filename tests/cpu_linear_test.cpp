// cpu_linear (oneDNN for fp32 CPU GEMMs of at least 64 rows) against fp64 products, and the autograd wrapper
// that frozen layers and the LM head use.
#include <gtest/gtest.h>

#include <cmath>

#include "autotrain/cpu_linear.h"

namespace autotrain {
namespace {

// |got - exact| <= K * 2^-24 * sum |x||w| per element: the worst case of an fp32 dot product of length K in
// any summation order, so any correct GEMM passes and a wrong element or operand does not.
void expect_within_fp32_rounding(const at::Tensor& got, const at::Tensor& x, const at::Tensor& w_t) {
  at::Tensor x64 = x.to(at::kDouble).reshape({-1, x.size(-1)}), w64 = w_t.to(at::kDouble);
  at::Tensor exact = at::mm(x64, w64), magnitude = at::mm(x64.abs(), w64.abs());
  at::Tensor bound = magnitude * (x.size(-1) * std::ldexp(1.0, -24)) + 1e-30;
  at::Tensor excess = (got.to(at::kDouble).reshape(exact.sizes()) - exact).abs() / bound;
  EXPECT_LE(excess.max().item<double>(), 1.0);
}

TEST(CpuLinear, TakesOneDnnForFp32TrainingShapesOnly) {
  if (!at::hasMKLDNN()) GTEST_SKIP() << "this libtorch has no oneDNN";
  const at::Tensor w = at::randn({32, 48});
  EXPECT_TRUE(cpu_linear_uses_onednn(at::randn({2, 64, 48}), w));
  EXPECT_FALSE(cpu_linear_uses_onednn(at::randn({1, 48}), w));  // generation: one row
  EXPECT_FALSE(cpu_linear_uses_onednn(at::randn({128, 48}).to(at::kBFloat16), w.to(at::kBFloat16)));
}

TEST(CpuLinear, EqualsTheExactProductWithinFp32Rounding) {
  torch::manual_seed(11);
  for (int64_t rows : {1, 64, 300}) {
    SCOPED_TRACE("rows " + std::to_string(rows));
    const at::Tensor x = at::randn({rows, 640}), w = at::randn({200, 640}), b = at::randn({200});
    expect_within_fp32_rounding(cpu_linear(x, w), x, w.t());
    expect_within_fp32_rounding(cpu_linear(x, w, b) - b, x, w.t());
    // x (rows, 200) . M for an (200, 640) matrix M, passed as the transposed view the backward uses
    const at::Tensor dy = at::randn({rows, 200});
    expect_within_fp32_rounding(cpu_linear(dy, w.t()), dy, w);
  }
}

TEST(CpuLinear, FrozenDenseLinearGivesTheInputGradientOnly) {
  torch::manual_seed(12);
  const at::Tensor w = at::randn({96, 160}), b = at::randn({96});
  at::Tensor x = at::randn({3, 50, 160}).requires_grad_(true);
  at::Tensor y = frozen_dense_linear(x, w, b);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{3, 50, 96}));
  expect_within_fp32_rounding(y.detach() - b, x.detach(), w.t());
  const at::Tensor dy = at::randn({3, 50, 96});
  y.backward(dy);
  expect_within_fp32_rounding(x.grad(), dy, w);
  EXPECT_FALSE(w.requires_grad());
}

}  // namespace
}  // namespace autotrain
