// export-gguf: the file read back by llama.cpp's own Python reader (tests/reference/gguf_check.py, the
// `gguf` package) against the source folder, for llama (sentencepiece, permuted q/k, llama3 rope_freqs)
// qwen2 (BPE, biases, tied embeddings) and qwen3 (q/k norms, head_dim 32 != 64 / 4) in f16, q8_0, q4_K_M and
// q3_K_M, and every type on models of whole K-quant blocks; Q8_0 and the permutation on their own.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstdlib>
#include <filesystem>
#include <tuple>

#include <nlohmann/json.hpp>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/ggml_quants.h"
#include "autotrain/gguf.h"
#include "autotrain/safetensors.h"
#include "autotrain/text_util.h"
#include "test_util.h"

namespace autotrain {
namespace {
namespace fs = std::filesystem;
using testing::quote;
using testing::TempDir;

const std::string kFixtures = AUTOTRAIN_FIXTURES_DIR;
const std::string kModels = kFixtures + "/models/";

struct GgufCheck {
  std::string gguf, model, type;
};

// One run of the oracle over several files (its start, torch and all, costs seconds).
int run_gguf_check(const std::vector<GgufCheck>& files) {
  std::string command = quote(AUTOTRAIN_PYTHON) + " " +
                        quote(std::string(AUTOTRAIN_SOURCE_DIR) + "/tests/reference/gguf_check.py") + " --fixtures " +
                        quote(kFixtures);
  for (const GgufCheck& file : files)
    command += " --gguf " + quote(file.gguf) + " --model " + quote(file.model) + " --type " + file.type;
  return std::system((command + " 2>&1").c_str());
}

// Exports `model` as each type into dir and returns the files to check.
std::vector<GgufCheck> export_each(const TempDir& dir, const std::string& model,
                                   const std::vector<std::string>& types) {
  std::vector<GgufCheck> files;
  for (const std::string& type : types) {
    SCOPED_TRACE(model + " " + type);
    const std::string out = dir.file(fs::path(model).filename().string() + "." + type + ".gguf");
    auto result = testing::run_autotrain("export-gguf --model " + quote(model) + " --out " + quote(out) + " --type " +
                                         type);
    EXPECT_EQ(result.exit_code, 0) << result.output;
    EXPECT_EQ(read_file(out).substr(0, 4), "GGUF");
    EXPECT_EQ(fs::file_size(out) % 32, 0u);  // every tensor padded to general.alignment
    files.push_back({out, model, type});
  }
  return files;
}

TEST(GgufExport, EveryArchitectureReadsBackByGgufPy) {
  // q4_K_M and q3_K_M on these narrow models (rows of 64 and 176 values) take llama-quantize's fallbacks: q5_0 for
  // q4_K, q4_0 for q3_K, q8_0 for the output's q6_K, f16 where not even 32-value blocks fit.
  TempDir dir;
  std::vector<GgufCheck> files;
  for (const std::string model : {"llama", "qwen2", "mistral", "qwen3"}) {
    for (const GgufCheck& file : export_each(dir, kModels + model, {"f16", "q8_0", "q4_K_M", "q3_K_M"}))
      files.push_back(file);
  }
  EXPECT_EQ(run_gguf_check(files), 0);
}

TEST(GgufExport, LlamaQuantizePresetsGiveLlamaCppsMixture) {
  // 12 layers of 256-value rows (tests/reference/gguf_check.py makes them): every preset's K-quants, the
  // *_K_M layers that get q6_K in llama-quantize's name order, a tied embedding (qwen2) taking the output's type,
  // and q2_K's and iq4_*'s attn_v by query heads per kv head (2 in llama_wide: q3_K / iq4; 4 in qwen2_wide: q4_K /
  // q5_K).
  TempDir dir;
  std::vector<GgufCheck> files = export_each(dir, kFixtures + "/reference/gguf/llama_wide",
                                             {"f32", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q2_K", "q3_K_S", "q3_K_M",
                                              "q3_K_L", "q4_K_S", "Q4_K_M", "q5_K_S", "q5_K_M", "q6_K", "iq4_nl",
                                              "iq4_xs"});
  for (const GgufCheck& file : export_each(dir, kFixtures + "/reference/gguf/qwen2_wide",
                                           {"q4_K_M", "q4_0", "q2_K", "q3_K_M", "IQ4_XS"}))
    files.push_back(file);
  EXPECT_EQ(run_gguf_check(files), 0);
}

TEST(GgufExport, SentencePieceStyleTokenizerJsonWritesTheConvertersLlamaVocabulary) {
  // A Llama folder with tokenizer.json (BPE with byte fallback) and no tokenizer.model: convert_hf_to_gguf.py's
  // _set_vocab_llama_hf, checked against gguf-py's LlamaHfVocab (tokens, scores, token types, pre "default").
  TempDir dir;
  const std::string model = dir.file("model");
  fs::create_directories(model);
  for (const char* name : {"config.json", "generation_config.json", "model.safetensors"})
    fs::copy(kModels + "llama/" + name, model + "/" + name);
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"})
    fs::copy(kFixtures + "/reference/tokenizer/spm_json/llama_class/" + name, model + "/" + name);
  EXPECT_EQ(run_gguf_check(export_each(dir, model, {"q8_0"})), 0);
}

TEST(GgufExport, EveryTypeGivesLlamaCppsMixtureAtRealModelShapes) {
  // Llama-3-8B / 70B, LLaMA-65B's shape, Llama-2-7B, Mistral-7B, Qwen2.5-0.5B / 72B and Qwen3-8B (configs and
  // checkpoint shapes from transformers, no weights; tests/reference/gguf_check.py make_mixture_cases), every type:
  // each 2-D weight's type as export-gguf derives it against llama.cpp's rules re-implemented in the oracle. This
  // reaches what the small fixtures cannot: the 70B rule, 4+ query heads a kv head, q3_K_M's first sixteenth, an
  // importance matrix's rules (q4_0 / q5_0's first ffn_down, q2_K_S).
  int cases = 0;
  for (const auto& entry : fs::directory_iterator(kFixtures + "/reference/gguf/mixtures")) {
    const std::string dir = entry.path().string();
    SCOPED_TRACE(entry.path().filename().string());
    TensorShapes shapes;
    for (const auto& item : parse_json_file(dir + "/tensors.json", "remake the fixtures"))
      shapes.emplace_back(item.at(0).get<std::string>(), item.at(1).get<std::vector<int64_t>>());
    const nlohmann::json expected = parse_json_file(dir + "/expected.json", "remake the fixtures");
    size_t variants = 0;  // every type; the presets also with an importance matrix ("q4_0+imatrix"); q2_K_S only so
    for (const std::string& name : gguf_type_names())
      variants += is_llama_quantize_preset(parse_gguf_type(name)) ? (name == "q2_K_S" ? 1 : 2) : 1;
    ASSERT_EQ(expected.size(), variants);
    for (const auto& [key, types] : expected.items()) {
      const std::string preset = key.substr(0, key.find('+'));
      GgufOptions options;
      options.type = parse_gguf_type(preset);
      if (key != preset) options.imatrix_file = "given.imatrix";  // the mixture needs only to know that there is one
      const std::map<std::string, GgmlType> ours = gguf_weight_types(dir, shapes, options);
      EXPECT_EQ(ours.size(), types.size()) << preset;
      int differing = 0;
      for (const auto& [name, type] : types.items()) {
        const auto found = ours.find(name);
        const std::string got = found == ours.end() ? "missing" : ggml_type_info(found->second).name;
        if (ascii_lower(got) != ascii_lower(type.get<std::string>()) && ++differing <= 3)
          ADD_FAILURE() << preset << " " << name << ": " << got << ", llama.cpp's choice " << type.get<std::string>();
      }
      EXPECT_EQ(differing, 0) << preset;
    }
    ++cases;
  }
  EXPECT_EQ(cases, 8);
}

TEST(GgufExport, LlamaQuantizesOverridesGiveItsTypes) {
  // --output-tensor-type / --token-embedding-type (bartowski's "_L" files: q8_0 for both) and --pure, as
  // llama_tensor_get_type takes them, checked by the oracle (its TYPE+output=T+embd=T+pure form of --type).
  TempDir dir;
  const std::string wide = kFixtures + "/reference/gguf/";
  std::vector<GgufCheck> files;
  for (const auto& [model, flags, oracle_type] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"llama_wide", "--type q4_K_M --output-tensor-type q8_0 --token-embedding-type q8_0", "q4_K_M+output=q8_0+embd=q8_0"},
           {"qwen2_wide", "--type q3_K_M --output-tensor-type f16", "q3_K_M+output=f16"},  // tied: token_embd too
           {"llama_wide", "--type q4_0 --pure", "q4_0+pure"},
           {"qwen2_wide", "--type q5_K_S --pure --token-embedding-type q6_K", "q5_K_S+pure+embd=q6_K"}}) {
    SCOPED_TRACE(flags);
    const std::string out = dir.file(std::to_string(files.size()) + ".gguf");
    auto result = testing::run_autotrain("export-gguf --model " + quote(wide + model) + " --out " + quote(out) + " " + flags);
    ASSERT_EQ(result.exit_code, 0) << result.output;
    files.push_back({out, wide + model, oracle_type});
  }
  EXPECT_EQ(run_gguf_check(files), 0);
  // With the converter's types, and a type whose blocks the rows do not hold: one-line errors, no file.
  for (const auto& [flags, message] : std::vector<std::pair<std::string, std::string>>{
           {"--type f16 --pure", "go with a llama-quantize preset"},
           {"--type q4_K_M --token-embedding-type q4_K", "token_embd.weight has rows of 64 values"},
           {"--type q4_K_M --output-tensor-type q9_9", "is not one of"}}) {
    SCOPED_TRACE(flags);
    auto result = testing::run_autotrain("export-gguf --model " + quote(kModels + "llama") + " --out " +
                                         quote(dir.file("refused.gguf")) + " " + flags);
    EXPECT_NE(result.exit_code, 0);
    EXPECT_NE(result.output.find(message), std::string::npos) << result.output;
    EXPECT_FALSE(fs::exists(dir.file("refused.gguf")));
  }
}

