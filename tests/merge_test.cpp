// merge-adapter against PEFT's merge_and_unload (fixtures by tests/reference/merge_peft.py): merged tensors
// in fp32 / fp16 / bf16, untouched tensors byte for byte, copied files, logits of the merged folder in our
// decoder and in transformers, sharding, and the refusals (nothing written, one line, exit 1).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/merge.h"
#include "autotrain/model.h"
#include "autotrain/safetensors.h"
#include "test_util.h"

namespace autotrain {
namespace {
namespace fs = std::filesystem;
using testing::quote;
using testing::run_autotrain;
using testing::TempDir;

const std::string kFixtures = AUTOTRAIN_FIXTURES_DIR;
const std::string kModels = kFixtures + "/models/";
const std::string kReference = kFixtures + "/reference/merge_peft/";
const std::vector<std::pair<std::string, std::string>> kCases = {
    {"llama", "llama"}, {"qwen2", "qwen2"}, {"llama_rslora", "llama"}, {"qwen3", "qwen3"}};  // case, base model

MergeSummary merge(const std::string& test_case, const std::string& model, const std::string& out,
                   std::optional<at::ScalarType> dtype, uint64_t max_shard_bytes = 5'000'000'000) {
  MergeOptions options;
  options.base_dir = kModels + model;
  options.adapter_dir = kReference + test_case + "/adapter";
  options.out_dir = out;
  options.dtype = dtype;
  options.max_shard_bytes = max_shard_bytes;
  return merge_adapter(options);
}

bool is_lora_target(const std::string& name) { return name.find("_proj.weight") != std::string::npos; }

TEST(MergeParity, Fp32EqualsPeftAndCopiesTheRest) {
  for (const auto& [test_case, model] : kCases) {
    SCOPED_TRACE(test_case);
    TempDir dir;
    const std::string out = dir.file("merged");
    const MergeSummary summary = merge(test_case, model, out, at::kFloat);
    EXPECT_EQ(summary.merged_weights, 2 * 7);
    auto expected = SafetensorsFile::open(kReference + test_case + "/merged_fp32.safetensors");
    const Checkpoint merged = Checkpoint::open(out), base = Checkpoint::open(kModels + model);
    ASSERT_EQ(merged.names().size(), expected->names().size());
    double max_delta = 0;
    for (const std::string& name : expected->names()) {
      at::Tensor ours = merged.tensor(name);
      ASSERT_EQ(ours.scalar_type(), at::kFloat) << name;
      max_delta = std::max(max_delta, (ours - expected->tensor(name)).abs().max().item<double>());
      if (!is_lora_target(name)) EXPECT_TRUE(at::equal(ours, base.tensor(name))) << name << " changed";
      else EXPECT_FALSE(at::equal(ours, base.tensor(name))) << name << " did not move";
    }
    // fp32 sums of the same terms in the same order (W + (B @ A) * s); measured 0 on the fixtures.
    EXPECT_LE(max_delta, 1e-6);
    std::printf("%s: fp32 max |ours - PEFT| = %.3g\n", test_case.c_str(), max_delta);
    for (const auto& entry : fs::directory_iterator(kModels + model)) {
      const std::string file_name = entry.path().filename().string();
      if (file_name.find(".safetensors") != std::string::npos) continue;
      EXPECT_EQ(read_file(out + "/" + file_name), read_file(entry.path().string())) << file_name;
    }
  }
}

// Half-precision bits of two tensors, as integers (same sign near enough: one ulp apart at most).
int64_t max_ulp_distance(const at::Tensor& a, const at::Tensor& b) {
  return (a.contiguous().view(at::kShort).to(at::kLong) - b.contiguous().view(at::kShort).to(at::kLong)).abs().max().item<int64_t>();
}

TEST(MergeParity, HalfPrecisionWithinOneUlpOfPeftsCast) {
  for (const auto& [dtype, name, config_name] :
       {std::tuple{at::kHalf, "fp16", "float16"}, std::tuple{at::kBFloat16, "bf16", "bfloat16"}}) {
    for (const auto& [test_case, model] : kCases) {
      SCOPED_TRACE(test_case + " " + name);
      TempDir dir;
      const std::string out = dir.file("merged");
      merge(test_case, model, out, dtype);
      auto expected = SafetensorsFile::open(kReference + test_case + "/merged_" + name + ".safetensors");
      const Checkpoint merged = Checkpoint::open(out);
      int64_t worst = 0;
      for (const std::string& tensor : expected->names()) {
        ASSERT_EQ(merged.tensor(tensor).scalar_type(), dtype) << tensor;
        worst = std::max(worst, max_ulp_distance(merged.tensor(tensor), expected->tensor(tensor)));
      }
      // Both round the same fp32 value to nearest even: measured 0 ulp; one allowed for a tie.
      EXPECT_LE(worst, 1);
      std::printf("%s %s: max ulp distance to PEFT's cast = %ld\n", test_case.c_str(), name, long(worst));
      auto config = nlohmann::json::parse(read_file(out + "/config.json"));
      EXPECT_EQ(config.contains("dtype") ? config["dtype"] : config["torch_dtype"], config_name);
    }
  }
}

TEST(MergeParity, MergedFolderGivesPeftsLogitsInOurDecoder) {
  for (const auto& [test_case, model] : kCases) {
    SCOPED_TRACE(test_case);
    TempDir dir;
    const std::string out = dir.file("merged");
    merge(test_case, model, out, std::nullopt);
    auto batch = SafetensorsFile::open(kReference + test_case + "/logits.safetensors");
    CausalLM merged(out, ModelOptions{});
    at::NoGradGuard no_grad;
    at::Tensor logits = merged.forward(batch->tensor("input_ids"), batch->tensor("attention_mask"));
    at::Tensor real = batch->tensor("attention_mask").to(at::kBool);
    const double diff = (logits.index({real}) - batch->tensor("logits").index({real})).abs().max().item<double>();
    // fp32 decoder vs transformers fp32: the model tests measure ~1e-6 on these fixtures.
    EXPECT_LE(diff, 1e-4);
    std::printf("%s: max |our logits - PEFT merged logits| = %.3g\n", test_case.c_str(), diff);
  }
}

// The CLI with a tiny shard limit; transformers loads the sharded folder (merge_peft.py --check-merged).
TEST(MergeCli, ShardedOutputLoadsInTransformers) {
  for (const auto& [test_case, model] : kCases) {
    SCOPED_TRACE(test_case);
    TempDir dir;
    const std::string out = dir.file("merged");
    auto result = run_autotrain("merge-adapter --base " + quote(kModels + model) + " --adapter " +
                                quote(kReference + test_case + "/adapter") + " --out " + quote(out) +
                                " --max-shard-size 60KB");
    ASSERT_EQ(result.exit_code, 0) << result.output;
    ASSERT_TRUE(fs::exists(out + "/model.safetensors.index.json"));
    int shards = 0;
    for (const auto& entry : fs::directory_iterator(out)) shards += entry.path().extension() == ".safetensors";
    EXPECT_GT(shards, 2);
    for (const auto& entry : fs::directory_iterator(dir.path()))
      EXPECT_EQ(entry.path().filename().string().find(".partial-"), std::string::npos) << "left behind";
    const std::string command = quote(AUTOTRAIN_PYTHON) + " " +
                                quote(std::string(AUTOTRAIN_SOURCE_DIR) + "/tests/reference/merge_peft.py") +
                                " --fixtures " + quote(kFixtures) + " --check-merged " + quote(out) + " --case " +
                                test_case + " 2>&1";
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
  }
}

// An adapter folder copied from the llama case, its config and tensors edited by `edit`.
std::string edited_adapter(const TempDir& dir, const std::function<void(nlohmann::json&, std::vector<std::pair<std::string, at::Tensor>>&)>& edit) {
  const std::string source = kReference + "llama/adapter";
  const std::string folder = dir.file("adapter");
  fs::create_directories(folder);
  auto config = nlohmann::json::parse(read_file(source + "/adapter_config.json"));
  auto file = SafetensorsFile::open(source + "/adapter_model.safetensors");
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& name : file->names()) tensors.emplace_back(name, file->tensor(name).clone());
  edit(config, tensors);
  write_file_atomic(folder + "/adapter_config.json", config.dump(2));
  write_safetensors(folder + "/adapter_model.safetensors", tensors);
  return folder;
}

void expect_refused(const std::string& base, const std::string& adapter, const std::string& expected_text) {
  TempDir dir;
  const std::string out = dir.file("merged");
  auto result = run_autotrain("merge-adapter --base " + quote(base) + " --adapter " + quote(adapter) + " --out " + quote(out));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find(expected_text), std::string::npos) << result.output;
  std::string text = result.output;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  EXPECT_EQ(text.find('\n'), std::string::npos) << "not one line: " << result.output;
  EXPECT_TRUE(fs::is_empty(dir.path())) << "something was written";
}

