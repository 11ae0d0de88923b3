// `autotrain generate` through the binary: it runs, and broken model folders fail with one line naming
// the file (and the tensor), exit 1, no crash.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "autotrain/fileio.h"
#include "autotrain/safetensors.h"
#include "test_util.h"

namespace autotrain {
namespace {

namespace fs = std::filesystem;
const std::string kModels = std::string(AUTOTRAIN_FIXTURES_DIR) + "/models";

// A copy of a fixture model folder that a test may break.
std::string copy_model(const testing::TempDir& dir, const std::string& name) {
  const std::string target = dir.file(name);
  fs::copy(kModels + "/" + name, target, fs::copy_options::recursive);
  return target;
}

testing::RunResult generate(const std::string& model, const std::string& extra = "") {
  return testing::run_autotrain("generate --model " + testing::quote(model) + " --prompt 'The quick brown fox' " +
                                "--max-new-tokens 8 " + extra);
}

void expect_one_line_error(const testing::RunResult& result, const std::vector<std::string>& mentions) {
  EXPECT_EQ(result.exit_code, 1) << result.output;
  const std::string error = result.output.substr(result.output.find("error: "));
  EXPECT_EQ(std::count(error.begin(), error.end(), '\n'), 1) << error;
  for (const auto& m : mentions) EXPECT_NE(error.find(m), std::string::npos) << "wanted " << m << " in: " << error;
}

TEST(Generate, ContinuesThePromptGreedily) {
  auto first = generate(kModels + "/llama");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_EQ(first.output.rfind("The quick brown fox", 0), 0u) << first.output;
  EXPECT_GT(first.output.size(), std::string("The quick brown fox\n").size());
  // greedy: deterministic (the text; the speed line after it, timestamp included, varies)
  auto text = [](const std::string& output) {
    return output.substr(0, output.rfind('\n', output.find(" info generate: ")));
  };
  EXPECT_EQ(text(generate(kModels + "/llama").output), text(first.output));
  auto qwen = generate(kModels + "/qwen2", "--temperature 0.8 --top-p 0.9 --seed 3");
  EXPECT_EQ(qwen.exit_code, 0) << qwen.output;
}

// --gguf-type: the weights as a GGUF of that type stores them (their tokens against transformers:
// ModelGguf.Q4_0WeightsGiveTransformersLogitsAndGreedyTokens); with --quantization other than none, a usage error.
TEST(Generate, GgufTypeWeightsContinueThePrompt) {
  auto result = generate(kModels + "/qwen2", "--gguf-type q4_K_M");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output.rfind("The quick brown fox", 0), 0u) << result.output;
  EXPECT_EQ(generate(kModels + "/qwen2", "--gguf-type q4_0 --quantization int4").exit_code, 2);
}

// --quantization: the base as training's quantization key has it, e.g. the NF4 base a QLoRA adapter was trained
// on (its tokens against transformers: ModelQuantized.Nf4GreedyTokensEqualTransformersOnDequantizedWeights).
TEST(Generate, QuantizedBaseWithAnAdapterContinuesThePrompt) {
  const std::string adapter = std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/model_logits/llama/adapter";
  for (const std::string quantization : {"int4", "int8"}) {
    auto result =
        generate(kModels + "/llama", "--quantization " + quantization + " --adapter " + testing::quote(adapter));
    ASSERT_EQ(result.exit_code, 0) << quantization << ": " << result.output;
    EXPECT_NE(result.output.find("The quick brown fox"), std::string::npos) << result.output;
  }
  EXPECT_EQ(generate(kModels + "/llama", "--quantization int5").exit_code, 2);
}

// After the text, one log line with the speed: how many new tokens, the first one's latency, the rate of the
// others and the memory; --ignore-eos generates exactly --max-new-tokens (tools/bench_generate.sh reads both).
TEST(Generate, LogsItsSpeedAfterTheText) {
  auto result = generate(kModels + "/llama", "--ignore-eos");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const std::regex line(R"(generate: 8 new tokens; the first after [0-9.]+ ms \(a prompt of \d+ tokens\), )"
                        R"(then [0-9.]+ tokens/s; resident memory [0-9.]+ [KMG]iB)");
  EXPECT_TRUE(std::regex_search(result.output, line)) << result.output;
  EXPECT_EQ(result.output.rfind("The quick brown fox", 0), 0u) << "the text first: " << result.output;
}

TEST(Generate, TruncatedWeightsNameTheFile) {
  testing::TempDir dir;
  const std::string model = copy_model(dir, "llama");
  fs::resize_file(model + "/model.safetensors", fs::file_size(model + "/model.safetensors") / 2);
  expect_one_line_error(generate(model), {"model.safetensors"});
}

TEST(Generate, HeaderLongerThanTheFileNamesTheFile) {
  testing::TempDir dir;
  const std::string model = copy_model(dir, "llama");
  std::string bytes = read_file(model + "/model.safetensors");
  const uint64_t huge = bytes.size() + 100;
  std::memcpy(bytes.data(), &huge, 8);
  testing::write_text(model + "/model.safetensors", bytes);
  expect_one_line_error(generate(model), {"model.safetensors", "header length"});
}

TEST(Generate, MissingShardNamesTheShard) {
  testing::TempDir dir;
  const std::string model = copy_model(dir, "qwen2");
  std::string removed;
  for (const auto& entry : fs::directory_iterator(model)) {
    const std::string name = entry.path().filename();
    if (name.find("-of-") != std::string::npos && removed.empty()) {
      removed = name;
      fs::remove(entry.path());
    }
  }
  ASSERT_FALSE(removed.empty()) << "the qwen2 fixture is sharded";
  expect_one_line_error(generate(model), {removed});
}

TEST(Generate, TensorOfTheWrongShapeOrMissingNamesFileAndTensor) {
  for (bool missing : {true, false}) {
    testing::TempDir dir;
    const std::string model = copy_model(dir, "llama");
    const std::string name = "model.layers.1.self_attn.k_proj.weight";
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    {
      auto file = SafetensorsFile::open(model + "/model.safetensors");
      for (const auto& n : file->names()) {
        at::Tensor t = file->tensor(n).clone();
        if (n == name && missing) continue;
        if (n == name) t = at::zeros({t.size(0) + 1, t.size(1)}, t.options());
        tensors.emplace_back(n, t);
      }
    }
    write_safetensors(model + "/model.safetensors", tensors);
    // A missing tensor has no file: the message names the folder; a misshapen one names its file.
    expect_one_line_error(generate(model), {missing ? model : model + "/model.safetensors", name});
  }
}

TEST(Generate, AdapterOfAnotherModelIsRefused) {
  testing::TempDir dir;
  fs::create_directories(dir.file("adapter"));
  testing::write_text(dir.file("adapter/adapter_config.json"),
                      R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]})");
  write_safetensors(dir.file("adapter/adapter_model.safetensors"),
                    {{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", at::zeros({4, 128})},
                     {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", at::zeros({64, 4})}});
  expect_one_line_error(generate(kModels + "/llama", "--adapter " + testing::quote(dir.file("adapter"))),
                        {"adapter_model.safetensors", "lora_A"});
}

}  // namespace
}  // namespace autotrain
