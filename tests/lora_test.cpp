// One LoRA layer against PEFT (fixtures written by tests/reference/lora.py): dense fp32 and bitsandbytes
// NF4 bases, forward and the gradients of x, A and B; A's initial values for a seed.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include <cmath>

#include "autotrain/fileio.h"
#include "autotrain/lora.h"

namespace autotrain {
namespace {

const std::string kDir = std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/lora";

at::Tensor load(const std::string& name, std::vector<int64_t> shape) {
  std::string bytes = read_file(kDir + "/" + name + ".bin");
  at::Tensor t = at::empty(shape, at::kFloat);
  EXPECT_EQ(bytes.size(), t.nbytes()) << name;
  std::memcpy(t.data_ptr(), bytes.data(), std::min<size_t>(bytes.size(), t.nbytes()));
  return t;
}

double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

// The case's adapter weights (written by tests/reference/lora.py) into the layer.
void load_adapter(LoraLinear& layer, const std::string& id, int64_t r, int64_t in, int64_t out) {
  at::NoGradGuard no_grad;
  layer->lora_A.copy_(load(id + ".lora_A", {r, in}));
  layer->lora_B.copy_(load(id + ".lora_B", {out, r}));
}

TEST(LoraLinear, ForwardAndGradientsEqualPeft) {
  auto cases = nlohmann::json::parse(read_file(kDir + "/cases.json"));
  ASSERT_EQ(cases.size(), 4u);
  for (const auto& c : cases) {
    const std::string id = c["case"];
    const int64_t in = c["in"], out = c["out"], r = c["r"];
    SCOPED_TRACE(id + " base " + c["base"].get<std::string>());
    at::Tensor weight = load(id + ".weight", {out, in});
    at::Tensor bias = c["bias"] ? load(id + ".bias", {out}) : at::Tensor();
    auto quantization = c["base"] == "nf4" ? BaseQuantization::int4 : BaseQuantization::none;
    auto base = std::make_shared<FrozenLinear>(weight, bias, quantization, at::kFloat);
    LoraLinear layer(base, LoraOptions{r, c["alpha"].get<double>(), 0.0, c["rslora"].get<bool>()});
    load_adapter(layer, id, r, in, out);
    at::Tensor x = load(id + ".x", {3, 5, in}).requires_grad_(true);
    at::Tensor y = layer->forward(x);
    // fp32 throughout: the same products summed in a possibly different order, |values| ~ 1, so a few
    // ulps of the sums (~1e-6) separate us from PEFT; 1e-5 catches any wrong term (scaling, transpose).
    EXPECT_LT(max_diff(y, load(id + ".y", {3, 5, out})), 1e-5);
    (y * load(id + ".upstream", {3, 5, out})).sum().backward();
    EXPECT_LT(max_diff(x.grad(), load(id + ".dx", {3, 5, in})), 1e-5);
    EXPECT_LT(max_diff(layer->lora_A.grad(), load(id + ".dA", {r, in})), 1e-5);
    EXPECT_LT(max_diff(layer->lora_B.grad(), load(id + ".dB", {out, r})), 1e-5);
  }
}

// Mixed precision (AutoTrain's bf16 / fp16): a base in that dtype, fp32 adapters, and PEFT under
// torch.autocast, which multiplies x by A and the result by B in the low dtype. Our layer runs the same
// operations in the same order on the same libtorch CPU kernels that wrote the fixture, so the results are
// bit-identical (measured: 0). The two semantics differ by only about one ulp of the dtype (2^-8 relative
// for bf16, 2^-11 for fp16): multiplying in fp32 and rounding once, as this layer did before, lands 1.1 ulp
// of the largest value away. So the bound is a quarter of an ulp of the largest value.
TEST(LoraLinear, MixedPrecisionEqualsPeftUnderAutocast) {
  auto cases = nlohmann::json::parse(read_file(kDir + "/autocast.json"));
  ASSERT_EQ(cases.size(), 2u);
  for (const auto& c : cases) {
    const std::string id = c["case"];
    const int64_t in = c["in"], out = c["out"], r = c["r"];
    const at::ScalarType dtype = c["dtype"] == "bf16" ? at::kBFloat16 : at::kHalf;
    const double ulp = dtype == at::kBFloat16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
    SCOPED_TRACE(id + " " + c["dtype"].get<std::string>());
    auto base = std::make_shared<FrozenLinear>(load(id + ".weight", {out, in}).to(dtype), at::Tensor(),
                                               BaseQuantization::none, dtype);
    LoraLinear layer(base, LoraOptions{r, c["alpha"].get<double>(), 0.0, false});
    load_adapter(layer, id, r, in, out);
    at::Tensor x = load(id + ".x", {3, 5, in}).to(dtype).requires_grad_(true);
    at::Tensor y = layer->forward(x);
    ASSERT_EQ(y.scalar_type(), dtype);
    (y.to(at::kFloat) * load(id + ".upstream", {3, 5, out})).sum().backward();
    EXPECT_EQ(layer->lora_A.grad().scalar_type(), at::kFloat);
    const std::vector<std::tuple<std::string, at::Tensor, at::Tensor>> checks{
        {"y", y.to(at::kFloat), load(id + ".y", {3, 5, out})},
        {"dx", x.grad().to(at::kFloat), load(id + ".dx", {3, 5, in})},
        {"dA", layer->lora_A.grad(), load(id + ".dA", {r, in})},
        {"dB", layer->lora_B.grad(), load(id + ".dB", {out, r})}};
    for (const auto& [name, ours, peft] : checks) {
      const double scale = peft.abs().max().item<double>();
      EXPECT_GT(scale, 0) << name;
      EXPECT_LE(max_diff(ours, peft), ulp / 4 * scale) << name;
    }
  }
}

TEST(LoraLinear, InitialisationEqualsPeftForTheSameSeed) {
  torch::manual_seed(42);
  auto base = std::make_shared<FrozenLinear>(at::zeros({45, 67}), at::Tensor(), BaseQuantization::none, at::kFloat);
  LoraLinear layer(base, LoraOptions{8, 16, 0.0, false});
  EXPECT_TRUE(at::equal(layer->lora_A, load("init.lora_A", {8, 67})));  // same generator, same draws
  EXPECT_TRUE(at::equal(layer->lora_B, at::zeros({45, 8})));
}

TEST(FrozenLinear, NoGradientReachesTheBaseWeight) {
  for (auto q : {BaseQuantization::none, BaseQuantization::int4, BaseQuantization::int8}) {
    SCOPED_TRACE(static_cast<int>(q));
    at::Tensor w = torch::randn({32, 64}, torch::requires_grad());
    FrozenLinear base(w, at::Tensor(), q, at::kFloat);
    at::Tensor x = torch::randn({4, 64}, torch::requires_grad());
    base.forward(x).sum().backward();
    EXPECT_FALSE(w.grad().defined());
    ASSERT_TRUE(x.grad().defined());
    // dx = 1 @ W_q: the column sums of the weight the layer really uses.
    EXPECT_LT(max_diff(x.grad()[0], base.weight(at::kFloat).sum(0)), 1e-5);
  }
}

TEST(FrozenLinear, Int8RowwiseErrorIsWithinHalfAStep) {
  at::Tensor w = at::randn({16, 100});
  Int8Weight q = quantize_int8_rowwise(w);
  at::Tensor back = dequantize_int8_rowwise(q, at::kFloat);
  at::Tensor half_step = (w.abs().amax(1, true) / 127.0f) / 2.0f;
  EXPECT_TRUE(((back - w).abs() <= half_step * 1.0001f).all().item<bool>());
}

}  // namespace
}  // namespace autotrain

