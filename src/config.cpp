#include "autotrain/config.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>
#include "autotrain/logging.h"

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/optimizer.h"
#include "autotrain/text_util.h"

namespace autotrain {
using json = nlohmann::json;

namespace {

std::string describe(const json& value) {
  std::string text = value.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  const char* type = value.is_string()            ? "a string"
                     : value.is_boolean()         ? "a boolean"
                     : value.is_number_integer()  ? "an integer"
                     : value.is_number()          ? "a number"
                     : value.is_null()            ? "null"
                     : value.is_array()           ? "an array"
                                                  : "an object";
  return text + " (" + type + ")";
}

[[noreturn]] void fail(const std::string& source, const std::string& key, const json& value,
                       const std::string& expected) {
  throw config_error(source + ": key \"" + key + "\" is " + describe(value) + "; expected " + expected);
}

// ---- reading one typed value ------------------------------------------------------------------

void read_value(const json& v, const std::string& key, const std::string& source, bool& out) {
  if (!v.is_boolean()) fail(source, key, v, "true or false");
  out = v.get<bool>();
}

void read_value(const json& v, const std::string& key, const std::string& source, int64_t& out) {
  if (v.is_number_integer()) {
    out = v.get<int64_t>();
    return;
  }
  // 2.0 is an integer to AutoTrain's pydantic models too; 2.5 is not.
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) {
      out = static_cast<int64_t>(d);
      return;
    }
  }
  fail(source, key, v, "an integer");
}

void read_value(const json& v, const std::string& key, const std::string& source, double& out) {
  if (!v.is_number()) fail(source, key, v, "a number");
  out = v.get<double>();
}

void read_value(const json& v, const std::string& key, const std::string& source, std::string& out) {
  if (!v.is_string()) fail(source, key, v, "a string");
  out = v.get<std::string>();
}

template <typename T>
void read_value(const json& v, const std::string& key, const std::string& source, std::optional<T>& out) {
  if (v.is_null()) {
    out.reset();
    return;
  }
  T value{};
  read_value(v, key, source, value);
  out = value;
}

template <typename T>
json write_value(const T& value) { return json(value); }
template <typename T>
json write_value(const std::optional<T>& value) { return value ? json(*value) : json(nullptr); }

// ---- the key table: one row per AutoTrain key -------------------------------------------------

struct Field {
  std::string name;
  std::function<void(TrainingParams&, const json&, const std::string&)> read;
  std::function<json(const TrainingParams&)> write;
};

template <typename T>
Field field(const char* name, T TrainingParams::*member) {
  return Field{name,
               [name, member](TrainingParams& p, const json& v, const std::string& source) {
                 read_value(v, name, source, p.*member);
               },
               [member](const TrainingParams& p) { return write_value(p.*member); }};
}

const std::vector<Field>& fields() {
  using P = TrainingParams;
  static const std::vector<Field> table = {
      field("model", &P::model),
      field("project_name", &P::project_name),
      field("data_path", &P::data_path),
      field("train_split", &P::train_split),
      field("valid_split", &P::valid_split),
      field("text_column", &P::text_column),
      field("add_eos_token", &P::add_eos_token),
      field("block_size", &P::block_size),
      field("model_max_length", &P::model_max_length),
      field("padding", &P::padding),
      field("chat_template", &P::chat_template),
      field("trainer", &P::trainer),
      field("use_flash_attention_2", &P::use_flash_attention_2),
      field("log", &P::log),
      field("disable_gradient_checkpointing", &P::disable_gradient_checkpointing),
      field("logging_steps", &P::logging_steps),
      field("eval_strategy", &P::eval_strategy),
      field("save_total_limit", &P::save_total_limit),
      field("auto_find_batch_size", &P::auto_find_batch_size),
      field("mixed_precision", &P::mixed_precision),
      field("lr", &P::lr),
      field("epochs", &P::epochs),
      field("batch_size", &P::batch_size),
      field("warmup_ratio", &P::warmup_ratio),
      field("gradient_accumulation", &P::gradient_accumulation),
      field("optimizer", &P::optimizer),
      field("scheduler", &P::scheduler),
      field("weight_decay", &P::weight_decay),
      field("max_grad_norm", &P::max_grad_norm),
      field("seed", &P::seed),
      field("quantization", &P::quantization),
      field("target_modules", &P::target_modules),
      field("merge_adapter", &P::merge_adapter),
      field("peft", &P::peft),
      field("lora_r", &P::lora_r),
      field("lora_alpha", &P::lora_alpha),
      field("lora_dropout", &P::lora_dropout),
      field("model_ref", &P::model_ref),
      field("dpo_beta", &P::dpo_beta),
      field("max_prompt_length", &P::max_prompt_length),
      field("max_completion_length", &P::max_completion_length),
      field("prompt_text_column", &P::prompt_text_column),
      field("rejected_text_column", &P::rejected_text_column),
      field("push_to_hub", &P::push_to_hub),
      field("username", &P::username),
      field("token", &P::token),
      field("unsloth", &P::unsloth),
      field("distributed_backend", &P::distributed_backend),
  };
  return table;
}

