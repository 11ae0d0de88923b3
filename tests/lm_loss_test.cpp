// lm_head_loss_sum (the chunked training loss) against the unchunked composite it replaces, differentiated by
// autograd: the loss and d hidden for fp32 and bf16, chunks that do and do not divide the tokens, ignored labels.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "autotrain/cpu_linear.h"
#include "autotrain/lm_loss.h"
#include "test_util.h"

namespace autotrain {
namespace {

constexpr int64_t kBatch = 3, kTime = 50, kHidden = 64, kVocab = 1000;  // 150 tokens, the llama fixture's C and V

struct LossAndGradient {
  double loss = 0;
  at::Tensor grad;  // d hidden, in hidden's dtype
};

// The trainer's backward: loss / window tokens (123), times a loss scale (1024), so grad_output is not 1.
template <typename LossFunction>
LossAndGradient loss_and_gradient(const at::Tensor& hidden, LossFunction loss_of) {
  at::Tensor h = hidden.clone().requires_grad_(true);
  at::Tensor loss = loss_of(h);
  EXPECT_EQ(loss.scalar_type(), at::kFloat);
  EXPECT_EQ(loss.dim(), 0);
  (loss / 123.0 * 1024.0).backward();
  return {loss.item<double>(), h.grad()};
}

// Labels in [0, V) with -100 at every fifth token, at the last token (the shifted padding) and at tokens
// 70..90, which hold a whole chunk of 7 (70..76) and many chunks of 1.
at::Tensor labels_with_ignored() {
  at::Tensor labels = at::randint(0, kVocab, {kBatch * kTime}, at::kLong);
  labels.slice(0, 0, labels.size(0), 5).fill_(-100);
  labels.slice(0, 70, 91).fill_(-100);
  labels[-1] = -100;
  return labels;
}

TEST(LmHeadLossSum, EqualsTheUnchunkedCompositeAndItsGradient) {
  torch::manual_seed(21);
  const at::Tensor hidden32 = at::randn({kBatch, kTime, kHidden});
  const at::Tensor lm_head32 = at::randn({kVocab, kHidden}) * 0.2;  // logits ~ N(0, 2.6): a spread softmax
  const at::Tensor labels = labels_with_ignored();
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const at::Tensor hidden = hidden32.to(dtype), lm_head = lm_head32.to(dtype);
    const LossAndGradient reference =
        loss_and_gradient(hidden, [&](const at::Tensor& h) { return lm_head_loss_sum_composite(h, lm_head, labels); });
    const double grad_scale = reference.grad.abs().max().item<double>();
    for (int64_t chunk_rows : {int64_t(1), int64_t(7), int64_t(64), kBatch * kTime, int64_t(100000)}) {
      SCOPED_TRACE(std::string(c10::toString(dtype)) + ", chunks of " + std::to_string(chunk_rows) + " tokens");
      const LossAndGradient chunked = loss_and_gradient(
          hidden, [&](const at::Tensor& h) { return lm_head_loss_sum(h, lm_head, labels, chunk_rows); });
      ASSERT_EQ(chunked.grad.scalar_type(), dtype);
      ASSERT_EQ(chunked.grad.sizes(), hidden.sizes());
      const double loss_error = std::abs(chunked.loss - reference.loss) / std::abs(reference.loss);
      const double grad_error =
          (chunked.grad.to(at::kDouble) - reference.grad.to(at::kDouble)).abs().max().item<double>();
      std::printf("%s, chunks of %lld: loss %.9g, relative difference %.3g; max |d hidden difference| %.3g "
                  "(max |d hidden| %.3g)\n",
                  c10::toString(dtype), static_cast<long long>(chunk_rows), chunked.loss, loss_error, grad_error,
                  grad_scale);
      if (chunk_rows >= kBatch * kTime) {  // one chunk: the composite's ops on the composite's shapes
        EXPECT_EQ(chunked.loss, reference.loss);
        EXPECT_TRUE(at::equal(chunked.grad, reference.grad));
        continue;
      }
      // The loss: the chunks' fp32 sums added in another order than one sum over 120 tokens' losses (~7 each):
      // a few fp32 roundings of the total, ~1e-7 relative (seen: 7.2e-8); 1e-6 is ten times that.
      EXPECT_LE(loss_error, 1e-6);
      // d hidden: the same ops row by row, but a GEMM's summation order depends on how many rows it gets (fewer
      // than 64 take MKL instead of oneDNN, and oneDNN blocks by rows too; bf16 1-row products are GEMVs), both
      // for the logits (over C) and for d hidden (over V = 1000 products). Random-order fp32 rounding of such a
      // sum is ~sqrt(V) 2^-24 = 2e-6 of it: seen 1.2e-6 of max |d hidden|; bound 1e-5. In bf16 the fp32 sums
      // round to the same bf16 value or a neighbour: each element within one bf16 step (2^-7 relative).
      if (dtype == at::kFloat) {
        EXPECT_LE(grad_error, 1e-5 * grad_scale);
      } else {
        const at::Tensor got = chunked.grad.to(at::kDouble), want = reference.grad.to(at::kDouble);
        const at::Tensor bound = at::maximum(got.abs(), want.abs()) * std::ldexp(1.0, -7);
        EXPECT_TRUE(((got - want).abs() <= bound).all().item<bool>());
      }
    }
  }
}

TEST(LmHeadLossSum, IgnoredTokensGetNoGradientAndAllIgnoredGivesZero) {
  torch::manual_seed(22);
  const at::Tensor hidden = at::randn({kBatch, kTime, kHidden}), lm_head = at::randn({kVocab, kHidden}) * 0.2;
  const at::Tensor labels = labels_with_ignored();
  const LossAndGradient chunked =
      loss_and_gradient(hidden, [&](const at::Tensor& h) { return lm_head_loss_sum(h, lm_head, labels, 7); });
  const at::Tensor ignored = (labels == -100).view({kBatch, kTime});
  EXPECT_EQ(chunked.grad.index({ignored}).abs().max().item<float>(), 0.0f);
  EXPECT_GT(chunked.grad.index({ignored.logical_not()}).abs().min().item<float>(), 0.0f);

  const at::Tensor none = at::full({kBatch * kTime}, -100, at::kLong);
  const LossAndGradient empty =
      loss_and_gradient(hidden, [&](const at::Tensor& h) { return lm_head_loss_sum(h, lm_head, none, 7); });
  EXPECT_EQ(empty.loss, 0.0);
  EXPECT_EQ(empty.grad.abs().max().item<float>(), 0.0f);
}

TEST(LmHeadLossSum, ChunkRowsFromTheByteBudget) {
  EXPECT_EQ(lm_loss_chunk_rows(1000, 256LL << 20), 67108);          // 268435456 / 4000
  EXPECT_EQ(lm_loss_chunk_rows(152064, kDefaultLossChunkBytes), 441);  // Qwen2.5: 2560 tokens in 6 chunks
  EXPECT_EQ(lm_loss_chunk_rows(152064, 1000), 1);                    // never 0
  EXPECT_GT(lm_loss_chunk_bytes(), 0);
}

TEST(LmHeadLossSum, MismatchedShapesNameTheTensors) {
  const at::Tensor hidden = at::randn({2, 5, 8}), lm_head = at::randn({30, 8});
  EXPECT_NE(testing::error_message_of([&] { lm_head_loss_sum(hidden, lm_head, at::zeros({9}, at::kLong), 4); })
                .find("do not match"),
            std::string::npos);
  EXPECT_NE(testing::error_message_of([&] { lm_head_loss_sum(hidden, lm_head, at::zeros({10}, at::kInt), 4); })
                .find("int64"),
            std::string::npos);
}

}  // namespace
}  // namespace autotrain
