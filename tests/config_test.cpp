// training_params.json: AutoTrain's keys and defaults, and one clear error (exit code 2) per mistake.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "autotrain/config.h"
#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/optimizer.h"
#include "test_util.h"

namespace autotrain {
namespace {

using nlohmann::json;
using testing::TempDir;

const std::string kSeedFile = std::string(AUTOTRAIN_SOURCE_DIR) + "/tests/data/seed_training_params.json";

TEST(TrainingParams, DefaultsAreAutoTrains) {
  // Values from autotrain-advanced 0.8.37 trainers/clm/params.py (docs/reference.md section 1).
  TrainingParams p;
  EXPECT_EQ(p.block_size, -1);
  EXPECT_EQ(p.model_max_length, 2048);
  EXPECT_DOUBLE_EQ(p.lr, 3e-5);
  EXPECT_EQ(p.epochs, 1);
  EXPECT_EQ(p.batch_size, 2);
  EXPECT_EQ(p.gradient_accumulation, 4);
  EXPECT_DOUBLE_EQ(p.warmup_ratio, 0.1);
  EXPECT_EQ(p.optimizer, "adamw_torch");
  EXPECT_EQ(p.scheduler, "linear");
  EXPECT_DOUBLE_EQ(p.max_grad_norm, 1.0);
  EXPECT_EQ(p.seed, 42);
  EXPECT_EQ(p.quantization.value_or(""), "int4");
  EXPECT_EQ(p.lora_r, 16);
  EXPECT_DOUBLE_EQ(p.lora_alpha, 32);
  EXPECT_DOUBLE_EQ(p.lora_dropout, 0.05);
  EXPECT_TRUE(p.add_eos_token);
  EXPECT_FALSE(p.peft);
  EXPECT_FALSE(p.disable_gradient_checkpointing);
  EXPECT_EQ(p.text_column, "text");
}

TEST(TrainingParams, SeedFileParsesAsIs) {
  TrainingParams p = load_training_params(kSeedFile);
  EXPECT_EQ(p.model, "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B");
  EXPECT_EQ(p.project_name, "autotrain-Batch5");
  EXPECT_EQ(p.block_size, 512);
  EXPECT_EQ(p.mixed_precision.value_or(""), "fp16");
  EXPECT_DOUBLE_EQ(p.lr, 1e-4);
  EXPECT_EQ(p.epochs, 2);
  EXPECT_EQ(p.batch_size, 5);
  EXPECT_EQ(p.gradient_accumulation, 4);
  EXPECT_FALSE(p.chat_template.has_value());  // "none"
  EXPECT_EQ(p.quantization.value_or(""), "int4");
  EXPECT_TRUE(p.peft);
  EXPECT_DOUBLE_EQ(p.lora_alpha, 16);
  EXPECT_EQ(resolve_target_modules(p), (std::vector<std::string>{"q_proj", "k_proj", "v_proj"}));
  // Keys the seed leaves out keep AutoTrain's defaults.
  EXPECT_DOUBLE_EQ(p.warmup_ratio, 0.1);
  EXPECT_EQ(p.text_column, "text");
}

TEST(TrainingParams, SeedFileRoundTrips) {
  TrainingParams first = load_training_params(kSeedFile);
  json written = to_json(first);
  TrainingParams second = parse_training_params(written, "round-trip");
  EXPECT_EQ(to_json(second), written);
  // Every key of the seed is written back with the seed's value (null for "none").
  json seed = json::parse(read_file(kSeedFile));
  for (const auto& [key, value] : seed.items()) {
    if (key == "chat_template") {
      EXPECT_TRUE(written[key].is_null());
    } else {
      EXPECT_EQ(written[key], value) << key;
    }
  }
}

TEST(TrainingParams, AllLinearAndSpacedListsResolve) {
  TrainingParams p;
  EXPECT_EQ(resolve_target_modules(p), linear_module_names());
  p.target_modules = " q_proj ,v_proj,, q_proj ";
  EXPECT_EQ(resolve_target_modules(p), (std::vector<std::string>{"q_proj", "v_proj"}));
}

TEST(TrainingParams, SavedCopyHasEveryKeyAndNoToken) {
  TempDir dir;
  TrainingParams p = load_training_params(kSeedFile);
  p.token = "hf_secret_token";
  p.username = "someone";
  save_training_params(p, dir.file("project"));
  json saved = json::parse(read_file(dir.file("project/training_params.json")));
  EXPECT_FALSE(saved.contains("token"));
  EXPECT_EQ(read_file(dir.file("project/training_params.json")).find("hf_secret_token"), std::string::npos);
  EXPECT_EQ(saved["username"], "someone");
  EXPECT_EQ(saved["lr"], 1e-4);
  EXPECT_EQ(saved.size(), to_json(TrainingParams{}).size());
  // No temporary file is left beside it.
  int files = 0;
  for (auto& entry : std::filesystem::directory_iterator(dir.file("project"))) files += entry.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(TrainingParams, NearestKeyIsSuggested) {
  EXPECT_EQ(nearest_training_param_key("lora_alpah"), "lora_alpha");
  EXPECT_EQ(nearest_training_param_key("batchsize"), "batch_size");
  EXPECT_EQ(nearest_training_param_key("epoch"), "epochs");
  EXPECT_EQ(nearest_training_param_key("gradient_accumulation_steps"), "gradient_accumulation");
}

// ---- bad configurations, through the binary: exit code 2 and the key named -------------------

struct BadCase {
  const char* name;
  const char* change;    // JSON merged over the valid base configuration
  const char* key;       // must appear in the message
  const char* also;      // a further fragment the message must carry ("" for none)
};

const BadCase kBadCases[] = {
    {"UnknownKey", R"({"lora_alpah": 16})", "lora_alpah", "did you mean \"lora_alpha\"?"},
    {"UnknownKeyFarFromAll", R"({"learning_rate": 0.001})", "learning_rate", "did you mean"},
    {"LrAsString", R"({"lr": "1e-4"})", "\"lr\"", "expected a number"},
    {"LrZero", R"({"lr": 0})", "\"lr\"", "> 0"},
    {"EpochsZero", R"({"epochs": 0})", "\"epochs\"", ">= 1"},
    {"BatchSizeNegative", R"({"batch_size": -1})", "\"batch_size\"", ">= 1"},
    {"BatchSizeFraction", R"({"batch_size": 2.5})", "\"batch_size\"", "an integer"},
    {"BlockSizeZero", R"({"block_size": 0})", "\"block_size\"", "-1"},
    {"WarmupRatioAboveOne", R"({"warmup_ratio": 1.5})", "\"warmup_ratio\"", "[0, 1]"},
    {"LoraDropoutOne", R"({"lora_dropout": 1.0})", "\"lora_dropout\"", "[0, 1)"},
    {"LoraRankZero", R"({"lora_r": 0})", "\"lora_r\"", "[1, 4096]"},
    {"LoraAlphaString", R"({"lora_alpha": "16"})", "\"lora_alpha\"", "expected a number"},
    {"MixedPrecisionFp8", R"({"mixed_precision": "fp8"})", "\"mixed_precision\"", "fp16, bf16, none"},
    {"SchedulerTypo", R"({"scheduler": "cosine_restarts"})", "\"scheduler\"", "did you mean \"cosine_with_restarts\"?"},
    {"OptimizerNotYet", R"({"optimizer": "galore_adamw"})", "\"optimizer\"", "not supported yet"},
    {"SchedulerGreedyNotYet", R"({"scheduler": "greedy"})", "\"scheduler\"", "not supported yet"},
    {"SchedulerMinLrNeedsKwargs", R"({"scheduler": "cosine_with_min_lr"})", "\"scheduler\"", "lr_scheduler_kwargs"},
    {"PlateauWithoutValidation", R"({"scheduler": "reduce_lr_on_plateau", "valid_split": null})", "\"valid_split\"",
     "a validation split"},
    {"PlateauWithoutEvaluation", R"({"scheduler": "reduce_lr_on_plateau", "valid_split": "validation",
     "eval_strategy": "no"})", "\"eval_strategy\"", "needs evaluations"},
    {"TrainerGenericNotYet", R"({"trainer": "generic"})", "\"trainer\"", "not supported yet"},
    {"TrainerRewardWithoutRejectedColumn", R"({"trainer": "reward"})", "\"rejected_text_column\"",
     "the name of the rejected texts' column"},
    {"TrainerDpoWithoutPromptColumn", R"({"trainer": "dpo", "rejected_text_column": "rejected"})",
     "\"prompt_text_column\"", "the name of the prompts' column"},
    {"LogWandbNotYet", R"({"log": "wandb"})", "\"log\"", "not supported yet"},
    {"PushToHub", R"({"push_to_hub": true})", "\"push_to_hub\"", "not supported yet"},
    {"FullFineTuning", R"({"peft": false})", "\"peft\"", "not supported yet"},
    {"TargetModuleTypo", R"({"target_modules": "q_proj, kv_proj"})", "kv_proj", "target_modules"},
    {"QuantizationInt2", R"({"quantization": "int2"})", "\"quantization\"", "int4, int8, none"},
    {"AddEosAsString", R"({"add_eos_token": "yes"})", "\"add_eos_token\"", "true or false"},
    {"ProjectNameWithSpaces", R"({"project_name": "my project!"})", "\"project_name\"", "letters, digits or '-'"},
    {"ChatTemplateNotYet", R"({"chat_template": "chatml"})", "\"chat_template\"", "not supported yet"},
    {"DeepSpeedNotYet", R"({"distributed_backend": "deepspeed"})", "\"distributed_backend\"", "not supported yet (supported: ddp)"},
    {"GradientAccumulationFraction", R"({"gradient_accumulation": 2.5})", "\"gradient_accumulation\"", "an integer"},
    {"MaxGradNormNegative", R"({"max_grad_norm": -1})", "\"max_grad_norm\"", ">= 0"},
    {"WeightDecayString", R"({"weight_decay": "0.01"})", "\"weight_decay\"", "a number"},
    {"SeedNegative", R"({"seed": -5})", "\"seed\"", ">= 0"},
    {"TextColumnEmpty", R"({"text_column": ""})", "\"text_column\"", "column"},
    {"PaddingMiddle", R"({"padding": "middle"})", "\"padding\"", "right, left"},
    {"EvalStrategyUnknown", R"({"eval_strategy": "sometimes"})", "\"eval_strategy\"", "epoch, steps, no"},
    {"ModelNotAString", R"({"model": 7})", "\"model\"", "a string"},
    {"ValidSplitNumber", R"({"valid_split": 0.1})", "\"valid_split\"", "a string"},
};

// Every optimizer name is taken (each one's update: optimizer_test.cpp); the 8-bit ones run in 32 bits and say so.
TEST(TrainingParams, EveryOptimizerNameIsAcceptedAnd8BitOnesWarn) {
  auto check = [](const std::string& optimizer) {
    json config = json::parse(read_file(kSeedFile));
    config["optimizer"] = optimizer;
    TempDir dir;
    testing::write_text(dir.file("training_params.json"), config.dump(2));
    return testing::run_autotrain("train --check --config training_params.json", dir.path().string());
  };
  const auto plain = check("adamw_torch");
  ASSERT_EQ(optimizer_names().size(), 19u);
  for (const std::string& name : optimizer_names()) {
    SCOPED_TRACE(name);
    const auto result = check(name);
    EXPECT_EQ(result.exit_code, plain.exit_code) << result.output;
    const bool eight_bit = name.find("8bit") != std::string::npos;
    const std::string runs_as = name.find("lion") != std::string::npos      ? "lion_32bit"
                                : name.find("rmsprop") != std::string::npos ? "rmsprop_bnb_32bit"
                                                                            : "adamw_torch";
    EXPECT_EQ(result.output.find("\"" + name + "\" runs as its 32-bit update (" + runs_as + ")") != std::string::npos,
              eight_bit)
        << result.output;
  }
}

// reduce_lr_on_plateau takes no warmup, as transformers gives it none: a warmup_ratio is said to have no effect.
TEST(TrainingParams, PlateauSchedulerSaysWarmupHasNoEffect) {
  auto check = [](double warmup_ratio) {
    json config = json::parse(read_file(kSeedFile));
    config["scheduler"] = "reduce_lr_on_plateau";
    config["valid_split"] = "validation";
    config["warmup_ratio"] = warmup_ratio;
    TempDir dir;
    testing::write_text(dir.file("training_params.json"), config.dump(2));
    return testing::run_autotrain("train --check --config training_params.json", dir.path().string()).output;
  };
  const std::string note = "\"warmup_ratio\" has no effect with scheduler \"reduce_lr_on_plateau\"";
  EXPECT_NE(check(0.1).find(note), std::string::npos);
  EXPECT_EQ(check(0.0).find(note), std::string::npos);
}

class BadConfiguration : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadConfiguration, ExitsWithCode2AndNamesTheKey) {
  const BadCase& bad = GetParam();
  json config = json::parse(read_file(kSeedFile));
  config.merge_patch(json::parse(bad.change));
  TempDir dir;
  testing::write_text(dir.file("training_params.json"), config.dump(2));
  auto result = testing::run_autotrain("train --check --config training_params.json", dir.path().string());
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find(bad.key), std::string::npos) << result.output;
  EXPECT_NE(result.output.find(bad.also), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("training_params.json"), std::string::npos) << "names the file: " << result.output;
  // One line: the error, nothing else.
  EXPECT_EQ(result.output.find('\n'), result.output.size() - 1) << result.output;
  EXPECT_FALSE(std::filesystem::exists(dir.file("autotrain-Batch5"))) << "nothing written on a bad config";
}