// An importance matrix from tests/reference/imatrix_files.py for `model` (extra: its options).
void write_imatrix(const std::string& model, const std::string& out, const std::string& extra = "") {
  const auto result = testing::run_command(
      quote(AUTOTRAIN_PYTHON) + " " + quote(std::string(AUTOTRAIN_SOURCE_DIR) + "/tests/reference/imatrix_files.py") +
      " --model " + quote(model) + " --out " + quote(out) + " " + extra + " 2>&1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
}

TEST(GgufExport, AnImportanceMatrixQuantizesAsLlamaQuantizeDoesWithIt) {
  // llama-quantize --imatrix: each weight's blocks fitted with its entry (the oracle: its weighted error well below
  // gguf-py's plain quantization for q4_0 ... q5_1; ggml's bytes themselves are GgmlQuants.WithAnImportance*), the
  // mixture's imatrix rule (q4_0 / q5_0: the first eighth of ffn_down in q4_1 / q5_1), q2_K_S, and the
  // quantize.imatrix.* record; both file formats.
  TempDir dir;
  const std::string wide = kFixtures + "/reference/gguf/";
  const std::string llama_imatrix = dir.file("llama.imatrix.gguf"), qwen2_imatrix = dir.file("qwen2.imatrix.dat");
  write_imatrix(wide + "llama_wide", llama_imatrix);
  write_imatrix(wide + "qwen2_wide", qwen2_imatrix, "--format dat --seed 2");
  std::vector<GgufCheck> files;
  for (const auto& [model, type, imatrix] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"llama_wide", "q4_0", llama_imatrix}, {"llama_wide", "q5_1", llama_imatrix},
           {"llama_wide", "q2_K_S", llama_imatrix}, {"llama_wide", "q3_K_M", llama_imatrix},
           {"qwen2_wide", "q5_0", qwen2_imatrix}, {"qwen2_wide", "q2_K_S", qwen2_imatrix},
           {"qwen2_wide", "q4_K_M", qwen2_imatrix}}) {
    SCOPED_TRACE(model + " " + type);
    const std::string out = dir.file(std::to_string(files.size()) + ".gguf");
    auto result = testing::run_autotrain("export-gguf --model " + quote(wide + model) + " --out " + quote(out) +
                                         " --type " + type + " --imatrix " + quote(imatrix));
    ASSERT_EQ(result.exit_code, 0) << result.output;
    files.push_back({out, wide + model, type + "+imatrix=" + imatrix});
  }
  EXPECT_EQ(run_gguf_check(files), 0);
}

