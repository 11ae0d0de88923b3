// The training loop on a toy language model (frozen embedding, trainable output matrix, dropout), so it
// runs in milliseconds: step and window arithmetic as transformers' Trainer, batch x accumulation
// equivalence, resume bit-identical to an uninterrupted run, checkpoint rotation, the token cache. The
// loop against transformers Trainer + PEFT on a real model is in the model-level tests.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <limits>
#include <map>

#include <nlohmann/json.hpp>

#include "autotrain/checkpoint.h"
#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/metrics.h"
#include "autotrain/safetensors.h"
#include "autotrain/scheduler.h"
#include "autotrain/trainer.h"
#include "test_util.h"

namespace autotrain {
namespace {

namespace fs = std::filesystem;
constexpr int64_t kVocab = 40, kHidden = 8;

// logits = dropout(E[ids]) @ W; E frozen, W trained. loss_sum as transformers' causal-LM loss with reduction sum.
struct ToyModel {
  at::Tensor embedding, output;
  bool training = true;
  int64_t calls = 0;
  std::function<void()> on_call;
  std::function<at::Tensor(const at::Tensor& loss)> transform_loss;  // e.g. a NaN from some call on

  ToyModel() {
    at::manual_seed(7);
    embedding = at::randn({kVocab, kHidden});
    output = torch::randn({kHidden, kVocab}).mul_(0.1).requires_grad_(true);
  }