std::vector<std::string> field_names() {
  std::vector<std::string> names;
  for (const auto& f : fields()) names.push_back(f.name);
  return names;
}

// ---- validation -------------------------------------------------------------------------------

struct Checker {
  const std::string& source;

  void range(bool ok, const char* key, const json& value, const std::string& expected) const {
    if (!ok) fail(source, key, value, expected);
  }

  // `value` must be one of `supported`; one of `known_unsupported` is a valid AutoTrain value that we
  // do not implement yet, anything else is a mistake (with the nearest supported value suggested).
  void choice(const char* key, const std::optional<std::string>& value, const std::vector<std::string>& supported,
              const std::vector<std::string>& known_unsupported = {}, bool null_ok = false) const {
    if (!value) {
      if (null_ok) return;
      throw config_error(source + ": key \"" + key + "\" is null; expected one of: " + join(supported, ", "));
    }
    if (std::find(supported.begin(), supported.end(), *value) != supported.end()) return;
    if (std::find(known_unsupported.begin(), known_unsupported.end(), *value) != known_unsupported.end())
      throw config_error(source + ": key \"" + key + "\" is \"" + *value + "\": not supported yet (supported: " +
                         join(supported, ", ") + ")");
    throw config_error(source + ": key \"" + key + "\" is \"" + *value + "\"; expected one of: " +
                       join(supported, ", ") + " (did you mean \"" + nearest_word(*value, supported) + "\"?)");
  }

  void unsupported_if(bool condition, const char* key, const json& value, const std::string& what_to_do) const {
    if (condition)
      throw config_error(source + ": key \"" + key + "\" is " + value.dump() + ": not supported yet; " + what_to_do);
  }
};