// eval / generate --gguf-type TYPE --imatrix FILE: the weights llama.cpp would run from export-gguf --imatrix's file,
// each equal to gguf-py's dequantization of it.
TEST(GgufExport, TheRoundTripWithAnImportanceMatrixGivesTheExportsWeights) {
  TempDir dir;
  const std::string model = kFixtures + "/reference/gguf/llama_wide";
  const std::string imatrix = dir.file("m.imatrix.gguf"), out = dir.file("m.gguf"), weights = dir.file("w.safetensors");
  write_imatrix(model, imatrix);
  auto result = testing::run_autotrain("export-gguf --model " + quote(model) + " --out " + quote(out) +
                                       " --type q3_K_M --imatrix " + quote(imatrix));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto transform = gguf_round_trip(model, GgufType::q3_K_M, imatrix);
  const Checkpoint checkpoint = Checkpoint::open(model);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const std::string& name : checkpoint.names()) {
    const at::Tensor weight = checkpoint.tensor(name);
    if (weight.dim() != 2) continue;
    const at::Tensor seen = transform(name, weight);
    EXPECT_FALSE(at::equal(seen, weight.to(at::kFloat))) << name << " went through unquantized";
    tensors.emplace_back(name, seen.contiguous());
  }
  write_safetensors(weights, tensors);
  const std::string command = quote(AUTOTRAIN_PYTHON) + " " +
                              quote(std::string(AUTOTRAIN_SOURCE_DIR) + "/tests/reference/gguf_check.py") +
                              " --fixtures " + quote(kFixtures) + " --round-trip " +
                              quote(out + ":" + weights + ":" + model);
  EXPECT_EQ(std::system((command + " 2>&1").c_str()), 0);
}