  TrainableModel trainable(const std::string& adapter_name = "lm.weight") {
    TrainableModel m;
    m.parameters = {{adapter_name, output}};
    m.loss_sum = [this](const at::Tensor& ids, const at::Tensor& labels) {
      ++calls;
      if (on_call) on_call();
      at::Tensor hidden = at::dropout(embedding.index_select(0, ids.flatten()), 0.1, training);
      at::Tensor logits = hidden.matmul(output).view({ids.size(0), ids.size(1), kVocab});
      at::Tensor loss = at::cross_entropy_loss(logits.slice(1, 0, -1).reshape({-1, kVocab}),
                                               labels.slice(1, 1).reshape(-1), {}, at::Reduction::Sum, -100);
      return transform_loss ? transform_loss(loss) : loss;
    };
    m.set_training = [this](bool t) { training = t; };
    m.save_adapter = [this, adapter_name](const std::string& folder) {
      make_directories(folder);
      write_safetensors(folder + "/adapter_model.safetensors", {{adapter_name, output.detach()}});
      write_file_atomic(folder + "/adapter_config.json", "{}");
    };
    return m;
  }
};

// A dataset of `texts` lines whose tokens are their bytes mod kVocab, cached in `dir`.
TokenizedText toy_tokens(const testing::TempDir& dir, int texts) {
  std::string jsonl;
  for (int i = 0; i < texts; ++i) jsonl += "{\"text\": \"line " + std::to_string(i * 7919 % 1000) + " of the toy data\"}\n";
  testing::write_text(dir.file("train.jsonl"), jsonl);
  auto encode = [](const std::string& text) {
    std::vector<int64_t> ids;
    for (unsigned char c : text) ids.push_back(c % kVocab);
    return ids;
  };
  const std::string fp = fingerprint({dir.file("train.jsonl")}, "toy");
  return TokenizedText::open(ensure_token_cache({{dir.file("train.jsonl")}, "text", dir.file("cache"), fp}, encode));
}

TrainerOptions options_for(const testing::TempDir& dir, int64_t batch, int64_t accumulation) {
  TrainerOptions o;
  o.params.project_name = dir.file("project");
  o.params.batch_size = batch;
  o.params.gradient_accumulation = accumulation;
  o.params.lr = 0.05;
  o.params.epochs = 2;
  o.params.scheduler = "cosine";
  o.params.warmup_ratio = 0.1;
  o.params.weight_decay = 0.01;
  o.params.max_grad_norm = 1.0;
  o.params.logging_steps = 1000;
  return o;
}

double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

TEST(Trainer, StepCountsAreTransformersTrainers) {
  // transformers: micro-batches = ceil(blocks / batch) (dataloader keeps the short last batch), optimizer
  // steps = ceil(micro-batches / accumulation), at least 1.
  EXPECT_EQ(micro_batches_per_epoch(10, 3), 4);
  EXPECT_EQ(optimizer_steps_per_epoch(10, 3, 4), 1);
  EXPECT_EQ(optimizer_steps_per_epoch(10, 3, 3), 2);
  EXPECT_EQ(optimizer_steps_per_epoch(100, 5, 4), 5);
  EXPECT_EQ(optimizer_steps_per_epoch(101, 5, 4), 6);
  EXPECT_EQ(optimizer_steps_per_epoch(1, 8, 8), 1);
  // AutoTrain: logging_steps = int(0.2 * len(train_data) / batch_size), clamped to [1, 25].
  EXPECT_EQ(automatic_logging_steps(3, 2), 1);
  EXPECT_EQ(automatic_logging_steps(100, 2), 10);
  EXPECT_EQ(automatic_logging_steps(10000, 2), 25);
}

TEST(Trainer, BlockOrderIsAcceleratesSeedableSampler) {
  auto cases = nlohmann::json::parse(read_file(std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/block_order/orders.json"));
  ASSERT_EQ(cases.size(), 15u);
  for (const auto& c : cases) {
    EXPECT_EQ(epoch_block_order(c["n"], c["seed"], c["epoch"]), c["order"].get<std::vector<int64_t>>()) << c.dump();
  }
}

TEST(Trainer, TokenCacheIsReusedAndRejectsATruncatedFile) {
  testing::TempDir dir;
  TokenizedText first = toy_tokens(dir, 10);
  EXPECT_GT(first.size(), 100);
  auto files = std::vector<fs::path>(fs::directory_iterator(dir.file("cache")), fs::directory_iterator());
  ASSERT_EQ(files.size(), 1u);
  const auto written = fs::last_write_time(files[0]);
  TokenizedText second = toy_tokens(dir, 10);  // same data and settings: the same file, not rewritten
  EXPECT_EQ(fs::last_write_time(files[0]), written);
  EXPECT_EQ(second.size(), first.size());
  EXPECT_EQ(std::vector<int32_t>(first.ids(), first.ids() + first.size()),
            std::vector<int32_t>(second.ids(), second.ids() + second.size()));
  // "line 0 of the toy data": byte values mod kVocab, texts concatenated in file order.
  EXPECT_EQ(second.ids()[0], 'l' % kVocab);
  EXPECT_EQ(second.block(1, 4).sizes(), (at::IntArrayRef{4}));

  fs::resize_file(files[0], fs::file_size(files[0]) - 3);
  EXPECT_THROW(TokenizedText::open(files[0].string()), Error);
  toy_tokens(dir, 10);  // a broken cache file is rebuilt
  EXPECT_NO_THROW(TokenizedText::open(files[0].string()));
}

TEST(Trainer, EmptyDatasetIsAnErrorNamingTheFile) {
  testing::TempDir dir;
  testing::write_text(dir.file("train.jsonl"), "");
  try {
    ensure_token_cache({{dir.file("train.jsonl")}, "text", dir.file("cache"), "x"},
                       [](const std::string&) { return std::vector<int64_t>{1}; });
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.jsonl"), std::string::npos) << e.what();
  }
}

TEST(Trainer, BatchTimesAccumulationGivesTheSameUpdate) {
  // 5 x 4 and 20 x 1 see the same 20 blocks per step and divide by the same token count; only the order
  // of the float sums differs (~1e-7 relative).
  testing::TempDir dir;
  TokenizedText text = toy_tokens(dir, 200);
  TrainingData data{text, std::nullopt, 16, "fp"};
  ASSERT_GE(text.num_blocks(16), 60);
  std::vector<at::Tensor> results;
  for (auto [batch, accumulation] : {std::pair{5, 4}, std::pair{20, 1}}) {
    testing::TempDir run;
    ToyModel toy;
    auto model = toy.trainable();
    auto options = options_for(run, batch, accumulation);
    options.params.lora_dropout = 0;
    toy.training = false;
    model.set_training = [](bool) {};  // no dropout: its masks would differ between batch shapes
    TrainingSummary summary = train(model, data, options);
    EXPECT_EQ(summary.steps, summary.total_steps);
    results.push_back(toy.output.detach().clone());
  }
  EXPECT_LT(max_diff(results[0], results[1]), 1e-6);
}

TEST(Trainer, LearningRateInMetricsFollowsTheSchedule) {
  testing::TempDir dir;
  TokenizedText text = toy_tokens(dir, 100);
  ToyModel toy;
  auto model = toy.trainable();
  auto options = options_for(dir, 2, 3);
  TrainingSummary summary = train(model, {text, std::nullopt, 16, "fp"}, options);
  LearningRateSchedule schedule("cosine", 0.05, summary.total_steps, 0.1);
  auto records = read_metrics(dir.file("project") + "/metrics.jsonl");
  ASSERT_EQ(static_cast<int64_t>(records.size()), summary.total_steps);
  for (int64_t s = 0; s < summary.total_steps; ++s) {
    EXPECT_EQ(records[s]["step"], s + 1);
    EXPECT_DOUBLE_EQ(records[s]["lr"].get<double>(), schedule.lr_at(s));
    EXPECT_TRUE(records[s]["grad_norm"].is_number());
  }
  EXPECT_LT(summary.last_loss, summary.first_loss);
  EXPECT_TRUE(fs::exists(dir.file("project") + "/loss_curve.svg"));
  EXPECT_TRUE(fs::exists(dir.file("project") + "/adapter_model.safetensors"));
}

// Trains to the end, or stops after `stop_after` steps and resumes in a fresh model object.
at::Tensor train_with_interruption(const TokenizedText& text, int64_t stop_after, int64_t save_steps, int64_t keep) {
  testing::TempDir run;
  auto options = options_for(run, 3, 2);
  options.save_steps = save_steps;
  options.params.save_total_limit = keep;
  TrainingData data{text, std::nullopt, 16, "fp"};
  if (stop_after > 0) {
    ToyModel toy;
    auto model = toy.trainable();
    options.stop_after_steps = stop_after;
    TrainingSummary partial = train(model, data, options);
    EXPECT_TRUE(partial.stopped_early);
    EXPECT_EQ(partial.steps, stop_after);
    options.stop_after_steps = 0;
    at::manual_seed(999);  // the resumed run must not depend on the RNG state it starts with
  }
  ToyModel toy;
  auto model = toy.trainable();
  TrainingSummary summary = train(model, data, options);
  EXPECT_FALSE(summary.stopped_early);
  auto records = read_metrics(run.file("project") + "/metrics.jsonl");
  EXPECT_EQ(static_cast<int64_t>(records.size()), summary.total_steps);  // no step logged twice
  return toy.output.detach().clone();
}

TEST(Trainer, ResumedRunEndsBitIdenticalToAnUninterruptedOne) {
  testing::TempDir dir;
  TokenizedText text = toy_tokens(dir, 120);
  at::manual_seed(1);
  at::Tensor uninterrupted = train_with_interruption(text, 0, 0, 1);
  for (int64_t stop_after : {1, 4, 7}) {  // mid-epoch, near the epoch's end, in the second epoch
    at::manual_seed(1);
    at::Tensor resumed = train_with_interruption(text, stop_after, 3, 2);
    EXPECT_TRUE(at::equal(resumed, uninterrupted)) << "stopped after " << stop_after << ": max |diff| "
                                                   << max_diff(resumed, uninterrupted);
  }
}

TEST(Trainer, SigintSavesACheckpointAndSaysHowToResume) {
  testing::TempDir dir;
  TokenizedText text = toy_tokens(dir, 120);
  ToyModel toy;
  auto model = toy.trainable();
  toy.on_call = [&toy] {
    if (toy.calls == 5) std::raise(SIGINT);
  };
  auto options = options_for(dir, 3, 2);
  try {
    train(model, {text, std::nullopt, 16, "fp"}, options);
    FAIL() << "SIGINT did not stop the run";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("rerun the same command to resume"), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos);
    EXPECT_EQ(e.exit_code(), 130);  // 128 + SIGINT, as shells report a Ctrl-C
  }
  auto newest = newest_checkpoint(dir.file("project"));
  ASSERT_TRUE(newest.has_value());
  EXPECT_EQ(fs::path(*newest).filename(), "checkpoint-3");  // calls 5 and 6 form step 3
}

TEST(Trainer, KeepsOnlySaveTotalLimitCheckpoints) {
  testing::TempDir dir;
  TokenizedText text = toy_tokens(dir, 120);
  ToyModel toy;
  auto model = toy.trainable();
  auto options = options_for(dir, 3, 2);
  options.save_steps = 2;
  options.params.save_total_limit = 2;
  TrainingSummary summary = train(model, {text, std::nullopt, 16, "fp"}, options);
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir.file("project"))) {
    if (entry.path().filename().string().rfind("checkpoint-", 0) == 0) names.push_back(entry.path().filename());
  }
  std::sort(names.begin(), names.end());
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names.back(), "checkpoint-" + std::to_string(summary.total_steps));
}

