// `autotrain eval`: the loss and perplexity of a model, with or without a LoRA adapter, on a split of a dataset,
// tokenized and packed as `train` does (training_params.json's data keys), scored as the training loop scores its
// validation split (the same numbers as its eval_loss).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "autotrain/config.h"
#include "autotrain/gguf.h"

namespace autotrain {

struct EvaluateOptions {
  std::string split;        // the split of data_path to score; empty: params.valid_split
  std::string adapter_dir;  // a PEFT LoRA adapter folder; empty: the base model alone
  int64_t batch_size = 0;   // blocks per forward; 0: params.batch_size
  std::string device = "auto";
  std::string cache_dir;  // token caches; empty: default_cache_dir()
  // Score the base's weights as a GGUF file of this type stores them (export-gguf's types; `quantization` is then
  // none: the GGUF's quantization replaces it), the adapter as a LoRA GGUF adds it: what llama.cpp runs.
  std::optional<GgufType> gguf_type;
  std::string imatrix_file;  // with gguf_type: the importance matrix export-gguf --imatrix quantizes with
  // autotrain imatrix: also collect each projection's input statistics over the scored blocks (the base as
  // params.quantization has it, which the command sets to none unless told: the weights export-gguf reads; the
  // adapter's LoRA applied: the model export-gguf --merge writes) and write them here, in llama-imatrix's format
  // (GGUF, or its legacy one for a .dat path); max_blocks > 0: only the first so many blocks.
  std::string imatrix_out;
  int64_t max_blocks = 0;
};

struct EvaluationResult {
  std::string model, adapter_dir, data_file;  // adapter_dir empty: the base alone
  std::string gguf_type;                      // the base's weights as this GGUF type stores them; empty: as loaded
  int64_t block_size = 0, blocks = 0;
  int64_t tokens = 0;            // of the split, the dropped remainder included
  int64_t predicted_tokens = 0;  // blocks x (block_size - 1): the tokens the loss is the mean over
  double loss = 0, perplexity = 0, seconds = 0;
  // trainer "dpo" / "orpo": the adapter scored against its base, the DPO reference (ORPO: the model alone); loss is
  // the mean DPO / ORPO loss of the pairs
  // (no blocks, no perplexity) and the rewards (beta x log-ratio) rank the chosen above the rejected completion
  // for reward_accuracy of them, by reward_margin on average. Trainer "reward": a reward adapter's head scores each
  // text; loss is the mean -log sigmoid(r_chosen - r_rejected), reward_accuracy / reward_margin of those rewards.
  bool preference = false;
  int64_t pairs = 0;
  double reward_accuracy = 0, reward_margin = 0;
  int64_t imatrix_entries = 0;  // EvaluateOptions::imatrix_out: the weights it holds an entry for
};

// Scores params.model (its dtype from mixed_precision, its base quantized as `quantization` says, as `train`
// loads it; the adapter's own r, alpha and target modules) on the split. Throws Error naming the file or key
// when there is no split to score, the split has fewer tokens than a block, or the adapter does not fit the model.
// With trainer "dpo" or "orpo", the split's preference pairs are scored as that trainer's evaluation does (DPO needs
// an adapter: without one the policy is its own reference).
EvaluationResult run_evaluation(const TrainingParams& params, const EvaluateOptions& options);

nlohmann::json to_json(const EvaluationResult& result);

}  // namespace autotrain
