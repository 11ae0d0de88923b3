// config.json of the fixture models (both rope forms), the architecture table, and the rotary inverse
// frequencies against the inv_freq buffer transformers computed (tests/reference/model_logits.py).
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/model_config.h"
#include "autotrain/safetensors.h"
#include "test_util.h"

namespace autotrain {
namespace {

using nlohmann::json;

const std::string kModels = std::string(AUTOTRAIN_FIXTURES_DIR) + "/models/";
const std::string kReference = std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/model_logits/";

// A folder holding `config` as config.json.
std::string write_config(const testing::TempDir& dir, const json& config) {
  testing::write_text(dir.file("config.json"), config.dump(2));
  return dir.path().string();
}

json fixture_config(const std::string& name) { return json::parse(read_file(kModels + name + "/config.json")); }

TEST(ModelConfig, ReadsLlamaWithRopeParameters) {
  ModelConfig c = load_model_config(kModels + "llama");
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.vocab_size, 1000);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 176);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.max_position_embeddings, 512);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_EQ(c.layer_sliding_window, (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(c.rope.type, RopeType::llama3);
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(c.rope.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 64);
  EXPECT_EQ(c.dtype, at::kFloat);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{2}));
  EXPECT_FALSE(c.pad_token_id.has_value());
}

TEST(ModelConfig, ReadsQwen2WithLegacyRopeThetaAndFixedBiases) {
  ModelConfig c = load_model_config(kModels + "qwen2");
  EXPECT_EQ(c.model_type, "qwen2");
  EXPECT_EQ(c.vocab_size, 1024);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.qkv_bias);  // Qwen2Attention: q/k/v bias=True, o_proj bias=False, no config key
  EXPECT_FALSE(c.o_bias);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.rope.type, RopeType::default_rope);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  EXPECT_EQ(c.layer_sliding_window, (std::vector<int64_t>{0, 0}));  // use_sliding_window false
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{0}));
}

TEST(ModelConfig, ReadsQwen3HeadDimAndQkNorm) {
  ModelConfig c = load_model_config(kModels + "qwen3");
  EXPECT_EQ(c.model_type, "qwen3");
  EXPECT_EQ(c.head_dim, 32);  // its own, not hidden_size / num_attention_heads = 16
  EXPECT_EQ(c.q_size(), 128);
  EXPECT_EQ(c.kv_size(), 64);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qkv_bias);  // attention_bias false
  EXPECT_FALSE(c.o_bias);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.layer_sliding_window, (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(projection_shape(c, "o_proj"), (std::pair<int64_t, int64_t>{64, 128}));

  // Qwen3Config defaults: head_dim 128 when the key is absent; attention_bias switches q/k/v/o together.
  json config = fixture_config("qwen3");
  config.erase("head_dim");
  config["attention_bias"] = true;
  testing::TempDir dir;
  c = load_model_config(write_config(dir, config));
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_TRUE(c.o_bias);
  EXPECT_FALSE(load_model_config(kModels + "qwen2").qk_norm);
}

TEST(ModelConfig, ReadsMistralSlidingWindow) {
  ModelConfig c = load_model_config(kModels + "mistral");
  EXPECT_EQ(c.model_type, "mistral");
  EXPECT_EQ(c.layer_sliding_window, (std::vector<int64_t>{4096, 4096}));
  EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);
  EXPECT_FALSE(c.qkv_bias);
}

TEST(ModelConfig, InverseFrequenciesEqualTransformers) {
  for (std::string name : {"llama", "qwen2", "mistral", "qwen3"}) {
    SCOPED_TRACE(name);
    at::Tensor expected = SafetensorsFile::open(kReference + name + "/batch.safetensors")->tensor("inv_freq");
    at::Tensor ours = rope_inverse_frequencies(load_model_config(kModels + name));
    // The same float32 operations in the same order as modeling_rope_utils.py: equal to the bit.
    EXPECT_TRUE(at::equal(ours, expected)) << ours << expected;
  }
}