TEST(MergeErrors, AdapterForAnotherHiddenSize) {
  TempDir dir;
  auto adapter = edited_adapter(dir, [](auto& config, auto& tensors) {
    config["base_model_name_or_path"] = "some/other-model";
    for (auto& [name, tensor] : tensors)
      if (name.find("layers.0.self_attn.q_proj.lora_A") != std::string::npos) tensor = at::zeros({8, 128});
  });
  expect_refused(kModels + "llama", adapter, "layers.0.self_attn.q_proj.lora_A.weight [8, 128]");
}

TEST(MergeErrors, AdapterForAModuleTheBaseLacks) {
  TempDir dir;
  auto adapter = edited_adapter(dir, [](auto&, auto& tensors) {
    for (auto& [name, tensor] : tensors) {
      auto at = name.find("layers.1.");
      if (at != std::string::npos) name.replace(at, 9, "layers.7.");
    }
  });
  expect_refused(kModels + "llama", adapter, "model.layers.7.");
}

TEST(MergeErrors, AdapterTrainedOnAnotherArchitecture) {
  // The llama adapter records its base folder (model_type llama); the qwen2 fixture has the same shapes.
  expect_refused(kModels + "qwen2", kReference + "llama/adapter", "model_type llama");
}

TEST(MergeErrors, ModulesToSaveAndEmbeddingWeights) {
  {
    TempDir dir;
    auto adapter = edited_adapter(dir, [](auto& config, auto&) { config["modules_to_save"] = {"lm_head"}; });
    expect_refused(kModels + "llama", adapter, "modules_to_save");
  }
  {
    TempDir dir;
    auto adapter = edited_adapter(dir, [](auto&, auto& tensors) {
      tensors.emplace_back("base_model.model.model.embed_tokens.weight", at::zeros({1000, 64}));
    });
    expect_refused(kModels + "llama", adapter, "base_model.model.model.embed_tokens.weight");
  }
}