TEST(Trainer, CheckpointOfAnotherRunIsRefused) {
  testing::TempDir dir;
  TokenizedText text = toy_tokens(dir, 120);
  ToyModel toy;
  auto model = toy.trainable();
  auto options = options_for(dir, 3, 2);
  options.stop_after_steps = 2;
  train(model, {text, std::nullopt, 16, "fingerprint-a"}, options);
  try {
    train(model, {text, std::nullopt, 16, "fingerprint-b"}, options);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("checkpoint-2"), std::string::npos) << e.what();
  }
}

TEST(Trainer, AFreshStartClearsCheckpointsOfAnEarlierRun) {
  testing::TempDir dir;
  TokenizedText text = toy_tokens(dir, 120);
  ToyModel toy;
  auto model = toy.trainable();
  auto options = options_for(dir, 3, 2);
  train(model, {text, std::nullopt, 16, "fp"}, options);  // leaves checkpoint-60
  options.resume = false;
  options.stop_after_steps = 2;
  train(model, {text, std::nullopt, 16, "fp"}, options);
  // Only the new run's checkpoint: resuming must continue it, not the finished earlier run.
  auto newest = newest_checkpoint(dir.file("project"));
  ASSERT_TRUE(newest.has_value());
  EXPECT_EQ(fs::path(*newest).filename(), "checkpoint-2");
}