TEST(GgufExport, AnImportanceMatrixIsRefusedWhereLlamaQuantizeRefusesIt) {
  TempDir dir;
  const std::string model = kFixtures + "/reference/gguf/llama_wide";
  const std::string wrong_size = dir.file("wrong_size.gguf"), partial = dir.file("partial.dat");
  write_imatrix(model, wrong_size, "--wrong-size blk.2.attn_q.weight");
  write_imatrix(model, partial, "--format dat --skip blk.1.ffn_up.weight");
  const std::string out = dir.file("refused.gguf");
  for (const auto& [flags, message] : std::vector<std::pair<std::string, std::string>>{
           {"--type q2_K_S", "--type q2_K_S needs an importance matrix"},
           {"--type f16 --imatrix " + quote(partial), "--imatrix goes with a llama-quantize preset"},
           {"--type q4_K_M --imatrix " + quote(wrong_size),
            "the importance of blk.2.attn_q.weight has 257 values, the weight 256 columns"},
           {"--type q2_K_S --imatrix " + quote(partial), "no importance for blk.1.ffn_up.weight, which q2_K_S"}}) {
    SCOPED_TRACE(flags);
    auto result = testing::run_autotrain("export-gguf --model " + quote(model) + " --out " + quote(out) + " " + flags);
    EXPECT_NE(result.exit_code, 0);
    EXPECT_NE(result.output.find(message), std::string::npos) << result.output;
    EXPECT_FALSE(fs::exists(out));
  }
  // Another preset quantizes the weight without an entry without one, as llama-quantize does, and says so.
  auto result = testing::run_autotrain("export-gguf --model " + quote(model) + " --out " + quote(out) +
                                       " --type q3_K_S --imatrix " + quote(partial));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("no importance for blk.1.ffn_up.weight"), std::string::npos) << result.output;
}