// Each key's value on its own (the defaults of absent keys pass), normalising "none" to null where AutoTrain does.
void validate_values(TrainingParams& p, const std::string& source) {
  const Checker check{source};
  check.range(!trim(p.model).empty(), "model", p.model,
              "a local Hugging Face model folder, or a Hub id (org/name) in the local Hugging Face cache");
  static const std::regex project_name_pattern("[A-Za-z0-9-]{1,50}");
  check.range(std::regex_match(p.project_name, project_name_pattern), "project_name", p.project_name,
              "1 to 50 letters, digits or '-' (AutoTrain's rule), e.g. \"my-llm\"");
  check.range(!trim(p.data_path).empty(), "data_path", p.data_path, "a local data file or folder");
  check.range(!trim(p.train_split).empty(), "train_split", p.train_split, "a split name such as \"train\"");
  check.range(!p.valid_split || !trim(*p.valid_split).empty(), "valid_split", write_value(p.valid_split),
              "null or a split name such as \"validation\"");
  check.range(!trim(p.text_column).empty(), "text_column", p.text_column, "a column name such as \"text\"");

  check.range(p.block_size == -1 || p.block_size >= 1, "block_size", p.block_size, "-1 (automatic) or an integer >= 1");
  check.range(p.model_max_length >= 1, "model_max_length", p.model_max_length, "an integer >= 1");
  check.choice("padding", p.padding, {"right", "left"}, {}, /*null_ok=*/true);
  if (p.chat_template && *p.chat_template == "none") p.chat_template.reset();
  // AutoTrain's chatml / zephyr add new special tokens to the tokenizer and grow the model's embeddings for them
  // (rows that LoRA never trains); "tokenizer" uses the model's own template and vocabulary.
  check.unsupported_if(p.chat_template && (*p.chat_template == "chatml" || *p.chat_template == "zephyr"),
                       "chat_template", p.chat_template ? json(*p.chat_template) : json(),
                       "use \"tokenizer\" (the model's own chat template; a tokenizer without one gets ChatML) or "
                       "none");
  check.choice("chat_template", p.chat_template, {"none", "tokenizer"}, {}, /*null_ok=*/true);

  check.choice("trainer", p.trainer, {"default", "sft", "dpo", "orpo", "reward"}, {"generic"});
  check.choice("log", p.log, {"none", "tensorboard"}, {"wandb"});
  check.range(p.logging_steps == -1 || p.logging_steps >= 1, "logging_steps", p.logging_steps,
              "-1 (automatic) or an integer >= 1");
  check.choice("eval_strategy", p.eval_strategy, {"epoch", "steps", "no"});
  check.range(p.save_total_limit >= 1, "save_total_limit", p.save_total_limit, "an integer >= 1");
  if (p.mixed_precision && *p.mixed_precision == "none") p.mixed_precision.reset();
  check.choice("mixed_precision", p.mixed_precision, {"fp16", "bf16", "none"}, {}, /*null_ok=*/true);

  check.range(std::isfinite(p.lr) && p.lr > 0 && p.lr < 1, "lr", p.lr, "a learning rate > 0 and < 1, e.g. 0.0002");
  check.range(p.epochs >= 1, "epochs", p.epochs, "an integer >= 1");
  check.range(p.batch_size >= 1, "batch_size", p.batch_size, "an integer >= 1");
  check.range(p.warmup_ratio >= 0 && p.warmup_ratio <= 1, "warmup_ratio", p.warmup_ratio, "a number in [0, 1]");
  check.range(p.gradient_accumulation >= 1, "gradient_accumulation", p.gradient_accumulation, "an integer >= 1");
  // The rest of transformers' OptimizerNames (and AutoTrain's old adamw_hf) are valid values we do not run.
  check.choice("optimizer", p.optimizer, optimizer_names(),
               {"adamw_hf", "adamw_torch_xla", "adamw_torch_npu_fused", "adamw_anyprecision", "adamw_torch_4bit",
                "adamw_torch_8bit", "ademamix", "ademamix_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit",
                "galore_adamw", "galore_adamw_8bit", "galore_adafactor", "galore_adamw_layerwise",
                "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise", "lomo", "adalomo", "grokadamw",
                "schedule_free_radam", "schedule_free_adamw", "schedule_free_sgd", "apollo_adamw",
                "apollo_adamw_layerwise", "stable_adamw"});
  // LoRA's moments are small (8 B per trainable parameter in fp32 for AdamW: 335 MB for r 16 on every projection of
  // an 8B model); 8-bit ones would save three quarters of that, and round every update.
  if (const auto runs_as = optimizer_runs_as_32bit(p.optimizer))
    log::warn(source + ": \"optimizer\": \"" + p.optimizer + "\" runs as its 32-bit update (" + *runs_as +
              "): the same update, without the 8-bit rounding of its state, which takes 4x the memory");
  // transformers' min-lr and warmup-stable-decay schedules need arguments (min_lr, num_decay_steps) that only
  // lr_scheduler_kwargs gives, a key AutoTrain does not have: its Trainer refuses them too.
  check.unsupported_if(p.scheduler == "cosine_with_min_lr" || p.scheduler == "cosine_warmup_with_min_lr" ||
                           p.scheduler == "warmup_stable_decay",
                       "scheduler", p.scheduler,
                       "it needs lr_scheduler_kwargs (min_lr or num_decay_steps), which AutoTrain cannot pass and "
                       "without which transformers refuses it; use \"cosine\" or \"linear\"");
  check.choice("scheduler", p.scheduler,
               {"linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                "inverse_sqrt", "reduce_lr_on_plateau"},
               {"greedy"});
  check.range(std::isfinite(p.weight_decay) && p.weight_decay >= 0, "weight_decay", p.weight_decay, "a number >= 0");
  check.range(std::isfinite(p.max_grad_norm) && p.max_grad_norm >= 0, "max_grad_norm", p.max_grad_norm,
              "a number >= 0 (0 turns clipping off)");
  check.range(p.seed >= 0, "seed", p.seed, "an integer >= 0");

  if (p.quantization && *p.quantization == "none") p.quantization.reset();
  check.choice("quantization", p.quantization, {"int4", "int8", "none"}, {}, /*null_ok=*/true);
  resolve_target_modules(p);  // throws on a bad module name
  check.range(p.lora_r >= 1 && p.lora_r <= 4096, "lora_r", p.lora_r, "an integer in [1, 4096], e.g. 16");
  check.range(std::isfinite(p.lora_alpha) && p.lora_alpha > 0, "lora_alpha", p.lora_alpha, "a number > 0, e.g. 32");
  check.range(p.lora_dropout >= 0 && p.lora_dropout < 1, "lora_dropout", p.lora_dropout, "a number in [0, 1)");

  check.range(std::isfinite(p.dpo_beta) && p.dpo_beta > 0, "dpo_beta", p.dpo_beta, "a number > 0");
  check.range(p.max_prompt_length >= 1, "max_prompt_length", p.max_prompt_length, "an integer >= 1");
  check.range(!p.max_completion_length || *p.max_completion_length >= 1, "max_completion_length",
              write_value(p.max_completion_length), "null or an integer >= 1");

  check.unsupported_if(p.push_to_hub, "push_to_hub", p.push_to_hub,
                       "autotrain works offline; set it to false and upload project_name/ yourself");
  // ddp (or null): data parallel with --nproc-per-node or under torchrun; LoRA's state is small enough that
  // every worker holds all of it, so deepspeed's sharding would buy nothing here.
  check.choice("distributed_backend", p.distributed_backend, {"ddp"}, {"deepspeed"}, /*null_ok=*/true);
}

// What a whole config must hold beyond its values: peft set (AutoTrain's default is false), and what the trainer
// needs of the other keys. Then the notes on keys that have no effect here.
void validate_whole(const TrainingParams& p, const std::string& source) {
  const Checker check{source};
  check.unsupported_if(!p.peft, "peft", p.peft,
                       "full fine-tuning is not implemented; set \"peft\": true to train LoRA adapters");
  if (p.trainer == "dpo" || p.trainer == "orpo") {  // TRL reads columns prompt, chosen (text_column) and rejected
    // TRL's ORPOTrainer takes text only.
    check.unsupported_if(p.trainer == "orpo" && p.chat_template.has_value(), "chat_template",
                         write_value(p.chat_template),
                         "with trainer orpo give the prompt, chosen and rejected columns as text, chat_template null");
    check.range(p.prompt_text_column.has_value() || p.chat_template, "prompt_text_column", nullptr,
                "the name of the prompts' column (trainer dpo reads a prompt, text_column and rejected_text_column; "
                "with chat_template tokenizer it may be null: the prompt is the turns chosen and rejected share)");
    check.range(p.rejected_text_column.has_value(), "rejected_text_column", nullptr,
                "the name of the rejected completions' column (text_column holds the chosen ones)");
  }
  // The Trainer steps ReduceLROnPlateau with eval_loss after each evaluation; AutoTrain evaluates only with a
  // validation split, and transformers refuses this schedule without evaluation.
  if (p.scheduler == "reduce_lr_on_plateau") {
    check.range(p.valid_split.has_value(), "valid_split", nullptr,
                "a validation split: scheduler \"reduce_lr_on_plateau\" lowers the rate when eval_loss stops "
                "improving, and evaluates only with one (or choose another scheduler)");
    check.range(p.eval_strategy != "no", "eval_strategy", p.eval_strategy,
                "\"epoch\" or \"steps\": scheduler \"reduce_lr_on_plateau\" lowers the rate when eval_loss stops "
                "improving, so it needs evaluations");
    if (p.warmup_ratio > 0)
      log::info(source + ": \"warmup_ratio\" has no effect with scheduler \"reduce_lr_on_plateau\", which starts at " +
                "\"lr\" (transformers gives it no warmup either)");
  }
  if (p.trainer == "reward")  // TRL's RewardTrainer scores text_column (chosen) against rejected_text_column
    check.range(p.rejected_text_column.has_value(), "rejected_text_column", nullptr,
                "the name of the rejected texts' column (trainer reward scores text_column, the chosen texts, "
                "against it)");
  // AutoTrain loads model_ref for full fine-tuning only: with peft it passes none to TRL (logging "Using PEFT,
  // model_ref will be set to None"), whose reference is then the base with the adapter disabled.
  if (p.model_ref)
    log::warn(source + ": \"model_ref\" has no effect with peft (AutoTrain sets it to None): the DPO reference is " +
              "the base model with the adapter disabled");
  if (p.unsloth) log::warn(source + ": \"unsloth\": true has no effect; autotrain uses its own kernels");
  if (p.use_flash_attention_2)
    log::info(source + ": \"use_flash_attention_2\": attention always runs through memory-efficient SDPA");
}

}  // namespace

