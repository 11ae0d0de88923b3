// Training end to end on the llama fixture against transformers' Trainer + PEFT (fixtures written by
// tests/reference/trainer_peft.py), PEFT loading our adapter, and resume through the binary.
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "autotrain/adapter.h"
#include "autotrain/error.h"
#include "autotrain/estimate.h"
#include "autotrain/fileio.h"
#include "autotrain/finetune.h"
#include "autotrain/lm_loss.h"
#include "autotrain/metrics.h"
#include "autotrain/model.h"
#include "autotrain/safetensors.h"
#include "test_util.h"

namespace autotrain {
namespace {

namespace fs = std::filesystem;
const std::string kFixtures = AUTOTRAIN_FIXTURES_DIR;
const std::string kOracle = kFixtures + "/reference/trainer_peft";

double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

class AgainstTrainerAndPeft : public ::testing::TestWithParam<std::string> {};

// 30 steps of our trainer from PEFT's initial adapter against Trainer + PEFT's losses and final adapter, with
// the training loss computed loss_chunk_bytes of fp32 logits at a time (lm_head_loss_sum).
void expect_thirty_steps_as_trainer_and_peft(const std::string& scheduler, int64_t loss_chunk_bytes) {
  const std::string dir = kOracle + "/" + scheduler;
  auto settings = nlohmann::json::parse(read_file(dir + "/settings.json"));
  auto steps = nlohmann::json::parse(read_file(dir + "/steps.json"));

  ModelOptions model_options;
  model_options.lora_target_modules = settings["target_modules"].get<std::vector<std::string>>();
  model_options.lora = LoraOptions{settings["lora_r"], settings["lora_alpha"], 0.0, false};
  model_options.gradient_checkpointing = true;  // transformers runs without; the updates must not change
  CausalLM model(kFixtures + "/models/llama", model_options);
  load_adapter_weights(dir + "/initial", model.lora_parameters());
  AdapterConfig adapter{model_options.lora, model_options.lora_target_modules, "llama"};
  TrainableModel trainable = trainable_model(model, adapter, loss_chunk_bytes);

  testing::TempDir run;
  TrainerOptions options;
  TrainingParams& p = options.params;
  p = testing::oracle_training_params(settings);
  p.project_name = run.file("project");
  const bool evaluated = std::filesystem::exists(dir + "/valid.bin");
  TrainingData data{TokenizedText::open(dir + "/tokens.bin"),
                    evaluated ? std::optional(TokenizedText::open(dir + "/valid.bin")) : std::nullopt,
                    settings["block_size"], "oracle"};
  TrainingSummary summary = train(trainable, data, options);
  ASSERT_EQ(summary.total_steps, 30);

  // fp32 on both sides, the same kernels: per-step losses agree to float rounding of sums over ~120
  // tokens (~1e-6); 1e-4 is the bound and would catch a wrong window, order or divisor.
  std::vector<nlohmann::json> records, evaluations;
  for (const nlohmann::json& record : read_metrics(p.project_name + "/metrics.jsonl"))
    (record.contains("eval_loss") ? evaluations : records).push_back(record);
  ASSERT_EQ(records.size(), 30u);
  double worst_loss = 0, worst_lr = 0;
  for (size_t s = 0; s < 30; ++s) {
    worst_loss = std::max(worst_loss, std::abs(records[s]["loss"].get<double>() - steps["loss"][s].get<double>()));
    worst_lr = std::max(worst_lr, std::abs(records[s]["lr"].get<double>() - steps["lr"][s].get<double>()));
  }
  EXPECT_LT(worst_loss, 1e-4);
  EXPECT_LT(worst_lr, 1e-12);
  // Evaluated after every step (the reduce_lr_on_plateau case): the same eval_loss, within the training losses'
  // bound; its rates above are the plateau's cuts, which follow from these.
  ASSERT_EQ(evaluations.size(), evaluated ? 30u : 0u);
  for (size_t e = 0; e < evaluations.size(); ++e)
    EXPECT_NEAR(evaluations[e]["eval_loss"].get<double>(), steps["eval_loss"][e].get<double>(), 1e-4) << e;
  ::testing::Test::RecordProperty("max_loss_diff", std::to_string(worst_loss));

  // After 30 AdamW (or Adafactor) steps at lr 2e-3 the weights moved ~0.05; fp32 rounding in the moments keeps them
  // within ~1e-6 of PEFT's. 1e-4 is the bound.
  auto peft = SafetensorsFile::open(dir + "/final/adapter_model.safetensors");
  double worst_weight = 0;
  for (const auto& [name, tensor] : model.lora_parameters()) {
    ASSERT_TRUE(peft->has(name)) << name;
    worst_weight = std::max(worst_weight, max_diff(tensor.detach(), peft->tensor(name)));
  }
  EXPECT_LT(worst_weight, 1e-4);
  std::printf("30 steps vs Trainer+PEFT (%s, loss chunks of %lld tokens): max |loss diff| %.3g, max |weight diff| "
              "%.3g\n", scheduler.c_str(), static_cast<long long>(lm_loss_chunk_rows(1000, loss_chunk_bytes)),
              worst_loss, worst_weight);
}

TEST_P(AgainstTrainerAndPeft, ThirtyStepsGiveTheSameLossesAndWeights) {
  expect_thirty_steps_as_trainer_and_peft(GetParam(), lm_loss_chunk_bytes());  // all tokens in one chunk
}

// The fixture's vocabulary is 1000: a budget of 7 tokens' fp32 logits cuts each micro-batch (2 blocks of 16)
// into 5 chunks, the last one short. The bounds stay the issue's: chunking changes fp32 rounding only.
TEST_P(AgainstTrainerAndPeft, ThirtyStepsWithTheLossInChunksOfSevenTokens) {
  expect_thirty_steps_as_trainer_and_peft(GetParam(), 7 * 1000 * 4);
}

INSTANTIATE_TEST_SUITE_P(Finetune, AgainstTrainerAndPeft,
                         ::testing::Values("linear", "cosine", "adamw_torch_fused", "paged_adamw_32bit", "adafactor",
                                           "reduce_lr_on_plateau"));

// A training_params.json for the llama fixture and the bundled example data, in `dir`.
std::string write_config(const testing::TempDir& dir, const nlohmann::json& overrides = nlohmann::json::object()) {
  nlohmann::json config = {
      {"model", kFixtures + "/models/llama"}, {"project_name", "run"},
      {"data_path", std::string(AUTOTRAIN_SOURCE_DIR) + "/configs/example/data"},
      {"block_size", 32}, {"lr", 0.003}, {"epochs", 2}, {"batch_size", 4}, {"gradient_accumulation", 2},
      {"scheduler", "cosine"}, {"quantization", "int4"}, {"target_modules", "q_proj, v_proj, down_proj"},
      {"peft", true}, {"lora_r", 8}, {"lora_alpha", 16}, {"lora_dropout", 0.1}, {"mixed_precision", "bf16"},
      {"seed", 7}};
  config.update(overrides);
  testing::write_text(dir.file("params.json"), config.dump(2));
  return dir.file("params.json");
}

TEST(Finetune, ResumedThroughTheBinaryEndsWithTheSameAdapterBytes) {
  // NF4 base, bf16 compute, dropout on: the RNG, optimizer and data position must all be restored.
  testing::TempDir whole, parts;
  const std::string cache = " --cache-dir " + testing::quote(whole.file("cache"));
  auto full = testing::run_autotrain("train --config " + testing::quote(write_config(whole)) + cache, whole.path());
  ASSERT_EQ(full.exit_code, 0) << full.output;
  // The load's line: 2 layers x (q 64x64, k and v 32x64, o 64x64, gate, up and down 176x64) = 92160.
  EXPECT_NE(full.output.find("92160 parameters quantized (int4 nf4) on cpu in "), std::string::npos) << full.output;
  int64_t steps_done = 0;
  for (int64_t stop : {5, 9}) {  // the first epoch has 13 steps: one stop in each epoch
    auto part = testing::run_autotrain("train --config " + testing::quote(write_config(parts)) + cache +
                                           " --stop-after-steps " + std::to_string(stop - steps_done),
                                       parts.path());
    ASSERT_EQ(part.exit_code, 0) << part.output;
    steps_done = stop;
  }
  auto rest = testing::run_autotrain("train --config " + testing::quote(write_config(parts)) + cache, parts.path());
  ASSERT_EQ(rest.exit_code, 0) << rest.output;
  EXPECT_NE(rest.output.find("resuming from"), std::string::npos) << rest.output;
  EXPECT_EQ(read_file(whole.file("run/adapter_model.safetensors")), read_file(parts.file("run/adapter_model.safetensors")));
  EXPECT_EQ(read_metrics(whole.file("run/metrics.jsonl")).size(), read_metrics(parts.file("run/metrics.jsonl")).size());
  for (const char* name : {"adapter_config.json", "training_params.json", "loss_curve.svg", "metrics.jsonl"}) {
    EXPECT_TRUE(fs::exists(parts.file(std::string("run/") + name))) << name;
  }
}

// AUTOTRAIN_LOSS_CHUNK_MB reaches `train`: 0.02 MiB is 5 tokens of the fixture's 1000-token vocabulary, so each
// micro-batch of 4 x 32 tokens is 26 chunks. fp32 on the CPU: the per-step losses stay within float rounding
// of one chunk's (seen 7e-7; the bound of the Trainer parity test, 1e-4, would catch a lost or doubled chunk).
TEST(Finetune, LossChunkBudgetFromTheEnvironment) {
  testing::TempDir one, chunked;
  const nlohmann::json settings = {{"epochs", 1}, {"quantization", "none"}, {"mixed_precision", "none"}};
  auto train_in = [&](const testing::TempDir& dir, const std::string& environment) {
    return testing::run_command("cd " + testing::quote(dir.path().string()) + " && " + environment + " " +
                                testing::quote(AUTOTRAIN_BINARY) + " train --config " +
                                testing::quote(write_config(dir, settings)) + " --cache-dir " +
                                testing::quote(dir.file("cache")) + " --stop-after-steps 4");
  };
  auto whole = train_in(one, "");
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  auto parts = train_in(chunked, "AUTOTRAIN_LOSS_CHUNK_MB=0.02");
  ASSERT_EQ(parts.exit_code, 0) << parts.output;
  const auto a = read_metrics(one.file("run/metrics.jsonl")), b = read_metrics(chunked.file("run/metrics.jsonl"));
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].contains("loss")) EXPECT_NEAR(a[i]["loss"].get<double>(), b[i]["loss"].get<double>(), 1e-4) << i;

