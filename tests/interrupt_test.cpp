// A training run stopped from outside — Ctrl-C (SIGINT) or kill -9 at some moment, possibly while a
// checkpoint is being written — resumes from the newest complete checkpoint and ends with the same
// adapter bytes as an uninterrupted run.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "autotrain/fileio.h"
#include "test_util.h"

namespace autotrain {
namespace {

const std::string kFixtures = AUTOTRAIN_FIXTURES_DIR;

std::string write_config(const testing::TempDir& dir) {
  nlohmann::json config = {
      {"model", kFixtures + "/models/llama"}, {"project_name", "run"},
      {"data_path", std::string(AUTOTRAIN_SOURCE_DIR) + "/configs/example/data"},
      {"block_size", 32}, {"lr", 0.003}, {"epochs", 3}, {"batch_size", 4}, {"gradient_accumulation", 2},
      {"quantization", "int4"}, {"target_modules", "all-linear"}, {"peft", true}, {"lora_r", 8},
      {"lora_alpha", 16}, {"lora_dropout", 0.1}, {"seed", 11}, {"mixed_precision", "none"}};
  testing::write_text(dir.file("params.json"), config.dump(2));
  return dir.file("params.json");
}

// `cd DIR;` stays in the foreground so that `&` puts autotrain itself, not a subshell, in the background.
std::string train_command(const testing::TempDir& dir) {
  return "cd " + testing::quote(dir.path().string()) + " || exit 9; " + testing::quote(AUTOTRAIN_BINARY) +
         " train --config params.json --cache-dir cache --save-steps 7";
}

// Starts a run in the background, waits until it has logged `steps` steps, sends `signal`, and returns
// what the run printed and its exit status.
testing::RunResult interrupt_after(const testing::TempDir& dir, int steps, const std::string& signal) {
  const std::string script =
      train_command(dir) + " > out.txt 2>&1 & pid=$!; "
      "for i in $(seq 1 6000); do "
      "  n=$(cat run/metrics.jsonl 2>/dev/null | wc -l); [ \"$n\" -ge " + std::to_string(steps) + " ] && break; "
      "  kill -0 $pid 2>/dev/null || break; sleep 0.01; done; "
      "kill -" + signal + " $pid; wait $pid; echo \"exit=$?\"; cat out.txt";
  return testing::run_command(script);
}

std::string uninterrupted_adapter() {
  static std::string bytes = [] {
    testing::TempDir dir;
    write_config(dir);
    auto result = testing::run_command(train_command(dir));
    EXPECT_EQ(result.exit_code, 0) << result.output;
    return read_file(dir.file("run/adapter_model.safetensors"));
  }();
  return bytes;
}

TEST(Interrupt, CtrlCWritesACheckpointExits130AndResumesToTheSameAdapter) {
  testing::TempDir dir;
  write_config(dir);
  auto stopped = interrupt_after(dir, 10, "INT");
  ASSERT_NE(stopped.output.find("exit=130"), std::string::npos) << stopped.output;
  EXPECT_NE(stopped.output.find("rerun the same command to resume"), std::string::npos) << stopped.output;
  auto resumed = testing::run_command(train_command(dir));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming from"), std::string::npos) << resumed.output;
  EXPECT_TRUE(read_file(dir.file("run/adapter_model.safetensors")) == uninterrupted_adapter());
}

TEST(Interrupt, KillNineAtAnyMomentResumesToTheSameAdapter) {
  // Killed at three different points: between checkpoints, and (steps 7, 14 are checkpoint steps) close
  // to a checkpoint write; a .partial folder left behind must never be taken for a checkpoint.
  for (int steps : {3, 7, 15}) {
    testing::TempDir dir;
    write_config(dir);
    auto killed = interrupt_after(dir, steps, "KILL");
    ASSERT_NE(killed.output.find("exit=137"), std::string::npos) << killed.output;
    auto resumed = testing::run_command(train_command(dir));
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    EXPECT_TRUE(read_file(dir.file("run/adapter_model.safetensors")) == uninterrupted_adapter()) << "killed at " << steps;
  }
}

}  // namespace
}  // namespace autotrain