namespace autotrain {
namespace {

// Three LoRA layers on one input (q, k, v of a layer), fused against separate LoraLinear layers (the
// reference, held to PEFT above): outputs and the gradients of x, every A and every B.
void expect_fused_lora_equals_separate(at::ScalarType base_dtype, double tolerance) {
  torch::manual_seed(7);
  const int64_t in = 96;
  const std::vector<int64_t> outs{96, 32, 32}, ranks{8, 8, 4};
  std::vector<LoraLinear> layers;
  std::vector<const LoraLinearImpl*> loras;
  for (size_t i = 0; i < outs.size(); ++i) {
    auto base = std::make_shared<FrozenLinear>(at::randn({outs[i], in}) * 0.1, at::Tensor(), BaseQuantization::none,
                                               base_dtype);
    layers.emplace_back(base, LoraOptions{ranks[i], 16.0 + 8.0 * i, 0.0, i == 2});
    at::NoGradGuard no_grad;
    layers.back()->lora_B.normal_();  // B starts at zero; give the test non-zero up-projections
    loras.push_back(layers.back().get());
  }
  const at::Tensor x0 = at::randn({2, 7, in}).to(base_dtype);
  const at::Tensor upstream = at::randn({2, 7, 96 + 32 + 32});

  auto run = [&](bool fused) {
    for (auto& layer : layers) {
      layer->lora_A.mutable_grad() = at::Tensor();
      layer->lora_B.mutable_grad() = at::Tensor();
    }
    at::Tensor x = x0.clone().requires_grad_(true);
    std::vector<at::Tensor> outputs;
    if (fused) {
      std::vector<at::Tensor> bases;
      for (auto& layer : layers) bases.push_back(layer->base().forward(x));
      outputs = fused_lora(x, bases, loras);
    } else {
      for (auto& layer : layers) outputs.push_back(layer->forward(x));
    }
    at::Tensor y = at::cat(outputs, -1).to(at::kFloat);
    (y * upstream).sum().backward();
    std::vector<at::Tensor> result{y.detach(), x.grad().to(at::kFloat)};
    for (auto& layer : layers) result.push_back(layer->lora_A.grad()), result.push_back(layer->lora_B.grad());
    return result;
  };
  const std::vector<at::Tensor> separate = run(false), fused = run(true);
  const char* names[] = {"y", "dx", "dA_q", "dB_q", "dA_k", "dB_k", "dA_v", "dB_v"};
  for (size_t i = 0; i < separate.size(); ++i) {
    const double scale = separate[i].abs().max().item<double>();
    EXPECT_GT(scale, 0) << names[i];
    EXPECT_LE((separate[i] - fused[i]).abs().max().item<double>(), tolerance * std::max(1.0, scale)) << names[i];
  }
}

// fp32: the same products, summed in another order (one GEMM of rank 20 instead of three): a few ulps of
// values ~10, so 1e-5 relative to the largest value; a wrong term (scaling, slice, transpose) is off by O(1).
TEST(FusedLora, EqualsSeparateLayersOnTheCpu) { expect_fused_lora_equals_separate(at::kFloat, 1e-5); }

// A bf16 base and x: both paths multiply in bf16 (autocast semantics), the separate layer rounding x.A.B,
// its scaling and the sum with the base one after another, the fused one adding scaling * x.A.B into the
// base inside one GEMM (one rounding): a few ulps of bf16 (2^-8 relative) apart at most.
TEST(FusedLora, EqualsSeparateLayersWithABf16Base) { expect_fused_lora_equals_separate(at::kBFloat16, 1e-2); }

// One layer through the fused path with dropout on (what a GPU run with lora_dropout > 0 takes for every
// projection) equals the layer itself: the same dropout mask, drawn after the base output as the layer draws
// it, and the same update but for its addition into the base output inside one GEMM. fp32: a few ulps of
// values ~10 (1e-5 relative); bf16: a few ulps of bf16 (1e-2 relative, as the fused q/k/v test). Another mask
// changes the results by O(1) (half the inputs dropped differently).
void expect_fused_layer_with_dropout_equals_the_layer(at::ScalarType dtype, double tolerance) {
  torch::manual_seed(11);
  const int64_t in = 48, out = 40;
  auto base = std::make_shared<FrozenLinear>(at::randn({out, in}) * 0.1, at::randn({out}) * 0.1,
                                             BaseQuantization::none, dtype);
  LoraLinear layer(base, LoraOptions{8, 16, 0.5, false});
  {
    at::NoGradGuard no_grad;
    layer->lora_B.normal_();
  }
  layer->train();
  const at::Tensor x0 = at::randn({3, 5, in}).to(dtype);
  const at::Tensor upstream = at::randn({3, 5, out});
  auto run = [&](bool fused) {
    layer->lora_A.mutable_grad() = at::Tensor();
    layer->lora_B.mutable_grad() = at::Tensor();
    at::Tensor x = x0.clone().requires_grad_(true);
    torch::manual_seed(5);
    at::Tensor y = (fused ? lora_forward_fused(*layer, x) : layer->forward(x)).to(at::kFloat);
    (y * upstream).sum().backward();
    return std::vector<at::Tensor>{y.detach(), x.grad().to(at::kFloat), layer->lora_A.grad(), layer->lora_B.grad()};
  };
  const std::vector<at::Tensor> separate = run(false), fused = run(true);
  const char* names[] = {"y", "dx", "dA", "dB"};
  for (size_t i = 0; i < separate.size(); ++i) {
    const double scale = separate[i].abs().max().item<double>();
    EXPECT_GT(scale, 0) << names[i];
    EXPECT_LE((separate[i] - fused[i]).abs().max().item<double>(), tolerance * std::max(1.0, scale)) << names[i];
  }
}

TEST(FusedLora, OneLayerWithDropoutEqualsTheLayer) {
  expect_fused_layer_with_dropout_equals_the_layer(at::kFloat, 1e-5);
  expect_fused_layer_with_dropout_equals_the_layer(at::kBFloat16, 1e-2);
}

}  // namespace
}  // namespace autotrain