TEST(MergeCli, RefusesANonEmptyOutputUnlessForced) {
  TempDir dir;
  const std::string out = dir.file("merged");
  fs::create_directories(out);
  testing::write_text(out + "/keep.txt", "x");
  const std::string arguments = "merge-adapter --base " + quote(kModels + "llama") + " --adapter " +
                                quote(kReference + "llama/adapter") + " --out " + quote(out);
  auto refused = run_autotrain(arguments);
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_NE(refused.output.find("--force"), std::string::npos) << refused.output;
  EXPECT_TRUE(fs::exists(out + "/keep.txt"));
  auto forced = run_autotrain(arguments + " --force");
  ASSERT_EQ(forced.exit_code, 0) << forced.output;
  EXPECT_FALSE(fs::exists(out + "/keep.txt"));
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
}

TEST(MergeUnits, ByteSizesAndDtypes) {
  EXPECT_EQ(parse_byte_size("5GB"), 5'000'000'000u);
  EXPECT_EQ(parse_byte_size("500MB"), 500'000'000u);
  EXPECT_EQ(parse_byte_size("2KiB"), 2048u);
  EXPECT_EQ(parse_byte_size("123"), 123u);
  EXPECT_THROW(parse_byte_size("5 parsecs"), Error);
  EXPECT_EQ(parse_dtype_name("bf16"), at::kBFloat16);
  EXPECT_THROW(parse_dtype_name("int4"), Error);
  at::Tensor w = at::randn({6, 5}), a = at::randn({2, 5}), b = at::randn({6, 2});
  EXPECT_TRUE(at::allclose(merge_lora_weight(w, a, b, 0.5, at::kFloat), w + 0.5 * b.matmul(a)));
}

}  // namespace
}  // namespace autotrain
