// PEFT LoRA adapter folders: adapter_config.json + adapter_model.safetensors, written so that
// peft.PeftModel.from_pretrained loads them unchanged, and read back for merge-adapter / generate.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "autotrain/lora.h"

namespace autotrain {

struct AdapterConfig {
  LoraOptions lora;
  std::vector<std::string> target_modules;  // q_proj, ..., in the order given
  std::string base_model_name_or_path;
  // CAUSAL_LM, or SEQ_CLS for a reward model (trainer reward), whose adapter also holds the score head in full:
  // modules_to_save {"classifier", "score"} as PEFT sets them for SEQ_CLS.
  std::string task_type = "CAUSAL_LM";
  std::vector<std::string> modules_to_save;
  bool is_reward_model() const { return task_type == "SEQ_CLS"; }
};

// A reward model's score head (transformers' *ForSequenceClassification `score`, num_labels 1, no bias: (1,
// hidden_size)) as PEFT names it in a SEQ_CLS adapter's adapter_model.safetensors, and in a merged model.
inline constexpr const char* kScoreTensorName = "base_model.model.score.weight";
inline constexpr const char* kMergedScoreTensorName = "score.weight";

// The name PEFT gives a LoRA matrix in adapter_model.safetensors:
// base_model.model.model.layers.{layer}.self_attn.q_proj.lora_A.weight (mlp.* for the MLP projections).
std::string peft_lora_tensor_name(int64_t layer, const std::string& module, bool lora_a);
// "self_attn" for q/k/v/o_proj, "mlp" for gate/up/down_proj; throws Error for another name.
std::string module_parent(const std::string& module);

nlohmann::json peft_adapter_config_json(const AdapterConfig& config);
// Reads adapter_config.json; throws Error naming the file and key for what we cannot use (DoRA, a
// non-LoRA peft_type, modules_to_save other than a SEQ_CLS adapter's score head, bias other than "none",
// fan_in_fan_out, a task_type other than CAUSAL_LM / SEQ_CLS, ...).
AdapterConfig load_adapter_config(const std::string& folder);

// Writes folder/adapter_model.safetensors then folder/adapter_config.json, each atomically (the config
// last: a folder with a config always has its weights). `tensors` are named by peft_lora_tensor_name.
void save_adapter(const std::string& folder, const AdapterConfig& config,
                  const std::vector<std::pair<std::string, at::Tensor>>& tensors);

// Copies folder/adapter_model.safetensors into `parameters` (named as PEFT names them). Throws Error
// naming the file and the tensor when one is missing or has another shape (another rank or base model).
void load_adapter_weights(const std::string& folder,
                          const std::vector<std::pair<std::string, at::Tensor>>& parameters);

}  // namespace autotrain
