// The optimizers against the ones transformers' Trainer builds for each `optimizer` name (fixture written by
// tests/reference/optimizers.py): 12 steps over LoRA-shaped parameters with seeded gradients and a changing lr.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/optimizer.h"
#include "test_util.h"

namespace autotrain {
namespace {

using nlohmann::json;

// A nested JSON list of numbers as an fp32 tensor of its shape.
at::Tensor tensor_of(const json& values) {
  std::vector<int64_t> shape;
  for (const json* level = &values; level->is_array(); level = &level->front()) {
    shape.push_back(static_cast<int64_t>(level->size()));
    if (level->empty()) break;
  }
  std::vector<float> flat;
  const auto flatten = [&flat](const json& v, const auto& self) -> void {
    if (!v.is_array()) return flat.push_back(v.get<float>());
    for (const json& item : v) self(item, self);
  };
  flatten(values, flatten);
  return at::tensor(flat, at::kFloat).reshape(shape);
}

const json& cases() {
  static const json all =
      json::parse(read_file(std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/optimizers/steps.json"));
  return all;
}

using Parameters = std::vector<std::pair<std::string, at::Tensor>>;

Parameters initial_parameters(const json& c) {
  Parameters parameters;
  for (const auto& [name, values] : c["initial"].items()) parameters.emplace_back(name, tensor_of(values));
  return parameters;
}

// The oracle's steps [first, last) on `optimizer`; the largest |difference| from the oracle's parameters after each.
double run_steps(Optimizer& optimizer, const json& c, size_t first, size_t last) {
  double worst = 0;
  for (size_t s = first; s < last; ++s) {
    const json& step = c["steps"][s];
    for (auto& [name, p] : optimizer.parameters()) {
      at::Tensor parameter = p;  // a handle to the same tensor, to set its gradient
      parameter.mutable_grad() = tensor_of(step["grads"][name]).to(p.device());
    }
    optimizer.step(step["lr"].get<double>());
    optimizer.zero_grad();
    for (const auto& [name, p] : optimizer.parameters())
      worst = std::max(worst, (p.cpu() - tensor_of(step["after"][name])).abs().max().item<double>());
  }
  return worst;
}

// The names whose reference rounds AdamW's update differently from torch.optim.AdamW (torch's fused kernel,
// bitsandbytes' rearranged step): we run adamw_torch's arithmetic for them.
bool rounds_like_another_adamw(const std::string& name) {
  return name == "adamw_torch_fused" || name == "paged_adamw_32bit";
}

TEST(Optimizer, EachNameStepsAsTheOptimizerTransformersTrainerBuilds) {
  ASSERT_EQ(cases().size(), 11u);
  for (const json& c : cases()) {
    const std::string name = c["optimizer"];
    SCOPED_TRACE(name);
    Optimizer optimizer(initial_parameters(c), OptimizerOptions{name, c["weight_decay"].get<double>()});
    const double worst = run_steps(optimizer, c, 0, c["steps"].size());
    // The same operations in the same order on the same fp32 values give the same bits. The other AdamW kernels
    // differ in the last bits of each step (7.5e-9 seen on parameters of ~0.1-2, a few fp32 ulps); 1e-7 is 10000x
    // below one step's size (~1e-3).
    EXPECT_LE(worst, rounds_like_another_adamw(name) ? 1e-7 : 0.0);
    EXPECT_EQ(optimizer.steps_taken(), 12);
  }
}

// On a GPU, with libtorch's CUDA kernels for the same operations (multi-tensor ones for all but Adafactor): within
// float rounding of the CPU oracle. Kernels may fuse a multiply and an add and reduce in another order, a few ulps a
// step on parameters of ~0.1-2; 1e-5 is 100x below one step's size (~1e-3), so a wrong formula or constant fails.
TEST(OptimizerCuda, EachNameStepsAsTheOracleOnTheGpu) {
  REQUIRE_CUDA_DEVICE();
  for (const json& c : cases()) {
    const std::string name = c["optimizer"];
    SCOPED_TRACE(name);
    Parameters on_gpu;
    for (const auto& [parameter, p] : initial_parameters(c)) on_gpu.emplace_back(parameter, p.to(at::kCUDA));
    Optimizer optimizer(on_gpu, OptimizerOptions{name, c["weight_decay"].get<double>()});
    EXPECT_LE(run_steps(optimizer, c, 0, c["steps"].size()), 1e-5);
  }
}

TEST(Optimizer, StateSavedHalfWayResumesToTheSameParameters) {
  for (const json& c : cases()) {
    const std::string name = c["optimizer"];
    SCOPED_TRACE(name);
    const OptimizerOptions options{name, c["weight_decay"].get<double>()};
    Optimizer first(initial_parameters(c), options);
    run_steps(first, c, 0, 6);
    // A second optimizer over copies of the parameters, given the first one's state (as a checkpoint gives it).
    Parameters copies;
    for (const auto& [parameter, p] : first.parameters()) copies.emplace_back(parameter, p.clone());
    Optimizer resumed(copies, options);
    std::vector<std::pair<std::string, at::Tensor>> state;
    for (const auto& [key, t] : first.state()) state.emplace_back(key, t.clone());
    resumed.load_state(state, "optimizer.safetensors");
    EXPECT_EQ(resumed.steps_taken(), 6);
    const double worst = run_steps(resumed, c, 6, c["steps"].size());
    EXPECT_LE(worst, rounds_like_another_adamw(name) ? 1e-7 : 0.0);
  }
}

TEST(Optimizer, StateOfAnotherOptimizerIsRefusedNamingIt) {
  const json& c = cases().front();
  Optimizer adamw(initial_parameters(c), OptimizerOptions{"adamw_torch", 0.0});
  Optimizer lion(initial_parameters(c), OptimizerOptions{"lion_32bit", 0.0});
  try {
    adamw.load_state(lion.state(), "ckpt/optimizer.safetensors");
    FAIL() << "AdamW took Lion's state";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("ckpt/optimizer.safetensors"), std::string::npos) << message;
    EXPECT_NE(message.find("exp_avg_sq"), std::string::npos) << message;
    EXPECT_NE(message.find("\"adamw_torch\""), std::string::npos) << message;
  }
}

TEST(Optimizer, EightBitNamesRunTheirThirtyTwoBitUpdate) {
  EXPECT_EQ(optimizer_runs_as_32bit("paged_adamw_8bit"), "adamw_torch");
  EXPECT_EQ(optimizer_runs_as_32bit("lion_8bit"), "lion_32bit");
  EXPECT_EQ(optimizer_runs_as_32bit("paged_lion_8bit"), "lion_32bit");
  EXPECT_EQ(optimizer_runs_as_32bit("rmsprop_bnb_8bit"), "rmsprop_bnb_32bit");
  EXPECT_EQ(optimizer_runs_as_32bit("lion_32bit"), std::nullopt);
  // Same steps as the 32-bit oracle (Lion's case in the fixture): bit for bit.
  for (const json& c : cases()) {
    if (c["optimizer"] != "lion_32bit") continue;
    Optimizer eight_bit(initial_parameters(c), OptimizerOptions{"paged_lion_8bit", c["weight_decay"].get<double>()});
    EXPECT_EQ(run_steps(eight_bit, c, 0, c["steps"].size()), 0.0);
  }
}

// The estimate's optimizer state is what each optimizer allocates.
TEST(Optimizer, StateBytesAreWhatItAllocates) {
  for (const std::string& name : optimizer_names()) {
    SCOPED_TRACE(name);
    Optimizer optimizer({{"lora_A", at::zeros({16, 4096})}}, OptimizerOptions{name, 0.0});
    int64_t bytes = 0;
    for (const auto& [key, tensor] : optimizer.state())
      if (key != "step") bytes += tensor.numel() * static_cast<int64_t>(tensor.element_size());
    EXPECT_EQ(bytes, optimizer_state_bytes(name, 16, 4096));
  }
}

TEST(Optimizer, UnknownNameIsAUsageErrorListingTheNames) {
  try {
    Optimizer({}, OptimizerOptions{"adamax", 0.0});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), kExitUsage);
    EXPECT_NE(std::string(e.what()).find("adafactor"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace autotrain
