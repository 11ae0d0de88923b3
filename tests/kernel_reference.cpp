#include "kernel_reference.h"

#include <gtest/gtest.h>

#include <cmath>

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

}  // namespace autotrain::testing