INSTANTIATE_TEST_SUITE_P(TrainingParams, BadConfiguration, ::testing::ValuesIn(kBadCases),
                         [](const auto& info) { return std::string(info.param.name); });

// Options given in place of a config's keys (eval's) are checked alone: each value as in a config, named as coming
// from the command line, without the checks that need the whole config (peft set, trainer dpo's columns), which
// parse_training_params keeps.
TEST(TrainingParams, ValuesAloneSkipTheChecksOfAWholeConfig) {
  const json options = {{"trainer", "dpo"}, {"block_size", 40}};
  EXPECT_EQ(testing::error_message_of([&] { check_training_param_values(options, "the command line"); }),
            "(no error)");
  const std::string whole = testing::error_message_of([&] { parse_training_params(options, "the command line"); });
  EXPECT_NE(whole.find("\"peft\""), std::string::npos) << whole;
  json with_peft = options;
  with_peft["peft"] = true;
  const std::string columns =
      testing::error_message_of([&] { parse_training_params(with_peft, "the command line"); });
  EXPECT_NE(columns.find("\"prompt_text_column\""), std::string::npos) << columns;

  for (const json& bad : {json{{"block_size", 0}}, json{{"trainer", "dpx"}}, json{{"blok_size", 8}},
                          json{{"quantization", 4}}, json{{"target_modules", "q_prj"}}}) {
    const std::string message =
        testing::error_message_of([&] { check_training_param_values(bad, "the command line"); });
    EXPECT_EQ(message.rfind("the command line: ", 0), 0u) << bad.dump() << ": " << message;
  }
}

