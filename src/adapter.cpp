#include "autotrain/adapter.h"

#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "autotrain/config.h"
#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/safetensors.h"
#include "autotrain/text_util.h"

namespace autotrain {
using json = nlohmann::json;

std::string module_parent(const std::string& module) {
  if (module == "q_proj" || module == "k_proj" || module == "v_proj" || module == "o_proj") return "self_attn";
  if (module == "gate_proj" || module == "up_proj" || module == "down_proj") return "mlp";
  throw Error("\"" + module + "\" is not a LoRA target of Llama/Qwen2/Mistral");
}

std::string peft_lora_tensor_name(int64_t layer, const std::string& module, bool lora_a) {
  return "base_model.model.model.layers." + std::to_string(layer) + "." + module_parent(module) + "." + module +
         (lora_a ? ".lora_A.weight" : ".lora_B.weight");
}

json peft_adapter_config_json(const AdapterConfig& config) {
  // The fields PEFT 0.21 writes for a plain LoRA adapter; PEFT fills any field left out with its default.
  return json{{"peft_type", "LORA"},
              {"task_type", config.task_type},
              {"base_model_name_or_path", config.base_model_name_or_path},
              {"r", config.lora.r},
              {"lora_alpha", config.lora.alpha},
              {"lora_dropout", config.lora.dropout},
              {"use_rslora", config.lora.rslora},
              {"target_modules", config.target_modules},
              {"bias", "none"},
              {"fan_in_fan_out", false},
              {"use_dora", false},
              {"modules_to_save", config.modules_to_save.empty() ? json() : json(config.modules_to_save)},
              {"init_lora_weights", true},
              {"inference_mode", true},
              {"layers_to_transform", nullptr},
              {"layers_pattern", nullptr},
              {"rank_pattern", json::object()},
              {"alpha_pattern", json::object()},
              {"revision", nullptr}};
}

namespace {

template <typename T>
T require(const json& document, const std::string& key, const std::string& path) {
  auto it = document.find(key);
  if (it == document.end()) throw Error(path + ": key \"" + key + "\" is missing; is this a PEFT LoRA adapter?");
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw Error(path + ": key \"" + key + "\" has the wrong type (" + it->dump() + ")");
  }
}

void refuse_if(bool condition, const std::string& path, const std::string& what) {
  if (condition) throw Error(path + ": " + what);
}

}  // namespace

AdapterConfig load_adapter_config(const std::string& folder) {
  const std::string path = folder + "/adapter_config.json";
  const json document = parse_json_file(path, "save the adapter again (PEFT's save_pretrained, or autotrain train)");
  refuse_if(!document.is_object(), path, "expected a JSON object");
  refuse_if(require<std::string>(document, "peft_type", path) != "LORA", path,
            "peft_type is " + document.value("peft_type", json()).dump() + "; only LORA adapters are supported");
  // value() never inserts (operator[] on a missing key would, and the messages below are built eagerly).
  const json bias = document.value("bias", json("none"));
  const json modules_to_save = document.value("modules_to_save", json());
  refuse_if(document.value("use_dora", false), path, "DoRA adapters (use_dora: true) are not supported");
  refuse_if(document.value("fan_in_fan_out", false), path, "fan_in_fan_out adapters (GPT-2 Conv1D) are not supported");
  refuse_if(bias != "none", path, "bias " + bias.dump() + " is not supported; only bias \"none\"");
  const json task_type = document.value("task_type", json("CAUSAL_LM"));
  refuse_if(task_type != "CAUSAL_LM" && task_type != "SEQ_CLS" && !task_type.is_null(), path,
            "task_type " + task_type.dump() + " is not supported; only CAUSAL_LM (a language model) and SEQ_CLS (a "
            "reward model, trainer reward)");
  const bool reward = task_type == "SEQ_CLS";
  // A SEQ_CLS adapter trains its head in full: PEFT adds "classifier" and "score" to modules_to_save.
  bool other_modules = !modules_to_save.is_null() && !modules_to_save.is_array();
  for (const auto& module : modules_to_save.is_array() ? modules_to_save : json::array())
    other_modules = other_modules || !reward || (module != "classifier" && module != "score");
  refuse_if(other_modules, path,
            "modules_to_save " + modules_to_save.dump() +
                " (full copies of e.g. embeddings or lm_head) is not supported; retrain without it");
  refuse_if(!document.value("rank_pattern", json::object()).empty(), path,
            "rank_pattern (per-module ranks) is not supported");
  refuse_if(!document.value("alpha_pattern", json::object()).empty(), path,
            "alpha_pattern (per-module alphas) is not supported");
  AdapterConfig config;
  config.lora.r = require<int64_t>(document, "r", path);
  config.lora.alpha = require<double>(document, "lora_alpha", path);
  config.lora.dropout = document.value("lora_dropout", 0.0);
  config.lora.rslora = document.value("use_rslora", false);
  config.base_model_name_or_path = document.value("base_model_name_or_path", "");
  if (reward) {
    config.task_type = "SEQ_CLS";
    for (const auto& module : modules_to_save) config.modules_to_save.push_back(module.get<std::string>());
  }
  const json targets = document.value("target_modules", json());
  if (targets.is_string()) {
    TrainingParams params;
    params.target_modules = targets.get<std::string>();
    config.target_modules = resolve_target_modules(params);
  } else if (targets.is_array()) {
    for (const auto& t : targets) {
      refuse_if(!t.is_string(), path, "target_modules holds a non-string");
      const std::string name = t.get<std::string>();
      const auto& known = linear_module_names();
      refuse_if(std::find(known.begin(), known.end(), name) == known.end(), path,
                "target module \"" + name + "\" is not a Llama/Qwen2/Mistral linear layer (embeddings and lm_head "
                "adapters are not supported)");
      config.target_modules.push_back(t.get<std::string>());
    }
  } else {
    throw Error(path + ": key \"target_modules\" must be a list of module names");
  }
  refuse_if(config.target_modules.empty(), path, "target_modules is empty");
  return config;
}

void save_adapter(const std::string& folder, const AdapterConfig& config,
                  const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  make_directories(folder);
  write_safetensors(folder + "/adapter_model.safetensors", tensors);
  write_file_atomic(folder + "/adapter_config.json", peft_adapter_config_json(config).dump(2) + "\n");
}

void load_adapter_weights(const std::string& folder,
                          const std::vector<std::pair<std::string, at::Tensor>>& parameters) {
  const std::string path = folder + "/adapter_model.safetensors";
  auto file = SafetensorsFile::open(path);
  at::NoGradGuard no_grad;
  for (const auto& [name, parameter] : parameters) {
    if (!file->has(name)) {
      throw Error(path + ": tensor " + name + " is missing; was the adapter trained on another model or with other "
                  "target_modules?");
    }
    at::Tensor saved = file->tensor(name);
    if (saved.sizes() != parameter.sizes()) {
      throw Error(path + ": tensor " + name + " has shape " + shape_text(saved.sizes()) + ", the model wants " +
                  shape_text(parameter.sizes()) + "; the adapter belongs to another base model or rank");
    }
    parameter.copy_(saved);
  }
  if (file->names().size() != parameters.size()) {
    throw Error(path + ": holds " + std::to_string(file->names().size()) + " tensors, the model has " +
                std::to_string(parameters.size()) + " LoRA matrices; the adapter belongs to another base model");
  }
}

}  // namespace autotrain
