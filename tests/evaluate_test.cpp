// `autotrain eval` (src/evaluate.cpp, src/cli/eval.cpp) against transformers + PEFT on the llama fixture
// (tests/reference/evaluation.py): the split's blocks as AutoTrain's default trainer packs them, and the mean token
// loss of the base alone and with a PEFT adapter, its projections in fp32 or NF4; then through the binary, and
// against the training loop's own eval_loss.
//
// Tolerance of the loss: 2e-5. Both sides compute in fp32 on the CPU; our fp32 logits equal transformers' to about
// 1e-5 (model_test), and the loss is a mean of 5,000 log-softmaxes of them. The cases the test must tell apart
// differ by more: the adapter moves the loss by 6e-3, NF4 the base's by 2.5e-4, the GGUF q4_0 weights by 3.2e-3 and
// q8_0 by 2.6e-4 (checked below, so that a run which scored the wrong case cannot pass).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "autotrain/config.h"
#include "autotrain/error.h"
#include "autotrain/evaluate.h"
#include "autotrain/fileio.h"
#include "autotrain/gguf.h"
#include "autotrain/finetune.h"
#include "autotrain/imatrix.h"
#include "autotrain/metrics.h"
#include "autotrain/tokenizer.h"
#include "test_util.h"

namespace autotrain {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
const std::string kFixtures = AUTOTRAIN_FIXTURES_DIR;
const std::string kOracle = kFixtures + "/reference/evaluation";
const std::string kLlama = kFixtures + "/models/llama";
constexpr double kLossTolerance = 2e-5;

const json& expected() {
  static const json document = json::parse(read_file(kOracle + "/expected.json"));
  return document;
}

double expected_loss(const std::string& quantization, const std::string& which) {
  return expected()["loss"][quantization][which].get<double>();
}

// The oracle's split, as a training_params.json would name it.
json eval_config(const std::string& quantization) {
  return {{"model", kLlama},           {"data_path", kOracle + "/data"}, {"valid_split", "valid"},
          {"block_size", expected()["block_size"]}, {"quantization", quantization}, {"batch_size", 4},
          {"peft", true}};
}

TrainingParams eval_params(const std::string& quantization) {
  return parse_training_params(eval_config(quantization), "test");
}

TEST(Evaluate, TheOracleCasesDifferByMoreThanTheTolerance) {
  EXPECT_GT(std::abs(expected_loss("none", "adapter") - expected_loss("none", "base")), 50 * kLossTolerance);
  EXPECT_GT(std::abs(expected_loss("int4", "adapter") - expected_loss("int4", "base")), 50 * kLossTolerance);
  EXPECT_GT(std::abs(expected_loss("int4", "base") - expected_loss("none", "base")), 5 * kLossTolerance);
  EXPECT_GT(std::abs(expected_loss("gguf_q4_0", "base") - expected_loss("none", "base")), 50 * kLossTolerance);
  EXPECT_GT(std::abs(expected_loss("gguf_q8_0", "base") - expected_loss("none", "base")), 5 * kLossTolerance);
}

TEST(Evaluate, TheSplitIsPackedAsAutoTrainPacksIt) {
  testing::TempDir cache;
  const TrainingParams params = eval_params("none");
  auto tokenizer = Tokenizer::load(kLlama);
  const TokenizedText text = tokenize_split(params, *tokenizer, "valid", cache.path().string());
  EXPECT_EQ(text.size(), expected()["tokens"].get<int64_t>());
  const int64_t block_size = expected()["block_size"];
  const auto& blocks = expected()["blocks"];
  ASSERT_EQ(text.num_blocks(block_size), static_cast<int64_t>(blocks.size()));
  for (size_t b = 0; b < blocks.size(); ++b) {
    at::Tensor ours = text.block(static_cast<int64_t>(b), block_size);
    for (int64_t i = 0; i < block_size; ++i)
      ASSERT_EQ(ours[i].item<int64_t>(), blocks[b][i].get<int64_t>()) << "block " << b << ", token " << i;
  }
}

class EvaluateAgainstTransformersAndPeft
    : public ::testing::TestWithParam<std::tuple<std::string /*quantization*/, bool /*adapter*/>> {};

TEST_P(EvaluateAgainstTransformersAndPeft, LossEqualsTheOracles) {
  const auto& [quantization, with_adapter] = GetParam();
  testing::TempDir cache;
  EvaluateOptions options;
  options.cache_dir = cache.path().string();
  options.device = "cpu";
  if (with_adapter) options.adapter_dir = kOracle + "/adapter";
  // --gguf-type: every 2-D weight as that GGUF type stores it, whatever the config's quantization (int4 here)
  const bool gguf = quantization.rfind("gguf_", 0) == 0;
  if (gguf) options.gguf_type = parse_gguf_type(quantization.substr(5));
  const EvaluationResult result = run_evaluation(eval_params(gguf ? "int4" : quantization), options);
  const double expected_value = expected_loss(quantization, with_adapter ? "adapter" : "base");
  std::cout << quantization << (with_adapter ? " + adapter" : " base") << ": loss " << result.loss << ", |d| "
            << std::abs(result.loss - expected_value) << "\n";
  EXPECT_NEAR(result.loss, expected_value, kLossTolerance);
  EXPECT_DOUBLE_EQ(result.perplexity, std::exp(result.loss));
  const int64_t block_size = expected()["block_size"];
  EXPECT_EQ(result.block_size, block_size);
  EXPECT_EQ(result.blocks, static_cast<int64_t>(expected()["blocks"].size()));
  EXPECT_EQ(result.tokens, expected()["tokens"].get<int64_t>());
  EXPECT_EQ(result.predicted_tokens, result.blocks * (block_size - 1));
  EXPECT_EQ(result.adapter_dir, options.adapter_dir);
  EXPECT_EQ(result.gguf_type, gguf ? quantization.substr(5) : "");
}

INSTANTIATE_TEST_SUITE_P(Cases, EvaluateAgainstTransformersAndPeft,
                         ::testing::Combine(::testing::Values("none", "int4", "gguf_q4_0", "gguf_q8_0"),
                                            ::testing::Bool()));

TEST(Evaluate, TheBatchSizeDoesNotChangeTheLoss) {
  testing::TempDir cache;
  EvaluateOptions options;
  options.cache_dir = cache.path().string();
  options.device = "cpu";
  options.adapter_dir = kOracle + "/adapter";
  options.batch_size = 1;
  const double one = run_evaluation(eval_params("none"), options).loss;
  options.batch_size = 10;  // 109 blocks: the last batch holds 9
  const double ten = run_evaluation(eval_params("none"), options).loss;
  EXPECT_NEAR(one, ten, 1e-6);
  EXPECT_NEAR(ten, expected_loss("none", "adapter"), kLossTolerance);
}

TEST(Evaluate, SaysWhatIsMissingOrWrong) {
  testing::TempDir dir;
  EvaluateOptions options;
  options.cache_dir = dir.file("cache");
  options.device = "cpu";
  json config = eval_config("none");
  config.erase("valid_split");
  const std::string no_split =
      testing::error_message_of([&] { run_evaluation(parse_training_params(config, "test"), options); });
  EXPECT_NE(no_split.find("--split"), std::string::npos) << no_split;

  // A split shorter than one block.
  fs::create_directories(dir.file("short"));
  testing::write_text(dir.file("short/valid.jsonl"), "{\"text\": \"too short\"}\n");
  config = eval_config("none");
  config["data_path"] = dir.file("short");
  const std::string short_split =
      testing::error_message_of([&] { run_evaluation(parse_training_params(config, "test"), options); });
  EXPECT_NE(short_split.find(dir.file("short/valid.jsonl")), std::string::npos) << short_split;
  EXPECT_NE(short_split.find("fewer than one block"), std::string::npos) << short_split;

  // An adapter of another rank than its weights (as if trained for another base): the file and tensor are named.
  fs::copy(kOracle + "/adapter", dir.file("adapter"), fs::copy_options::recursive);
  json adapter_config = json::parse(read_file(dir.file("adapter/adapter_config.json")));
  adapter_config["r"] = 8;
  testing::write_text(dir.file("adapter/adapter_config.json"), adapter_config.dump());
  options.adapter_dir = dir.file("adapter");
  const std::string wrong_rank = testing::error_message_of([&] { run_evaluation(eval_params("none"), options); });
  EXPECT_NE(wrong_rank.find("adapter_model.safetensors"), std::string::npos) << wrong_rank;
  EXPECT_NE(wrong_rank.find("lora_A"), std::string::npos) << wrong_rank;

  // A folder that holds no adapter.
  options.adapter_dir = dir.file("short");
  const std::string no_adapter = testing::error_message_of([&] { run_evaluation(eval_params("none"), options); });
  EXPECT_NE(no_adapter.find("adapter_config.json"), std::string::npos) << no_adapter;
}

// On a GPU (skipped without one; gpu-check's training stage runs it with GPU_CHECK_TRAINING_FILTER naming
// EvaluateCuda.*): the same oracle losses, fp32 and NF4, with the adapter. Bound 1e-4, five times the CPU's: cuBLAS
// and the CUDA kernels sum in other orders (libtorch leaves TF32 off for fp32 matmuls), and the NF4 base is
// quantized on the GPU to the CPU's bytes.
TEST(EvaluateCuda, LossEqualsTheOracles) {
  REQUIRE_CUDA_DEVICE();
  testing::TempDir cache;
  EvaluateOptions options;
  options.cache_dir = cache.path().string();
  options.device = "cuda";
  options.adapter_dir = kOracle + "/adapter";
  for (const std::string quantization : {"none", "int4"}) {
    const double loss = run_evaluation(eval_params(quantization), options).loss;
    EXPECT_NEAR(loss, expected_loss(quantization, "adapter"), 5 * kLossTolerance) << quantization;
  }
}

// The binary: the config's project_name adapter by default, --no-adapter, --model without a config, the text line.
TEST(EvaluateCli, ScoresTheConfigsAdapterOrTheBase) {
  testing::TempDir dir;
  fs::copy(kOracle + "/adapter", dir.file("run-1"), fs::copy_options::recursive);
  json config = eval_config("none");
  config["project_name"] = "run-1";
  testing::write_text(dir.file("params.json"), config.dump());
  const std::string base = "eval --device cpu --cache-dir " + testing::quote(dir.file("cache")) + " --json";

  auto with_adapter = testing::run_autotrain(base + " --config params.json", dir.path().string());
  ASSERT_EQ(with_adapter.exit_code, 0) << with_adapter.output;
  const json line = json::parse(with_adapter.output.substr(with_adapter.output.rfind("\n{") + 1));
  EXPECT_EQ(line["adapter"], "run-1");
  EXPECT_NEAR(line["loss"].get<double>(), expected_loss("none", "adapter"), kLossTolerance);
  EXPECT_EQ(line["blocks"], expected()["blocks"].size());

  auto alone = testing::run_autotrain(base + " --config params.json --no-adapter", dir.path().string());
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  const json alone_line = json::parse(alone.output.substr(alone.output.rfind("\n{") + 1));
  EXPECT_TRUE(alone_line["adapter"].is_null());
  EXPECT_NEAR(alone_line["loss"].get<double>(), expected_loss("none", "base"), kLossTolerance);

  auto as_gguf = testing::run_autotrain(base + " --config params.json --gguf-type Q4_0", dir.path().string());
  ASSERT_EQ(as_gguf.exit_code, 0) << as_gguf.output;
  const json gguf_line = json::parse(as_gguf.output.substr(as_gguf.output.rfind("\n{") + 1));
  EXPECT_EQ(gguf_line["gguf_type"], "q4_0");
  EXPECT_NEAR(gguf_line["loss"].get<double>(), expected_loss("gguf_q4_0", "adapter"), kLossTolerance);
  EXPECT_TRUE(alone_line["gguf_type"].is_null());
  EXPECT_EQ(testing::run_autotrain(base + " --config params.json --gguf-type q3_K", dir.path().string()).exit_code, 2);

  auto no_config = testing::run_autotrain(
      "eval --device cpu --cache-dir " + testing::quote(dir.file("cache")) + " --model " + testing::quote(kLlama) +
          " --data " + testing::quote(kOracle + "/data") + " --split valid --block-size 48 --quantization int4",
      dir.path().string());
  ASSERT_EQ(no_config.exit_code, 0) << no_config.output;
  const size_t printed = no_config.output.find("eval loss ");
  ASSERT_NE(printed, std::string::npos) << no_config.output;
  EXPECT_NEAR(std::strtod(no_config.output.c_str() + printed + 10, nullptr), expected_loss("int4", "base"),
              kLossTolerance + 5e-7)  // printed to 6 decimals
      << no_config.output;
  EXPECT_NE(no_config.output.find("the base alone"), std::string::npos) << no_config.output;

  config.erase("valid_split");
  testing::write_text(dir.file("no-split.json"), config.dump());
  auto no_split = testing::run_autotrain(base + " --config no-split.json", dir.path().string());
  EXPECT_EQ(no_split.exit_code, 2) << no_split.output;
  EXPECT_NE(no_split.output.find("--split"), std::string::npos) << no_split.output;
  EXPECT_EQ(testing::run_autotrain("eval --device cpu", dir.path().string()).exit_code, 2);  // neither config nor model
  auto bad_option = testing::run_autotrain(base + " --config params.json --block-size 0", dir.path().string());
  EXPECT_EQ(bad_option.exit_code, 2) << bad_option.output;
  EXPECT_NE(bad_option.output.find("the command line: key \"block_size\""), std::string::npos) << bad_option.output;
  EXPECT_EQ(testing::run_autotrain(base + " --config params.json --no-adapter --adapter run-1", dir.path().string())
                .exit_code,
            2);
}

// `train` with a validation split, then `eval` of what it wrote: the loss the loop logged last as eval_loss (at the
// end of its epoch, with the final adapter), from the saved adapter (QLoRA: the base in NF4, AutoTrain's default).
TEST(EvaluateCli, GivesTheTrainingLoopsEvalLoss) {
  testing::TempDir dir;
  json config = eval_config("int4");
  config.erase("quantization");  // AutoTrain's default, int4
  config["project_name"] = "run-2";
  config["train_split"] = "valid";
  config["lr"] = 5e-3;
  config["gradient_accumulation"] = 1;
  config["batch_size"] = 8;
  config["lora_r"] = 4;
  config["target_modules"] = "q_proj,v_proj";
  testing::write_text(dir.file("params.json"), config.dump());
  const std::string cache = " --device cpu --cache-dir " + testing::quote(dir.file("cache"));
  auto trained = testing::run_autotrain("train --config params.json" + cache, dir.path().string());
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  double logged = std::nan("");
  for (const auto& record : read_metrics(dir.file("run-2/metrics.jsonl")))
    if (record.contains("eval_loss")) logged = record["eval_loss"].get<double>();
  ASSERT_TRUE(std::isfinite(logged)) << "no eval_loss in metrics.jsonl";

  auto scored = testing::run_autotrain("eval --config params.json --json" + cache, dir.path().string());
  ASSERT_EQ(scored.exit_code, 0) << scored.output;
  const json line = json::parse(scored.output.substr(scored.output.rfind("\n{") + 1));
  EXPECT_EQ(line["adapter"], "run-2");
  EXPECT_NEAR(line["loss"].get<double>(), logged, 1e-9);  // the same weights, blocks and batches: the same sums
  // Training moved the loss: the adapter that eval loaded is the trained one, not an initial (B = 0) one.
  EXPECT_LT(logged, expected_loss("int4", "base") - 0.05);
}

// autotrain imatrix: each 2-D weight's input statistics over the split's blocks against transformers' (forward
// pre-hooks on its projections and LM head, float64 sums: tests/reference/evaluation.py input_squares), as the
// values llama-quantize derives from the file (sum / tokens). Tolerance 1e-5 relative to the entry's largest value:
// both forwards are fp32 on the CPU, their activations agree to ~1e-6 and a sum of squares keeps that (measured
// 7e-8); the adapter moves them by far more (checked), so the entries cannot come from the wrong model.
void expect_oracle_statistics(const std::string& file, const std::string& which, int64_t blocks) {
  SCOPED_TRACE(file);
  const ImportanceMatrix imatrix = load_imatrix(file);
  const json& oracle = expected()["imatrix"][which];
  ASSERT_EQ(imatrix.values.size(), oracle.size());  // 2 layers x 7 projections and output.weight
  EXPECT_EQ(imatrix.chunk_count, blocks);
  ASSERT_EQ(imatrix.datasets.size(), 1u);
  EXPECT_NE(imatrix.datasets[0].find("valid.jsonl"), std::string::npos);
  for (const auto& [name, entry] : oracle.items()) {
    ASSERT_TRUE(imatrix.values.count(name)) << name;
    const std::vector<float>& got = imatrix.values.at(name);
    const auto sums = entry.at("sums").get<std::vector<double>>();
    const double tokens = entry.at("tokens").get<double>();
    ASSERT_EQ(got.size(), sums.size()) << name;
    double largest = 0, worst = 0;
    for (size_t i = 0; i < sums.size(); ++i) largest = std::max(largest, sums[i] / tokens);
    for (size_t i = 0; i < sums.size(); ++i) worst = std::max(worst, std::abs(got[i] - sums[i] / tokens));
    EXPECT_LE(worst, 1e-5 * largest) << name;
  }
}

TEST(Imatrix, InputStatisticsEqualTransformersOnTheSplitsBlocks) {
  testing::TempDir dir;
  const int64_t blocks = int64_t(expected()["blocks"].size());
  for (const auto& [which, file] : std::vector<std::pair<std::string, std::string>>{
           {"base", dir.file("base.imatrix.gguf")}, {"adapter", dir.file("adapter.imatrix.dat")}}) {
    EvaluateOptions options;
    options.cache_dir = dir.file("cache");
    options.device = "cpu";
    options.imatrix_out = file;
    if (which == "adapter") options.adapter_dir = kOracle + "/adapter";
    TrainingParams params = eval_params("none");
    params.train_split = "valid";
    const EvaluationResult result = run_evaluation(params, options);
    EXPECT_EQ(result.imatrix_entries, 15);
    EXPECT_NEAR(result.loss, expected_loss("none", which), kLossTolerance);
    expect_oracle_statistics(file, which, blocks);
  }
  // The adapter's entries differ from the base's beyond the tolerance (blk.1's inputs follow its LoRA layers).
  const auto& oracle = expected()["imatrix"];
  const double base = oracle["base"]["blk.1.ffn_down.weight"]["sums"][0];
  const double tuned = oracle["adapter"]["blk.1.ffn_down.weight"]["sums"][0];
  EXPECT_GT(std::abs(base - tuned), 1e-3 * std::abs(base));
}

// On a GPU (fp32 there too): the same statistics as transformers', within the CPU's bound (CUDA's other summation
// order moves them by ~1e-6 of an entry). Written for the next GPU session; skips without a device.
TEST(ImatrixCuda, InputStatisticsEqualTransformers) {
  REQUIRE_CUDA_DEVICE();
  testing::TempDir dir;
  EvaluateOptions options;
  options.cache_dir = dir.file("cache");
  options.device = "cuda";
  options.imatrix_out = dir.file("cuda.imatrix.gguf");
  options.adapter_dir = kOracle + "/adapter";
  TrainingParams params = eval_params("none");
  params.train_split = "valid";
  run_evaluation(params, options);
  expect_oracle_statistics(options.imatrix_out, "adapter", int64_t(expected()["blocks"].size()));
}

TEST(ImatrixCli, WritesTheConfigsRunsMatrixForExportGguf) {
  testing::TempDir dir;
  fs::copy(kOracle + "/adapter", dir.file("run-1"), fs::copy_options::recursive);
  json config = eval_config("int4");  // a QLoRA run's: the command takes the statistics of the unquantized base
  config["project_name"] = "run-1";
  config["train_split"] = "valid";
  testing::write_text(dir.file("params.json"), config.dump());
  const std::string base =
      "imatrix --device cpu --cache-dir " + testing::quote(dir.file("cache")) + " --config params.json";
  auto result = testing::run_autotrain(base + " --out run.imatrix.gguf", dir.path().string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("imatrix: wrote run.imatrix.gguf: 15 weights from"), std::string::npos) << result.output;
  expect_oracle_statistics(dir.file("run.imatrix.gguf"), "adapter", int64_t(expected()["blocks"].size()));
  // --chunks: the first blocks only.
  result = testing::run_autotrain(base + " --no-adapter --chunks 10 --out ten.imatrix.gguf", dir.path().string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(load_imatrix(dir.file("ten.imatrix.gguf")).chunk_count, 10);
  // Refused: preference pairs (no texts), a GGUF type (the matrix is of the weights export-gguf quantizes), no --out.
  for (const std::string& flags : {std::string("--trainer dpo --out x.gguf"), std::string("")}) {
    auto refused = testing::run_autotrain(base + " " + flags, dir.path().string());
    EXPECT_EQ(refused.exit_code, 2) << flags << refused.output;
  }
  EvaluateOptions options;
  options.imatrix_out = dir.file("refused.gguf");
  options.gguf_type = GgufType::q4_0;
  EXPECT_NE(testing::error_message_of([&] { run_evaluation(eval_params("none"), options); }).find("--gguf-type"),
            std::string::npos);
  TrainingParams pairs = eval_params("none");
  pairs.trainer = "dpo";
  options.gguf_type.reset();
  EXPECT_NE(testing::error_message_of([&] { run_evaluation(pairs, options); }).find("preference pairs"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(dir.file("refused.gguf")));
}

}  // namespace
}  // namespace autotrain