namespace autotrain {
namespace {

// LoRA dropout on the CPU (its own noise, src/lora.cpp) is Bernoulli dropout: every value 0 or 1 / (1 - p), a
// share p dropped, neighbours dropped independently (p^2 of adjacent pairs), a new mask each call, the same mask
// again from the same CPU generator state (what a checkpointed layer's re-run and a resumed run rely on), and x's
// gradient the mask. Tolerances: 5 standard deviations of each share over the n draws.
TEST(LoraDropout, CpuMasksAreBernoulliAndFollowTheGenerator) {
  const double p = 0.1;
  const int64_t rows = 1000, in = 1024, n = rows * in;
  auto base = std::make_shared<FrozenLinear>(at::zeros({8, in}), at::Tensor(), BaseQuantization::none, at::kFloat);
  LoraLinear layer(base, LoraOptions{4, 8, p, false});
  layer->train();
  torch::manual_seed(3);
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  const at::Tensor state = generator.get_state();
  at::Tensor x = at::ones({rows, in}).requires_grad_(true);
  const at::Tensor first = layer->lora_input(x);
  first.sum().backward();
  const at::Tensor noise = first.detach();
  EXPECT_TRUE(x.grad().equal(noise));

  const at::Tensor dropped = noise.eq(0);
  const float kept = static_cast<float>(1.0 / (1.0 - p));
  EXPECT_TRUE(dropped.logical_or(noise.eq(kept)).all().item<bool>());
  const double share = dropped.to(at::kDouble).mean().item<double>();
  EXPECT_NEAR(share, p, 5 * std::sqrt(p * (1 - p) / n));
  const at::Tensor flat = dropped.flatten();
  const double pairs = flat.slice(0, 1).logical_and(flat.slice(0, 0, n - 1)).to(at::kDouble).mean().item<double>();
  EXPECT_NEAR(pairs, p * p, 5 * std::sqrt(p * p * (1 - p * p) / n));

  const at::Tensor second = layer->lora_input(x).detach();
  const double both = dropped.logical_and(second.eq(0)).to(at::kDouble).mean().item<double>();
  EXPECT_NEAR(both, p * p, 5 * std::sqrt(p * p * (1 - p * p) / n));  // a new, independent mask

  generator.set_state(state);
  EXPECT_TRUE(layer->lora_input(x).detach().equal(noise));  // the same generator state, the same mask

  layer->eval();
  EXPECT_TRUE(layer->lora_input(x).equal(x));  // off outside training
}

}  // namespace
}  // namespace autotrain
