// The CLI: usage for every subcommand, exit codes 0 / 1 / 2.
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "autotrain/fileio.h"
#include "test_util.h"

namespace autotrain {
namespace {

using testing::run_autotrain;

TEST(Cli, HelpShowsEverySubcommand) {
  auto result = run_autotrain("--help");
  EXPECT_EQ(result.exit_code, 0);
  for (const char* word : {"Usage", "train", "eval", "merge-adapter", "estimate-cost", "--log-level", "--version"})
    EXPECT_NE(result.output.find(word), std::string::npos) << word << "\n" << result.output;
}

TEST(Cli, EverySubcommandHasUsage) {
  const std::pair<const char*, const char*> expected[] = {
      {"train", "--config"},           {"merge-adapter", "--adapter"},  {"estimate-cost", "--gpu"},
      {"generate", "--max-new-tokens"}, {"export-gguf", "--type"},    {"eval", "--no-adapter"}};
  for (const auto& [command, option] : expected) {
    auto result = run_autotrain(std::string(command) + " --help");
    EXPECT_EQ(result.exit_code, 0) << command;
    EXPECT_NE(result.output.find("Usage"), std::string::npos) << result.output;
    EXPECT_NE(result.output.find(option), std::string::npos) << result.output;
    EXPECT_NE(result.output.find("Example"), std::string::npos) << result.output;
  }
}

TEST(Cli, VersionNamesLibtorch) {
  auto result = run_autotrain("--version");
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_NE(result.output.find("autotrain " AUTOTRAIN_VERSION), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("libtorch"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("CUDA kernels"), std::string::npos) << result.output;
}

TEST(Cli, UsageErrorsExitWith2) {
  EXPECT_EQ(run_autotrain("train").exit_code, 2);  // --config is required
  EXPECT_EQ(run_autotrain("no-such-command").exit_code, 2);
  EXPECT_EQ(run_autotrain("train --config x.json --no-such-flag").exit_code, 2);
  EXPECT_EQ(run_autotrain("").exit_code, 2);  // no subcommand
  auto bad_level = run_autotrain("--log-level loud --version");
  EXPECT_EQ(bad_level.exit_code, 2);
  EXPECT_NE(bad_level.output.find("--log-level loud"), std::string::npos) << bad_level.output;
}

const std::string kLlama = std::string(AUTOTRAIN_FIXTURES_DIR) + "/models/llama";

TEST(Cli, DeviceCpuGeneratesAsBefore) {
  const std::string generate = "generate --model " + testing::quote(kLlama) + " --prompt 'The red fox' --max-new-tokens 4";
  auto cpu = run_autotrain(generate + " --device cpu");
  EXPECT_EQ(cpu.exit_code, 0) << cpu.output;
  EXPECT_EQ(cpu.output.rfind("The red fox", 0), 0u) << "nothing logged before the text on the CPU: " << cpu.output;
  EXPECT_EQ(run_autotrain(generate + " --device tpu").exit_code, 2);
}

TEST(Cli, DeviceCudaWithoutAGpuIsOneErrorLine) {
  auto result = run_autotrain("generate --model " + testing::quote(kLlama) + " --prompt 'Hi' --max-new-tokens 2 --device cuda");
  if (result.exit_code == 0) GTEST_SKIP() << "this machine has a usable GPU";
  EXPECT_EQ(result.exit_code, 1) << result.output;
  const size_t error = result.output.find("error: --device cuda: ");
  ASSERT_NE(error, std::string::npos) << result.output;
  EXPECT_EQ(result.output.find('\n', error), result.output.size() - 1) << result.output;
}

TEST(Cli, DeviceCudaWithSeveralWorkersIsRefusedBeforeTheyStart) {
  testing::TempDir dir;
  testing::write_text(dir.file("params.json"), "{\"model\": \"" + kLlama + "\", \"peft\": true}");
  auto result = run_autotrain("train --config " + testing::quote(dir.file("params.json")) +
                              " --device cuda --nproc-per-node 2", dir.path());
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("--device cuda with 2 data-parallel workers is not supported yet"), std::string::npos)
      << result.output;
  EXPECT_EQ(result.output.find("rank"), std::string::npos) << "no worker should have started: " << result.output;
}

// AUTOTRAIN_PROFILE: steps FIRST-LAST recorded with Kineto into a Chrome trace, and a summary table per
// operator (per CUDA kernel on a GPU); a malformed step range or a missing folder is a one-line error before
// training starts.
TEST(Cli, ProfileWritesATraceAndASummaryOfTheChosenSteps) {
  testing::TempDir dir;
  const nlohmann::json config = {
      {"model", kLlama}, {"project_name", "run"},
      {"data_path", std::string(AUTOTRAIN_SOURCE_DIR) + "/configs/example/data"}, {"block_size", 32},
      {"batch_size", 2}, {"quantization", "int4"}, {"peft", true}, {"lora_r", 4}, {"lora_alpha", 8},
      {"mixed_precision", "none"}};
  testing::write_text(dir.file("params.json"), config.dump(2));
  const std::string train = testing::quote(AUTOTRAIN_BINARY) +
                            " train --config params.json --cache-dir cache --no-resume --stop-after-steps 3";
  const std::string cd = "cd " + testing::quote(dir.path().string()) + " && ";
  auto result = testing::run_command(cd + "AUTOTRAIN_PROFILE=trace.json AUTOTRAIN_PROFILE_STEPS=2-3 " + train);
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("profiling steps 2-3"), std::string::npos) << result.output;
  const nlohmann::json trace = nlohmann::json::parse(read_file(dir.file("trace.json")));
  EXPECT_FALSE(trace.at("traceEvents").empty());
  const std::string summary = read_file(dir.file("trace.json.summary.txt"));
  EXPECT_EQ(summary.rfind("wall time over 2 step(s): ", 0), 0u) << summary;
  EXPECT_NE(summary.find("\nCPU operators (nested ones count in their callers too) over 2 step(s)"), std::string::npos)
      << summary;  // no GPU in this run: no CUDA kernels table
  EXPECT_EQ(summary.find("CUDA kernels"), std::string::npos) << summary;
  EXPECT_NE(summary.find("aten::mm"), std::string::npos) << summary;

