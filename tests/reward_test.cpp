// The reward trainer (trainer "reward") against TRL's RewardTrainer + PEFT (task_type SEQ_CLS) on the llama fixture
// (tests/reference/reward_trl.py): the pairs' token ids and the pairs dropped for length, the initial model's rewards
// (transformers' sequence-classification pooling), 10 optimizer steps' losses, learning rates and logged metrics, the
// evaluation, the final adapter with its score head; the SEQ_CLS adapter `train` writes and `eval` reads; the checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <utility>
#include <nlohmann/json.hpp>

#include "autotrain/adapter.h"
#include "autotrain/config.h"
#include "autotrain/error.h"
#include "autotrain/estimate.h"
#include "autotrain/evaluate.h"
#include "autotrain/fileio.h"
#include "autotrain/finetune.h"
#include "autotrain/gguf.h"
#include "autotrain/merge.h"
#include "autotrain/metrics.h"
#include "autotrain/model.h"
#include "autotrain/model_config.h"
#include "autotrain/preference.h"
#include "autotrain/safetensors.h"
#include "test_util.h"

namespace autotrain {
namespace {

const std::string kFixtures = AUTOTRAIN_FIXTURES_DIR;
const std::string kOracle = kFixtures + "/reference/reward_trl";
const std::string kLlama = kFixtures + "/models/llama";

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(read_file(path)); }

// The oracle's data read the way a training_params.json for it says: the records' "prompt" column is prepended, as
// TRL prepends a "prompt" column.
TrainingParams oracle_params(const nlohmann::json& settings) {
  TrainingParams p = testing::oracle_training_params(settings);
  p.model = kLlama;
  p.trainer = "reward";
  p.data_path = kOracle;
  p.valid_split = "valid";
  p.text_column = "chosen";
  p.prompt_text_column = "prompt";
  p.rejected_text_column = "rejected";
  p.block_size = settings["max_length"];
  p.logging_steps = 1;
  p.quantization = "none";  // fp32, as the oracle
  return p;
}

// A model with the oracle's LoRA targets on `device`, made a reward model with `adapter_dir`'s LoRA matrices and head.
struct RewardModel {
  std::unique_ptr<CausalLM> model;
  TrainableModel trainable;
};
RewardModel load_reward_model(const TrainingParams& p, const nlohmann::json& settings, const std::string& adapter_dir,
                              const std::string& device = "cpu") {
  ModelOptions options = finetune_model_options(p);
  options.lora_target_modules = settings["target_modules"].get<std::vector<std::string>>();
  options.device = at::Device(device);
  RewardModel out;
  out.model = std::make_unique<CausalLM>(p.model, options);
  const AdapterConfig adapter = finetune_adapter_config(p, options);
  out.trainable = trainable_model(*out.model, adapter);
  attach_reward_head(out.trainable, *out.model, adapter, new_score_head(*out.model));
  load_adapter_weights(adapter_dir, out.trainable.parameters);
  return out;
}

// Our pairs of a split against the oracle's records of it: whole sequences (no prompt), the same ids.
void expect_ids_as_oracle(const std::vector<PreferencePair>& pairs, const nlohmann::json& expected,
                          const std::string& split) {
  ASSERT_EQ(pairs.size(), expected.size()) << split;
  for (size_t i = 0; i < pairs.size(); ++i) {
    EXPECT_TRUE(pairs[i].prompt.empty() && pairs[i].rejected_prompt.empty());
    EXPECT_EQ(pairs[i].chosen, expected[i]["chosen_ids"].get<std::vector<int64_t>>()) << split << " " << i;
    EXPECT_EQ(pairs[i].rejected, expected[i]["rejected_ids"].get<std::vector<int64_t>>()) << split << " " << i;
  }
}

// The largest |difference| of `reward`'s rewards for `pairs`, in padded batches of 2 pairs (4 rows) as the trainer
// batches them, from the oracle's "chosen_reward" / "rejected_reward" of the same records.
double worst_reward_difference(RewardModel& reward, const std::vector<PreferencePair>& pairs,
                               const nlohmann::json& expected, int64_t max_length, int64_t pad) {
  at::NoGradGuard no_grad;
  double worst = 0;
  for (size_t first = 0; first < pairs.size(); first += 2) {
    std::vector<int64_t> indices = {static_cast<int64_t>(first)};
    if (first + 1 < pairs.size()) indices.push_back(static_cast<int64_t>(first + 1));
    const at::Tensor rewards =
        reward.trainable.sequence_rewards(preference_batch(pairs, indices, max_length, pad).input_ids, pad).cpu();
    for (size_t k = 0; k < indices.size(); ++k) {
      const auto& record = expected[static_cast<size_t>(indices[k])];
      const double chosen = rewards[static_cast<int64_t>(k)].item<double>();
      const double rejected = rewards[static_cast<int64_t>(k + indices.size())].item<double>();
      worst = std::max({worst, std::abs(chosen - record["chosen_reward"].get<double>()),
                        std::abs(rejected - record["rejected_reward"].get<double>())});
    }
  }
  return worst;
}

// Token ids equal TRL's: the prompt prepended, "</s>" appended as text where missing, bos first; the four records
// with a side over max_length dropped (one only for its rejected, one only for its chosen), one of exactly 40 kept.
TEST(Reward, PairsAreTokenizedAndFilteredAsTrlDoes) {
  const auto settings = read_json(kOracle + "/settings.json");
  const auto tokens = read_json(kOracle + "/tokens.json");
  auto tokenizer = Tokenizer::load(kLlama);
  const TrainingParams p = oracle_params(settings);
  const int64_t max_length = settings["max_length"];
  for (const std::string split : {"train", "valid"}) {
    expect_ids_as_oracle(read_preference_split(p, *tokenizer, split, preference_limits(p, max_length)), tokens[split],
                         split);
  }
  EXPECT_EQ(tokens["dropped"], nlohmann::json::array({7, 10, 14, 18}));

  // Every pair too long: said, naming the file and the key to raise.
  TrainingParams tight = p;
  const std::string message = testing::error_message_of(
      [&] { read_preference_split(tight, *tokenizer, "train", preference_limits(tight, 3)); });
  EXPECT_NE(message.find("train.jsonl: every pair has a text longer than max_length (block_size 3"), std::string::npos)
      << message;
}

// The initial model's rewards (TRL's initial adapter: its LoRA matrices and score head) for every train pair, in
// padded batches of 2 pairs (4 rows) as the trainer batches them: transformers pools each sequence at its rightmost
// token that is not the pad id (eos here, so the token before the appended "</s>"; train record 13's rejected holds
// a "</s>" mid-text, which is not where it pools). fp32 on both sides: a reward is one 64-wide dot product after the
// layers, ~1e-6 apart; a pooled position off by one moves it by ~1e-2.
TEST(Reward, InitialRewardsAreTransformersSequenceClassificationRewards) {
  const auto settings = read_json(kOracle + "/settings.json");
  const auto tokens = read_json(kOracle + "/tokens.json");
  const TrainingParams p = oracle_params(settings);
  RewardModel reward = load_reward_model(p, settings, kOracle + "/initial");
  reward.trainable.set_training(false);
  auto tokenizer = Tokenizer::load(kLlama);
  const int64_t pad = settings["pad_token_id"];
  const auto pairs = read_preference_split(p, *tokenizer, "train", preference_limits(p, settings["max_length"]));
  const double worst = worst_reward_difference(reward, pairs, tokens["train"], settings["max_length"], pad);
  int64_t mid_text_eos = 0;
  for (const auto& pair : pairs)
    for (const auto* ids : {&pair.chosen, &pair.rejected})
      mid_text_eos += std::count(ids->begin(), ids->end() - 1, pad);
  EXPECT_LT(worst, 1e-5);
  EXPECT_GE(mid_text_eos, 1);  // the case the rightmost-non-pad rule is for is among them
  std::printf("initial rewards vs transformers: max |diff| %.3g over %zu pairs\n", worst, pairs.size());
}

// Trains the oracle's pairs from its initial adapter, in slices of stop_after steps when that is not 0 (each slice a
// fresh model resuming the previous slice's checkpoint, the score head included).
struct OracleRun {
  RewardModel reward;
  TrainingSummary summary;
  std::vector<nlohmann::json> steps, evals;
};
OracleRun train_from_initial(const TrainingParams& p, const nlohmann::json& settings, const std::string& device,
                             int64_t stop_after = 0) {
  auto tokenizer = Tokenizer::load(p.model);
  const PreferenceData data = read_preference_data(p, *tokenizer, settings["max_length"]);
  EXPECT_EQ(data.loss, "reward");
  EXPECT_EQ(data.pad_id, settings["pad_token_id"].get<int64_t>());
  OracleRun run;
  do {
    run.reward = load_reward_model(p, settings, kOracle + "/initial", device);
    TrainerOptions options;
    options.params = p;
    options.stop_after_steps = stop_after;
    run.summary = train_preference(run.reward.trainable, data, options);
  } while (run.summary.stopped_early);
  for (auto& record : read_metrics(p.project_name + "/metrics.jsonl"))
    (record.contains("eval_loss") ? run.evals : run.steps).push_back(record);
  return run;
}

// 10 steps (2 epochs of windows 2, 2, 2, 2, 1) from TRL's initial adapter: every logged number as TRL's
// RewardTrainer logs it, the evaluations, and the final adapter (LoRA matrices and head) against PEFT's. fp32 on
// both sides; the bounds are `scale` times the CPU's.
void expect_ten_steps_as_trl(const std::string& device, double scale, int64_t stop_after = 0) {
  const auto settings = read_json(kOracle + "/settings.json");
  const auto steps = read_json(kOracle + "/steps.json");
  testing::TempDir folder;
  TrainingParams p = oracle_params(settings);
  p.project_name = folder.file("project");
  const OracleRun run = train_from_initial(p, settings, device, stop_after);
  ASSERT_EQ(run.summary.total_steps, 10);
  ASSERT_EQ(run.steps.size(), 10u);
  double worst = 0;
  for (size_t s = 0; s < 10; ++s) {
    // accuracy is a share of 2 or 4 pairs: a flipped pair moves it by 0.25 at least.
    for (const char* key : {"loss", "accuracy", "margin", "min_reward", "mean_reward", "max_reward"}) {
      const double diff = std::abs(run.steps[s][key].get<double>() - steps[key][s].get<double>());
      EXPECT_LT(diff, scale * 1e-5) << key << " step " << s + 1;
      worst = std::max(worst, diff);
    }
    EXPECT_NEAR(run.steps[s]["lr"].get<double>(), steps["lr"][s].get<double>(), 1e-12) << s;
    EXPECT_NEAR(run.steps[s]["grad_norm"].get<double>(), steps["grad_norm"][s].get<double>(), scale * 1e-4) << s;
  }
  ASSERT_EQ(run.evals.size(), 2u);
  for (size_t e = 0; e < 2; ++e) {  // equal eval batches (3 of 2 pairs): TRL's plain means are the pair means
    for (const char* key : {"eval_loss", "eval_accuracy", "eval_margin"})
      EXPECT_NEAR(run.evals[e][key].get<double>(), steps[key][e].get<double>(), scale * 1e-5) << key << " " << e;
  }
  // 10 AdamW steps at lr 2e-3 move the weights ~0.02; fp32 rounding keeps them within ~1e-6 of PEFT's.
  auto peft = SafetensorsFile::open(kOracle + "/final/adapter_model.safetensors");
  ASSERT_EQ(peft->names().size(), run.reward.trainable.parameters.size());
  double worst_weight = 0, head_moved = 0;
  for (const auto& [name, tensor] : run.reward.trainable.parameters) {
    ASSERT_TRUE(peft->has(name)) << name;
    worst_weight = std::max(worst_weight, (tensor.detach().cpu() - peft->tensor(name)).abs().max().item<double>());
  }
  auto initial = SafetensorsFile::open(kOracle + "/initial/adapter_model.safetensors");
  head_moved = (peft->tensor(kScoreTensorName) - initial->tensor(kScoreTensorName)).abs().max().item<double>();
  EXPECT_LT(worst_weight, scale * 1e-4);
  EXPECT_GT(head_moved, 1e-3);  // the head is trained, not only carried
  std::printf("10 reward steps vs TRL (%s): max |metric diff| %.3g, |weight diff| %.3g\n", device.c_str(), worst,
              worst_weight);
}

TEST(Reward, TenStepsGiveTrlsLossesMetricsAndWeights) { expect_ten_steps_as_trl("cpu", 1); }

// Stopped every 3 steps and resumed from the checkpoint: the head's weights and moments come back with the LoRA ones.
TEST(Reward, ResumedInSlicesGivesTheSameSteps) { expect_ten_steps_as_trl("cpu", 1, 3); }

// On a GPU (skipped without one): fp32 with TF32 off, cuBLAS summing in other orders: 10 times the CPU's bounds.
TEST(RewardCuda, TenStepsGiveTrlsLossesMetricsAndWeights) {
  REQUIRE_CUDA_DEVICE();
  expect_ten_steps_as_trl("cuda", 10);
}

// One epoch of the oracle's pairs through run_finetune, as `autotrain train` runs it, on the oracle's LoRA targets with
// the base in `quantization`, into dir/project: the params (project_name the adapter's folder) and the summary.
std::pair<TrainingParams, TrainingSummary> train_one_epoch(const nlohmann::json& settings, const testing::TempDir& dir,
                                                           const std::string& quantization) {
  TrainingParams p = oracle_params(settings);
  p.project_name = dir.file("project");
  p.epochs = 1;
  p.quantization = quantization;
  p.target_modules = "q_proj,k_proj,v_proj,o_proj";
  FinetuneOptions options;
  options.cache_dir = dir.file("cache");
  options.device = "cpu";
  const TrainingSummary summary = run_finetune(p, options);
  return {p, summary};
}

// Through run_finetune as `autotrain train` runs it: a SEQ_CLS adapter (PEFT's names, the head beside the LoRA
// matrices, modules_to_save as PEFT writes them) and TRL's metrics in project_name; `eval` of TRL's final adapter
// gives its last evaluation, and eval without an adapter, or of a language model's adapter, is refused.
TEST(Reward, TrainWritesASeqClsAdapterThatEvalScores) {
  const auto settings = read_json(kOracle + "/settings.json");
  const auto steps = read_json(kOracle + "/steps.json");
  testing::TempDir run;
  const auto [p, summary] = train_one_epoch(settings, run, "int4");
  EXPECT_EQ(summary.steps, 5);
  EXPECT_TRUE(summary.eval_loss.has_value());
  const auto config = read_json(p.project_name + "/adapter_config.json");
  const auto peft_config = read_json(kOracle + "/final/adapter_config.json");
  for (const char* key : {"task_type", "modules_to_save", "peft_type", "lora_dropout"})
    EXPECT_EQ(config[key], peft_config[key]) << key;
  const AdapterConfig loaded = load_adapter_config(p.project_name);
  EXPECT_TRUE(loaded.is_reward_model());
  auto ours = SafetensorsFile::open(p.project_name + "/adapter_model.safetensors");
  auto theirs = SafetensorsFile::open(kOracle + "/final/adapter_model.safetensors");
  auto sorted = [](std::vector<std::string> names) {
    std::sort(names.begin(), names.end());
    return names;
  };
  EXPECT_EQ(sorted(ours->names()), sorted(theirs->names()));
  const auto records = read_metrics(p.project_name + "/metrics.jsonl");
  ASSERT_FALSE(records.empty());
  for (const char* key : {"loss", "accuracy", "margin", "min_reward", "mean_reward", "max_reward"})
    EXPECT_TRUE(records.front().contains(key)) << key;

  EvaluateOptions eval;
  eval.split = "valid";
  eval.adapter_dir = kOracle + "/final";
  eval.device = "cpu";
  TrainingParams fp32 = oracle_params(settings);
  const EvaluationResult result = run_evaluation(fp32, eval);
  EXPECT_TRUE(result.preference);
  EXPECT_EQ(result.pairs, 6);
  EXPECT_NEAR(result.loss, steps["eval_loss"][1].get<double>(), 1e-5);
  EXPECT_NEAR(result.reward_accuracy, steps["eval_accuracy"][1].get<double>(), 1e-9);
  EXPECT_NEAR(result.reward_margin, steps["eval_margin"][1].get<double>(), 1e-5);
  eval.adapter_dir.clear();
  EXPECT_NE(testing::error_message_of([&] { run_evaluation(fp32, eval); }).find("give --adapter"), std::string::npos);
  eval.adapter_dir = kOracle + "/final";
  fp32.trainer = "default";
  EXPECT_NE(testing::error_message_of([&] { run_evaluation(fp32, eval); }).find("score it with --trainer reward"),
            std::string::npos);
}

// What `train` writes and what merge-adapter makes of it, loaded the way users load them: PEFT's
// PeftModel.from_pretrained on transformers' AutoModelForSequenceClassification (task SEQ_CLS, the head from
// modules_to_save), and the merged folder by AutoModelForSequenceClassification alone (no lm_head, score.weight, one
// label, the pad id). Both give our rewards on the padded validation pairs: fp32 on all sides, within 1e-4.
TEST(Reward, OurAdapterAndItsMergeGiveOurRewardsInPeftAndTransformers) {
  const auto settings = read_json(kOracle + "/settings.json");
  testing::TempDir dir;
  const TrainingParams p = train_one_epoch(settings, dir, "none").first;

  RewardModel reward = load_reward_model(p, settings, p.project_name);
  reward.trainable.set_training(false);
  auto tokenizer = Tokenizer::load(kLlama);
  const auto pairs = read_preference_split(p, *tokenizer, "valid", preference_limits(p, settings["max_length"]));
  const PreferenceBatch batch =
      preference_batch(pairs, {0, 1, 2, 3, 4, 5}, settings["max_length"], settings["pad_token_id"]);
  at::Tensor rewards;
  {
    at::NoGradGuard no_grad;
    rewards = reward.trainable.sequence_rewards(batch.input_ids, settings["pad_token_id"]).cpu();
  }
  write_safetensors(dir.file("ours.safetensors"), {{"input_ids", batch.input_ids},
                                                   {"attention_mask", batch.attention_mask.to(at::kLong)},
                                                   {"rewards", rewards}});
  MergeOptions merge;
  merge.base_dir = kLlama;
  merge.adapter_dir = p.project_name;
  merge.out_dir = dir.file("merged");
  merge_adapter(merge);
  auto merged = Checkpoint::open(merge.out_dir);
  EXPECT_TRUE(merged.has("score.weight"));
  EXPECT_FALSE(merged.has("lm_head.weight"));
  const auto config = read_json(merge.out_dir + "/config.json");
  EXPECT_EQ(config["architectures"], nlohmann::json::array({"LlamaForSequenceClassification"}));
  // The merged reward model has no LM head: generate and export-gguf say so rather than miss lm_head.weight.
  EXPECT_NE(testing::error_message_of([&] { CausalLM(merge.out_dir, ModelOptions{}); })
                .find("config.json: a sequence-classification model"),
            std::string::npos);
  GgufOptions gguf;
  gguf.model_dir = merge.out_dir;
  gguf.out_file = dir.file("merged.gguf");
  EXPECT_NE(testing::error_message_of([&] { export_gguf(gguf); }).find("no GGUF to write"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(gguf.out_file));

  const std::string script = std::string(AUTOTRAIN_SOURCE_DIR) + "/tests/checks/reward_load_check.py";
  auto check = testing::run_command(
      testing::quote(AUTOTRAIN_PYTHON) + " " + testing::quote(script) + " " + testing::quote(kLlama) + " " +
      testing::quote(p.project_name) + " " + testing::quote(merge.out_dir) + " " +
      testing::quote(dir.file("ours.safetensors")) + " " + settings["pad_token_id"].dump());
  EXPECT_EQ(check.exit_code, 0) << check.output;
  std::printf("%s", check.output.c_str());
  EXPECT_NE(check.output.find("PEFT: max |reward diff|"), std::string::npos) << check.output;
  EXPECT_NE(check.output.find("merged: max |reward diff|"), std::string::npos) << check.output;
}

// A reward model's adapter scores and does not generate: generate says so and exits 2. estimate-cost counts two
// sequences a pair, without a reference forward.
TEST(Reward, GenerateRefusesARewardAdapterAndEstimateCountsBothSequences) {
  testing::TempDir dir;
  auto run = testing::run_autotrain("generate --model " + testing::quote(kLlama) + " --adapter " +
                                        testing::quote(kOracle + "/final") + " --prompt hello --max-new-tokens 2",
                                    dir.path().string());
  EXPECT_NE(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("task_type SEQ_CLS) scores texts and does not generate"), std::string::npos) << run.output;

  TrainingParams p = oracle_params(read_json(kOracle + "/settings.json"));
  const RunShape shape = run_shape(p);
  EXPECT_EQ(shape.batch_size, 2 * p.batch_size);
  EXPECT_FALSE(shape.reference_forward);
  // No LM head in the loss: none of its logits' memory, and its FLOPs (twice in the forward, backward and the
  // chunked loss's recompute) left out, against ORPO's same-shaped pairs with the LM head.
  EXPECT_FALSE(shape.lm_head);
  p.trainer = "orpo";
  const RunShape orpo = run_shape(p);
  EXPECT_TRUE(orpo.lm_head);
  const ModelConfig config = load_model_config(kLlama);
  const int64_t tokens = shape.tokens_per_micro_batch();
  EXPECT_EQ(estimate_logits_bytes(config, shape), shape.compute_bytes * config.hidden_size * tokens);
  EXPECT_GT(estimate_logits_bytes(config, orpo), 3 * 4 * config.vocab_size);
  const double lm_head = static_cast<double>(config.vocab_size * config.hidden_size);
  const FlopsPerToken reward_flops = estimate_flops_per_token(config, shape);
  const FlopsPerToken orpo_flops = estimate_flops_per_token(config, orpo);
  EXPECT_DOUBLE_EQ(reward_flops.total(), orpo_flops.total() - 6 * lm_head);
  EXPECT_EQ(reward_flops.recompute, orpo_flops.recompute - 2 * lm_head);
}

// ---- conversations (reference/reward_trl/chat: the qwen2 fixture, no bos, eos = pad = "<|endoftext|>", ChatML) ----
const std::string kChatOracle = kOracle + "/chat";

// AutoTrain renders each conversation (train: whole conversations; valid: a prompt column of messages then one
// assistant message, which renders the same) with the model's template and TRL tokenizes that text as any other:
// "<|endoftext|>" appended, pairs with a side over 64 tokens dropped (one only for its rejected, one only for its
// chosen). The ids are TRL's, and so are the initial model's rewards on padded batches of 2 pairs, within 1e-5 (fp32).
TEST(RewardChat, ConversationsAreRenderedTokenizedAndScoredAsAutoTrainAndTrlDo) {
  const auto settings = read_json(kChatOracle + "/settings.json");
  const auto tokens = read_json(kChatOracle + "/tokens.json");
  TrainingParams p = oracle_params(settings);
  p.model = kFixtures + "/models/qwen2";
  p.data_path = kChatOracle;
  p.chat_template = "tokenizer";
  auto tokenizer = Tokenizer::load(p.model);
  const int64_t max_length = settings["max_length"];
  const int64_t pad = settings["pad_token_id"];
  EXPECT_EQ(preference_settings(p, *tokenizer, max_length).pad_id, pad);
  RewardModel reward = load_reward_model(p, settings, kChatOracle + "/initial");
  reward.trainable.set_training(false);
  double worst = 0;
  for (const std::string split : {"train", "valid"}) {
    p.prompt_text_column = split == "valid" ? std::optional<std::string>("prompt") : std::nullopt;
    const auto pairs = read_preference_split(p, *tokenizer, split, preference_limits(p, max_length));
    expect_ids_as_oracle(pairs, tokens[split], split);
    worst = std::max(worst, worst_reward_difference(reward, pairs, tokens[split], max_length, pad));
  }
  EXPECT_EQ(tokens["dropped"], nlohmann::json::array({3, 6}));
  EXPECT_LT(worst, 1e-5);
  std::printf("chat reward pairs: ids identical, initial rewards max |diff| %.3g\n", worst);
}

TEST(Reward, ConfigNeedsTheRejectedColumnOnly) {
  auto parse = [](const nlohmann::json& extra) {
    nlohmann::json config = {{"trainer", "reward"}, {"peft", true}, {"rejected_text_column", "rejected"}};
    config.update(extra);
    return parse_training_params(config, "params.json");
  };
  EXPECT_NO_THROW(parse(nlohmann::json::object()));  // no prompt column: chosen and rejected are whole texts
  EXPECT_NO_THROW(parse({{"chat_template", "tokenizer"}}));
  EXPECT_NE(testing::error_message_of([&] {
              parse({{"rejected_text_column", nullptr}});
            }).find("params.json: key \"rejected_text_column\""),
            std::string::npos);
}

}  // namespace
}  // namespace autotrain