  testing::TempDir bad;
  auto refused = train_in(bad, "AUTOTRAIN_LOSS_CHUNK_MB=lots");
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_NE(refused.output.find("AUTOTRAIN_LOSS_CHUNK_MB=lots is not a positive number of MiB"), std::string::npos)
      << refused.output;
}

TEST(Finetune, PeftLoadsOurAdapterAndGivesOurLogits) {
  testing::TempDir dir;
  auto result = testing::run_autotrain("train --config " + testing::quote(write_config(dir, {{"epochs", 1}, {"quantization", "none"}, {"mixed_precision", "none"}})) +
                                           " --cache-dir " + testing::quote(dir.file("cache")),
                                       dir.path());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const std::string adapter_dir = dir.file("run");
  AdapterConfig adapter = load_adapter_config(adapter_dir);
  ModelOptions options;
  options.lora_target_modules = adapter.target_modules;
  options.lora = adapter.lora;
  CausalLM model(kFixtures + "/models/llama", options);
  load_adapter_weights(adapter_dir, model.lora_parameters());
  model.set_training(false);
  at::Tensor ids = at::arange(3, 3 + 2 * 20, at::kLong).remainder(997).view({2, 20});
  at::Tensor logits;
  {
    at::NoGradGuard no_grad;
    logits = model.forward(ids);
  }
  write_safetensors(dir.file("ours.safetensors"), {{"input_ids", ids}, {"logits", logits}});
  // PeftModel.from_pretrained on transformers' model must load the folder as is and give our logits:
  // fp32 both sides, the same ops; 1e-4 is the bound.
  const std::string script = std::string(AUTOTRAIN_SOURCE_DIR) + "/tests/checks/peft_load_check.py";
  auto check = testing::run_command(testing::quote(AUTOTRAIN_PYTHON) + " " + testing::quote(script) + " " +
                                    testing::quote(kFixtures + "/models/llama") + " " + testing::quote(adapter_dir) +
                                    " " + testing::quote(dir.file("ours.safetensors")));
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find("max |logit diff|"), std::string::npos) << check.output;
}

