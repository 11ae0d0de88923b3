#include "autotrain/merge.h"

#include <unistd.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "autotrain/adapter.h"
#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/hub_cache.h"
#include "autotrain/logging.h"
#include "autotrain/model_config.h"
#include "autotrain/progress.h"
#include "autotrain/safetensors.h"
#include "autotrain/text_util.h"
#include "autotrain/tokenizer.h"

namespace autotrain {
namespace fs = std::filesystem;

at::Tensor merge_lora_weight(const at::Tensor& weight, const at::Tensor& lora_A, const at::Tensor& lora_B,
                             double scaling, at::ScalarType dtype) {
  // In place, so one fp32 (out, in) buffer is the only temporary; fp32 addition commutes exactly.
  at::Tensor merged = at::matmul(lora_B.to(at::kFloat), lora_A.to(at::kFloat));
  merged.mul_(scaling).add_(weight);
  return merged.to(dtype);
}

uint64_t parse_byte_size(const std::string& text) {
  static const std::regex pattern(R"(\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*)");
  std::smatch match;
  if (!std::regex_match(text, match, pattern))
    throw config_error("size \"" + text + "\" is not a number with a unit, e.g. 5GB, 500MB or 200KB");
  std::string unit = match[2];
  std::transform(unit.begin(), unit.end(), unit.begin(), [](unsigned char c) { return std::toupper(c); });
  static const std::map<std::string, double> units = {
      {"", 1},         {"B", 1},           {"KB", 1e3},        {"MB", 1e6},           {"GB", 1e9},
      {"TB", 1e12},    {"KIB", 1024.0},    {"MIB", 1048576.0}, {"GIB", 1073741824.0}, {"TIB", 1099511627776.0}};
  auto it = units.find(unit);
  if (it == units.end()) throw config_error("size \"" + text + "\": unknown unit \"" + std::string(match[2]) + "\" (use B, KB, MB, GB, KiB, MiB, GiB)");
  const double bytes = std::stod(match[1]) * it->second;
  if (bytes < 1) throw config_error("size \"" + text + "\" must be at least one byte");
  return uint64_t(bytes);
}

at::ScalarType parse_dtype_name(const std::string& text) {
  if (text == "fp16" || text == "float16") return at::kHalf;
  if (text == "bf16" || text == "bfloat16") return at::kBFloat16;
  if (text == "fp32" || text == "float32") return at::kFloat;
  throw config_error("dtype \"" + text + "\" is not one of fp16, bf16, fp32");
}

namespace {

using json = nlohmann::ordered_json;

bool is_floating(const std::string& safetensors_dtype) {
  return safetensors_dtype == "F32" || safetensors_dtype == "F16" || safetensors_dtype == "BF16";
}

std::string config_dtype_name(at::ScalarType type) {
  return type == at::kHalf ? "float16" : type == at::kBFloat16 ? "bfloat16" : "float32";
}

// PEFT's "base_model.model.model.layers.{i}.{self_attn|mlp}.{module}.lora_{A|B}.weight".
const std::regex kLoraName(R"(base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.lora_([AB])\.weight)");

bool is_weight_file(const std::string& file_name) {
  for (const char* suffix : {".safetensors", ".safetensors.index.json", ".bin", ".bin.index.json", ".pt", ".pth",
                             ".gguf", ".ckpt", ".h5", ".msgpack"})
    if (ends_with(file_name, suffix)) return true;
  return false;
}

// What a merged model's config.json changes of the base's: its dtype key, set to the merged dtype; a reward model's
// architecture (*ForCausalLM -> *ForSequenceClassification), one label, and the pad token its pooling skips.
struct ConfigEdits {
  std::optional<at::ScalarType> dtype;
  std::optional<int64_t> reward_pad_id;
  bool any() const { return dtype || reward_pad_id; }
};

// config.json with `edits`; every other top-level file of the base that is not a weight file
// (generation_config.json, the tokenizer files, LICENSE, ...) byte for byte.
void copy_model_files(const std::string& base_dir, const std::string& out_dir, const ConfigEdits& edits) {
  for (const auto& entry : fs::directory_iterator(base_dir)) {
    if (!entry.is_regular_file()) continue;
    const std::string file_name = entry.path().filename().string();
    if (is_weight_file(file_name)) continue;
    const std::string target = (fs::path(out_dir) / file_name).string();
    if (file_name == "config.json" && edits.any()) {
      json config = json::parse(read_file(entry.path().string()));
      if (edits.dtype) {
        const std::string name = config_dtype_name(*edits.dtype);
        bool set = false;
        for (const char* key : {"torch_dtype", "dtype"}) {
          if (config.contains(key)) config[key] = name, set = true;
        }
        if (!set) config["torch_dtype"] = name;
      }
      if (edits.reward_pad_id) {
        // transformers' Auto classes go by model_type; "architectures" names the class for readers of the file.
        json& architectures = config["architectures"];
        if (architectures.is_array() && !architectures.empty() && architectures[0].is_string()) {
          std::string architecture = architectures[0].get<std::string>();
          const size_t causal = architecture.rfind("ForCausalLM");
          if (causal != std::string::npos) architecture.erase(causal);
          architectures = json::array({architecture + "ForSequenceClassification"});
        } else {
          config.erase("architectures");
        }
        config["id2label"] = json{{"0", "LABEL_0"}};
        config["label2id"] = json{{"LABEL_0", 0}};
        config["pad_token_id"] = *edits.reward_pad_id;
      }
      write_file_atomic(target, config.dump(2) + "\n");
    } else {
      write_file_atomic(target, read_file(entry.path().string()));
    }
  }
}

// Removes the partial output folder unless released.
class PartialFolder {
 public:
  explicit PartialFolder(std::string path) : path_(std::move(path)) {}
  ~PartialFolder() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  const std::string& path() const { return path_; }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

// The pad id a reward model trained on `base_dir` pools past: TRL's, the tokenizer's pad token, else its eos
// (AutoTrain's); without a tokenizer the config's pad_token_id, else its first eos id.
int64_t reward_pad_id(const std::string& base_dir, const ModelConfig& config) {
  try {
    const auto tokenizer = Tokenizer::load(base_dir);
    if (const auto pad = tokenizer->pad_or_eos_id()) return *pad;
  } catch (const Error& e) {
    log::warn(base_dir + ": no tokenizer to take the reward model's pad token from (" + e.what() +
              "); the merged config.json takes the base's pad / eos id");
  }
  if (config.pad_token_id) return *config.pad_token_id;
  if (!config.eos_token_ids.empty()) return config.eos_token_ids.front();
  throw Error(base_dir + "/config.json: a reward model needs a pad token id (its pooling skips it), and neither the "
              "tokenizer nor config.json gives a pad or eos token");
}

bool is_nonempty_directory(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && !fs::is_empty(path, ec);
}

}  // namespace

// The adapter's recorded base (adapter_config.json's base_model_name_or_path), when it is a local folder or a Hub
// id in the local Hugging Face cache:
// refuse another architecture or hidden size; only note another vocabulary (AutoTrain #790: Qwen2's
// tokenizer has 151665 tokens, its embeddings 152064 rows). LoRA on linear layers never touches the
// embeddings, so the merge is the same whatever the vocabulary size.
void check_adapter_base(const AdapterConfig& adapter, const std::string& adapter_config_path, const ModelConfig& base) {
  const std::string& recorded = adapter.base_model_name_or_path;
  std::error_code ec;
  std::string folder = recorded;  // a Hub id (PEFT records the id a model was loaded by) is looked up in the cache
  if (!recorded.empty() && !fs::exists(recorded, ec) && is_hub_repo_id(recorded))
    folder = cached_hub_snapshot(recorded, hub_cache_dir()).value_or(recorded);
  if (folder.empty() || !fs::is_regular_file(fs::path(folder) / "config.json", ec)) return;
  json other;
  try {
    other = json::parse(read_file((fs::path(folder) / "config.json").string()));
  } catch (const std::exception&) {
    return;  // not ours to judge: the shapes are checked below
  }
  const std::string other_type = other.value("model_type", "");
  if (!other_type.empty() && other_type != base.model_type)
    throw Error(adapter_config_path + ": the adapter was trained on " + recorded + " (model_type " + other_type +
                "), but the base given is a " + base.model_type + " model; use the model it was trained on");
  if (other.contains("hidden_size") && other["hidden_size"].is_number_integer() &&
      other["hidden_size"].get<int64_t>() != base.hidden_size)
    throw Error(adapter_config_path + ": the adapter was trained on " + recorded + " (hidden_size " +
                std::to_string(other["hidden_size"].get<int64_t>()) + "), but the base given has hidden_size " +
                std::to_string(base.hidden_size) + "; use the model it was trained on");
  if (other.contains("vocab_size") && other["vocab_size"].is_number_integer() &&
      other["vocab_size"].get<int64_t>() != base.vocab_size)
    log::warn(log::cat("the adapter's base ", recorded, " has vocab_size ", other["vocab_size"].get<int64_t>(),
                       ", the base given has ", base.vocab_size, "; the adapter holds no embeddings, so this "
                       "is unaffected, but use the tokenizer of the base given with the result"));
}

// Maps every adapted base weight to its LoRA pair, checking names, modules, layers and shapes.
std::map<std::string, LoraPair> plan_adapter_pairs(const SafetensorsFile& adapter_file, const AdapterConfig& adapter,
                                                   const ModelConfig& config, const Checkpoint& base) {
  const std::string& path = adapter_file.path();
  std::map<std::string, LoraPair> pairs;
  for (const std::string& name : adapter_file.names()) {
    if (adapter.is_reward_model() && name == kScoreTensorName) continue;  // the head, written as it is
    std::smatch match;
    if (!std::regex_match(name, match, kLoraName)) {
      if (name.find("embed_tokens") != std::string::npos || name.find("lm_head") != std::string::npos)
        throw Error(path + ": tensor " + name + " is a full embedding / lm_head weight (modules_to_save or "
                    "save_embedding_layers); merge-adapter merges LoRA on linear layers only: retrain without it");
      throw Error(path + ": tensor " + name + " is not a LoRA matrix of a Llama/Qwen2/Mistral decoder layer; "
                  "the adapter belongs to another architecture");
    }
    const int64_t layer = std::stoll(match[1]);
    const std::string parent = match[2], module = match[3];
    const bool is_a = match[4] == "A";
    if (std::find(adapter.target_modules.begin(), adapter.target_modules.end(), module) ==
        adapter.target_modules.end())
      throw Error(path + ": tensor " + name + " adapts " + module + ", which adapter_config.json's target_modules "
                  "does not list; the adapter folder is inconsistent");
    std::string expected_parent;
    try {
      expected_parent = module_parent(module);
    } catch (const Error&) {
      throw Error(path + ": tensor " + name + " adapts \"" + module + "\", not a Llama/Qwen2/Mistral linear layer");
    }
    const std::string weight = layer_tensor_name(*config.architecture, layer, parent + "." + module + ".weight");
    if (parent != expected_parent || layer >= config.num_hidden_layers || !base.has(weight))
      throw Error(path + ": tensor " + name + " adapts " + weight + ", which the base model lacks (it has " +
                  std::to_string(config.num_hidden_layers) + " layers); the adapter belongs to another model");
    (is_a ? pairs[weight].a : pairs[weight].b) = name;
  }
  if (pairs.empty()) throw Error(path + ": holds no LoRA matrices; is this a PEFT LoRA adapter?");
  for (const auto& [weight, pair] : pairs) {
    if (pair.a.empty() || pair.b.empty())
      throw Error(path + ": " + (pair.a.empty() ? pair.b : pair.a) + " has no " + (pair.a.empty() ? "lora_A" : "lora_B") +
                  " partner; the adapter file is incomplete: re-save it");
    const TensorInfo& w = base.info(weight);
    const TensorInfo& a = adapter_file.info(pair.a);
    const TensorInfo& b = adapter_file.info(pair.b);
    if (!is_floating(w.dtype))
      throw Error(base.path_of(weight) + ": tensor " + weight + " is " + w.dtype + " (a quantized checkpoint?); "
                  "merge-adapter needs the original fp16/bf16/fp32 base weights");
    const bool shapes_fit = w.shape.size() == 2 && a.shape.size() == 2 && b.shape.size() == 2 &&
                            a.shape[0] == adapter.lora.r && b.shape[1] == adapter.lora.r && a.shape[1] == w.shape[1] &&
                            b.shape[0] == w.shape[0];
    if (!shapes_fit)
      throw Error(path + ": " + pair.a + " " + shape_text(a.shape) + " and lora_B " + shape_text(b.shape) +
                  " do not fit " + weight + " " + shape_text(w.shape) + " with r " + std::to_string(adapter.lora.r) +
                  "; the adapter was trained on a model with another hidden/intermediate size: use that model");
  }
  return pairs;
}

MergeSummary merge_adapter(const MergeOptions& given) {
  MergeOptions options = given;
  options.base_dir = resolve_model_folder(given.base_dir);  // a Hub id: its snapshot in the local Hugging Face cache
  const ModelConfig config = load_model_config(options.base_dir);
  const AdapterConfig adapter = load_adapter_config(options.adapter_dir);
  const std::string adapter_config_path = options.adapter_dir + "/adapter_config.json";
  check_adapter_base(adapter, adapter_config_path, config);
  const Checkpoint base = Checkpoint::open(options.base_dir);
  auto adapter_file = SafetensorsFile::open(options.adapter_dir + "/adapter_model.safetensors");
  const std::map<std::string, LoraPair> pairs = plan_adapter_pairs(*adapter_file, adapter, config, base);
  const double scaling = lora_scaling(adapter.lora);
  // A reward model (a SEQ_CLS adapter): transformers' *ForSequenceClassification, the score head in place of lm_head.
  const bool reward = adapter.is_reward_model();
  if (reward) {
    const std::string path = adapter_file->path();
    if (!adapter_file->has(kScoreTensorName))
      throw Error(path + ": a SEQ_CLS adapter without its score head (" + kScoreTensorName + "); re-save the adapter");
    const TensorInfo& head = adapter_file->info(kScoreTensorName);
    if (head.shape != std::vector<int64_t>{1, config.hidden_size})
      throw Error(path + ": " + kScoreTensorName + " has shape " + shape_text(head.shape) + ", a reward head of " +
                  "this model is [1, " + std::to_string(config.hidden_size) + "]; merge it into the model it was "
                  "trained on");
  }

  std::error_code ec;
  const std::string out_dir = fs::path(options.out_dir).lexically_normal().string();
  if (fs::exists(out_dir, ec) && !fs::is_directory(out_dir, ec))
    throw Error(out_dir + ": exists and is not a folder; choose another --out");
  if (is_nonempty_directory(out_dir) && !options.force)
    throw Error(out_dir + ": exists and is not empty; choose another --out or pass --force to replace it");

  // Target weights take the merged dtype; other tensors keep theirs unless --dtype asks for another. The
  // header of every shard comes from this plan, so each tensor is merged, written and freed on its own.
  const at::ScalarType merged_dtype = options.dtype.value_or(config.dtype);
  std::vector<PlannedTensor> plan;
  for (const std::string& name : base.names()) {
    const TensorInfo& info = base.info(name);
    at::ScalarType type;
    try {
      type = safetensors_scalar_type(info.dtype);
    } catch (const Error& e) {
      throw Error(base.path_of(name) + ": tensor " + name + ": " + e.what());
    }
    if (reward && name == config.architecture->lm_head) continue;  // *ForSequenceClassification has none
    if (pairs.count(name)) type = merged_dtype;
    else if (options.dtype && is_floating(info.dtype)) type = *options.dtype;
    plan.push_back({name, type, info.shape});
  }
  if (reward) plan.push_back({kMergedScoreTensorName, merged_dtype, {1, config.hidden_size}});

  PartialFolder partial(out_dir + ".partial-" + std::to_string(::getpid()));
  fs::remove_all(partial.path(), ec);
  make_directories(partial.path());

  MergeSummary summary;
  summary.reward_model = reward;
  ProgressBar progress("merge", int64_t(plan.size()), "tensor");
  // A tensor whose dtype stays is a view of the mapped base file, written byte for byte.
  auto produce = [&](const PlannedTensor& out) {
    if (reward && out.name == kMergedScoreTensorName) return adapter_file->tensor(kScoreTensorName).to(out.dtype);
    at::Tensor tensor = base.tensor(out.name);
    auto pair = pairs.find(out.name);
    if (pair != pairs.end()) {
      tensor = merge_lora_weight(tensor, adapter_file->tensor(pair->second.a), adapter_file->tensor(pair->second.b),
                                 scaling, out.dtype);
      adapter_file->evict(pair->second.a);
      adapter_file->evict(pair->second.b);
      ++summary.merged_weights;
    } else if (tensor.scalar_type() != out.dtype) {
      tensor = tensor.to(out.dtype);
    }
    return tensor;
  };
  // Once a tensor is on its way to disk, the base pages it was read from leave this process's memory.
  auto written = [&](const PlannedTensor& out) {
    if (!(reward && out.name == kMergedScoreTensorName)) base.evict(out.name);
    summary.bytes += out.byte_size();
    ++summary.tensors;
    progress.advance();
  };
  const std::vector<std::string> files = write_sharded_safetensors_streamed(
      partial.path(), plan, options.max_shard_bytes, produce, "model", {{"format", "pt"}}, written);
  progress.finish();
  const bool dtype_changed = options.dtype && *options.dtype != config.dtype;
  ConfigEdits edits;
  if (dtype_changed) edits.dtype = options.dtype;
  if (reward) edits.reward_pad_id = reward_pad_id(options.base_dir, config);
  copy_model_files(options.base_dir, partial.path(), edits);

  if (fs::exists(out_dir, ec)) fs::remove_all(out_dir, ec);  // empty, or --force
  if (ec) throw Error(out_dir + ": cannot remove the old output (" + ec.message() + ")");
  fs::rename(partial.path(), out_dir, ec);
  if (ec) throw Error(out_dir + ": cannot rename " + partial.path() + " to it (" + ec.message() + ")");
  partial.release();
  for (const std::string& file : files) summary.files.push_back((fs::path(out_dir) / fs::path(file).filename()).string());
  return summary;
}

}  // namespace autotrain
