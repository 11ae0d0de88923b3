// "log": "tensorboard": the event files a training run writes, read back by TensorBoard's own loader
// (tests/reference/tensorboard_check.py) and compared with the run's metrics.jsonl; the CRC against its
// published check value.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "autotrain/tensorboard.h"
#include "test_util.h"

namespace autotrain {
namespace {

namespace fs = std::filesystem;
using testing::quote;

TEST(TensorBoard, Crc32cOfTheCheckString) {
  // The CRC-32C check value (RFC 3720 appendix B.4; the "check" of the CRC catalogue): 0xE3069283.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
}

TEST(TensorBoard, TagsAreTransformersNames) {
  EXPECT_EQ(tensorboard_tag("loss"), "train/loss");
  EXPECT_EQ(tensorboard_tag("lr"), "train/learning_rate");
  EXPECT_EQ(tensorboard_tag("grad_norm"), "train/grad_norm");
  EXPECT_EQ(tensorboard_tag("eval_loss"), "eval/loss");
}

TEST(TensorBoard, TrainingRunReadsBackInTensorBoard) {
  testing::TempDir dir;
  const nlohmann::json config = {
      {"model", std::string(AUTOTRAIN_FIXTURES_DIR) + "/models/llama"}, {"project_name", "run"},
      {"data_path", std::string(AUTOTRAIN_SOURCE_DIR) + "/configs/example/data"}, {"valid_split", "train"},
      {"block_size", 32}, {"epochs", 2}, {"batch_size", 4}, {"gradient_accumulation", 2}, {"lr", 0.003},
      {"quantization", "none"}, {"target_modules", "q_proj, v_proj"}, {"peft", true}, {"lora_r", 4},
      {"lora_alpha", 8}, {"log", "tensorboard"}};
  testing::write_text(dir.file("params.json"), config.dump(2));
  auto result =
      testing::run_autotrain("train --config params.json --cache-dir cache --device cpu", dir.path().string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::vector<fs::path> runs;
  for (const auto& entry : fs::directory_iterator(dir.file("run/runs"))) runs.push_back(entry.path());
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_NE(result.output.find("TensorBoard events in run/runs/" + runs[0].filename().string()), std::string::npos)
      << result.output;
  const std::string check = quote(AUTOTRAIN_PYTHON) + " " +
                            quote(std::string(AUTOTRAIN_SOURCE_DIR) + "/tests/reference/tensorboard_check.py") +
                            " --logdir " + quote(runs[0].string()) +
                            " --metrics " + quote(dir.file("run/metrics.jsonl"));
  auto checked = testing::run_command(check);
  EXPECT_EQ(checked.exit_code, 0) << checked.output;
}

}  // namespace
}  // namespace autotrain