TEST(Trainer, ValidationLossIsWrittenEveryEpoch) {
  testing::TempDir dir;
  TokenizedText text = toy_tokens(dir, 100);
  ToyModel toy;
  auto model = toy.trainable();
  auto options = options_for(dir, 4, 1);
  TrainingSummary summary = train(model, {text, text, 16, "fp"}, options);
  int evals = 0;
  for (const auto& r : read_metrics(dir.file("project") + "/metrics.jsonl")) {
    if (!r.contains("eval_loss")) continue;
    ++evals;
    EXPECT_NEAR(r["eval_perplexity"].get<double>(), std::exp(r["eval_loss"].get<double>()), 1e-9);
  }
  EXPECT_EQ(evals, 2);
  ASSERT_TRUE(summary.eval_loss.has_value());
}

TEST(Trainer, EvalStrategyStepsEvaluatesEveryLoggingSteps) {
  testing::TempDir dir;
  TokenizedText text = toy_tokens(dir, 100);
  ToyModel toy;
  auto model = toy.trainable();
  auto options = options_for(dir, 4, 1);
  options.params.eval_strategy = "steps";
  options.params.logging_steps = 10;
  TrainingSummary summary = train(model, {text, text, 16, "fp"}, options);
  std::vector<int64_t> eval_steps;
  for (const auto& r : read_metrics(dir.file("project") + "/metrics.jsonl")) {
    if (r.contains("eval_loss")) eval_steps.push_back(r["step"]);
  }
  ASSERT_EQ(static_cast<int64_t>(eval_steps.size()), summary.total_steps / 10);
  EXPECT_EQ(eval_steps.front(), 10);
}

