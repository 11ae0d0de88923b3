// Dynamic loss scaling against torch.amp.GradScaler (fixture written by tests/reference/grad_scaler.py).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "autotrain/fileio.h"
#include "autotrain/loss_scaler.h"

namespace autotrain {
namespace {

TEST(LossScaler, FollowsGradScalerStepForStep) {
  auto reference = nlohmann::json::parse(
      read_file(std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/grad_scaler/steps.json"));
  LossScaler scaler(true, 65536.0, 2.0, 0.5, reference["growth_interval"].get<int64_t>());
  at::Tensor parameter = torch::zeros({3}, torch::requires_grad());
  torch::optim::SGD optimizer({parameter}, torch::optim::SGDOptions(0.1));
  size_t index = 0;
  for (const auto& step : reference["steps"]) {
    SCOPED_TRACE("step " + std::to_string(index++));
    optimizer.zero_grad();
    EXPECT_EQ(scaler.scale(), step["scale"].get<double>());
    at::Tensor loss = (parameter * torch::tensor({1.0f, 2.0f, 3.0f})).sum();
    if (step["kind"] == "i") loss = loss * std::numeric_limits<float>::infinity();
    scaler.scale_loss(loss).backward();
    bool found_inf = scaler.unscale_and_check({parameter});
    EXPECT_EQ(!found_inf, step["taken"].get<bool>());
    if (!found_inf) optimizer.step();
    scaler.update(found_inf);
    auto expected = step["parameter"].get<std::vector<float>>();
    for (int i = 0; i < 3; ++i) EXPECT_FLOAT_EQ(parameter[i].item<float>(), expected[i]);
  }
}

TEST(LossScaler, DisabledIsTheIdentityButStillRefusesInf) {
  LossScaler scaler(false);
  EXPECT_EQ(scaler.scale(), 1.0);
  at::Tensor p = torch::zeros({2}, torch::requires_grad());
  (p * std::numeric_limits<float>::quiet_NaN()).sum().backward();
  EXPECT_TRUE(scaler.unscale_and_check({p}));
}

}  // namespace
}  // namespace autotrain
