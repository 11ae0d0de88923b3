// The DPO trainer (trainer "dpo") against TRL's DPOTrainer + PEFT on the llama fixture (tests/reference/dpo_trl.py):
// the pairs' token ids, 12 optimizer steps' losses, learning rates and logged rewards, the evaluation loss and the
// final adapter; the adapter switch that gives the reference model; the prompt and completion cuts of AutoTrain's
// max_prompt_length / max_completion_length; the config checks.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "autotrain/adapter.h"
#include "autotrain/chat_template.h"
#include "autotrain/config.h"
#include "autotrain/error.h"
#include "autotrain/estimate.h"
#include "autotrain/evaluate.h"
#include "autotrain/fileio.h"
#include "autotrain/finetune.h"
#include "autotrain/metrics.h"
#include "autotrain/model.h"
#include "autotrain/preference.h"
#include "autotrain/safetensors.h"
#include "autotrain/tokenizer.h"
#include "autotrain/trainer.h"
#include "test_util.h"

namespace autotrain {
namespace {

const std::string kFixtures = AUTOTRAIN_FIXTURES_DIR;
const std::string kOracle = kFixtures + "/reference/dpo_trl";
const std::string kLlama = kFixtures + "/models/llama";

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(read_file(path)); }

// The oracle's data read the way a training_params.json for it says.
TrainingParams oracle_params(const nlohmann::json& settings) {
  TrainingParams p = testing::oracle_training_params(settings);
  p.model = kLlama;
  p.trainer = "dpo";
  p.data_path = kOracle;
  p.valid_split = "valid";
  p.text_column = "chosen";
  p.prompt_text_column = "prompt";
  p.rejected_text_column = "rejected";
  p.block_size = settings["max_length"];
  p.dpo_beta = settings["beta"];
  p.logging_steps = 1;
  p.quantization = "none";  // fp32, as the oracle
  return p;
}

void expect_pairs_equal(const std::vector<PreferencePair>& ours, const nlohmann::json& theirs,
                        const std::string& split) {
  ASSERT_EQ(ours.size(), theirs.size()) << split;
  for (size_t i = 0; i < ours.size(); ++i) {
    EXPECT_EQ(ours[i].prompt, theirs[i]["prompt_ids"].get<std::vector<int64_t>>()) << split << " pair " << i;
    EXPECT_EQ(ours[i].chosen, theirs[i]["chosen_ids"].get<std::vector<int64_t>>()) << split << " pair " << i;
    EXPECT_EQ(ours[i].rejected, theirs[i]["rejected_ids"].get<std::vector<int64_t>>()) << split << " pair " << i;
  }
}

// Trains params' pairs from `oracle`/initial (TRL's initial adapter) on `device`, in slices of stop_after steps when
// that is not 0 (each slice a fresh model resuming the previous slice's checkpoint); the model with the final
// adapter, and the metrics records (steps, then evaluations) of p.project_name.
struct OracleRun {
  std::unique_ptr<CausalLM> model;
  TrainingSummary summary;
  std::vector<nlohmann::json> steps, evals;
};
OracleRun train_from_initial(const TrainingParams& p, const nlohmann::json& settings, const std::string& oracle,
                             const std::string& device = "cpu", int64_t stop_after = 0) {
  auto tokenizer = Tokenizer::load(p.model);
  const PreferenceData data = read_preference_data(p, *tokenizer, settings["max_length"]);
  ModelOptions model_options = finetune_model_options(p);
  model_options.lora_target_modules = settings["target_modules"].get<std::vector<std::string>>();
  model_options.device = at::Device(device);
  OracleRun run;
  do {
    run.model = std::make_unique<CausalLM>(p.model, model_options);
    load_adapter_weights(oracle + "/initial", run.model->lora_parameters());
    AdapterConfig adapter{model_options.lora, model_options.lora_target_modules, p.model};
    TrainableModel trainable = trainable_model(*run.model, adapter);
    TrainerOptions options;
    options.params = p;
    options.stop_after_steps = stop_after;
    run.summary = train_preference(trainable, data, options);
  } while (run.summary.stopped_early);
  for (auto& record : read_metrics(p.project_name + "/metrics.jsonl"))
    (record.contains("eval_loss") ? run.evals : run.steps).push_back(record);
  return run;
}

// The largest |difference| of the final adapter from `oracle`/final (PEFT's).
double worst_weight_difference(const CausalLM& model, const std::string& oracle) {
  auto peft = SafetensorsFile::open(oracle + "/final/adapter_model.safetensors");
  double worst = 0;
  for (const auto& [name, tensor] : model.lora_parameters()) {
    EXPECT_TRUE(peft->has(name)) << name;
    if (peft->has(name))
      worst = std::max(worst, (tensor.detach().cpu() - peft->tensor(name)).abs().max().item<double>());
  }
  return worst;
}

// Token ids equal TRL's for every pair: bos on the prompt, "</s>" appended where missing, completions starting at
// the common prefix (three prompts end mid-word), and the record whose prompt fills max_length dropped.
TEST(Dpo, PairsAreTokenizedAsTrlTokenizesThem) {
  const auto settings = read_json(kOracle + "/settings.json");
  const auto tokens = read_json(kOracle + "/tokens.json");
  auto tokenizer = Tokenizer::load(kLlama);
  TrainingParams p = oracle_params(settings);
  p.max_prompt_length = 1000;  // TRL 1.x has no prompt cut; AutoTrain's default of 128 does not bind here either
  const PreferenceData data = read_preference_data(p, *tokenizer, settings["max_length"]);
  expect_pairs_equal(data.train, tokens["train"], "train");
  ASSERT_TRUE(data.valid);
  expect_pairs_equal(*data.valid, tokens["valid"], "valid");
  EXPECT_EQ(tokens["dropped"], nlohmann::json::array({7}));
  EXPECT_EQ(data.pad_id, settings["pad_token_id"].get<int64_t>());
}

// max_completion_length keeps a completion's first tokens; then a prompt that with the longer completion passes
// max_length keeps its bos and last max_prompt_length tokens (as TRL did when AutoTrain passed these keys). The
// expected ids are cut from TRL's uncut ones.
TEST(Dpo, PromptAndCompletionCutsKeepTheBosThePromptsEndAndTheCompletionsStart) {
  const auto tokens = read_json(kOracle + "/tokens.json");
  auto tokenizer = Tokenizer::load(kLlama);
  std::ifstream in(kOracle + "/train.jsonl");
  std::string line;
  size_t kept = 0, cut = 0, uncut = 0;
  const PreferenceLimits limits{20, 6, 5};
  for (int64_t record = 0; std::getline(in, line); ++record) {
    if (record == 7) continue;  // the dropped one
    const auto row = nlohmann::json::parse(line);
    const auto& expected = tokens["train"][kept++];
    const auto prompt = expected["prompt_ids"].get<std::vector<int64_t>>();
    auto chosen = expected["chosen_ids"].get<std::vector<int64_t>>();
    auto rejected = expected["rejected_ids"].get<std::vector<int64_t>>();
    chosen.resize(std::min<size_t>(5, chosen.size()));
    rejected.resize(std::min<size_t>(5, rejected.size()));
    std::vector<int64_t> cut_prompt = prompt;
    if (prompt.size() > 6 && prompt.size() + std::max(chosen.size(), rejected.size()) > 20) {
      cut_prompt = {prompt.front()};  // the bos
      cut_prompt.insert(cut_prompt.end(), prompt.end() - 5, prompt.end());
      ++cut;
    } else if (prompt.size() > 6) {
      ++uncut;  // long, but it fits with its completions
    }
    const PreferencePair pair = tokenize_preference(*tokenizer, row["prompt"], row["chosen"], row["rejected"], limits);
    EXPECT_EQ(pair.prompt, cut_prompt) << record;
    EXPECT_EQ(pair.chosen, chosen) << record;
    EXPECT_EQ(pair.rejected, rejected) << record;
  }
  EXPECT_EQ(kept, 21u);
  EXPECT_GE(cut, 3u);
  EXPECT_GT(uncut, 0u);
}

// The collator's layout: chosen rows then rejected rows, each cut to max_length, padded right with pad_id, the
// completion mask on completion tokens only.
TEST(Dpo, BatchesHoldChosenThenRejectedRowsPaddedRight) {
  const std::vector<PreferencePair> pairs = {{{1, 5, 6}, {7, 2}, {8, 9, 10, 2}},
                                             {{1, 4}, {11, 12, 13, 14, 15, 2}, {2}}};
  const PreferenceBatch batch = preference_batch(pairs, {1, 0}, 6, 0);
  const at::Tensor ids =
      at::tensor({1, 4, 11, 12, 13, 14, 1, 5, 6, 7, 2, 0, 1, 4, 2, 0, 0, 0, 1, 5, 6, 8, 9, 10}, at::kLong)
          .reshape({4, 6});
  EXPECT_TRUE(batch.input_ids.equal(ids));
  const at::Tensor mask = at::tensor({0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1}, at::kInt)
                              .reshape({4, 6})
                              .to(at::kBool);
  EXPECT_TRUE(batch.completion_mask.equal(mask));
  EXPECT_EQ(batch.tokens, 6 + 5 + 3 + 6);
}

// TRL's DPOTrainer and ORPOTrainer turn every dropout off (disable_dropout), PEFT's lora_dropout included, while the
// adapter_config.json PEFT writes keeps the config's value: the oracles ran with AutoTrain's 0.05, which the 12-step
// tests below therefore train with too. Trainers default and sft keep the dropout (transformers' Trainer, TRL's
// SFTTrainer).
TEST(Dpo, LoraDropoutIsOffWhileTrainingAsInTrlAndKeptInTheAdapterConfig) {
  const auto settings = read_json(kOracle + "/settings.json");
  const auto peft = read_json(kOracle + "/final/adapter_config.json");
  ASSERT_GT(settings["lora_dropout"].get<double>(), 0);
  for (const char* trainer : {"dpo", "orpo"}) {
    TrainingParams p = oracle_params(settings);
    p.trainer = trainer;
    EXPECT_DOUBLE_EQ(p.lora_dropout, settings["lora_dropout"].get<double>()) << trainer;
    const ModelOptions options = finetune_model_options(p);
    EXPECT_EQ(options.lora.dropout, 0.0) << trainer;
    EXPECT_DOUBLE_EQ(finetune_adapter_config(p, options).lora.dropout, peft["lora_dropout"].get<double>()) << trainer;
  }
  for (const char* trainer : {"default", "sft"}) {
    TrainingParams p = oracle_params(settings);
    p.trainer = trainer;
    EXPECT_DOUBLE_EQ(finetune_model_options(p).lora.dropout, settings["lora_dropout"].get<double>()) << trainer;
  }
}

// With the adapters off the model is its frozen base: the logits equal those of the model built without LoRA,
// and back on they are the adapter's again.
TEST(Dpo, DisabledAdaptersGiveTheBaseModel) {
  ModelOptions plain_options;
  CausalLM plain(kLlama, plain_options);
  ModelOptions options;
  options.lora_target_modules = {"q_proj", "v_proj", "down_proj"};
  options.lora = LoraOptions{8, 16, 0.0, false};
  CausalLM model(kLlama, options);
  {
    at::NoGradGuard no_grad;
    for (auto& [name, tensor] : model.lora_parameters()) tensor.normal_(0, 0.05);
  }
  const at::Tensor ids = at::arange(3, 23, at::kLong).reshape({2, 10});
  at::NoGradGuard no_grad;
  const at::Tensor base = plain.forward(ids), adapted = model.forward(ids);
  model.set_adapters_enabled(false);
  EXPECT_TRUE(model.forward(ids).equal(base));
  EXPECT_EQ(model.lora_parameters().size(), 3u * 2u * static_cast<size_t>(model.config().num_hidden_layers));
  model.set_adapters_enabled(true);
  EXPECT_TRUE(model.forward(ids).equal(adapted));
  EXPECT_GT((adapted - base).abs().max().item<double>(), 1e-3);
}

// 12 steps from TRL's initial adapter on `device`, in slices of stop_after steps when it is not 0 (each slice a
// fresh model resuming the previous slice's checkpoint): losses, learning rates, rewards and evaluation as TRL's
// DPOTrainer + PEFT logs them, and the final adapter. The bounds are `scale` times the CPU's.
void expect_twelve_steps_as_trl(const std::string& device, double scale, int64_t stop_after = 0) {
  const auto settings = read_json(kOracle + "/settings.json");
  const auto steps = read_json(kOracle + "/steps.json");
  testing::TempDir folder;
  TrainingParams p = oracle_params(settings);
  p.project_name = folder.file("project");
  const OracleRun run = train_from_initial(p, settings, kOracle, device, stop_after);
  ASSERT_EQ(run.summary.total_steps, 12);

  // fp32 on both sides: sequence log-probabilities are sums of ~20 token log-probs (~1e-6 apart), the loss moves
  // by beta times their difference; 1e-5 catches a wrong window divisor, pair order or reference (a wrong one
  // shifts a step's loss by 1e-3 or more).
  const auto& records = run.steps;
  const auto& evals = run.evals;
  ASSERT_EQ(records.size(), 12u);
  double worst_loss = 0, worst_lr = 0, worst_reward = 0, worst_logp = 0;
  for (size_t s = 0; s < 12; ++s) {
    worst_loss = std::max(worst_loss, std::abs(records[s]["loss"].get<double>() - steps["loss"][s].get<double>()));
    worst_lr = std::max(worst_lr, std::abs(records[s]["lr"].get<double>() - steps["lr"][s].get<double>()));
    for (const char* key : {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"})
      worst_reward = std::max(worst_reward, std::abs(records[s][key].get<double>() - steps[key][s].get<double>()));
    for (const char* key : {"logps/chosen", "logps/rejected"})
      worst_logp = std::max(worst_logp, std::abs(records[s][key].get<double>() - steps[key][s].get<double>()));
  }
  EXPECT_LT(worst_loss, scale * 1e-5);
  EXPECT_LT(worst_lr, 1e-12);
  EXPECT_LT(worst_reward, scale * 1e-5);  // beta x log-prob differences
  EXPECT_LT(worst_logp, scale * 1e-4);    // sums of up to 40 token log-probs of magnitude ~7 in fp32 (~3e-5)
  ASSERT_EQ(evals.size(), 2u);
  for (size_t e = 0; e < 2; ++e)
    EXPECT_NEAR(evals[e]["eval_loss"].get<double>(), steps["eval_loss"][e].get<double>(), scale * 1e-5) << e;

  // 12 AdamW steps at lr 2e-3 move the weights ~0.02; fp32 rounding keeps them within ~1e-6 of PEFT's.
  const double worst_weight = worst_weight_difference(*run.model, kOracle);
  EXPECT_LT(worst_weight, scale * 1e-4);
  std::printf("12 DPO steps vs TRL (%s): max |loss diff| %.3g, |reward diff| %.3g, |weight diff| %.3g\n",
              device.c_str(), worst_loss, worst_reward, worst_weight);
}

TEST(Dpo, TwelveStepsGiveTrlsLossesRewardsAndWeights) { expect_twelve_steps_as_trl("cpu", 1); }

// Stopped every 5 steps (a step inside the first and the second epoch) and resumed from the checkpoint by a fresh
// process's worth of state: the same 12 steps.
TEST(Dpo, ResumedInSlicesGivesTheSameSteps) { expect_twelve_steps_as_trl("cpu", 1, 5); }

// On a GPU (skipped without one; gpu-check's training stage runs it when its filter names DpoCuda.*): fp32 with
// TF32 off, cuBLAS and the CUDA kernels summing in other orders: 10 times the CPU's bounds.
TEST(DpoCuda, TwelveStepsGiveTrlsLossesRewardsAndWeights) {
  REQUIRE_CUDA_DEVICE();
  expect_twelve_steps_as_trl("cuda", 10);
}

// Through run_finetune as `autotrain train` runs it: the adapter and metrics land in project_name.
TEST(Dpo, TrainWritesTheAdapterAndTheDpoMetrics) {
  const auto settings = read_json(kOracle + "/settings.json");
  testing::TempDir run;
  TrainingParams p = oracle_params(settings);
  p.project_name = run.file("project");
  p.epochs = 1;
  p.quantization = "int4";
  p.peft = true;
  FinetuneOptions options;
  options.cache_dir = run.file("cache");
  options.device = "cpu";
  const TrainingSummary summary = run_finetune(p, options);
  EXPECT_EQ(summary.steps, 6);
  EXPECT_TRUE(summary.eval_loss.has_value());
  EXPECT_TRUE(std::filesystem::exists(p.project_name + "/adapter_model.safetensors"));
  const auto records = read_metrics(p.project_name + "/metrics.jsonl");
  ASSERT_FALSE(records.empty());
  for (const char* key : {"loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"})
    EXPECT_TRUE(records.front().contains(key)) << key;
}

// ---- ORPO (reference/orpo_trl: TRL's experimental ORPOTrainer, the same text pairs) ----
const std::string kOrpoOracle = kFixtures + "/reference/orpo_trl";

TrainingParams orpo_params(const nlohmann::json& settings) {
  TrainingParams p = oracle_params(settings);
  p.trainer = "orpo";
  p.data_path = kOrpoOracle;
  return p;
}

std::vector<int64_t> cat(std::vector<int64_t> a, const std::vector<int64_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Our pairs, cut to max_length as the batches cut them, are TRL's sequences and labels: no special tokens then the
// bos and eos ids added, the one-token back-off where the prompt merges into a completion (valid record 3 backs off
// where DPO's common prefix keeps one more token), the prompt of record 7 filling max_length dropped (TRL 1.16 keeps
// it and its loss is NaN: the oracle drops it too).
TEST(Orpo, PairsAreTokenizedAsTrlsOrpoTrainerTokenizesThem) {
  const auto settings = read_json(kOrpoOracle + "/settings.json");
  const auto tokens = read_json(kOrpoOracle + "/tokens.json");
  auto tokenizer = Tokenizer::load(kLlama);
  const PreferenceData data = read_preference_data(orpo_params(settings), *tokenizer, settings["max_length"]);
  const int64_t max_length = settings["max_length"];
  for (const std::string split : {"train", "valid"}) {
    const auto& pairs = split == "train" ? data.train : *data.valid;
    ASSERT_EQ(pairs.size(), tokens[split].size()) << split;
    for (size_t i = 0; i < pairs.size(); ++i) {
      const auto& expected = tokens[split][i];
      const PreferenceBatch batch = preference_batch(pairs, {static_cast<int64_t>(i)}, max_length, 2);
      for (const auto& [row, name] : {std::pair{0, "chosen"}, std::pair{1, "rejected"}}) {
        const auto ids = expected[std::string(name) + "_input_ids"].get<std::vector<int64_t>>();
        const auto labels = expected[std::string(name) + "_labels"].get<std::vector<int64_t>>();
        const at::Tensor our_ids = batch.input_ids[row].slice(0, 0, static_cast<int64_t>(ids.size()));
        EXPECT_TRUE(our_ids.equal(at::tensor(ids, at::kLong))) << split << i << name;
        std::vector<int64_t> our_labels(ids.size());
        for (size_t t = 0; t < ids.size(); ++t)
          our_labels[t] = batch.completion_mask[row][static_cast<int64_t>(t)].item<bool>() ? ids[t] : -100;
        EXPECT_EQ(our_labels, labels) << split << i << name;
        EXPECT_EQ(batch.attention_mask[row].sum().item<int64_t>(), static_cast<int64_t>(ids.size())) << split << i;
      }
    }
  }
  EXPECT_EQ(tokens["dropped"], nlohmann::json::array({7}));
}

// 12 steps from TRL's initial adapter: losses, rewards, nll and log odds as TRL's ORPOTrainer logs them, the
// evaluation, and the final adapter (bounds as DPO's: fp32 on both sides).
TEST(Orpo, TwelveStepsGiveTrlsLossesMetricsAndWeights) {
  const auto settings = read_json(kOrpoOracle + "/settings.json");
  const auto steps = read_json(kOrpoOracle + "/steps.json");
  testing::TempDir folder;
  TrainingParams p = orpo_params(settings);
  p.project_name = folder.file("project");
  const OracleRun run = train_from_initial(p, settings, kOrpoOracle);
  ASSERT_EQ(run.summary.total_steps, 12);
  const auto& records = run.steps;
  const auto& evals = run.evals;
  ASSERT_EQ(records.size(), 12u);
  double worst = 0;
  for (size_t s = 0; s < 12; ++s) {
    for (const char* key :
         {"loss", "nll_loss", "log_odds_ratio", "log_odds_chosen", "rewards/chosen", "rewards/rejected",
          "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected"}) {
      const double diff = std::abs(records[s][key].get<double>() - steps[key][s].get<double>());
      EXPECT_LT(diff, 1e-5) << key << " step " << s + 1;
      worst = std::max(worst, diff);
    }
    EXPECT_NEAR(records[s]["lr"].get<double>(), steps["lr"][s].get<double>(), 1e-12);
  }
  ASSERT_EQ(evals.size(), 2u);
  for (size_t e = 0; e < 2; ++e)
    EXPECT_NEAR(evals[e]["eval_loss"].get<double>(), steps["eval_loss"][e].get<double>(), 1e-5) << e;
  const double worst_weight = worst_weight_difference(*run.model, kOrpoOracle);
  EXPECT_LT(worst_weight, 1e-4);
  std::printf("12 ORPO steps vs TRL: max |metric diff| %.3g, |weight diff| %.3g\n", worst, worst_weight);
}

// `eval` with trainer orpo: TRL's final adapter gives its last eval_loss; the base alone is scored too (ORPO has no
// reference), and estimate-cost counts two sequences a pair without a reference forward.
TEST(Orpo, EvalAndEstimate) {
  const auto settings = read_json(kOrpoOracle + "/settings.json");
  const auto steps = read_json(kOrpoOracle + "/steps.json");
  TrainingParams p = orpo_params(settings);
  EvaluateOptions options;
  options.split = "valid";
  options.adapter_dir = kOrpoOracle + "/final";
  options.device = "cpu";
  EXPECT_NEAR(run_evaluation(p, options).loss, steps["eval_loss"][1].get<double>(), 1e-5);
  options.adapter_dir.clear();
  const EvaluationResult base = run_evaluation(p, options);
  EXPECT_TRUE(std::isfinite(base.loss));
  EXPECT_GT(base.loss, 5);  // ~log(1000) from the random fixture, plus beta x a log 2-sized odds term

  const RunShape shape = run_shape(p);
  EXPECT_EQ(shape.batch_size, 2 * p.batch_size);
  EXPECT_FALSE(shape.reference_forward);
}

// ---- conversations (reference/dpo_trl/chat: the qwen2 fixture, ChatML) ----
const std::string kChatOracle = kOracle + "/chat";

// Train records have no prompt column (TRL's implicit prompt: the turns chosen and rejected share), valid ones a
// prompt conversation.
TrainingParams chat_params(const nlohmann::json& settings, bool explicit_prompt) {
  TrainingParams p = oracle_params(settings);
  p.model = kFixtures + "/models/qwen2";
  p.data_path = kChatOracle;
  p.chat_template = "tokenizer";
  p.valid_split.reset();
  if (!explicit_prompt) p.prompt_text_column.reset();
  return p;
}

// The template renders what transformers' apply_chat_template renders for TRL, and the ids are TRL's: no special
// tokens added, no eos appended, the prompt with the generation prompt.
TEST(DpoChat, ConversationsAreRenderedAndTokenizedAsTrlDoes) {
  const auto settings = read_json(kChatOracle + "/settings.json");
  const auto tokens = read_json(kChatOracle + "/tokens.json");
  auto tokenizer = Tokenizer::load(kFixtures + "/models/qwen2");
  const ChatTemplate chat = ChatTemplate::load(kFixtures + "/models/qwen2");
  ASSERT_EQ(chat.source(), settings["chat_template"].get<std::string>());  // the fixture has none: ChatML, as TRL's run
  const PreferenceLimits limits{settings["max_length"], std::nullopt, std::nullopt};
  for (const std::string split : {"train", "valid"}) {
    std::ifstream in(kChatOracle + "/" + split + ".jsonl");
    std::string line;
    size_t i = 0;
    for (; std::getline(in, line); ++i) {
      const auto record = OrderedJson::parse(line);
      const ConversationPair pair = split == "train"
                                        ? implicit_prompt(record["chosen"], record["rejected"])
                                        : ConversationPair{record["prompt"], record["chosen"], record["rejected"]};
      const auto& expected = tokens[split][i];
      OrderedJson with_chosen = pair.prompt, with_rejected = pair.prompt;
      for (const auto& m : pair.chosen) with_chosen.push_back(m);
      for (const auto& m : pair.rejected) with_rejected.push_back(m);
      EXPECT_EQ(chat.apply(pair.prompt, true), expected["prompt_text"].get<std::string>()) << split << i;
      EXPECT_EQ(chat.apply(with_chosen), expected["prompt_chosen_text"].get<std::string>()) << split << i;
      EXPECT_EQ(chat.apply(with_rejected), expected["prompt_rejected_text"].get<std::string>()) << split << i;
      const PreferencePair ids = tokenize_preference(*tokenizer, chat, pair, limits);
      EXPECT_EQ(ids.prompt, expected["prompt_ids"].get<std::vector<int64_t>>()) << split << i;
      EXPECT_EQ(ids.chosen, expected["chosen_ids"].get<std::vector<int64_t>>()) << split << i;
      EXPECT_EQ(ids.rejected, expected["rejected_ids"].get<std::vector<int64_t>>()) << split << i;
    }
    EXPECT_EQ(i, tokens[split].size());
  }
  // Through the config's columns, as training reads them.
  const auto train = read_preference_split(chat_params(settings, false), *tokenizer, "train", limits);
  expect_pairs_equal(train, tokens["train"], "train");
  const auto valid = read_preference_split(chat_params(settings, true), *tokenizer, "valid", limits);
  expect_pairs_equal(valid, tokens["valid"], "valid");
}

// TRL's extract_prompt, including its edge: with no differing turn the last shared one goes to the completions.
TEST(DpoChat, TheImplicitPromptIsTheTurnsChosenAndRejectedShare) {
  const OrderedJson u = {{"role", "user"}, {"content", "q"}}, a = {{"role", "assistant"}, {"content", "yes"}},
                    b = {{"role", "assistant"}, {"content", "no"}}, s = {{"role", "system"}, {"content", "be brief"}};
  ConversationPair pair = implicit_prompt(OrderedJson{s, u, a}, OrderedJson{s, u, b});
  EXPECT_EQ(pair.prompt, (OrderedJson{s, u}));
  EXPECT_EQ(pair.chosen, OrderedJson{a});
  EXPECT_EQ(pair.rejected, OrderedJson{b});
  pair = implicit_prompt(OrderedJson{u, a}, OrderedJson{u, a});
  EXPECT_EQ(pair.prompt, OrderedJson{u});
  EXPECT_EQ(pair.chosen, OrderedJson{a});
}

// 4 steps from TRL's initial adapter on the implicit-prompt conversations: TRL's losses and final adapter; then
// `eval` of that adapter on the explicit-prompt split gives TRL's eval_loss.
TEST(DpoChat, FourStepsAndTheEvaluationGiveTrlsNumbers) {
  const auto settings = read_json(kChatOracle + "/settings.json");
  const auto steps = read_json(kChatOracle + "/steps.json");
  testing::TempDir folder;
  TrainingParams p = chat_params(settings, false);
  p.project_name = folder.file("project");
  const OracleRun run = train_from_initial(p, settings, kChatOracle);
  ASSERT_EQ(run.summary.total_steps, 4);
  const auto& records = run.steps;
  ASSERT_EQ(records.size(), 4u);
  for (size_t s = 0; s < 4; ++s) {  // bounds as in the text case
    EXPECT_NEAR(records[s]["loss"].get<double>(), steps["loss"][s].get<double>(), 1e-5) << s;
    EXPECT_NEAR(records[s]["rewards/margins"].get<double>(), steps["rewards/margins"][s].get<double>(), 1e-5) << s;
  }
  EXPECT_LT(worst_weight_difference(*run.model, kChatOracle), 1e-4);

  TrainingParams eval_params = chat_params(settings, true);
  EvaluateOptions eval;
  eval.split = "valid";
  eval.adapter_dir = kChatOracle + "/final";
  eval.device = "cpu";
  EXPECT_NEAR(run_evaluation(eval_params, eval).loss, steps["eval_loss"][0].get<double>(), 1e-5);
}

// A text prompt beside conversations is refused with what to do (TRL 1.16 fails on it either way).
TEST(DpoChat, ATextPromptBesideConversationsIsRefused) {
  testing::TempDir dir;
  testing::write_text(dir.file("train.jsonl"), R"({"prompt": "q", "chosen": [{"role": "assistant", "content": "a"}], )"
                                               R"("rejected": [{"role": "assistant", "content": "b"}]})"
                                               "\n");
  TrainingParams p = chat_params(read_json(kChatOracle + "/settings.json"), true);
  p.data_path = dir.file("train.jsonl");
  auto tokenizer = Tokenizer::load(p.model);
  const std::string message =
      testing::error_message_of([&] { read_preference_split(p, *tokenizer, "train", PreferenceLimits{}); });
  EXPECT_NE(message.find("train.jsonl:1: column \"prompt\" is a text"), std::string::npos) << message;
  EXPECT_NE(message.find("prompt_text_column to null"), std::string::npos) << message;
}

// `autotrain eval` with trainer dpo scores TRL's final adapter on the validation pairs as TRL's last evaluation did
// (the same weights: its eval_loss after the 12th step).
TEST(Dpo, EvalOfTheFinalAdapterGivesTrlsLastEvalLoss) {
  const auto settings = read_json(kOracle + "/settings.json");
  const auto steps = read_json(kOracle + "/steps.json");
  TrainingParams p = oracle_params(settings);
  EvaluateOptions options;
  options.split = "valid";
  options.adapter_dir = kOracle + "/final";
  options.device = "cpu";
  const EvaluationResult result = run_evaluation(p, options);
  EXPECT_TRUE(result.preference);
  EXPECT_EQ(result.pairs, 5);
  EXPECT_NEAR(result.loss, steps["eval_loss"][1].get<double>(), 1e-5);
  EXPECT_GE(result.reward_accuracy, 0);
  EXPECT_LE(result.reward_accuracy, 1);

  options.adapter_dir.clear();  // the base is its own reference: refused
  EXPECT_NE(testing::error_message_of([&] { run_evaluation(p, options); }).find("give --adapter"), std::string::npos);
}

// estimate-cost --calibrate with each pair trainer: warm-up + 2 timed optimizer steps of the real run on this
// machine; the timed tokens are the tokens of exactly the pairs those steps took (the epoch's torch.randperm order,
// each sequence cut to block_size as the collator cuts it), read back from the run's metrics.
TEST(Dpo, CalibrateTimesThePairsOfEachTrainer) {
  testing::TempDir dir;
  const int64_t block_size = 40, batch = 2, accumulation = 2, seed = 42;
  for (const std::string trainer : {"dpo", "orpo", "reward"}) {
    SCOPED_TRACE(trainer);
    nlohmann::json config = {{"model", kLlama}, {"project_name", "calibrated"}, {"data_path", kOracle},
                             {"trainer", trainer}, {"text_column", "chosen"}, {"prompt_text_column", "prompt"},
                             {"rejected_text_column", "rejected"}, {"block_size", block_size},
                             {"batch_size", batch}, {"gradient_accumulation", accumulation}, {"seed", seed},
                             {"quantization", "int4"}, {"peft", true}};
    testing::write_text(dir.file("params.json"), config.dump());
    auto run = testing::run_autotrain(
        "estimate-cost --config params.json --calibrate --calibrate-steps 2 --json --gpu L4 --cache-dir cache",
        dir.path().string());
    ASSERT_EQ(run.exit_code, 0) << run.output;
    const auto document = nlohmann::json::parse(run.output.substr(run.output.find("\n{") + 1));
    const auto& calibration = document.at("calibration");
    EXPECT_EQ(calibration["timed_steps"], 2);
    EXPECT_GT(calibration["measured_seconds_per_step"].get<double>(), 0);
    EXPECT_GT(calibration["predicted_seconds_per_step"].get<double>(), 0);
    EXPECT_GT(calibration["measured_peak_bytes"].get<int64_t>(), 0);

    const TrainingParams params = parse_training_params(config, "params.json");
    auto tokenizer = Tokenizer::load(kLlama);
    const std::vector<PreferencePair> pairs =
        read_preference_split(params, *tokenizer, "train", preference_limits(params, block_size));
    const std::vector<int64_t> order = epoch_block_order(static_cast<int64_t>(pairs.size()), seed, 0);
    int64_t expected = 0;  // steps 2 and 3: micro-batches 2..5 of the first epoch, pairs 4..11 of its order
    for (size_t k = batch * accumulation; k < 3 * batch * accumulation; ++k) {
      const PreferencePair& pair = pairs[static_cast<size_t>(order[k])];
      const auto rejected_prompt = pair.rejected_prompt.empty() ? pair.prompt.size() : pair.rejected_prompt.size();
      expected += std::min<int64_t>(static_cast<int64_t>(pair.prompt.size() + pair.chosen.size()), block_size) +
                  std::min<int64_t>(static_cast<int64_t>(rejected_prompt + pair.rejected.size()), block_size);
    }
    EXPECT_EQ(calibration["timed_tokens"].get<int64_t>(), expected);
  }
}

// The binary: `eval --config` of a DPO run scores its project_name adapter (`--trainer dpo` given or not), and
// `eval --model --trainer orpo` takes the pair columns as options.
TEST(Dpo, EvalThroughTheBinary) {
  const auto steps = read_json(kOracle + "/steps.json");
  testing::TempDir dir;
  std::filesystem::copy(kOracle + "/final", dir.file("run-1"), std::filesystem::copy_options::recursive);
  const nlohmann::json config = {{"model", kLlama},
                                 {"project_name", "run-1"},
                                 {"data_path", kOracle},
                                 {"valid_split", "valid"},
                                 {"trainer", "dpo"},
                                 {"text_column", "chosen"},
                                 {"prompt_text_column", "prompt"},
                                 {"rejected_text_column", "rejected"},
                                 {"block_size", 40},
                                 {"quantization", "none"},
                                 {"peft", true}};
  testing::write_text(dir.file("params.json"), config.dump());
  for (const std::string extra : {"", " --trainer dpo"}) {
    auto run = testing::run_autotrain("eval --device cpu --json --config params.json" + extra, dir.path().string());
    ASSERT_EQ(run.exit_code, 0) << run.output;
    const auto line = nlohmann::json::parse(run.output.substr(run.output.rfind("\n{") + 1));
    EXPECT_EQ(line["pairs"], 5);
    EXPECT_NEAR(line["loss"].get<double>(), steps["eval_loss"][1].get<double>(), 1e-5) << extra;
  }
  const std::string orpo = "eval --device cpu --model " + testing::quote(kLlama) + " --data " +
                           testing::quote(kOracle) +
                           " --split valid --trainer orpo --text-column chosen --block-size 40 --quantization none";
  auto missing = testing::run_autotrain(orpo, dir.path().string());
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_NE(missing.output.find("\"prompt_text_column\""), std::string::npos) << missing.output;
  auto scored = testing::run_autotrain(orpo + " --prompt-text-column prompt --rejected-text-column rejected",
                                       dir.path().string());
  ASSERT_EQ(scored.exit_code, 0) << scored.output;
  EXPECT_NE(scored.output.find("eval orpo loss"), std::string::npos) << scored.output;
  EXPECT_NE(scored.output.find("5 pairs"), std::string::npos) << scored.output;
  auto json_line = testing::run_autotrain(orpo + " --prompt-text-column prompt --rejected-text-column rejected --json",
                                          dir.path().string());
  ASSERT_EQ(json_line.exit_code, 0) << json_line.output;
  EXPECT_TRUE(nlohmann::json::parse(json_line.output.substr(json_line.output.rfind("\n{") + 1))["adapter"].is_null());
}

// estimate-cost: a micro-batch of batch_size pairs is 2 x batch_size sequences, and every token also takes the
// reference's forward: the frozen weights and attention of the forward, without LoRA.
TEST(Dpo, EstimateCountsBothSequencesAndTheReferenceForward) {
  TrainingParams p = oracle_params(read_json(kOracle + "/settings.json"));
  const ModelConfig config = load_model_config(kLlama);
  const RunShape dpo = run_shape(p);
  p.trainer = "default";
  const RunShape plain = run_shape(p);
  EXPECT_EQ(dpo.batch_size, 2 * plain.batch_size);
  const FlopsPerToken with = estimate_flops_per_token(config, dpo), without = estimate_flops_per_token(config, plain);
  EXPECT_EQ(without.reference, 0);
  const double lora_forward = 2.0 * static_cast<double>(estimate_lora_parameter_count(config, plain));
  EXPECT_DOUBLE_EQ(with.reference, without.forward - lora_forward);
  EXPECT_DOUBLE_EQ(with.total(), without.total() + with.reference);
}

// AutoTrain's DPO trainer passes no reference model to TRL when peft is on ("Using PEFT, model_ref will be set to
// None"): a config naming one trains as without it, and says so.
TEST(Dpo, ModelRefIsIgnoredWithPeftAndSaysSo) {
  testing::TempDir dir;
  nlohmann::json config = {{"model", kLlama},
                           {"project_name", "run-1"},
                           {"data_path", kOracle},
                           {"trainer", "dpo"},
                           {"text_column", "chosen"},
                           {"prompt_text_column", "prompt"},
                           {"rejected_text_column", "rejected"},
                           {"block_size", 40},
                           {"peft", true}};
  testing::write_text(dir.file("plain.json"), config.dump());
  config["model_ref"] = "some/other-model";
  testing::write_text(dir.file("with-ref.json"), config.dump());
  const auto plain = testing::run_autotrain("train --check --config plain.json", dir.path().string());
  const auto with_ref = testing::run_autotrain("train --check --config with-ref.json", dir.path().string());
  EXPECT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_EQ(with_ref.exit_code, 0) << with_ref.output;
  EXPECT_EQ(plain.output.find("has no effect"), std::string::npos) << plain.output;
  EXPECT_NE(with_ref.output.find("\"model_ref\" has no effect with peft"), std::string::npos) << with_ref.output;
}

TEST(Dpo, ConfigNeedsThePromptAndRejectedColumns) {
  auto parse = [](const nlohmann::json& extra) {
    nlohmann::json config = {
        {"trainer", "dpo"}, {"peft", true}, {"prompt_text_column", "prompt"}, {"rejected_text_column", "rejected"}};
    config.update(extra);
    return parse_training_params(config, "params.json");
  };
  EXPECT_NO_THROW(parse(nlohmann::json::object()));
  EXPECT_NE(testing::error_message_of([&] {
              parse({{"prompt_text_column", nullptr}});
            }).find("\"prompt_text_column\""),
            std::string::npos);
  EXPECT_NE(testing::error_message_of([&] {
              parse({{"rejected_text_column", nullptr}});
            }).find("\"rejected_text_column\""),
            std::string::npos);
  EXPECT_NO_THROW(parse({{"model_ref", "other"}}));  // ignored with peft, as AutoTrain does (Dpo.ModelRefIsIgnored...)
  // Conversations: the prompt may be left implicit (the turns chosen and rejected share).
  EXPECT_NO_THROW(parse({{"chat_template", "tokenizer"}, {"prompt_text_column", nullptr}}));
  // ORPO: the same columns; TRL's ORPOTrainer takes text only, and has no reference model to name.
  EXPECT_NO_THROW(parse({{"trainer", "orpo"}}));
  EXPECT_NE(testing::error_message_of([&] {
              parse({{"trainer", "orpo"}, {"prompt_text_column", nullptr}});
            }).find("\"prompt_text_column\""),
            std::string::npos);
  EXPECT_NE(testing::error_message_of([&] {
              parse({{"trainer", "orpo"}, {"chat_template", "tokenizer"}});
            }).find("\"chat_template\" is \"tokenizer\": not supported yet"),
            std::string::npos);
}

}  // namespace
}  // namespace autotrain