  auto bad = testing::run_command(cd + "AUTOTRAIN_PROFILE=trace.json AUTOTRAIN_PROFILE_STEPS=5 " + train);
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_NE(bad.output.find("error: AUTOTRAIN_PROFILE_STEPS=5: expected FIRST-LAST"), std::string::npos)
      << bad.output;
  // A folder that does not exist is refused before the first step, not when the profile is written.
  auto nowhere = testing::run_command(cd + "AUTOTRAIN_PROFILE=no/such/folder/trace.json " + train);
  EXPECT_EQ(nowhere.exit_code, 1) << nowhere.output;
  EXPECT_NE(nowhere.output.find("error: AUTOTRAIN_PROFILE=no/such/folder/trace.json: the folder no/such/folder"),
            std::string::npos)
      << nowhere.output;
  EXPECT_EQ(nowhere.output.find("checkpoint"), std::string::npos) << "no step may have run: " << nowhere.output;
}

// generate takes AUTOTRAIN_PROFILE too, its steps being new tokens: where a token's time goes on a GPU (the kernels'
// time beside the wall time).
TEST(Cli, ProfileOfGenerateRecordsTheChosenTokens) {
  testing::TempDir dir;
  const std::string cd = "cd " + testing::quote(dir.path().string()) + " && ";
  auto result = testing::run_command(cd + "AUTOTRAIN_PROFILE=trace.json AUTOTRAIN_PROFILE_STEPS=3-5 " +
                                     testing::quote(AUTOTRAIN_BINARY) + " generate --model " + testing::quote(kLlama) +
                                     " --prompt 'The red fox' --max-new-tokens 6 --ignore-eos --device cpu");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("profiling steps 3-5"), std::string::npos) << result.output;
  const std::string summary = read_file(dir.file("trace.json.summary.txt"));
  EXPECT_EQ(summary.rfind("wall time over 3 step(s): ", 0), 0u) << summary;
  EXPECT_NE(summary.find("aten::mm"), std::string::npos) << summary;
}