const std::vector<std::string>& linear_module_names() {
  static const std::vector<std::string> names = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                 "gate_proj", "up_proj", "down_proj"};
  return names;
}

std::vector<std::string> resolve_target_modules(const TrainingParams& params) {
  if (!params.target_modules || trim(*params.target_modules) == "all-linear") return linear_module_names();
  std::vector<std::string> modules;
  for (const auto& part : split(*params.target_modules, ',')) {
    std::string name = trim(part);
    if (name.empty()) continue;
    const auto& known = linear_module_names();
    if (std::find(known.begin(), known.end(), name) == known.end())
      throw config_error("training_params: key \"target_modules\" names \"" + name +
                         "\", which is not a linear module of Llama/Qwen2/Mistral (did you mean \"" +
                         nearest_word(name, known) + "\"?); use names from: all-linear, " + join(known, ", "));
    if (std::find(modules.begin(), modules.end(), name) == modules.end()) modules.push_back(name);
  }
  if (modules.empty())
    throw config_error("training_params: key \"target_modules\" is \"" + *params.target_modules +
                       "\"; expected \"all-linear\" or comma-separated names such as \"q_proj, v_proj\"");
  return modules;
}

std::string nearest_training_param_key(const std::string& key) { return nearest_word(key, field_names()); }