// The base folder an adapter of tests/reference/merge_peft.py records (its fixture model).
std::string recorded_base(const std::string& adapter) {
  return parse_json_file(adapter + "/adapter_config.json", "remake the fixtures").at("base_model_name_or_path");
}

TEST(GgufExport, AnAdapterBecomesLlamaCppsLoraWithPeftsDelta) {
  // PEFT adapters of all 7 projections (r 8, alpha 16; one rsLoRA) against PEFT's own merge of them: llama.cpp's
  // (alpha / r) lora_b @ lora_a must be merge_and_unload's delta, q/k rows permuted for llama, in every type.
  TempDir dir;
  std::string command = quote(AUTOTRAIN_PYTHON) + " " +
                        quote(std::string(AUTOTRAIN_SOURCE_DIR) + "/tests/reference/gguf_check.py") + " --fixtures " +
                        quote(kFixtures);
  for (const auto& [name, type] : std::vector<std::pair<std::string, std::string>>{
           {"llama", "f32"}, {"llama", "q8_0"}, {"qwen2", "f16"}, {"qwen3", "bf16"}, {"llama_rslora", "f32"}}) {
    SCOPED_TRACE(name + " " + type);
    const std::string adapter = kFixtures + "/reference/merge_peft/" + name + "/adapter";
    const std::string out = dir.file(name + "." + type + ".gguf");
    auto result = testing::run_autotrain("export-gguf --model " + quote(recorded_base(adapter)) + " --adapter " +
                                         quote(adapter) + " --out " + quote(out) + " --type " + type);
    ASSERT_EQ(result.exit_code, 0) << result.output;
    command += " --lora " + quote(out + ":" + name + ":" + type);
  }
  EXPECT_EQ(std::system((command + " 2>&1").c_str()), 0);
}

TEST(GgufExport, MergeWritesTheFileOfMergeAdapterThenExport) {
  // --adapter --merge in one step against merge-adapter, then export-gguf of its folder (each checked against PEFT
  // and gguf-py elsewhere): the same bytes, for a K-quant mixture and for f16.
  for (const std::string name : {"llama", "qwen2"}) {
    SCOPED_TRACE(name);
    const std::string adapter = kFixtures + "/reference/merge_peft/" + name + "/adapter";
    const std::string base = recorded_base(adapter);
    TempDir dir;
    const std::string merged = dir.file("adapter");  // general.name: the adapter folder's name in both
    auto result = testing::run_autotrain("merge-adapter --base " + quote(base) + " --adapter " + quote(adapter) +
                                         " --out " + quote(merged));
    ASSERT_EQ(result.exit_code, 0) << result.output;
    for (const std::string type : {"q4_K_M", "f16"}) {
      const std::string two_steps = dir.file("two." + type + ".gguf"), one_step = dir.file("one." + type + ".gguf");
      result = testing::run_autotrain("export-gguf --model " + quote(merged) + " --out " + quote(two_steps) +
                                      " --type " + type);
      ASSERT_EQ(result.exit_code, 0) << result.output;
      result = testing::run_autotrain("export-gguf --model " + quote(base) + " --adapter " + quote(adapter) +
                                      " --merge --out " + quote(one_step) + " --type " + type);
      ASSERT_EQ(result.exit_code, 0) << result.output;
      // (merge-adapter's folder holds the merged weights, so an unmerged one-step file could not be equal)
      EXPECT_TRUE(read_file(one_step) == read_file(two_steps)) << type;
    }
  }
}

