// training_params.json: every key of Hugging Face AutoTrain's LLM trainer (autotrain-advanced 0.8.37,
// trainers/clm/params.py) with AutoTrain's defaults, parsed into one typed struct and validated.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace autotrain {

struct TrainingParams {
  // What to train and where the result goes.
  std::string model = "gpt2";  // a local Hugging Face model folder
  std::string project_name = "project-name";
  std::string data_path = "data";
  std::string train_split = "train";
  std::optional<std::string> valid_split;
  std::string text_column = "text";

  // Tokenization and packing.
  bool add_eos_token = true;
  int64_t block_size = -1;  // -1: the tokenizer's model_max_length, capped at 1024
  int64_t model_max_length = 2048;
  std::optional<std::string> padding = std::string("right");
  std::optional<std::string> chat_template;

  // The trainer.
  std::string trainer = "default";
  bool use_flash_attention_2 = false;
  std::string log = "none";
  bool disable_gradient_checkpointing = false;
  int64_t logging_steps = -1;
  std::string eval_strategy = "epoch";
  int64_t save_total_limit = 1;
  bool auto_find_batch_size = false;
  std::optional<std::string> mixed_precision;  // fp16, bf16, none
  double lr = 3e-5;
  int64_t epochs = 1;
  int64_t batch_size = 2;
  double warmup_ratio = 0.1;
  int64_t gradient_accumulation = 4;
  std::string optimizer = "adamw_torch";
  std::string scheduler = "linear";
  double weight_decay = 0.0;
  double max_grad_norm = 1.0;
  int64_t seed = 42;

  // Quantization and LoRA.
  std::optional<std::string> quantization = std::string("int4");  // int4 (NF4), int8, none
  std::optional<std::string> target_modules = std::string("all-linear");
  bool merge_adapter = false;
  bool peft = false;
  int64_t lora_r = 16;
  double lora_alpha = 32;
  double lora_dropout = 0.05;

  // DPO / ORPO / reward trainers: model_ref is ignored with peft (as AutoTrain); prompt_text_column and
  // rejected_text_column name the pairs' columns (text_column the chosen).
  std::optional<std::string> model_ref;
  double dpo_beta = 0.1;
  int64_t max_prompt_length = 128;
  std::optional<int64_t> max_completion_length;
  std::optional<std::string> prompt_text_column;
  std::optional<std::string> rejected_text_column;

  // Hub, unsloth and distributed settings.
  bool push_to_hub = false;
  std::optional<std::string> username;
  std::optional<std::string> token;
  bool unsloth = false;
  std::optional<std::string> distributed_backend;
};

// The linear projections of a Llama / Qwen2 / Mistral decoder layer (the LoRA targets), in PEFT's and the
// checkpoint's module order: q, k, v, o, gate, up, down.
const std::vector<std::string>& linear_module_names();

// target_modules as a list: "q_proj, k_proj" -> {q_proj, k_proj}; "all-linear" (or null) -> every linear module.
std::vector<std::string> resolve_target_modules(const TrainingParams& params);

// Parses and validates a training_params.json document. `source` names the file in error messages.
// Throws Error with exit code 2 on an unknown key (naming the nearest valid one), a wrong type, an
// out-of-range value, or a value we do not support yet.
TrainingParams parse_training_params(const nlohmann::json& document, const std::string& source);
// The checks of parse_training_params on each key of `document` alone (names, types, values), without those that
// need a whole config (peft set, what the trainer needs of other keys): for options given in place of a config's
// keys, so that a bad one is said to come from `source` before the config is read.
void check_training_param_values(const nlohmann::json& document, const std::string& source);
TrainingParams load_training_params(const std::string& path);
// The same with `overrides` (a JSON object: keys of training_params.json, e.g. from a command line) in place of the
// file's values; an error in one of them names the file too.
TrainingParams load_training_params(const std::string& path, const nlohmann::json& overrides);

// Every key with its effective value; the token is never written.
nlohmann::json to_json(const TrainingParams& params);

// Writes to_json(params) to `project_name/training_params.json`, atomically.
void save_training_params(const TrainingParams& params, const std::string& folder);

// The valid key nearest to `key` by edit distance.
std::string nearest_training_param_key(const std::string& key);

}  // namespace autotrain
