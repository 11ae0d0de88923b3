#include "kernel_reference.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace autotrain::testing {

void expect_close_to_fp64(const at::Tensor& got, const at::Tensor& a, const at::Tensor& b_t, at::ScalarType dtype) {
  at::Tensor a64 = a.cpu().to(at::kDouble), b64 = b_t.cpu().to(at::kDouble);
  at::Tensor expected = at::mm(a64, b64);
  at::Tensor magnitude = at::mm(a64.abs(), b64.abs());
  const double unit = dtype == at::kBFloat16 ? std::ldexp(1.0, -8) : dtype == at::kHalf ? std::ldexp(1.0, -11) : 0.0;
  at::Tensor bound = expected.abs() * unit + magnitude * 1e-5 + 1e-30;
  at::Tensor excess = (got.cpu().to(at::kDouble) - expected).abs() / bound;
  EXPECT_LE(excess.max().item<double>(), 1.0) << "worst element exceeds its bound";
}

at::Tensor scaled_code_weight(const Quantized4bit& q, at::ScalarType code_dtype) {
  const auto& table = code_4bit(q.type);
  at::Tensor code = at::tensor(at::ArrayRef<float>(table.data(), table.size())).to(code_dtype).to(at::kDouble);
  at::Tensor nibbles =
      at::stack({at::bitwise_right_shift(q.packed, 4), at::bitwise_and(q.packed, 15)}, 1).reshape(-1).to(at::kLong);
  const int64_t n = q.numel();
  at::Tensor scales = block_absmax(q).to(at::kDouble).repeat_interleave(q.blocksize).narrow(0, 0, n);
  return (code.index_select(0, nibbles.narrow(0, 0, n)) * scales).reshape(q.shape);
}

// One ulp of a value v of the dtype is at most unit * |v| (7, 10 and 23 stored mantissa bits).
namespace {

double ulp_unit(at::ScalarType dtype) {
  const int bits = dtype == at::kBFloat16 ? 7 : dtype == at::kHalf ? 10 : 23;
  return std::ldexp(1.0, -bits);
}

// The smallest positive value of the dtype: where the relative bound above stops (subnormals).
double smallest(at::ScalarType dtype) {
  const int exponent = dtype == at::kBFloat16 ? -133 : dtype == at::kHalf ? -24 : -149;
  return std::ldexp(1.0, exponent);
}

}  // namespace

at::Tensor gemv_tiles_of(const Quantized4bit& q) {
  const int64_t rows = q.shape.at(0), cols = q.shape.at(1), tiles = (rows + 15) / 16;
  at::Tensor padded = at::zeros({tiles * 16, cols / 2}, at::kByte);
  padded.slice(0, 0, rows).copy_(q.packed.cpu().view({rows, cols / 2}));
  return padded.view({tiles, 2, 8, cols / 64, 4, 8}).permute({0, 3, 2, 4, 1, 5}).contiguous().view(-1);
}

std::string mismatch(const at::Tensor& actual, const at::Tensor& expected, double ulps, double spread) {
  if (actual.sizes() != expected.sizes()) return "shapes differ";
  const at::ScalarType dtype = expected.scalar_type();
  at::Tensor a = actual.detach().to(at::kCPU, at::kDouble).flatten();
  at::Tensor b = expected.detach().to(at::kCPU, at::kDouble).flatten();
  const double scale = b.abs().max().item<double>();
  at::Tensor bound = b.abs() * (ulps * ulp_unit(dtype)) + (spread * scale + ulps * smallest(dtype));
  at::Tensor excess = (a - b).abs() / bound;
  at::Tensor bad = excess.isnan().logical_or(excess > 1);
  const int64_t count = bad.sum().item<int64_t>();
  if (count == 0) return "";
  const int64_t worst = at::where(excess.isnan(), at::full_like(excess, INFINITY), excess).argmax().item<int64_t>();
  return std::to_string(count) + " of " + std::to_string(b.numel()) + " elements outside the tolerance; worst at " +
         std::to_string(worst) + ": " + std::to_string(a[worst].item<double>()) + " against " +
         std::to_string(b[worst].item<double>());
}

Pass forward_backward(const std::function<at::Tensor(const std::vector<at::Tensor>&)>& op,
                      const std::vector<at::Tensor>& inputs, const at::Tensor& upstream) {
  std::vector<at::Tensor> leaves;
  for (const at::Tensor& t : inputs) leaves.push_back(t.detach().requires_grad_(true));
  Pass pass;
  at::Tensor out = op(leaves);
  out.backward(upstream);
  pass.out = out.detach();
  for (const at::Tensor& leaf : leaves) pass.grads.push_back(leaf.grad());
  return pass;
}

cuda::DType kernel_dtype_of(at::ScalarType dtype) {
  return dtype == at::kHalf ? cuda::DType::f16 : dtype == at::kBFloat16 ? cuda::DType::bf16 : cuda::DType::f32;
}

std::string describe(at::ScalarType dtype, at::IntArrayRef shape) {
  std::string text = c10::toString(dtype);
  for (int64_t n : shape) {
    text += ' ';
    text += std::to_string(n);
  }
  return text;
}

at::Tensor misaligned_randn(at::IntArrayRef shape, const at::TensorOptions& options) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return at::randn({n + 1}, options).narrow(0, 1, n).view(shape);
}

}  // namespace autotrain::testing
