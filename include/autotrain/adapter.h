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
};

// The name PEFT gives a LoRA matrix in adapter_model.safetensors:
// base_model.model.model.layers.{layer}.self_attn.q_proj.lora_A.weight (mlp.* for the MLP projections).
std::string peft_lora_tensor_name(int64_t layer, const std::string& module, bool lora_a);
// "self_attn" for q/k/v/o_proj, "mlp" for gate/up/down_proj; throws Error for another name.
std::string module_parent(const std::string& module);

nlohmann::json peft_adapter_config_json(const AdapterConfig& config);
// Reads adapter_config.json; throws Error naming the file and key for what we cannot use (DoRA, a
// non-LoRA peft_type, modules_to_save, bias other than "none", fan_in_fan_out, ...).
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