TEST(GgufExport, AnAdapterIsRefusedWithAReasonAndNothingWritten) {
  TempDir dir;
  const std::string out = dir.file("x.gguf");
  const std::string llama_adapter = kFixtures + "/reference/merge_peft/llama/adapter";
  const std::string qwen2_adapter = kFixtures + "/reference/merge_peft/qwen2/adapter";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--model " + quote(kModels + "llama") + " --adapter " + quote(llama_adapter) + " --type q4_K_M",
       "llama-quantize's presets are for whole models"},
      {"--model " + quote(kModels + "llama") + " --adapter " + quote(qwen2_adapter), "use the model it was trained on"},
      {"--model " + quote(kModels + "llama") + " --adapter " + quote(kFixtures + "/reference/reward_trl/final"),
       "a reward model's adapter"}};
  for (const auto& [arguments, message] : cases) {
    auto result = testing::run_autotrain("export-gguf " + arguments + " --out " + quote(out));
    EXPECT_NE(result.exit_code, 0) << arguments;
    EXPECT_NE(result.output.find(message), std::string::npos) << result.output;
    EXPECT_FALSE(fs::exists(out));
  }
}

TEST(GgufExport, TheChatTemplateGoesAlongAsTheConverterWritesIt) {
  // llama-server and ollama format chats with tokenizer.chat_template: from tokenizer_config.json (a string, or
  // named templates), or chat_template.jinja; the oracle asks gguf-py's SpecialVocab what the converter writes.
  const std::string llama31 = read_file(std::string(AUTOTRAIN_SOURCE_DIR) + "/tests/data/chat_templates/llama31.jinja");
  const std::string zephyr = read_file(std::string(AUTOTRAIN_SOURCE_DIR) + "/tests/data/chat_templates/zephyr.jinja");
  TempDir dir;
  std::vector<GgufCheck> files;
  for (const std::string kind : {"string", "named", "jinja_file"}) {
    const std::string model = dir.file("llama_" + kind);
    fs::create_directories(model);
    for (const auto& entry : fs::directory_iterator(kModels + "llama")) fs::copy(entry.path(), model + "/");
    nlohmann::json config = parse_json_file(model + "/tokenizer_config.json", "");
    if (kind == "string") config["chat_template"] = llama31;
    if (kind == "named")
      config["chat_template"] = {{{"name", "default"}, {"template", llama31}},
                                 {{"name", "tool use"}, {"template", zephyr}}};
    testing::write_text(model + "/tokenizer_config.json", config.dump(2));
    if (kind == "jinja_file") testing::write_text(model + "/chat_template.jinja", zephyr);
    for (const GgufCheck& file : export_each(dir, model, {"f16"})) files.push_back(file);
  }
  EXPECT_EQ(run_gguf_check(files), 0);
}

const char* kTekkenPattern =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|)"
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|)"
    R"(\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