namespace {

// Reads `document`'s keys over the defaults, then validates the values and, when `whole`, the config as a whole.
TrainingParams parse(const json& document, const std::string& source, bool whole) {
  if (!document.is_object())
    throw config_error(source + ": expected a JSON object of training parameters, found " + describe(document));
  TrainingParams params;
  for (const auto& item : document.items()) {  // not a structured binding: clang 14 cannot capture one
    const std::string& key = item.key();
    const json& value = item.value();
    const auto& table = fields();
    auto it = std::find_if(table.begin(), table.end(), [&](const Field& f) { return f.name == key; });
    if (it == table.end())
      throw config_error(source + ": unknown key \"" + key + "\" (did you mean \"" + nearest_training_param_key(key) +
                         "\"?)");
    it->read(params, value, source);
  }
  try {
    validate_values(params, source);
    if (whole) validate_whole(params, source);
  } catch (const Error& e) {
    // resolve_target_modules() does not know the file's name; put it in front.
    std::string message = e.what();
    const std::string generic = "training_params: ";
    if (message.rfind(generic, 0) == 0) message = source + ": " + message.substr(generic.size());
    throw Error(message, e.exit_code());
  }
  return params;
}

}  // namespace

TrainingParams parse_training_params(const json& document, const std::string& source) {
  return parse(document, source, /*whole=*/true);
}

void check_training_param_values(const json& document, const std::string& source) {
  parse(document, source, /*whole=*/false);
}

TrainingParams load_training_params(const std::string& path) { return load_training_params(path, json::object()); }

TrainingParams load_training_params(const std::string& path, const json& overrides) {
  std::string text;
  try {
    text = read_file(path);
  } catch (const Error& e) {
    throw config_error(std::string(e.what()) + "; pass the path of a training_params.json with --config");
  }
  // Reject duplicate top-level keys: nlohmann keeps the last one silently, which hides typos.
  std::set<std::string> seen;
  std::string duplicate;
  auto on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && !seen.insert(parsed.get<std::string>()).second &&
        duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  json document;
  try {
    document = json::parse(text, on_event);
  } catch (const json::parse_error& e) {
    size_t line = 1, column = 1;
    for (size_t i = 0; i < std::min<size_t>(e.byte > 0 ? e.byte - 1 : 0, text.size()); ++i) {
      if (text[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    throw config_error(path + ": not valid JSON at line " + std::to_string(line) + ", column " +
                       std::to_string(column) + "; fix the syntax (quotes, commas, braces)");
  } catch (const json::exception& e) {  // a number out of range
    throw config_error(path + ": not valid JSON (" + e.what() + ")");
  }
  if (!duplicate.empty()) throw config_error(path + ": key \"" + duplicate + "\" appears more than once; keep one");
  if (document.is_object()) document.update(overrides);
  return parse_training_params(document, path);
}

json to_json(const TrainingParams& params) {
  json out = json::object();
  for (const auto& f : fields()) out[f.name] = f.write(params);
  out.erase("token");
  return out;
}

void save_training_params(const TrainingParams& params, const std::string& folder) {
  make_directories(folder);
  write_file_atomic(folder + "/training_params.json", to_json(params).dump(2) + "\n");
}

}  // namespace autotrain