// A chat dataset end to end: the llama fixture with Llama 2's chat template, AutoTrain's sft trainer on a
// "messages" column, then eval on it and generate --chat with the adapter.
TEST(Cli, TrainsOnConversationsThroughTheModelsChatTemplate) {
  testing::TempDir dir;
  const std::string pipeline = std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/chat_templates/pipeline";
  std::filesystem::create_directory(dir.file("model"));
  for (const auto& entry : std::filesystem::directory_iterator(kLlama))
    if (entry.path().filename() != "tokenizer_config.json")
      std::filesystem::create_symlink(entry.path(), dir.path() / "model" / entry.path().filename());
  std::filesystem::copy_file(pipeline + "/tokenizer_llama/tokenizer_config.json", dir.file("model/tokenizer_config.json"));
  const nlohmann::json config = {
      {"model", "model"}, {"project_name", "chat-run"}, {"data_path", pipeline + "/chat.jsonl"},
      {"text_column", "messages"}, {"chat_template", "tokenizer"}, {"trainer", "sft"}, {"block_size", 64},
      {"batch_size", 2}, {"gradient_accumulation", 1}, {"lr", 3e-3}, {"epochs", 3}, {"quantization", "none"},
      {"peft", true}, {"lora_r", 8}, {"lora_alpha", 16}, {"mixed_precision", "none"}};
  testing::write_text(dir.file("params.json"), config.dump(2));
  const std::string cd = "cd " + testing::quote(dir.path().string()) + " && " + testing::quote(AUTOTRAIN_BINARY);
  auto train = testing::run_command(cd + " train --config params.json --cache-dir cache --no-resume");
  ASSERT_EQ(train.exit_code, 0) << train.output;
  EXPECT_TRUE(std::filesystem::exists(dir.file("chat-run/adapter_model.safetensors"))) << train.output;

  auto loss_of = [&](const std::string& flags) {
    auto eval = testing::run_command(cd + " eval --config params.json --split train --cache-dir cache --json" + flags);
    EXPECT_EQ(eval.exit_code, 0) << eval.output;
    const nlohmann::json scores = nlohmann::json::parse(eval.output.substr(eval.output.find('{')));
    // the 2703 ids of expected.json's sft_ids make 42 blocks of 64
    EXPECT_EQ(scores.at("blocks").get<int64_t>(), 2703 / 64) << eval.output;
    return scores.at("loss").get<double>();
  };
  const double base = loss_of(" --no-adapter"), adapted = loss_of("");
  EXPECT_LT(adapted, base - 0.5) << "the adapter learnt the rendered conversations (base " << base << ")";
  // The same split without the config: its keys given as options.
  auto options = testing::run_command(cd + " eval --model model --data " + testing::quote(pipeline + "/chat.jsonl") +
                                      " --split train --text-column messages --chat-template tokenizer --trainer sft"
                                      " --block-size 64 --quantization none --mixed-precision none --no-adapter"
                                      " --cache-dir cache --json");
  ASSERT_EQ(options.exit_code, 0) << options.output;
  EXPECT_EQ(nlohmann::json::parse(options.output.substr(options.output.find('{'))).at("loss").get<double>(), base);

  auto generate = testing::run_command(cd + " generate --model model --adapter chat-run --chat --system 'Be brief.' "
                                            "--prompt 'Hi there' --max-new-tokens 2 --ignore-eos");
  ASSERT_EQ(generate.exit_code, 0) << generate.output;
  // Llama 2's template: the system message inside the first [INST], the special tokens not printed.
  EXPECT_EQ(generate.output.rfind("[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST]", 0), 0u) << generate.output;
  EXPECT_EQ(run_autotrain("generate --model " + testing::quote(kLlama) + " --system x --prompt y").exit_code, 2);
}

// generate stops where transformers' generate() stops: at the eos ids of generation_config.json as well as
// config.json's (chat models list their end-of-turn token there).
TEST(Cli, GenerateStopsAtTheEosOfGenerationConfig) {
  testing::TempDir dir;
  std::filesystem::create_directory(dir.file("model"));
  for (const auto& entry : std::filesystem::directory_iterator(kLlama))
    if (entry.path().filename() != "generation_config.json")
      std::filesystem::create_symlink(entry.path(), dir.path() / "model" / entry.path().filename());
  nlohmann::json every_id = nlohmann::json::array();
  for (int id = 3; id < 1000; ++id) every_id.push_back(id);  // whatever the model picks first ends the text
  testing::write_text(dir.file("model/generation_config.json"), nlohmann::json{{"eos_token_id", every_id}}.dump());
  auto stopped = run_autotrain("generate --model " + testing::quote(dir.file("model")) +
                               " --prompt 'The red fox' --max-new-tokens 8");
  EXPECT_EQ(stopped.exit_code, 0) << stopped.output;
  EXPECT_NE(stopped.output.find("generate: 1 new tokens"), std::string::npos) << stopped.output;
  testing::write_text(dir.file("model/generation_config.json"), R"({"eos_token_id": "x"})");
  auto bad = run_autotrain("generate --model " + testing::quote(dir.file("model")) + " --prompt 'a'");
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_NE(bad.output.find("generation_config.json: \"eos_token_id\" must be a token id"), std::string::npos)
      << bad.output;
}

}  // namespace
}  // namespace autotrain