TEST(ModelConfig, LegacyRopeScalingEqualsRopeParameters) {
  json modern = fixture_config("llama");
  json legacy = modern;
  json rope = legacy["rope_parameters"];
  legacy.erase("rope_parameters");
  legacy["rope_theta"] = rope["rope_theta"];
  rope.erase("rope_theta");
  rope.erase("rope_type");
  rope["type"] = "llama3";  // the oldest spelling
  legacy["rope_scaling"] = rope;
  legacy["eos_token_id"] = json::array({2, 7});
  testing::TempDir dir;
  ModelConfig c = load_model_config(write_config(dir, legacy));
  EXPECT_EQ(c.rope.type, RopeType::llama3);
  EXPECT_TRUE(at::equal(rope_inverse_frequencies(c), rope_inverse_frequencies(load_model_config(kModels + "llama"))));
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{2, 7}));

  legacy["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  at::Tensor linear = rope_inverse_frequencies(load_model_config(write_config(dir, legacy)));
  legacy["rope_scaling"] = nullptr;
  at::Tensor plain = rope_inverse_frequencies(load_model_config(write_config(dir, legacy)));
  EXPECT_TRUE(at::equal(linear, plain / 2.0));  // linear: inv_freq /= factor
}

TEST(ModelConfig, Qwen2SlidingWindowFollowsLayerTypesOrMaxWindowLayers) {
  json config = fixture_config("qwen2");
  config["use_sliding_window"] = true;
  config["sliding_window"] = 3;
  config["layer_types"] = {"full_attention", "sliding_attention"};
  testing::TempDir dir;
  EXPECT_EQ(load_model_config(write_config(dir, config)).layer_sliding_window, (std::vector<int64_t>{0, 3}));
  config.erase("layer_types");
  config["max_window_layers"] = 0;
  EXPECT_EQ(load_model_config(write_config(dir, config)).layer_sliding_window, (std::vector<int64_t>{3, 3}));
}

TEST(ModelConfig, UnsupportedModelTypeListsTheSupportedOnes) {
  json config = fixture_config("llama");
  config["model_type"] = "gpt2";
  testing::TempDir dir;
  std::string message = testing::error_message_of([&] { load_model_config(write_config(dir, config)); });
  EXPECT_NE(message.find("config.json"), std::string::npos) << message;
  EXPECT_NE(message.find("gpt2"), std::string::npos) << message;
  EXPECT_NE(message.find("llama, mistral, qwen2, qwen3"), std::string::npos) << message;
}

TEST(ModelConfig, MissingOrWrongTypedKeyNamesFileAndKey) {
  testing::TempDir dir;
  json config = fixture_config("mistral");
  config.erase("hidden_size");
  std::string message = testing::error_message_of([&] { load_model_config(write_config(dir, config)); });
  EXPECT_NE(message.find("config.json: key \"hidden_size\" is missing"), std::string::npos) << message;

  config = fixture_config("mistral");
  config["num_attention_heads"] = "4";
  message = testing::error_message_of([&] { load_model_config(write_config(dir, config)); });
  EXPECT_NE(message.find("config.json: key \"num_attention_heads\" should be an integer"), std::string::npos)
      << message;

  config = fixture_config("qwen2");
  config["hidden_act"] = "gelu";
  message = testing::error_message_of([&] { load_model_config(write_config(dir, config)); });
  EXPECT_NE(message.find("config.json: key \"hidden_act\" is \"gelu\""), std::string::npos) << message;

  config = fixture_config("llama");
  config["rope_parameters"]["rope_type"] = "yarn";
  message = testing::error_message_of([&] { load_model_config(write_config(dir, config)); });
  EXPECT_NE(message.find("rope_type"), std::string::npos) << message;
  EXPECT_NE(message.find("yarn"), std::string::npos) << message;
}

}  // namespace
}  // namespace autotrain