// Out of memory, injected: an attempt allocates 4 TiB (libtorch's CPU allocator fails) while batch_size is
// above `fits`.
struct OutOfMemoryAbove {
  int64_t fits;
  std::vector<std::pair<int64_t, int64_t>> tried;  // (batch_size, gradient_accumulation)
  std::vector<bool> resumed;
  TrainingSummary operator()(const TrainingParams& p, bool resume) {
    tried.emplace_back(p.batch_size, p.gradient_accumulation);
    resumed.push_back(resume);
    if (p.batch_size > fits) at::empty({int64_t{1} << 42}, at::kByte);
    TrainingSummary summary;
    summary.steps = 7;
    return summary;
  }
};

TEST(OutOfMemory, AutoFindBatchSizeHalvesTheBatchAndDoublesAccumulation) {
  TrainingParams params;
  params.batch_size = 8;
  params.gradient_accumulation = 3;
  params.auto_find_batch_size = true;
  OutOfMemoryAbove attempt{2, {}, {}};
  auto advice = [](const TrainingParams&) { return std::string("advice"); };
  TrainingSummary summary = train_finding_batch_size(params, true, true, std::ref(attempt), advice);
  EXPECT_EQ(summary.steps, 7);
  const std::vector<std::pair<int64_t, int64_t>> expected = {{8, 3}, {4, 6}, {2, 12}};  // 24 blocks a step each
  EXPECT_EQ(attempt.tried, expected);
  EXPECT_EQ(attempt.resumed, (std::vector<bool>{true, false, false})) << "a retry starts afresh";
}