TEST(GgufExport, ByteLevelPreTokenizersWithoutASplitAreNamed) {
  // SmolLM's Digits + GPT-2's byte-level regex is llama.cpp's "smollm", the regex alone "gpt-2"; with
  // add_prefix_space (which llama.cpp's gpt-2 does not do) "default", with a warning.
  const std::string variants = kFixtures + "/reference/tokenizer/variants/";
  TempDir dir;
  std::vector<GgufCheck> files;
  for (const std::string kind : {"smollm", "gpt2", "prefix_space", "tekken"}) {
    const std::string model = dir.file("qwen2_" + kind);
    fs::create_directories(model);
    for (const auto& entry : fs::directory_iterator(kModels + "qwen2")) fs::copy(entry.path(), model + "/");
    nlohmann::json tokenizer = parse_json_file(variants + (kind == "prefix_space" ? "gpt2_style" : "smollm_style") +
                                               "/tokenizer.json", "");
    if (kind == "gpt2") tokenizer["pre_tokenizer"] = tokenizer["pre_tokenizer"]["pretokenizers"][1];
    if (kind == "tekken") {  // the qwen2 fixture's Split with Mistral's tekken pattern
      tokenizer = parse_json_file(kModels + "qwen2/tokenizer.json", "");
      tokenizer["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = kTekkenPattern;
    }
    testing::write_text(model + "/tokenizer.json", tokenizer.dump());
    for (const GgufCheck& file : export_each(dir, model, {"f16"})) files.push_back(file);
  }
  EXPECT_EQ(run_gguf_check(files), 0);
}

TEST(GgufExport, AnUnknownTypeNamesTheAcceptedOnes) {
  TempDir dir;
  auto result = testing::run_autotrain("export-gguf --model " + quote(kModels + "llama") + " --out " +
                                       quote(dir.file("x.gguf")) + " --type iq2_xxs");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.output.find("q4_K_M"), std::string::npos) << result.output;
  EXPECT_FALSE(fs::exists(dir.file("x.gguf")));
}

TEST(GgufExport, RefusesAFolderWithoutTokenizer) {
  TempDir dir;
  const std::string model = dir.file("model");
  fs::create_directories(model);
  for (const auto& entry : fs::directory_iterator(kModels + "llama")) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("tokenizer", 0) != 0 && name != "special_tokens_map.json") fs::copy(entry.path(), model + "/" + name);
  }
  auto result = testing::run_autotrain("export-gguf --model " + quote(model) + " --out " + quote(dir.file("x.gguf")));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("no tokenizer.model or tokenizer.json"), std::string::npos) << result.output;
  EXPECT_FALSE(fs::exists(dir.file("x.gguf")));
}

TEST(GgufQuant, Q8_0RoundTripWithinHalfAStep) {
  at::manual_seed(3);
  at::Tensor x = at::randn({7, 96}) * at::rand({7, 1}) * 4;
  x[2].zero_();  // an all-zero block: d = 0, codes 0
  at::Tensor blocks = ggml_quantize(x, GgmlType::q8_0);
  ASSERT_EQ(blocks.numel(), 7 * 96 / 32 * 34);
  at::Tensor back = ggml_dequantize(blocks, GgmlType::q8_0, x.sizes());
  at::Tensor d = x.reshape({-1, 32}).abs().amax(1, true) / 127;
  at::Tensor d16 = d.to(at::kHalf).to(at::kFloat);
  // Rounding to the nearest code is within d/2; the fp16 scale adds at most 127 |d - d16|.
  at::Tensor bound = d / 2 + 127 * (d - d16).abs() + 1e-7;
  EXPECT_TRUE(((back.reshape({-1, 32}) - x.reshape({-1, 32})).abs() <= bound).all().item<bool>());
  EXPECT_TRUE(back[2].eq(0).all().item<bool>());
  EXPECT_THROW(ggml_quantize(at::randn({3, 40}), GgmlType::q8_0), Error);
}

TEST(GgufQuant, LlamaPermuteInterleavesTheHalvesOfEachHead) {
  // Two heads of head_dim 4: HF rows (per head) r0 r1 | r2 r3 (halves) -> llama.cpp r0 r2 r1 r3.
  at::Tensor w = at::arange(8, at::kFloat).reshape({8, 1});
  at::Tensor expected = at::tensor({0.f, 2.f, 1.f, 3.f, 4.f, 6.f, 5.f, 7.f}).reshape({8, 1});
  EXPECT_TRUE(at::equal(permute_for_llama_rope(w, 2), expected));
}

}  // namespace
}  // namespace autotrain
