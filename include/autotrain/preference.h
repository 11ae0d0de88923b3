// Preference data and the DPO loss (AutoTrain's `trainer: "dpo"`, which runs TRL's DPOTrainer): pairs of a prompt
// with a chosen and a rejected completion, tokenized as TRL 1.x prepares them, batched as its collator pads them,
// and the sigmoid DPO loss of Rafailov et al. against the base model with the adapter disabled (PEFT's reference
// when no model_ref is given).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "autotrain/chat_template.h"
#include "autotrain/config.h"
#include "autotrain/tokenizer.h"

namespace autotrain {

// One pair's token ids: the prompt, and each completion as it follows the prompt.
struct PreferencePair {
  std::vector<int64_t> prompt, chosen, rejected;
};

// The lengths AutoTrain's DPO keys set. max_length (block_size) bounds prompt + completion (the end is cut, TRL's
// keep_start); max_prompt_length keeps the last tokens of a longer prompt (after its bos, if it starts with one) and
// max_completion_length the first tokens of a longer completion, as TRL did when AutoTrain passed these keys.
struct PreferenceLimits {
  int64_t max_length = 1024;
  std::optional<int64_t> max_prompt_length, max_completion_length;
};

// TRL's tokenization of a text pair: the eos token's text appended to a completion that does not end with it;
// prompt, prompt + chosen and prompt + rejected tokenized with the special tokens (bos); the completions start
// where the tokenized prompt stops being a prefix of both (a word split across the boundary merges into the
// completion), and the prompt is cut to that common prefix. Then the limits' prompt and completion cuts.
PreferencePair tokenize_preference(const Tokenizer& tokenizer, const std::string& prompt, const std::string& chosen,
                                   const std::string& rejected, const PreferenceLimits& limits);

// A conversational pair (chat_template "tokenizer"): message lists, as TRL's conversational preference datasets.
struct ConversationPair {
  OrderedJson prompt, chosen, rejected;
};

// TRL's implicit prompt (trl.extract_prompt) of a record with no prompt column: the messages chosen and rejected
// share from the start, the rest of each being its completion.
ConversationPair implicit_prompt(const OrderedJson& chosen, const OrderedJson& rejected);

// TRL's tokenization of a conversational pair: the chat template renders the prompt with the generation prompt,
// and prompt + chosen and prompt + rejected without it; each is tokenized without adding special tokens (the
// template writes them) and no eos is appended; then the common-prefix split and the limits as above.
PreferencePair tokenize_preference(const Tokenizer& tokenizer, const ChatTemplate& chat, const ConversationPair& pair,
                                   const PreferenceLimits& limits);

// The pairs of a split: the columns prompt_text_column, text_column (chosen) and rejected_text_column of the file
// resolve_split_file finds, tokenized by tokenize_preference. With chat_template "tokenizer" the columns hold
// conversations rendered by the model's template; prompt_text_column may then be null (the implicit prompt). A pair whose prompt alone fills max_length would keep
// no completion token, so it is dropped (as TRL drops it) with a warning counting them. Throws Error naming the
// file when no pair is left.
std::vector<PreferencePair> read_preference_split(const TrainingParams& params, const Tokenizer& tokenizer,
                                                  const std::string& split, const PreferenceLimits& limits);

// A micro-batch as TRL's preference collator makes it: the b chosen sequences (prompt + chosen) then the b rejected
// ones, each cut to max_length, right-padded with pad_id to the longest; completion_mask is 1 on completion tokens.
struct PreferenceBatch {
  at::Tensor input_ids;        // (2b, L) int64
  at::Tensor completion_mask;  // (2b, L) bool
  int64_t tokens = 0;          // of the sequences, padding excluded
};
PreferenceBatch preference_batch(const std::vector<PreferencePair>& pairs, const std::vector<int64_t>& indices,
                                 int64_t max_length, int64_t pad_id);

// The sigmoid DPO loss of a micro-batch from the summed completion log-probabilities (b,) of the policy and the
// reference: mean over the pairs of -log sigmoid(beta ((pi_c - ref_c) - (pi_r - ref_r))), and the numbers TRL logs.
struct DpoLoss {
  at::Tensor loss;  // fp32 scalar, differentiable through the policy's log-probabilities
  double rewards_chosen = 0, rewards_rejected = 0, accuracy = 0, margin = 0, logps_chosen = 0, logps_rejected = 0;
};
DpoLoss dpo_loss(const at::Tensor& policy_chosen, const at::Tensor& policy_rejected, const at::Tensor& reference_chosen,
                 const at::Tensor& reference_rejected, double beta);

}  // namespace autotrain