// reduce_lr_on_plateau through the loop: the rate of each step follows the evaluations before it (the scheduler
// test holds the rule against torch's), and a run stopped and resumed past a cut and mid-count carries the plateau's
// position in its checkpoints, ending with the same rates and bit-identical weights.
TEST(Trainer, ReduceLrOnPlateauRatesSurviveAResume) {
  testing::TempDir dir;
  TokenizedText text = toy_tokens(dir, 100);
  const auto run = [&](const testing::TempDir& run_dir, const std::vector<int64_t>& stops) {
    auto options = options_for(run_dir, 4, 1);
    options.params.scheduler = "reduce_lr_on_plateau";
    options.params.lr = 1e-6;  // eval_loss moves by less than the 1e-4 threshold: every evaluation but the first is bad
    options.params.valid_split = "validation";
    options.params.eval_strategy = "steps";
    options.params.logging_steps = 1;
    options.save_steps = 3;
    int64_t done = 0;
    for (int64_t stop : stops) {
      ToyModel toy;
      auto model = toy.trainable();
      options.stop_after_steps = stop - done;
      EXPECT_TRUE(train(model, {text, text, 16, "fp"}, options).stopped_early);
      done = stop;
    }
    options.stop_after_steps = 0;
    ToyModel toy;
    auto model = toy.trainable();
    train(model, {text, text, 16, "fp"}, options);
    std::vector<double> rates;
    for (const auto& r : read_metrics(run_dir.file("project") + "/metrics.jsonl"))
      if (r.contains("lr")) rates.push_back(r["lr"].get<double>());
    return std::pair{rates, toy.output.detach().clone()};
  };
  testing::TempDir whole, parts;
  const auto [rates, weights] = run(whole, {});
  ASSERT_GE(rates.size(), 25u);
  // Cut after evaluation 12 (11 bad ones), then after 23.
  for (size_t s = 0; s < rates.size(); ++s)
    EXPECT_DOUBLE_EQ(rates[s], s < 12 ? 1e-6 : s < 23 ? 1e-7 : 1e-8) << "step " << s + 1;
  const auto [resumed_rates, resumed_weights] = run(parts, {7, 16});
  EXPECT_EQ(resumed_rates, rates);
  EXPECT_TRUE(at::equal(resumed_weights, weights)) << max_diff(resumed_weights, weights);
}

// A toy run on 120 texts that snapshots the trained matrix before each loss_sum call: with accumulation 1,
// before[c] holds the weights after step c - 1.
struct RecordedToyRun {
  testing::TempDir dir;
  TokenizedText text;
  ToyModel toy;
  std::map<int64_t, at::Tensor> before;
  RecordedToyRun() : text(toy_tokens(dir, 120)) {
    toy.on_call = [this] { before[toy.calls] = toy.output.detach().clone(); };
  }
};

class NonFiniteLoss : public ::testing::TestWithParam<std::string> {};

TEST_P(NonFiniteLoss, StopsAfterFiveStepsInARowAndKeepsTheLastGoodCheckpoint) {
  RecordedToyRun run;
  const testing::TempDir& dir = run.dir;
  ToyModel& toy = run.toy;
  const auto& before = run.before;
  toy.transform_loss = [&toy](const at::Tensor& loss) {
    return toy.calls >= 7 ? loss * std::numeric_limits<float>::quiet_NaN() : loss;  // steps 7, 8, ... diverge
  };
  auto model = toy.trainable();
  auto options = options_for(dir, 3, 1);  // one call per step
  options.params.mixed_precision = GetParam();
  options.save_steps = 2;
  ASSERT_EQ(options.max_nonfinite_steps, 5);
  std::string message;
  try {
    train(model, {run.text, std::nullopt, 16, "fp"}, options);
  } catch (const Error& e) {
    message = e.what();
    EXPECT_EQ(e.exit_code(), kExitRuntime);
  }
  ASSERT_FALSE(message.empty()) << "five NaN steps in a row did not stop the run";
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  EXPECT_NE(message.find("steps 7-11"), std::string::npos) << message;
  EXPECT_NE(message.find("checkpoint-6"), std::string::npos) << message;
  EXPECT_EQ(toy.calls, 11) << "the run goes on no further than the fifth bad step";

  // No NaN step was applied: the weights are still those after step 6, and so is the newest checkpoint.
  // Steps 8 and 10 would have been checkpointed (save_steps 2) and were not.
  EXPECT_FALSE(at::isnan(toy.output).any().item<bool>());
  EXPECT_TRUE(at::equal(toy.output.detach(), before.at(7)));
  EXPECT_FALSE(at::equal(before.at(7), before.at(6))) << "step 6 was a real step";
  EXPECT_EQ(newest_checkpoint(dir.file("project")), dir.file("project") + "/checkpoint-6");
  auto saved = SafetensorsFile::open(dir.file("project") + "/checkpoint-6/adapter_model.safetensors");
  EXPECT_TRUE(at::equal(saved->tensor("lm.weight"), before.at(7)));

  auto records = read_metrics(dir.file("project") + "/metrics.jsonl");
  ASSERT_EQ(records.size(), 11u);
  for (size_t i = 0; i < records.size(); ++i) EXPECT_EQ(records[i]["skipped"].get<bool>(), i >= 6) << i;
}

