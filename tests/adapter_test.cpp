// PEFT adapter folders: the adapter_config.json PEFT writes is read as PEFT means it, ours carries the
// fields PEFT needs (the load by PEFT itself is in finetune_test), and what we cannot apply is refused.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "autotrain/adapter.h"
#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "test_util.h"

namespace autotrain {
namespace {

const std::string kPeftAdapter = std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/trainer_peft/cosine/initial";

TEST(Adapter, ReadsTheConfigPeftWrote) {
  AdapterConfig config = load_adapter_config(kPeftAdapter);
  EXPECT_EQ(config.lora.r, 8);
  EXPECT_DOUBLE_EQ(config.lora.alpha, 16);
  EXPECT_DOUBLE_EQ(config.lora.dropout, 0.0);
  EXPECT_FALSE(config.lora.rslora);
  auto targets = config.target_modules;
  std::sort(targets.begin(), targets.end());
  EXPECT_EQ(targets, (std::vector<std::string>{"down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj",
                                               "v_proj"}));
}

TEST(Adapter, OursCarriesPeftsFieldsWithPeftsValues) {
  // Every key PEFT wrote for the same LoRA settings is in ours with the same value, except the ones
  // that describe the writer (versions, paths) rather than the adapter.
  auto peft = nlohmann::json::parse(read_file(kPeftAdapter + "/adapter_config.json"));
  AdapterConfig config = load_adapter_config(kPeftAdapter);
  auto ours = peft_adapter_config_json(config);
  for (const char* key : {"peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "use_rslora", "bias",
                          "fan_in_fan_out", "use_dora", "modules_to_save", "init_lora_weights"}) {
    ASSERT_TRUE(ours.contains(key)) << key;
    EXPECT_EQ(ours[key], peft[key]) << key;
  }
}

TEST(Adapter, RefusesWhatItCannotApply) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"], "use_dora": true})", "DoRA"},
      {R"({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"], "modules_to_save": ["lm_head"]})",
       "modules_to_save"},
      {R"({"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 20})", "peft_type"},
      {R"({"peft_type": "LORA", "lora_alpha": 16, "target_modules": ["q_proj"]})", "\"r\""},
      {R"({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["embed_tokens"]})", "embed_tokens"},
      {R"({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"], "rank_pattern": {"q_proj": 4}})",
       "rank_pattern"},
      {R"([1, 2])", "object"},
      {R"({"peft_type": "LORA", "r": 8,)", "JSON"},
  };
  for (const auto& [text, mention] : cases) {
    testing::TempDir dir;
    testing::write_text(dir.file("adapter_config.json"), text);
    try {
      load_adapter_config(dir.path().string());
      ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("adapter_config.json"), std::string::npos) << message;
      EXPECT_NE(message.find(mention), std::string::npos) << mention << " not in: " << message;
    }
  }
}

}  // namespace
}  // namespace autotrain