TEST(OutOfMemory, WithoutAutoFindTheErrorCarriesTheAdvice) {
  TrainingParams params;
  params.batch_size = 8;
  params.gradient_accumulation = 1;
  OutOfMemoryAbove attempt{2, {}, {}};
  auto advice = [](const TrainingParams& p) { return "advice for batch " + std::to_string(p.batch_size); };
  const std::string message = testing::error_message_of(
      [&] { train_finding_batch_size(params, true, true, std::ref(attempt), advice); });
  EXPECT_EQ(message, "out of memory at batch_size 8 x gradient_accumulation 1; advice for batch 8");
  EXPECT_EQ(attempt.tried.size(), 1u);

  params.auto_find_batch_size = true;  // a resumed run is not retried with other settings
  OutOfMemoryAbove resumed{2, {}, {}};
  const std::string refused = testing::error_message_of(
      [&] { train_finding_batch_size(params, true, false, std::ref(resumed), advice); });
  EXPECT_NE(refused.find("auto_find_batch_size does not retry a resumed run"), std::string::npos) << refused;
  EXPECT_EQ(resumed.tried.size(), 1u);

  // Other failures pass through untouched.
  auto failing = [](const TrainingParams&, bool) -> TrainingSummary { throw Error("data.jsonl: broken"); };
  EXPECT_EQ(testing::error_message_of([&] { train_finding_batch_size(params, true, true, failing, advice); }),
            "data.jsonl: broken");
}

TEST(OutOfMemory, TheAdviceIsTheEstimatorsBreakdownAndChangesThatLowerIt) {
  TrainingParams params;
  params.model = kFixtures + "/models/llama";
  params.batch_size = 8;
  params.block_size = 512;
  params.quantization = "none";
  params.disable_gradient_checkpointing = true;
  const ModelConfig config = load_model_config(params.model);
  const RunShape shape = run_shape(params, ExecutionTarget::cpu);
  const std::string advice = out_of_memory_advice(config, shape);
  EXPECT_NE(advice.find("the estimate for batch_size 8 x block_size 512 is " +
                        format_bytes(estimate_memory(config, shape).peak())),
            std::string::npos) << advice;
  RunShape halved = shape;
  halved.batch_size = 4;
  halved.gradient_accumulation = shape.gradient_accumulation * 2;
  EXPECT_NE(advice.find("try batch_size 4 x gradient_accumulation 8 (or auto_find_batch_size: true) (" +
                        format_bytes(estimate_memory(config, halved).peak()) + ")"),
            std::string::npos) << advice;
  EXPECT_NE(advice.find("or disable_gradient_checkpointing false"), std::string::npos) << advice;
  EXPECT_NE(advice.find("or block_size 256"), std::string::npos) << advice;
  EXPECT_EQ(advice.find("quantization int4"), std::string::npos) << "int4 hardly lowers this tiny model's peak";
  EXPECT_EQ(advice.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace autotrain