INSTANTIATE_TEST_SUITE_P(Trainer, NonFiniteLoss, ::testing::Values("none", "bf16"));

TEST(Trainer, AnInfLossIsNotAppliedEvenWithFiniteGradients) {
  // loss + inf has the gradients of loss: only the loss says the step is broken.
  RecordedToyRun run;
  const testing::TempDir& dir = run.dir;
  ToyModel& toy = run.toy;
  const auto& before = run.before;
  toy.transform_loss = [&toy](const at::Tensor& loss) {
    return toy.calls == 5 ? loss + std::numeric_limits<float>::infinity() : loss;
  };
  auto model = toy.trainable();
  auto options = options_for(dir, 3, 1);
  options.params.epochs = 1;
  TrainingSummary summary = train(model, {run.text, std::nullopt, 16, "fp"}, options);
  EXPECT_EQ(summary.steps, summary.total_steps) << "one bad step does not stop the run";
  EXPECT_EQ(summary.skipped_steps, 1);
  EXPECT_TRUE(at::equal(before.at(5), before.at(6))) << "step 5 changed the weights";
  EXPECT_FALSE(at::equal(before.at(4), before.at(5)));
  auto records = read_metrics(dir.file("project") + "/metrics.jsonl");
  EXPECT_TRUE(records[4]["skipped"].get<bool>());
  EXPECT_TRUE(records[4]["loss"].is_null()) << "inf is written as null";
}

TEST(Trainer, Fp16OverflowSkipsTheStepAndHalvesTheLossScale) {
  // The loss keeps its value but its gradient is multiplied by 1e30 twice, beyond float's range: inf
  // gradients under a finite loss, as when fp16 overflows in backward. Six such steps in a row halve the
  // scale six times and do not stop the run: the scaler's overflows are not divergence.
  RecordedToyRun run;
  const testing::TempDir& dir = run.dir;
  ToyModel& toy = run.toy;
  const auto& before = run.before;
  toy.transform_loss = [&toy](const at::Tensor& loss) {
    if (toy.calls < 5 || toy.calls > 10) return loss;
    return loss.detach() + (loss - loss.detach()) * 1e30 * 1e30;
  };
  auto model = toy.trainable();
  auto options = options_for(dir, 3, 1);
  options.params.epochs = 1;
  options.params.mixed_precision = "fp16";
  TrainingSummary summary = train(model, {run.text, std::nullopt, 16, "fp"}, options);
  EXPECT_EQ(summary.steps, summary.total_steps);
  EXPECT_EQ(summary.skipped_steps, 6);
  auto records = read_metrics(dir.file("project") + "/metrics.jsonl");
  EXPECT_EQ(records[3]["loss_scale"].get<double>(), 65536.0);
  for (int step = 5; step <= 10; ++step) {
    const auto& record = records[static_cast<size_t>(step - 1)];
    EXPECT_TRUE(record["skipped"].get<bool>()) << step;
    EXPECT_TRUE(record["loss"].is_number()) << step;
    EXPECT_EQ(record["loss_scale"].get<double>(), 65536.0 / std::pow(2.0, step - 4)) << step;
    EXPECT_TRUE(at::equal(before.at(step), before.at(step + 1))) << "step " << step << " was applied";
  }
  EXPECT_FALSE(records[10]["skipped"].get<bool>());
  EXPECT_EQ(records[10]["loss_scale"].get<double>(), 1024.0);
  EXPECT_FALSE(at::equal(before.at(11), before.at(12))) << "training goes on after the overflows";
}

}  // namespace
}  // namespace autotrain