TEST(TrainingParamsFile, BrokenJsonNamesLineAndColumn) {
  TempDir dir;
  testing::write_text(dir.file("training_params.json"), "{\n  \"lr\": 0.001,\n  \"epochs\": \n}\n");
  auto result = testing::run_autotrain("train --check --config training_params.json", dir.path().string());
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("training_params.json: not valid JSON at line 4"), std::string::npos) << result.output;
}

TEST(TrainingParamsFile, DuplicateKeyIsAnError) {
  TempDir dir;
  testing::write_text(dir.file("training_params.json"), R"({"peft": true, "lr": 0.001, "lr": 0.1})");
  auto result = testing::run_autotrain("train --check --config training_params.json", dir.path().string());
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("\"lr\" appears more than once"), std::string::npos) << result.output;
}

TEST(TrainingParamsFile, NotAnObject) {
  TempDir dir;
  testing::write_text(dir.file("training_params.json"), "[1, 2]");
  auto result = testing::run_autotrain("train --check --config training_params.json", dir.path().string());
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("expected a JSON object"), std::string::npos) << result.output;
}

TEST(TrainingParamsFile, MissingFileIsAUsageError) {
  auto result = testing::run_autotrain("train --config /nonexistent/training_params.json");
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("/nonexistent/training_params.json"), std::string::npos) << result.output;
}

TEST(TrainingParamsFile, CheckPrintsEffectiveParameters) {
  TempDir dir;
  auto result = testing::run_autotrain("train --check --config " + testing::quote(kSeedFile), dir.path().string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  json printed = json::parse(result.output);
  EXPECT_EQ(printed["lr"], 1e-4);
  EXPECT_EQ(printed["warmup_ratio"], 0.1);
  EXPECT_FALSE(printed.contains("token"));
}

}  // namespace
}  // namespace autotrain
